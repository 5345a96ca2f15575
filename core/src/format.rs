//! Small binary interchange formats described by two numbers, so the arithmetic is written once.
//!
//! A format has `EXP_BITS` exponent bits and `FRAC_BITS` stored significand bits (the leading bit is
//! implicit), IEEE 754 layout: sign, biased exponent, fraction. binary16 is (5, 10), bfloat16 (8, 7);
//! an fp8 format would be another two lines. `f32` and `f64` are formats too, so conversions
//! between any two are one generic function; the arithmetic is for precisions up to 24 bits.

use half::{bf16, f16};

/// A storage type for a small IEEE-style binary format.
pub trait Format: Copy + core::fmt::Debug + PartialEq + 'static {
    /// Exponent field width.
    const EXP_BITS: u32;
    /// Stored fraction width (precision minus one).
    const FRAC_BITS: u32;
    /// Short name, as used by the CLI (`f16`, `bf16`).
    const NAME: &'static str;

    fn to_bits(self) -> u64;
    /// Builds a value from its bit pattern; bits above the format's width are ignored.
    fn from_bits(bits: u64) -> Self;

    // Derived constants, the same for every format.
    /// Total width in bits.
    const WIDTH: u32 = 1 + Self::EXP_BITS + Self::FRAC_BITS;
    /// Precision in bits, the implicit leading one included.
    const PRECISION: u32 = Self::FRAC_BITS + 1;
    const SIGN_MASK: u64 = 1 << (Self::WIDTH - 1);
    const EXP_MASK: u64 = ((1 << Self::EXP_BITS) - 1) << Self::FRAC_BITS;
    const FRAC_MASK: u64 = (1 << Self::FRAC_BITS) - 1;
    /// Quiet bit: the top fraction bit (IEEE 754-2008 clause 6.2.1 recommendation).
    const QUIET_BIT: u64 = 1 << (Self::FRAC_BITS - 1);
    const BIAS: i32 = (1 << (Self::EXP_BITS - 1)) - 1;
    /// Exponent of the smallest normal number.
    const EMIN: i32 = 1 - Self::BIAS;
    /// Exponent of the largest finite number.
    const EMAX: i32 = Self::BIAS;
    const INFINITY_BITS: u64 = Self::EXP_MASK;
    const MAX_FINITE_BITS: u64 = Self::EXP_MASK - 1;
    /// Default NaN of the x86 SSE convention: sign set, quiet bit set, payload zero.
    const X86_DEFAULT_NAN: u64 = Self::SIGN_MASK | Self::EXP_MASK | Self::QUIET_BIT;
    /// Positive canonical quiet NaN (ARM default-NaN mode, RISC-V).
    const CANONICAL_NAN: u64 = Self::EXP_MASK | Self::QUIET_BIT;
    /// CUDA's canonical NaN: every bit but the sign.
    const CUDA_NAN: u64 = Self::EXP_MASK | Self::FRAC_MASK;
}

impl Format for f16 {
    const EXP_BITS: u32 = 5;
    const FRAC_BITS: u32 = 10;
    const NAME: &'static str = "f16";
    fn to_bits(self) -> u64 {
        u64::from(f16::to_bits(self))
    }
    fn from_bits(bits: u64) -> Self {
        f16::from_bits(bits as u16)
    }
}

impl Format for f32 {
    const EXP_BITS: u32 = 8;
    const FRAC_BITS: u32 = 23;
    const NAME: &'static str = "f32";
    fn to_bits(self) -> u64 {
        u64::from(f32::to_bits(self))
    }
    fn from_bits(bits: u64) -> Self {
        f32::from_bits(bits as u32)
    }
}

impl Format for f64 {
    const EXP_BITS: u32 = 11;
    const FRAC_BITS: u32 = 52;
    const NAME: &'static str = "f64";
    fn to_bits(self) -> u64 {
        f64::to_bits(self)
    }
    fn from_bits(bits: u64) -> Self {
        f64::from_bits(bits)
    }
}

impl Format for bf16 {
    const EXP_BITS: u32 = 8;
    const FRAC_BITS: u32 = 7;
    const NAME: &'static str = "bf16";
    fn to_bits(self) -> u64 {
        u64::from(bf16::to_bits(self))
    }
    fn from_bits(bits: u64) -> Self {
        bf16::from_bits(bits as u16)
    }
}

/// The fields of a value, for the arithmetic: what kind it is and, for finite values,
/// `(-1)^sign * sig * 2^exp` exactly with `sig` an integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unpacked {
    Zero { sign: bool },
    Finite { sign: bool, exp: i32, sig: u64 },
    Inf { sign: bool },
    Nan { sign: bool, signalling: bool },
}

pub(crate) fn unpack<F: Format>(bits: u64) -> Unpacked {
    let sign = bits & F::SIGN_MASK != 0;
    let biased = ((bits & F::EXP_MASK) >> F::FRAC_BITS) as i32;
    let frac = bits & F::FRAC_MASK;
    let frac_bits = F::FRAC_BITS as i32;
    if biased == (1 << F::EXP_BITS) - 1 {
        if frac == 0 {
            Unpacked::Inf { sign }
        } else {
            Unpacked::Nan {
                sign,
                signalling: frac & F::QUIET_BIT == 0,
            }
        }
    } else if biased == 0 {
        if frac == 0 {
            Unpacked::Zero { sign }
        } else {
            Unpacked::Finite {
                sign,
                exp: F::EMIN - frac_bits,
                sig: frac,
            }
        }
    } else {
        Unpacked::Finite {
            sign,
            exp: biased - F::BIAS - frac_bits,
            sig: frac | (1 << F::FRAC_BITS),
        }
    }
}

pub(crate) fn is_nan_bits<F: Format>(bits: u64) -> bool {
    bits & !F::SIGN_MASK > F::EXP_MASK
}

pub(crate) fn is_signalling_bits<F: Format>(bits: u64) -> bool {
    is_nan_bits::<F>(bits) && bits & F::QUIET_BIT == 0
}

pub(crate) const fn signed_zero<F: Format>(sign: bool) -> u64 {
    if sign {
        F::SIGN_MASK
    } else {
        0
    }
}

pub(crate) const fn signed_inf<F: Format>(sign: bool) -> u64 {
    signed_zero::<F>(sign) | F::INFINITY_BITS
}
