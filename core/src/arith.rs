//! IEEE 754 arithmetic (clause 5.4.1): add, sub, mul, div, sqrt, fusedMultiplyAdd and
//! roundToIntegral, generic over the [`Format`], correctly rounded in every mode with flags.
//!
//! Each operation computes its exact result in integers (a `u128` significand and a sticky bit)
//! and rounds once through [`round_pack`]. Special operands follow IEEE 754 clause 6 and, for
//! which NaN comes out, the environment's [`crate::NanStyle`].

use crate::env::{Flags, FpEnv, RoundingMode};
use crate::format::{signed_inf, signed_zero, unpack, Format, Unpacked};
use crate::rounding::{default_nan, propagate_nan, round_pack, rounds_up, split};

/// The sign of an exact zero sum of operands of opposite signs (IEEE 754 clause 6.3).
fn exact_zero_sign(env: &FpEnv) -> bool {
    env.rounding == RoundingMode::TowardNegative
}

/// Sum of two non-zero finite exact values `(-1)^s * sig * 2^exp`, rounded once.
fn add_finite<F: Format>(x: (bool, i32, u128), y: (bool, i32, u128), env: &mut FpEnv) -> u64 {
    // Normalise both significands to [2^60, 2^61) so alignment needs no case analysis on width.
    let norm = |(s, e, m): (bool, i32, u128)| {
        let shift = m.leading_zeros() as i32 - 67;
        (s, e - shift, m << shift)
    };
    let (x, y) = (norm(x), norm(y));
    let (hi, lo) = if x.1 >= y.1 { (x, y) } else { (y, x) };
    let d = (hi.1 - lo.1) as u32;
    let (exp, hi_sig, lo_sig, sticky) = if d <= 64 {
        (lo.1, hi.2 << d, lo.2, false)
    } else {
        // lo < 2^(hi.exp - 4): below the last place of hi << 3, so it only decides the sticky
        // bit (and, when subtracting, borrows one last place).
        (hi.1 - 3, hi.2 << 3, 0, true)
    };
    if hi.0 == lo.0 {
        return round_pack::<F>(hi.0, exp, hi_sig + lo_sig, sticky, env);
    }
    if sticky {
        return round_pack::<F>(hi.0, exp, hi_sig - 1, true, env);
    }
    match hi_sig.cmp(&lo_sig) {
        core::cmp::Ordering::Equal => signed_zero::<F>(exact_zero_sign(env)),
        core::cmp::Ordering::Greater => round_pack::<F>(hi.0, exp, hi_sig - lo_sig, false, env),
        core::cmp::Ordering::Less => round_pack::<F>(lo.0, exp, lo_sig - hi_sig, false, env),
    }
}

fn add_bits<F: Format>(a: u64, b: u64, env: &mut FpEnv) -> u64 {
    match (unpack::<F>(a), unpack::<F>(b)) {
        (Unpacked::Nan { .. }, _) | (_, Unpacked::Nan { .. }) => {
            propagate_nan::<F>(a, Some(b), env)
        }
        (Unpacked::Inf { sign: sa }, Unpacked::Inf { sign: sb }) if sa != sb => {
            default_nan::<F>(env)
        }
        (Unpacked::Inf { .. }, _) => a,
        (_, Unpacked::Inf { .. }) => b,
        (Unpacked::Zero { sign: sa }, Unpacked::Zero { sign: sb }) => {
            signed_zero::<F>(if sa == sb { sa } else { exact_zero_sign(env) })
        }
        (Unpacked::Zero { .. }, _) => b,
        (_, Unpacked::Zero { .. }) => a,
        (
            Unpacked::Finite {
                sign: sa,
                exp: ea,
                sig: ma,
            },
            Unpacked::Finite {
                sign: sb,
                exp: eb,
                sig: mb,
            },
        ) => add_finite::<F>((sa, ea, ma.into()), (sb, eb, mb.into()), env),
    }
}

/// `a + b` (IEEE 754 addition).
pub fn add<F: Format>(a: F, b: F, env: &mut FpEnv) -> F {
    F::from_bits(add_bits::<F>(a.to_bits(), b.to_bits(), env))
}

/// `a - b` (IEEE 754 subtraction): `a + (-b)`, with NaN operands propagated unchanged.
pub fn sub<F: Format>(a: F, b: F, env: &mut FpEnv) -> F {
    let (a, b) = (a.to_bits(), b.to_bits());
    let neg_b = if crate::format::is_nan_bits::<F>(b) {
        b
    } else {
        b ^ F::SIGN_MASK
    };
    F::from_bits(add_bits::<F>(a, neg_b, env))
}

/// `a * b` (IEEE 754 multiplication).
pub fn mul<F: Format>(a: F, b: F, env: &mut FpEnv) -> F {
    let (ab, bb) = (a.to_bits(), b.to_bits());
    let bits = match (unpack::<F>(ab), unpack::<F>(bb)) {
        (Unpacked::Nan { .. }, _) | (_, Unpacked::Nan { .. }) => {
            propagate_nan::<F>(ab, Some(bb), env)
        }
        (Unpacked::Inf { .. }, Unpacked::Zero { .. })
        | (Unpacked::Zero { .. }, Unpacked::Inf { .. }) => default_nan::<F>(env),
        (Unpacked::Inf { sign: sa }, other) | (other, Unpacked::Inf { sign: sa }) => {
            signed_inf::<F>(sa ^ sign_of(other))
        }
        (Unpacked::Zero { sign: sa }, other) | (other, Unpacked::Zero { sign: sa }) => {
            signed_zero::<F>(sa ^ sign_of(other))
        }
        (
            Unpacked::Finite {
                sign: sa,
                exp: ea,
                sig: ma,
            },
            Unpacked::Finite {
                sign: sb,
                exp: eb,
                sig: mb,
            },
        ) => round_pack::<F>(
            sa ^ sb,
            ea + eb,
            u128::from(ma) * u128::from(mb),
            false,
            env,
        ),
    };
    F::from_bits(bits)
}

fn sign_of(u: Unpacked) -> bool {
    match u {
        Unpacked::Zero { sign }
        | Unpacked::Finite { sign, .. }
        | Unpacked::Inf { sign }
        | Unpacked::Nan { sign, .. } => sign,
    }
}

/// `a / b` (IEEE 754 division); a finite non-zero over zero raises divide-by-zero.
pub fn div<F: Format>(a: F, b: F, env: &mut FpEnv) -> F {
    let (ab, bb) = (a.to_bits(), b.to_bits());
    let bits = match (unpack::<F>(ab), unpack::<F>(bb)) {
        (Unpacked::Nan { .. }, _) | (_, Unpacked::Nan { .. }) => {
            propagate_nan::<F>(ab, Some(bb), env)
        }
        (Unpacked::Inf { .. }, Unpacked::Inf { .. })
        | (Unpacked::Zero { .. }, Unpacked::Zero { .. }) => default_nan::<F>(env),
        (Unpacked::Inf { sign: sa }, other) => signed_inf::<F>(sa ^ sign_of(other)),
        (other, Unpacked::Inf { sign: sb }) => signed_zero::<F>(sb ^ sign_of(other)),
        (Unpacked::Zero { sign: sa }, other) => signed_zero::<F>(sa ^ sign_of(other)),
        (Unpacked::Finite { sign: sa, .. }, Unpacked::Zero { sign: sb }) => {
            env.raise(Flags::DIV_BY_ZERO);
            signed_inf::<F>(sa ^ sb)
        }
        (
            Unpacked::Finite {
                sign: sa,
                exp: ea,
                sig: ma,
            },
            Unpacked::Finite {
                sign: sb,
                exp: eb,
                sig: mb,
            },
        ) => {
            // At least 64 - 24 = 40 quotient bits: enough for any precision up to 24 plus
            // guard bits; the remainder decides the sticky bit.
            let num = u128::from(ma) << 64;
            let den = u128::from(mb);
            round_pack::<F>(sa ^ sb, ea - eb - 64, num / den, num % den != 0, env)
        }
    };
    F::from_bits(bits)
}

/// Integer square root of `n < 2^80`: the largest `r` with `r * r <= n`. The f64 estimate is
/// within one of it (relative error about 2^-53 on a root below 2^40), so the correction loops
/// run at most a step or two.
fn isqrt(n: u128) -> u128 {
    let mut r = libm::sqrt(n as f64) as u128;
    while r * r > n {
        r -= 1;
    }
    while (r + 1) * (r + 1) <= n {
        r += 1;
    }
    r
}

/// `sqrt(a)` (IEEE 754 squareRoot): `sqrt(-0) = -0`, negative non-zero operands are invalid.
pub fn sqrt<F: Format>(a: F, env: &mut FpEnv) -> F {
    let ab = a.to_bits();
    let bits = match unpack::<F>(ab) {
        Unpacked::Nan { .. } => propagate_nan::<F>(ab, None, env),
        Unpacked::Zero { .. } | Unpacked::Inf { sign: false } => ab,
        Unpacked::Inf { sign: true } | Unpacked::Finite { sign: true, .. } => default_nan::<F>(env),
        Unpacked::Finite {
            sign: false,
            exp,
            sig,
        } => {
            // Make the exponent even, then widen by 2^52 so the root has at least 26 bits (precision
            // up to 24 plus round and sticky positions); the remainder decides the sticky bit.
            let (exp, sig) = if exp % 2 != 0 {
                (exp - 1, sig << 1)
            } else {
                (exp, sig)
            };
            let n = u128::from(sig) << 52;
            let root = isqrt(n);
            round_pack::<F>(false, (exp - 52) / 2, root, root * root != n, env)
        }
    };
    F::from_bits(bits)
}

/// `a * b + c` with a single rounding (IEEE 754 fusedMultiplyAdd).
///
/// NaN operands: x86 SSE (and SoftFloat's 8086-SSE) propagate the first NaN of `a`, `b`, `c`;
/// `inf * 0` is invalid even when `c` is a quiet NaN.
pub fn fma<F: Format>(a: F, b: F, c: F, env: &mut FpEnv) -> F {
    let (ab, bb, cb) = (a.to_bits(), b.to_bits(), c.to_bits());
    let (ua, ub, uc) = (unpack::<F>(ab), unpack::<F>(bb), unpack::<F>(cb));
    let is_nan = |u: Unpacked| matches!(u, Unpacked::Nan { .. });
    let inf_times_zero = matches!(
        (ua, ub),
        (Unpacked::Inf { .. }, Unpacked::Zero { .. })
            | (Unpacked::Zero { .. }, Unpacked::Inf { .. })
    );
    if is_nan(ua) || is_nan(ub) {
        let ab_nan = propagate_nan::<F>(ab, Some(bb), env);
        return F::from_bits(propagate_nan::<F>(ab_nan, Some(cb), env));
    }
    if inf_times_zero {
        let nan = default_nan::<F>(env);
        return F::from_bits(if is_nan(uc) {
            propagate_nan::<F>(nan, Some(cb), env)
        } else {
            nan
        });
    }
    if is_nan(uc) {
        return F::from_bits(propagate_nan::<F>(cb, None, env));
    }
    let prod_sign = sign_of(ua) ^ sign_of(ub);
    let bits = match (ua, ub, uc) {
        (Unpacked::Inf { .. }, _, _) | (_, Unpacked::Inf { .. }, _) => match uc {
            Unpacked::Inf { sign } if sign != prod_sign => default_nan::<F>(env),
            _ => signed_inf::<F>(prod_sign),
        },
        (_, _, Unpacked::Inf { .. }) => cb,
        (Unpacked::Zero { .. }, _, _) | (_, Unpacked::Zero { .. }, _) => match uc {
            Unpacked::Zero { sign } if sign == prod_sign => cb,
            Unpacked::Zero { .. } => signed_zero::<F>(exact_zero_sign(env)),
            _ => cb,
        },
        (
            Unpacked::Finite {
                exp: ea, sig: ma, ..
            },
            Unpacked::Finite {
                exp: eb, sig: mb, ..
            },
            _,
        ) => {
            let product = (prod_sign, ea + eb, u128::from(ma) * u128::from(mb));
            match uc {
                Unpacked::Finite { sign, exp, sig } => {
                    add_finite::<F>(product, (sign, exp, u128::from(sig)), env)
                }
                _ => round_pack::<F>(product.0, product.1, product.2, false, env),
            }
        }
        _ => unreachable!("every special operand was handled above"),
    };
    F::from_bits(bits)
}

/// roundToIntegral in the environment's rounding mode (IEEE 754 clause 5.3.1).
///
/// `exact == false` is roundToIntegralTiesToEven-style "no inexact" (SoftFloat's
/// `f16_roundToInt(a, mode, false)`); `exact == true` is roundToIntegralExact, which raises inexact
/// when the result differs from `a`.
pub fn round_to_int<F: Format>(a: F, exact: bool, env: &mut FpEnv) -> F {
    let ab = a.to_bits();
    let bits = match unpack::<F>(ab) {
        Unpacked::Nan { .. } => propagate_nan::<F>(ab, None, env),
        Unpacked::Zero { .. } | Unpacked::Inf { .. } => ab,
        Unpacked::Finite { exp, .. } if exp >= 0 => ab,
        Unpacked::Finite { sign, exp, sig } => {
            // Round sig * 2^exp to an integer by rounding at the 2^0 place.
            let mut scratch = FpEnv {
                flags: Flags::NONE,
                ..*env
            };
            let integer = round_integer(sign, exp, sig, &mut scratch);
            if exact && scratch.flags.contains(Flags::INEXACT) {
                env.raise(Flags::INEXACT);
            }
            if integer == 0 {
                signed_zero::<F>(sign)
            } else {
                // An integer no larger than 2^PRECISION: exactly representable.
                round_pack::<F>(sign, 0, u128::from(integer), false, &mut scratch)
            }
        }
    };
    F::from_bits(bits)
}

/// `|sig * 2^exp|` rounded to an integer in `env`'s mode (sign given for directed modes);
/// raises inexact in `env` when it rounded. `exp` must be negative.
pub(crate) fn round_integer(sign: bool, exp: i32, sig: u64, env: &mut FpEnv) -> u64 {
    let shift = exp.unsigned_abs().min(129);
    let (kept, half, rest) = split(u128::from(sig), shift, false);
    if half || rest {
        env.raise(Flags::INEXACT);
    }
    (kept + u128::from(rounds_up(env.rounding, sign, kept, half, rest))) as u64
}
