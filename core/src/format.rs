//! Small binary interchange formats described by a few numbers, so the arithmetic is written once.
//!
//! A format has `EXP_BITS` exponent bits and `FRAC_BITS` stored significand bits (the leading bit is
//! implicit), IEEE 754 layout: sign, biased exponent, fraction, and [`Specials`]: what its all-ones
//! exponent means. binary16 is (5, 10, IEEE), bfloat16 (8, 7, IEEE), OCP FP8 E4M3 (4, 3, NaN only),
//! MX FP4 E2M1 (2, 1, finite only): see [`crate::minifloat`] for the 8-, 6- and 4-bit ones. `f32`
//! and `f64` are formats too, so conversions between any two are one generic function; the
//! arithmetic is for precisions up to 24 bits.
//!
//! Every format here is signed, has a negative zero and gradual underflow (subnormals); the one
//! that has neither, the MX scale E8M0, is a type of its own ([`crate::e8m0`]). The largest finite
//! value and `EMAX` follow from the specials: a format without infinities uses the all-ones
//! exponent for numbers too (ml_dtypes' `float8.h` and LLVM APFloat's `NonfiniteBehavior` say
//! the same).

use half::{bf16, f16};

/// What a format's all-ones exponent field encodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Specials {
    /// IEEE 754 (clause 3.4): fraction zero is +-infinity, any other fraction a NaN (quiet when its
    /// top fraction bit is set). binary16, bfloat16, f32, f64, FP8 E5M2.
    Ieee,
    /// No infinities; the all-ones exponent holds normal numbers except `S.1..1.1..1`, the one NaN
    /// per sign (quiet). OCP FP8 E4M3 ("fn": finite and NaN), LLVM's `NonfiniteBehavior::NanOnly`.
    NanOnly,
    /// Neither infinities nor NaN: every code is a finite number. OCP MX FP6 and FP4.
    FiniteOnly,
}

/// A storage type for a small IEEE-style binary format.
pub trait Format: Copy + core::fmt::Debug + PartialEq + 'static {
    /// Exponent field width.
    const EXP_BITS: u32;
    /// Stored fraction width (precision minus one).
    const FRAC_BITS: u32;
    /// Short name, as used by the CLI (`f16`, `bf16`, `e4m3`).
    const NAME: &'static str;
    /// What the all-ones exponent means; IEEE unless the format says otherwise.
    const SPECIALS: Specials = Specials::Ieee;

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
    /// Whether the format encodes +-infinity.
    const HAS_INFINITY: bool = matches!(Self::SPECIALS, Specials::Ieee);
    /// Whether the format encodes NaN.
    const HAS_NAN: bool = !matches!(Self::SPECIALS, Specials::FiniteOnly);
    /// Exponent of the largest finite number: the all-ones exponent holds numbers unless the
    /// format is IEEE.
    const EMAX: i32 = match Self::SPECIALS {
        Specials::Ieee => Self::BIAS,
        Specials::NanOnly | Specials::FiniteOnly => Self::BIAS + 1,
    };
    /// The encoding of +infinity; for a format without infinities `u64::MAX`, which no encoding
    /// equals (test [`Format::HAS_INFINITY`] rather than compare with it).
    const INFINITY_BITS: u64 = if Self::HAS_INFINITY {
        Self::EXP_MASK
    } else {
        u64::MAX
    };
    /// The encoding of the largest finite number (positive).
    const MAX_FINITE_BITS: u64 = match Self::SPECIALS {
        Specials::Ieee => Self::EXP_MASK - 1,
        Specials::NanOnly => (Self::EXP_MASK | Self::FRAC_MASK) - 1,
        Specials::FiniteOnly => Self::EXP_MASK | Self::FRAC_MASK,
    };
    /// Default NaN of the x86 SSE convention: sign set, quiet bit set, payload zero. For a NaN-only
    /// format its one negative NaN; for a format without NaN, +0 (what a NaN result becomes there).
    const X86_DEFAULT_NAN: u64 = match Self::SPECIALS {
        Specials::Ieee => Self::SIGN_MASK | Self::EXP_MASK | Self::QUIET_BIT,
        Specials::NanOnly => Self::SIGN_MASK | Self::EXP_MASK | Self::FRAC_MASK,
        Specials::FiniteOnly => 0,
    };
    /// Positive canonical quiet NaN (ARM default-NaN mode, RISC-V); see [`Format::X86_DEFAULT_NAN`]
    /// for formats without one.
    const CANONICAL_NAN: u64 = match Self::SPECIALS {
        Specials::Ieee => Self::EXP_MASK | Self::QUIET_BIT,
        Specials::NanOnly => Self::EXP_MASK | Self::FRAC_MASK,
        Specials::FiniteOnly => 0,
    };
    /// CUDA's canonical NaN: every bit but the sign (`0x7FFF` in binary16, `0x7F` in both FP8s).
    const CUDA_NAN: u64 = if Self::HAS_NAN {
        Self::EXP_MASK | Self::FRAC_MASK
    } else {
        0
    };
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
    let top = biased == (1 << F::EXP_BITS) - 1;
    if top && F::SPECIALS == Specials::NanOnly && frac == F::FRAC_MASK {
        Unpacked::Nan {
            sign,
            signalling: false,
        }
    } else if top && F::SPECIALS == Specials::Ieee {
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
    let magnitude = bits & !F::SIGN_MASK;
    match F::SPECIALS {
        Specials::Ieee => magnitude > F::EXP_MASK,
        Specials::NanOnly => magnitude == F::EXP_MASK | F::FRAC_MASK,
        Specials::FiniteOnly => false,
    }
}

/// Only IEEE formats have signalling NaNs (a NaN-only format's NaN is quiet, as in APFloat).
pub(crate) fn is_signalling_bits<F: Format>(bits: u64) -> bool {
    F::SPECIALS == Specials::Ieee && is_nan_bits::<F>(bits) && bits & F::QUIET_BIT == 0
}

/// The encoding of `(-1)^sign * largest finite`.
pub(crate) const fn signed_max<F: Format>(sign: bool) -> u64 {
    signed_zero::<F>(sign) | F::MAX_FINITE_BITS
}

/// The NaN of a NaN-only format with the given sign (its only NaN encodings).
pub(crate) const fn signed_nan_only<F: Format>(sign: bool) -> u64 {
    signed_zero::<F>(sign) | F::EXP_MASK | F::FRAC_MASK
}

pub(crate) const fn signed_zero<F: Format>(sign: bool) -> u64 {
    if sign {
        F::SIGN_MASK
    } else {
        0
    }
}

/// What an infinite result is in `F`: +-infinity where the format has it; the NaN of that sign
/// in a NaN-only format (APFloat's `INFINITY` for `NanOnly` is its NaN); the largest finite number
/// in a format without either.
pub(crate) const fn signed_inf<F: Format>(sign: bool) -> u64 {
    match F::SPECIALS {
        Specials::Ieee => signed_zero::<F>(sign) | F::EXP_MASK,
        Specials::NanOnly => signed_nan_only::<F>(sign),
        Specials::FiniteOnly => signed_max::<F>(sign),
    }
}
