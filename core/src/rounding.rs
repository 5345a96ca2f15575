//! The one rounding-and-packing routine every operation ends in, generic over the [`Format`].
//!
//! An operation computes its exact result as `(-1)^sign * sig * 2^exp`, plus a `sticky` bit when
//! the exact value is a little larger in magnitude than that (a non-zero remainder below `sig`'s
//! last bit). [`round_pack`] rounds it once, in the environment's mode, and raises inexact,
//! underflow and overflow as IEEE 754 clause 7 says.

use crate::env::{Flags, FpEnv, NanStyle, Overflow, RoundingMode, Tininess};
use crate::format::{
    is_nan_bits, is_signalling_bits, signed_inf, signed_max, signed_nan_only, signed_zero, Format,
    Specials,
};

/// Splits `sig` (with `sticky` below it) at `shift` bits: the kept high part, whether the dropped
/// part is at least one half of the kept part's last place, and whether anything below the half is
/// non-zero.
pub(crate) fn split(sig: u128, shift: u32, sticky: bool) -> (u128, bool, bool) {
    if shift == 0 {
        (sig, false, sticky)
    } else if shift > 128 {
        (0, false, sig != 0 || sticky)
    } else {
        let kept = if shift == 128 { 0 } else { sig >> shift };
        let half = sig >> (shift - 1) & 1 == 1;
        let below_half = if shift == 1 {
            0
        } else {
            sig & ((1u128 << (shift - 1)) - 1)
        };
        (kept, half, below_half != 0 || sticky)
    }
}

/// Whether rounding `kept` up is the right direction, given the dropped bits.
pub(crate) fn rounds_up(
    mode: RoundingMode,
    sign: bool,
    kept: u128,
    half: bool,
    rest: bool,
) -> bool {
    match mode {
        RoundingMode::NearestEven => half && (rest || kept & 1 == 1),
        RoundingMode::NearestAway => half,
        RoundingMode::TowardZero => false,
        RoundingMode::TowardPositive => !sign && (half || rest),
        RoundingMode::TowardNegative => sign && (half || rest),
    }
}

/// Rounds `(-1)^sign * (sig + sticky) * 2^exp` to the format, raising flags in `env`.
/// `sig` must be non-zero.
pub(crate) fn round_pack<F: Format>(
    sign: bool,
    exp: i32,
    sig: u128,
    sticky: bool,
    env: &mut FpEnv,
) -> u64 {
    debug_assert!(sig != 0);
    let lz = sig.leading_zeros();
    let sig = sig << lz;
    // Now sig is in [2^127, 2^128): the value's binary exponent is e.
    let e = exp - lz as i32 + 127;
    let normal_shift = 128 - F::PRECISION;
    let mode = env.rounding;

    if e < F::EMIN {
        // Subnormal range: keep only the bits at or above 2^(EMIN - FRAC_BITS).
        let shift = normal_shift as i64 + i64::from(F::EMIN - e);
        let shift = shift.min(129) as u32;
        let (kept, half, rest) = split(sig, shift, sticky);
        let inexact = half || rest;
        let kept = kept + u128::from(rounds_up(mode, sign, kept, half, rest));
        let tiny = match env.tininess {
            Tininess::BeforeRounding => true,
            Tininess::AfterRounding => {
                // Tiny unless rounding to full precision with unbounded exponent reaches 2^EMIN.
                let (k, h, r) = split(sig, normal_shift, sticky);
                let carried = (k + u128::from(rounds_up(mode, sign, k, h, r))) >> F::PRECISION != 0;
                !(e == F::EMIN - 1 && carried)
            }
        };
        if inexact {
            env.raise(Flags::INEXACT);
            if tiny {
                env.raise(Flags::UNDERFLOW);
            }
        }
        // kept == 2^FRAC_BITS rolls into the exponent field: the smallest normal, as it should.
        return signed_zero::<F>(sign) | kept as u64;
    }

    let (kept, half, rest) = split(sig, normal_shift, sticky);
    let mut kept = kept + u128::from(rounds_up(mode, sign, kept, half, rest));
    let mut e = e;
    if kept >> F::PRECISION != 0 {
        kept >>= 1;
        e += 1;
    }
    // The implicit bit of `kept` adds one to the biased exponent field. Compared as a magnitude
    // code, so a format whose top binade is partly NaN (E4M3: 0x7F) overflows past 0x7E.
    let biased = (e + F::BIAS - 1) as u128;
    let magnitude = (biased << F::FRAC_BITS) + kept;
    if magnitude > u128::from(F::MAX_FINITE_BITS) {
        return overflow::<F>(sign, env);
    }
    if half || rest {
        env.raise(Flags::INEXACT);
    }
    signed_zero::<F>(sign) | magnitude as u64
}

/// The result of an overflow (IEEE 754 clause 7.4) under the environment's [`Overflow`] policy:
/// the rounding direction decides between "infinity" and the largest finite number, and
/// "infinity" is what the format has for it ([`signed_inf`]) unless the policy saturates.
pub(crate) fn overflow<F: Format>(sign: bool, env: &mut FpEnv) -> u64 {
    env.raise(Flags::OVERFLOW | Flags::INEXACT);
    let to_inf = match env.rounding {
        RoundingMode::NearestEven | RoundingMode::NearestAway => true,
        RoundingMode::TowardZero => false,
        RoundingMode::TowardPositive => !sign,
        RoundingMode::TowardNegative => sign,
    };
    if to_inf && env.overflow == Overflow::Ieee {
        signed_inf::<F>(sign)
    } else {
        signed_max::<F>(sign)
    }
}

/// The NaN an invalid operation on non-NaN operands returns.
pub(crate) fn default_nan<F: Format>(env: &mut FpEnv) -> u64 {
    env.raise(Flags::INVALID);
    style_nan::<F>(env.nan).unwrap_or(F::X86_DEFAULT_NAN)
}

/// The fixed NaN of a canonicalising style, or `None` for payload propagation.
fn style_nan<F: Format>(style: NanStyle) -> Option<u64> {
    match style {
        NanStyle::X86Sse => None,
        NanStyle::Cuda => Some(F::CUDA_NAN),
        NanStyle::Canonical => Some(F::CANONICAL_NAN),
    }
}

/// The NaN result of an operation with NaN operands (`b` may be `None` for unary operations).
/// A signalling NaN operand raises invalid. x86 SSE returns the first NaN operand, quieted.
pub(crate) fn propagate_nan<F: Format>(a: u64, b: Option<u64>, env: &mut FpEnv) -> u64 {
    let b_signalling = b.is_some_and(is_signalling_bits::<F>);
    if is_signalling_bits::<F>(a) || b_signalling {
        env.raise(Flags::INVALID);
    }
    if let Some(nan) = style_nan::<F>(env.nan) {
        return nan;
    }
    let first = match b {
        Some(b) if !is_nan_bits::<F>(a) => b,
        _ => a,
    };
    first | F::QUIET_BIT
}

/// A NaN converted between formats: signalling raises invalid; x86 keeps the sign and the
/// leading payload bits (`payload_left` holds the source fraction left-aligned in 64 bits).
pub(crate) fn convert_nan<F: Format>(
    sign: bool,
    payload_left: u64,
    signalling: bool,
    env: &mut FpEnv,
) -> u64 {
    if signalling || F::SPECIALS == Specials::FiniteOnly {
        // A format without NaN has nothing to carry it: invalid, and its stand-in (+0).
        env.raise(Flags::INVALID);
    }
    if let Some(nan) = style_nan::<F>(env.nan) {
        return nan;
    }
    match F::SPECIALS {
        Specials::Ieee => {
            let frac = payload_left >> (64 - F::FRAC_BITS);
            signed_zero::<F>(sign) | F::EXP_MASK | F::QUIET_BIT | frac
        }
        Specials::NanOnly => signed_nan_only::<F>(sign),
        Specials::FiniteOnly => F::X86_DEFAULT_NAN,
    }
}
