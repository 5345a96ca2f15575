//! The fate classifiers against an actual conversion, the census and the safe scale window.

use halfscale_core::half::{bf16, f16};
use halfscale_core::{self as hc, census, fate_f32, safe_scale_window, Fate, Format, FpEnv};
use proptest::prelude::*;

/// What a plain nearest-even conversion (F16C-backed `half`) actually does to `x * scale`.
fn observed<F: Format>(x: f32, scale: f32, stored: f32) -> Fate {
    let y = f64::from(x) * f64::from(scale);
    if y.is_nan() {
        Fate::Nan
    } else if y.is_infinite() {
        Fate::Inf
    } else if y == 0.0 {
        Fate::Zero
    } else if stored.is_infinite() {
        Fate::Overflow
    } else if stored == 0.0 {
        Fate::FlushedToZero
    } else if stored.abs() < libm::ldexpf(1.0, F::EMIN) {
        let lost = (F::EMIN - libm::ilogbf(stored)) as u32;
        Fate::Subnormal {
            bits_lost: lost,
            exact: f64::from(stored) == y,
        }
    } else if f64::from(stored) == y {
        Fate::Exact
    } else {
        Fate::Rounded
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]
    #[test]
    fn fate_matches_the_conversion(bits in any::<u32>(), k in -30i32..30, special in 0usize..40) {
        // Exponents 2^-47 .. 2^52 so that x * 2^k stays an exact f32 for the reference, and a
        // few specials.
        let specials = [0.0f32, -0.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 65504.0, 65520.0];
        let x = specials.get(special).copied().unwrap_or_else(|| {
            f32::from_bits((bits & 0x807F_FFFF) | ((80 + (bits >> 23) % 100) << 23))
        });
        let scale = libm::ldexpf(1.0, k);
        let y = x * scale; // exact unless f32 itself over/underflows; skip those
        prop_assume!(f64::from(y) == f64::from(x) * f64::from(scale) || y.is_nan());
        prop_assert_eq!(fate_f32::<f16>(x, scale), observed::<f16>(x, scale, f16::from_f32(y).to_f32()));
        prop_assert_eq!(fate_f32::<bf16>(x, scale), observed::<bf16>(x, scale, bf16::from_f32(y).to_f32()));
    }
}

#[test]
fn fate_boundaries() {
    // Half the smallest subnormal is a tie that rounds to zero; just above it rounds up.
    let half_min = libm::ldexpf(1.0, -25);
    assert_eq!(fate_f32::<f16>(half_min, 1.0), Fate::FlushedToZero);
    assert_eq!(
        fate_f32::<f16>(f32::from_bits(half_min.to_bits() + 1), 1.0),
        Fate::Subnormal {
            bits_lost: 10,
            exact: false
        }
    );
    assert_eq!(
        fate_f32::<f16>(1.2e-5, 1.0),
        Fate::Subnormal {
            bits_lost: 3,
            exact: false
        }
    );
    assert_eq!(fate_f32::<f16>(1.2e-5, 65536.0), Fate::Rounded);
    assert_eq!(fate_f32::<f16>(65504.0, 1.0), Fate::Exact);
    assert_eq!(fate_f32::<f16>(65519.0, 1.0), Fate::Rounded);
    assert_eq!(fate_f32::<f16>(65520.0, 1.0), Fate::Overflow);
    assert_eq!(fate_f32::<f16>(1.0, f32::INFINITY), Fate::Inf);
    assert_eq!(fate_f32::<f16>(0.0, f32::INFINITY), Fate::Nan);
    assert!(Fate::FlushedToZero.is_underflow() && !Fate::Rounded.is_underflow());
}

#[test]
fn census_counts_every_fate() {
    let values = [
        0.0f32,
        1.0,
        1.0 + 1e-4,
        1e-6,
        1e-9,
        1e6,
        f32::NAN,
        f32::NEG_INFINITY,
        6.1035156e-5,
    ];
    let c = census::<f16>(&values, 1.0);
    assert_eq!(
        (c.zero, c.exact, c.rounded, c.subnormal, c.subnormal_inexact),
        (1, 2, 1, 1, 1)
    );
    assert_eq!((c.flushed_to_zero, c.overflow, c.nan, c.inf), (1, 1, 1, 1));
    assert_eq!(c.total(), values.len() as u64);
    assert_eq!(c.underflowed(), 2);
    assert_eq!(
        c.exp_hist.iter().sum::<u64>(),
        6,
        "finite non-zero values only"
    );
    assert_eq!(c.max_abs, 1e6);
    assert_eq!(c.min_nonzero_abs, f64::from(1e-9f32));
    // Scaling by 2^16 rescues the flushed value and overflows everything at or above 1.
    let scaled = census::<f16>(&values, 65536.0);
    assert_eq!(scaled.flushed_to_zero, 0);
    assert_eq!(
        scaled.overflow,
        1 + 2,
        "1e6, 1.0 and 1.0001 overflow at 2^16 (1e6 already did)"
    );
}

/// The census of a slice at a power-of-two scale (which reads the fate off the f32 bits) is, bit
/// for bit, the census counted element by element with `Census::add_with`: on every f32
/// exponent, with significands whose low bits sit on each side of every format's quantum, both
/// signs, in every format from FP4 to f32, at scales that move values across each end of each
/// format (and a negative one, and one that is not a power of two), under both overflow policies.
#[test]
fn census_at_power_of_two_scales_equals_the_element_by_element_census() {
    use hc::{census_with, Census, Overflow, E2M1, E2M3, E3M2, E4M3, E5M2};
    let mut significands = vec![0u32, 0x7f_ffff, 0x40_0000, 0x55_5555, 0x2a_aaaa];
    for j in 0..23 {
        significands.extend([(1 << j) - 1, 1 << j, (1 << j) + 1, 0x7f_ffff ^ (1 << j)]);
    }
    let mut values = Vec::new();
    for biased in 0..=255u32 {
        for (i, &m) in significands.iter().enumerate() {
            let sign = (i as u32 + biased) % 2;
            values.push(f32::from_bits(sign << 31 | biased << 23 | m));
        }
    }
    // Not sorted by magnitude, so the extremes are found, not read off the ends.
    values.reverse();
    let third = values.len() / 3;
    values.rotate_left(third);
    fn check<F: Format>(values: &[f32]) {
        let scales = [
            1.0f32,
            65536.0,
            2f32.powi(-24),
            2f32.powi(-126),
            2f32.powi(127),
        ];
        for scale in scales.into_iter().chain([-0.5, 3.0]) {
            for overflow in [Overflow::Ieee, Overflow::Saturate] {
                let mut one_by_one = Census::default();
                for &x in values {
                    one_by_one.add_with::<F>(f64::from(x), f64::from(scale), overflow);
                }
                let got = census_with::<F>(values, scale, overflow);
                assert_eq!(
                    got,
                    one_by_one,
                    "{} at scale {scale}, {overflow:?}",
                    core::any::type_name::<F>()
                );
                // The values reach the normal range, exact and (below f32's precision) rounded.
                assert!(
                    got.exact > 0 && (got.rounded > 0 || F::PRECISION == 24),
                    "{} at scale {scale}: {} exact, {} rounded",
                    core::any::type_name::<F>(),
                    got.exact,
                    got.rounded
                );
            }
        }
    }
    check::<f16>(&values);
    check::<bf16>(&values);
    check::<f32>(&values);
    check::<E4M3>(&values);
    check::<E5M2>(&values);
    check::<E3M2>(&values);
    check::<E2M3>(&values);
    check::<E2M1>(&values);
}

#[test]
fn safe_window_is_exact_at_both_ends() {
    let values = [3.0f32, -0.5, 1e-7];
    let c = census::<f16>(&values, 1.0);
    let w = safe_scale_window::<f16>(&c).unwrap();
    let fits = |k: i32| {
        values.iter().all(|&v| {
            !hc::from_f64::<f16>(f64::from(v) * libm::ldexp(1.0, k), &mut FpEnv::default())
                .is_infinite()
        })
    };
    assert!(fits(w.max_exp) && !fits(w.max_exp + 1));
    let kept = |k: i32| {
        hc::from_f64::<f16>(1e-7f32 as f64 * libm::ldexp(1.0, k), &mut FpEnv::default()).to_bits()
            != 0
    };
    assert!(kept(w.min_exp_no_flush) && !kept(w.min_exp_no_flush - 1));
    assert_eq!(w.best_exp, w.max_exp);
    assert!(w.is_lossless());
    assert_eq!(
        safe_scale_window::<f16>(&census::<f16>(&[0.0, f32::NAN], 1.0)),
        None
    );
}
