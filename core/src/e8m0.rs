//! E8M0, the shared scale of an OCP Microscaling block (OCP MX v1.0, section 5.4): an unsigned
//! 8-bit power of two `2^(code - 127)` for codes `0x00..=0xFE` (2^-127 to 2^127), and NaN at `0xFF`.
//! No sign, no zero, no fraction, no infinity.
//!
//! It is a type of its own rather than a [`crate::Format`]: without a sign bit or a zero it breaks
//! every assumption the generic arithmetic makes, and a scale only needs conversions.
//!
//! Converting a number to E8M0 rounds its binary logarithm in the environment's mode: with a
//! one-bit significand, round-to-nearest-even takes a tie `1.5 * 2^k` up to `2^(k+1)` (its
//! significand `10` is the even one), which is what ml_dtypes' `float8_e8m0fnu` does. What has no
//! E8M0 value: zero, negative numbers and NaN give NaN (invalid; a quiet NaN operand raises
//! nothing); `+inf` gives NaN (inexact), or 2^127 when `FpEnv::overflow` saturates; a positive
//! value below 2^-127 gives 2^-127 (inexact and underflow), there being no zero to flush to;
//! above 2^127 it overflows as [`crate::Overflow`] says (NaN, or 2^127).

use crate::env::{Flags, FpEnv, Overflow, RoundingMode};
use crate::format::{unpack, Format, Unpacked};
use crate::rounding::{rounds_up, split};

/// An E8M0 scale: `2^(code - 127)`, or NaN for code `0xFF`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct E8M0(u8);

impl E8M0 {
    /// The exponent bias.
    pub const BIAS: i32 = 127;
    /// `2^0`.
    pub const ONE: E8M0 = E8M0(127);
    /// The smallest value, `2^-127`.
    pub const MIN: E8M0 = E8M0(0x00);
    /// The largest value, `2^127`.
    pub const MAX: E8M0 = E8M0(0xFE);
    /// The NaN.
    pub const NAN: E8M0 = E8M0(0xFF);

    pub const fn from_code(code: u8) -> E8M0 {
        E8M0(code)
    }

    pub const fn code(self) -> u8 {
        self.0
    }

    pub const fn is_nan(self) -> bool {
        self.0 == 0xFF
    }

    /// `2^exponent`, when `-127 <= exponent <= 127`.
    pub const fn from_exponent(exponent: i32) -> Option<E8M0> {
        if exponent < -Self::BIAS || exponent > Self::BIAS {
            None
        } else {
            Some(E8M0((exponent + Self::BIAS) as u8))
        }
    }

    /// The binary exponent of the value, `None` for NaN.
    pub const fn exponent(self) -> Option<i32> {
        if self.is_nan() {
            None
        } else {
            Some(self.0 as i32 - Self::BIAS)
        }
    }

    /// The value as f32: exact (2^-127 is the f32 subnormal `0x00400000`); NaN is `0x7FC00000`.
    pub fn to_f32(self) -> f32 {
        match self.exponent() {
            Some(e) => libm::ldexpf(1.0, e),
            None => f32::NAN,
        }
    }

    /// The value as f64, exact; NaN is the default quiet NaN.
    pub fn to_f64(self) -> f64 {
        match self.exponent() {
            Some(e) => libm::ldexp(1.0, e),
            None => f64::NAN,
        }
    }

    /// f32 -> E8M0, rounding once in the environment's mode (see the module doc).
    pub fn from_f32(x: f32, env: &mut FpEnv) -> E8M0 {
        Self::from_format(x, env)
    }

    /// f64 -> E8M0, rounding once in the environment's mode (see the module doc).
    pub fn from_f64(x: f64, env: &mut FpEnv) -> E8M0 {
        Self::from_format(x, env)
    }

    /// Any [`Format`] -> E8M0 (binary16 and bfloat16 too), rounding once.
    pub fn from_format<F: Format>(x: F, env: &mut FpEnv) -> E8M0 {
        match unpack::<F>(x.to_bits()) {
            Unpacked::Nan { signalling, .. } => {
                if signalling {
                    env.raise(Flags::INVALID);
                }
                Self::NAN
            }
            Unpacked::Zero { .. }
            | Unpacked::Inf { sign: true }
            | Unpacked::Finite { sign: true, .. } => {
                env.raise(Flags::INVALID);
                Self::NAN
            }
            Unpacked::Inf { sign: false } => {
                env.raise(Flags::INEXACT);
                if env.overflow == Overflow::Saturate {
                    Self::MAX
                } else {
                    Self::NAN
                }
            }
            Unpacked::Finite {
                sign: false,
                exp,
                sig,
            } => Self::round_power(exp, sig, env),
        }
    }

    /// `sig * 2^exp` (positive) rounded to a power of two.
    fn round_power(exp: i32, sig: u64, env: &mut FpEnv) -> E8M0 {
        let lz = sig.leading_zeros();
        // floor(log2(value)): the leading one of `sig` is bit 63 - lz.
        let floor_log2 = exp + 63 - lz as i32;
        if floor_log2 < -Self::BIAS {
            env.raise(Flags::INEXACT | Flags::UNDERFLOW);
            return Self::MIN;
        }
        // One significand bit: everything below the leading one decides the rounding.
        let (kept, half, rest) = split(u128::from(sig) << lz, 63, false);
        let up = rounds_up(env.rounding, false, kept, half, rest);
        if half || rest {
            env.raise(Flags::INEXACT);
        }
        let e = floor_log2 + i32::from(up);
        if e > Self::BIAS {
            env.raise(Flags::OVERFLOW | Flags::INEXACT);
            let to_nan = env.overflow == Overflow::Ieee
                && matches!(
                    env.rounding,
                    RoundingMode::NearestEven
                        | RoundingMode::NearestAway
                        | RoundingMode::TowardPositive
                );
            return if to_nan { Self::NAN } else { Self::MAX };
        }
        E8M0((e + Self::BIAS) as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_values() {
        assert_eq!(E8M0::ONE.to_f32(), 1.0);
        assert_eq!(E8M0::MIN.to_f32().to_bits(), 0x0040_0000);
        assert_eq!(E8M0::MAX.to_f64(), libm::ldexp(1.0, 127));
        assert!(E8M0::NAN.to_f32().is_nan());
        assert_eq!(E8M0::from_exponent(-128), None);
        assert_eq!(E8M0::from_exponent(3).unwrap().code(), 130);
    }
}
