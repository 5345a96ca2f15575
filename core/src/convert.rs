//! Conversions (IEEE 754 clauses 5.4.2 and 5.8): between any two [`Format`]s (f64, f32, binary16,
//! bfloat16, the 8-, 6- and 4-bit formats of [`crate::minifloat`]) with one correct rounding, and
//! between formats and integers. Overflow and infinite operands follow the environment's
//! [`Overflow`] policy (`FpEnv::overflow`).
//!
//! f64 -> f16 rounds once here; `half`'s `f16::from_f64` rounds twice (through f32) and is wrong
//! for some inputs, which is why this module does not build on it.

use crate::env::{Flags, FpEnv, Overflow};
use crate::format::{signed_inf, signed_max, signed_zero, unpack, Format, Unpacked};
use crate::rounding::{convert_nan, round_pack};

/// Converts `x` from format `S` to format `D`, rounding once in the environment's mode.
/// Widening conversions are exact. A NaN keeps its sign and leading payload bits under the x86
/// NaN style (a signalling NaN raises invalid and comes out quiet).
pub fn convert<S: Format, D: Format>(x: S, env: &mut FpEnv) -> D {
    let bits = x.to_bits();
    let out = match unpack::<S>(bits) {
        Unpacked::Nan { sign, signalling } => {
            let payload_left = (bits & S::FRAC_MASK) << (64 - S::FRAC_BITS);
            convert_nan::<D>(sign, payload_left, signalling, env)
        }
        Unpacked::Inf { sign } => infinity::<D>(sign, env),
        Unpacked::Zero { sign } => signed_zero::<D>(sign),
        Unpacked::Finite { sign, exp, sig } => {
            round_pack::<D>(sign, exp, u128::from(sig), false, env)
        }
    };
    D::from_bits(out)
}

/// An infinite operand converted to `D`: infinity where `D` has it (exact), unless the
/// environment saturates; otherwise the largest finite number ([`Overflow::Saturate`], or a format
/// without NaN) or the NaN of a NaN-only format, both inexact (as APFloat's `convert` says).
fn infinity<D: Format>(sign: bool, env: &mut FpEnv) -> u64 {
    if env.overflow == Overflow::Saturate {
        env.raise(Flags::INEXACT);
        return signed_max::<D>(sign);
    }
    if !D::HAS_INFINITY {
        env.raise(Flags::INEXACT);
    }
    signed_inf::<D>(sign)
}

/// f32 -> `F` (`f32_to_f16`, `f32_to_bf16` in SoftFloat's names), one rounding.
pub fn from_f32<F: Format>(x: f32, env: &mut FpEnv) -> F {
    convert::<f32, F>(x, env)
}

/// f64 -> `F`, one rounding (unlike `half::f16::from_f64`).
pub fn from_f64<F: Format>(x: f64, env: &mut FpEnv) -> F {
    convert::<f64, F>(x, env)
}

/// `F` -> f32, exact for binary16 and bfloat16 (only a signalling NaN raises a flag).
pub fn to_f32<F: Format>(x: F, env: &mut FpEnv) -> f32 {
    convert::<F, f32>(x, env)
}

/// `F` -> f64, exact.
pub fn to_f64<F: Format>(x: F, env: &mut FpEnv) -> f64 {
    convert::<F, f64>(x, env)
}

fn from_magnitude<F: Format>(negative: bool, magnitude: u128, env: &mut FpEnv) -> F {
    if magnitude == 0 {
        F::from_bits(0)
    } else {
        F::from_bits(round_pack::<F>(negative, 0, magnitude, false, env))
    }
}

/// i32 -> `F` (convertFromInt), rounding in the environment's mode; 0 gives +0.
pub fn from_i32<F: Format>(x: i32, env: &mut FpEnv) -> F {
    from_magnitude::<F>(x < 0, u128::from(x.unsigned_abs()), env)
}

/// i64 -> `F`, rounding in the environment's mode; 0 gives +0.
pub fn from_i64<F: Format>(x: i64, env: &mut FpEnv) -> F {
    from_magnitude::<F>(x < 0, u128::from(x.unsigned_abs()), env)
}

/// u32 -> `F`, rounding in the environment's mode.
pub fn from_u32<F: Format>(x: u32, env: &mut FpEnv) -> F {
    from_magnitude::<F>(false, u128::from(x), env)
}

/// u64 -> `F`, rounding in the environment's mode.
pub fn from_u64<F: Format>(x: u64, env: &mut FpEnv) -> F {
    from_magnitude::<F>(false, u128::from(x), env)
}

/// The integer range of a conversion target and what an invalid conversion returns.
/// The invalid results are x86 SSE's "integer indefinite" values, as SoftFloat's 8086-SSE
/// specialisation returns them: the most negative value for signed types, all ones for unsigned.
struct IntTarget {
    min: i128,
    max: i128,
    invalid: i128,
}

/// convertToInteger (IEEE 754 clause 5.8) in the environment's rounding mode: NaN and values whose
/// rounded result is out of range raise invalid (and return the target's invalid value); with
/// `exact` (convertToIntegerExact) a rounded result also raises inexact, otherwise never.
fn to_integer<F: Format>(x: F, exact: bool, env: &mut FpEnv, target: IntTarget) -> i128 {
    let mut rounding = FpEnv {
        flags: Flags::NONE,
        ..*env
    };
    let value = match unpack::<F>(x.to_bits()) {
        Unpacked::Nan { .. } | Unpacked::Inf { .. } => None,
        Unpacked::Zero { .. } => Some(0),
        // Anything at or above 2^100 is out of every integer range here.
        Unpacked::Finite { exp, .. } if exp > 100 => None,
        Unpacked::Finite { sign, exp, sig } => {
            let magnitude = if exp >= 0 {
                i128::from(sig) << exp
            } else {
                i128::from(crate::arith::round_integer(sign, exp, sig, &mut rounding))
            };
            Some(if sign { -magnitude } else { magnitude })
        }
    };
    match value {
        Some(v) if (target.min..=target.max).contains(&v) => {
            if exact {
                env.flags |= rounding.flags;
            }
            v
        }
        _ => {
            // Out of range: invalid alone; a rounding's inexact is not raised (as in SoftFloat).
            env.raise(Flags::INVALID);
            target.invalid
        }
    }
}

/// `F` -> i32 (convertToInteger in the environment's mode; see [`to_integer`] rules).
pub fn to_i32<F: Format>(x: F, exact: bool, env: &mut FpEnv) -> i32 {
    let target = IntTarget {
        min: i32::MIN.into(),
        max: i32::MAX.into(),
        invalid: i32::MIN.into(),
    };
    to_integer(x, exact, env, target) as i32
}

/// `F` -> i64 (convertToInteger in the environment's mode).
pub fn to_i64<F: Format>(x: F, exact: bool, env: &mut FpEnv) -> i64 {
    let target = IntTarget {
        min: i64::MIN.into(),
        max: i64::MAX.into(),
        invalid: i64::MIN.into(),
    };
    to_integer(x, exact, env, target) as i64
}

/// `F` -> u32 (convertToInteger in the environment's mode; negative results are invalid).
pub fn to_u32<F: Format>(x: F, exact: bool, env: &mut FpEnv) -> u32 {
    let target = IntTarget {
        min: 0,
        max: u32::MAX.into(),
        invalid: u32::MAX.into(),
    };
    to_integer(x, exact, env, target) as u32
}

/// `F` -> u64 (convertToInteger in the environment's mode; negative results are invalid).
pub fn to_u64<F: Format>(x: F, exact: bool, env: &mut FpEnv) -> u64 {
    let target = IntTarget {
        min: 0,
        max: u64::MAX.into(),
        invalid: u64::MAX.into(),
    };
    to_integer(x, exact, env, target) as u64
}
