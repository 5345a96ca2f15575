//! `HsEnv`: the floating-point environment a C caller owns (rounding mode, tininess rule, NaN
//! style, sticky flags), halfscale-core's `FpEnv` as plain integers.

use halfscale_core::{Flags, FpEnv, NanStyle, RoundingMode, Tininess};

use crate::status::{HsStatus, HS_ERR_INVALID_ARGUMENT};

/// roundTiesToEven (IEEE 754 clause 4.3.1), the default.
pub const HS_ROUND_NEAREST_EVEN: i32 = 0;
/// roundTowardZero.
pub const HS_ROUND_TOWARD_ZERO: i32 = 1;
/// roundTowardNegative.
pub const HS_ROUND_TOWARD_NEGATIVE: i32 = 2;
/// roundTowardPositive.
pub const HS_ROUND_TOWARD_POSITIVE: i32 = 3;
/// roundTiesToAway.
pub const HS_ROUND_NEAREST_AWAY: i32 = 4;

/// Tiny after rounding (x86 SSE), the default.
pub const HS_TININESS_AFTER_ROUNDING: i32 = 0;
/// Tiny before rounding (ARM, PowerPC).
pub const HS_TININESS_BEFORE_ROUNDING: i32 = 1;

/// x86 SSE NaNs (Berkeley SoftFloat 8086-SSE): the first NaN operand, quieted; else 0xFE00.
pub const HS_NAN_X86_SSE: i32 = 0;
/// CUDA half intrinsics: every NaN result is 0x7FFF.
pub const HS_NAN_CUDA: i32 = 1;
/// ARM default-NaN mode and RISC-V: every NaN result is 0x7E00 (bf16: 0x7FC0).
pub const HS_NAN_CANONICAL: i32 = 2;

/// Flag bits, in Berkeley SoftFloat's layout: the result was rounded.
pub const HS_FLAG_INEXACT: u32 = 0x01;
/// Tiny and inexact.
pub const HS_FLAG_UNDERFLOW: u32 = 0x02;
/// The rounded result exceeded the largest finite value.
pub const HS_FLAG_OVERFLOW: u32 = 0x04;
/// An exact infinite result from finite operands.
pub const HS_FLAG_DIV_BY_ZERO: u32 = 0x08;
/// Invalid operation.
pub const HS_FLAG_INVALID: u32 = 0x10;

/// The environment of an operation. Operations only ever add flags; clear `flags` yourself.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HsEnv {
    /// One of `HS_ROUND_*`.
    pub rounding: i32,
    /// One of `HS_TININESS_*`.
    pub tininess: i32,
    /// One of `HS_NAN_*`.
    pub nan_style: i32,
    /// Sticky `HS_FLAG_*` bits.
    pub flags: u32,
}

/// Nearest-even, tininess after rounding, x86 NaNs, no flags (IEEE 754's defaults).
#[no_mangle]
pub extern "C" fn hs_env_default() -> HsEnv {
    HsEnv {
        rounding: HS_ROUND_NEAREST_EVEN,
        tininess: HS_TININESS_AFTER_ROUNDING,
        nan_style: HS_NAN_X86_SSE,
        flags: 0,
    }
}

impl HsEnv {
    /// The core's environment, or `HS_ERR_INVALID_ARGUMENT` for an out-of-range field.
    pub(crate) fn to_core(self) -> Result<FpEnv, HsStatus> {
        let rounding = match self.rounding {
            HS_ROUND_NEAREST_EVEN => RoundingMode::NearestEven,
            HS_ROUND_TOWARD_ZERO => RoundingMode::TowardZero,
            HS_ROUND_TOWARD_NEGATIVE => RoundingMode::TowardNegative,
            HS_ROUND_TOWARD_POSITIVE => RoundingMode::TowardPositive,
            HS_ROUND_NEAREST_AWAY => RoundingMode::NearestAway,
            _ => return Err(HS_ERR_INVALID_ARGUMENT),
        };
        let tininess = match self.tininess {
            HS_TININESS_AFTER_ROUNDING => Tininess::AfterRounding,
            HS_TININESS_BEFORE_ROUNDING => Tininess::BeforeRounding,
            _ => return Err(HS_ERR_INVALID_ARGUMENT),
        };
        let nan = match self.nan_style {
            HS_NAN_X86_SSE => NanStyle::X86Sse,
            HS_NAN_CUDA => NanStyle::Cuda,
            HS_NAN_CANONICAL => NanStyle::Canonical,
            _ => return Err(HS_ERR_INVALID_ARGUMENT),
        };
        if self.flags > 0x1F {
            return Err(HS_ERR_INVALID_ARGUMENT);
        }
        Ok(FpEnv {
            rounding,
            tininess,
            nan,
            flags: Flags::from_bits(self.flags as u8),
        })
    }

    /// Takes the flags back after an operation.
    pub(crate) fn absorb(&mut self, env: &FpEnv) {
        self.flags = u32::from(env.flags.bits());
    }
}
