//! `torch.ceil(torch.log2(x))` and `torch.floor(torch.log2(x))` on a float32 tensor, as torch 2.15
//! on the CPU computes them.
//!
//! torchao rounds scales to powers of two through the float32 logarithm (`_to_mx_rceil`'s fallback,
//! `_round_scale_down_to_power_of_2`), not through the exponent bits. The logarithm is rounded to
//! float32 before `ceil`/`floor` see it, so an `x` a few ulps above a power of two `2^k`, with
//! `|k| >= 4`, has `log2(x)` rounded to exactly `k`: `ceil` then answers `k`, not `k + 1`, and
//! likewise `floor` answers `k` for `x` a few ulps below `2^k`. Reproducing torch therefore means
//! reproducing that rounding: here the logarithm is evaluated in f64 (`libm::log2`, error below one
//! f64 ulp) and rounded once to f32, which is the correctly rounded f32 logarithm unless the exact
//! value lies within ~2^-52 relative of an f32 rounding boundary. Only the boundaries next to an
//! integer matter for `ceil`/`floor`; `core/tests/recipe_torchao.rs` replays torch's answers for
//! every power of two from 2^-149 to 2^127 and its neighbours (recorded with the vectorised Sleef
//! kernels on AVX-512 and AVX2 and with glibc's scalar `log2f`, which agree there).

/// `log2(x)` rounded to f32, as torch's float32 `log2` returns it near integers.
fn log2_f32(x: f32) -> f32 {
    libm::log2(f64::from(x)) as f32
}

/// `torch.ceil(torch.log2(x))` for a float32 `x`: `-inf` for zero, NaN for NaN and negatives,
/// `+inf` for `+inf`.
///
/// Fast for normal `x = 2^k * (1 + f * 2^-23)`: `k` when `f = 0`, `k + 1` when `f >= 1024`
/// (then `log2(x) - k >= 1.7e-4`, above half an f32 ulp of any `|k| <= 149`, and below 1, so the
/// rounded logarithm lies in `(k, k + 1]`); the logarithm itself only for the few `f` in between.
pub fn ceil_log2(x: f32) -> f32 {
    let bits = x.to_bits();
    let biased = (bits >> 23) as i32;
    if (1..255).contains(&biased) {
        let frac = bits & 0x007F_FFFF;
        if frac == 0 {
            return (biased - 127) as f32;
        }
        if frac >= 1024 {
            return (biased - 126) as f32;
        }
    }
    libm::ceilf(log2_f32(x))
}

/// `torch.floor(torch.log2(x))` for a float32 `x`, with the same special values as [`ceil_log2`].
pub fn floor_log2(x: f32) -> f32 {
    libm::floorf(log2_f32(x))
}

/// `torch.exp2(k)` for a float32 `k` holding an integer or an infinity: exactly `2^k` (torch's
/// exp2 is exact there), `0` below 2^-149, `+inf` above 2^127, NaN for NaN.
pub fn exp2_integer(k: f32) -> f32 {
    if k.is_nan() {
        return k;
    }
    if k >= 128.0 {
        return f32::INFINITY;
    }
    if k < -149.0 {
        return 0.0;
    }
    let k = k as i32;
    if k >= -126 {
        f32::from_bits(((k + 127) as u32) << 23)
    } else {
        f32::from_bits(1 << (k + 149))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers_of_two_are_exact() {
        for k in -149..=127 {
            let x = exp2_integer(k as f32);
            assert_eq!(libm::ldexp(1.0, k) as f32, x, "2^{k}");
            assert_eq!(ceil_log2(x), k as f32);
            assert_eq!(floor_log2(x), k as f32);
        }
    }

    #[test]
    fn just_above_a_large_power_of_two_the_logarithm_rounds_back_to_it() {
        // log2(2^100 * (1 + 2^-23)) = 100 + 1.7e-7, but f32 spacing at 100 is 7.6e-6.
        let x = f32::from_bits(exp2_integer(100.0).to_bits() + 1);
        assert_eq!(ceil_log2(x), 100.0);
        // Near 2^1 the spacing is fine enough to see the step.
        let x = f32::from_bits(exp2_integer(1.0).to_bits() + 2);
        assert_eq!(ceil_log2(x), 2.0);
    }

    #[test]
    fn the_fast_ceil_is_the_logarithm_one() {
        // Every exponent, the fractions on both sides of the fast path's threshold and at the ends.
        for biased in 1u32..255 {
            for frac in (0..1100).chain([0x3F_FFFF, 0x40_0000, 0x7F_FFFE, 0x7F_FFFF]) {
                let x = f32::from_bits(biased << 23 | frac);
                assert_eq!(ceil_log2(x), libm::ceilf(log2_f32(x)), "{x:e}");
            }
        }
    }

    #[test]
    fn specials() {
        assert_eq!(ceil_log2(0.0), f32::NEG_INFINITY);
        assert_eq!(floor_log2(f32::INFINITY), f32::INFINITY);
        assert!(ceil_log2(f32::NAN).is_nan());
        assert_eq!(exp2_integer(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp2_integer(200.0), f32::INFINITY);
    }
}
