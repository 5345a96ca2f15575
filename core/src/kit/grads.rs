//! Gradient values and slices drawn to a chosen fate at a chosen scale.
//!
//! A kernel that unscales, checks or casts gradients is tested where it matters when its inputs
//! are chosen by what `x * scale` does in 16 bits ([`fate_f32`]): flushed to zero, subnormal,
//! overflowing, NaN. Each strategy here draws f32 values `x` whose fate at `scale` is the one
//! asked for; every draw is checked with [`fate_f32`] before it is handed out.

use alloc::vec::Vec;
use core::fmt;

use proptest::collection::SizeRange;
use proptest::prelude::*;
use proptest::strategy::Union;

use crate::fate::{fate_f32, Fate};
use crate::format::Format;

/// [`Fate`] without its details: what a strategy is asked to produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FateClass {
    /// `x = +-0`.
    Zero,
    /// `x * scale` is a normal value of the format, stored exactly.
    Exact,
    /// `x * scale` is normal and rounded.
    Rounded,
    /// `x * scale` lands on a non-zero subnormal (exact or not).
    Subnormal,
    /// `x * scale` is non-zero and rounds to zero.
    FlushedToZero,
    /// `x * scale` is finite and rounds to inf.
    Overflow,
    /// `x` is a NaN (any payload, either sign).
    Nan,
    /// `x` is +-inf.
    Inf,
}

impl FateClass {
    /// Every class.
    pub const ALL: [FateClass; 8] = [
        FateClass::Zero,
        FateClass::Exact,
        FateClass::Rounded,
        FateClass::Subnormal,
        FateClass::FlushedToZero,
        FateClass::Overflow,
        FateClass::Nan,
        FateClass::Inf,
    ];

    /// The class of a fate.
    pub const fn of(fate: Fate) -> FateClass {
        match fate {
            Fate::Zero => FateClass::Zero,
            Fate::Exact => FateClass::Exact,
            Fate::Rounded => FateClass::Rounded,
            Fate::Subnormal { .. } => FateClass::Subnormal,
            Fate::FlushedToZero => FateClass::FlushedToZero,
            Fate::Overflow => FateClass::Overflow,
            Fate::Nan => FateClass::Nan,
            Fate::Inf => FateClass::Inf,
        }
    }
}

/// Why no strategy could be built.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GradStrategyError {
    /// The scale is not finite and > 0.
    Scale(f32),
    /// No f32 `x` gives this fate at this scale in this format (e.g. nothing flushes to zero in
    /// bf16 at scale 2^16: the smallest f32, 2^-149, times 2^16 is a bf16 subnormal; nothing is
    /// stored exactly at scale 0.3, whose 24 significant bits no 16-bit significand holds).
    Unreachable { fate: FateClass, scale: f32 },
    /// An empty list of fates.
    NoFates,
}

impl fmt::Display for GradStrategyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GradStrategyError::Scale(s) => write!(f, "scale must be finite and > 0, got {s}"),
            GradStrategyError::Unreachable { fate, scale } => {
                write!(f, "no f32 value has fate {fate:?} at scale {scale}")
            }
            GradStrategyError::NoFates => f.write_str("no fates to draw from"),
        }
    }
}

impl core::error::Error for GradStrategyError {}

/// The smallest positive f32 bit pattern whose value is >= `v` (`v` > 0), if any.
fn f32_bits_at_least(v: f64) -> Option<u32> {
    if v > f64::from(f32::MAX) {
        return None;
    }
    let r = (v as f32).to_bits().max(1);
    Some(if f64::from(f32::from_bits(r)) < v {
        r + 1
    } else {
        r
    })
}

/// The largest positive f32 bit pattern whose value is <= `v` (`v` > 0), if any.
fn f32_bits_at_most(v: f64) -> Option<u32> {
    if v >= f64::from(f32::MAX) {
        return Some(f32::MAX.to_bits());
    }
    let r = (v as f32).to_bits();
    let r = if f64::from(f32::from_bits(r)) > v {
        r.checked_sub(1)?
    } else {
        r
    };
    (r > 0).then_some(r)
}

/// Significant bits of a positive finite f32 (1 for a power of two, up to 24).
fn significant_bits(x: f32) -> u32 {
    let bits = x.to_bits();
    let (sig, width) = if bits >> 23 == 0 {
        (bits, 32 - bits.leading_zeros())
    } else {
        ((bits & 0x7f_ffff) | 0x80_0000, 24)
    };
    width - sig.trailing_zeros()
}

/// One f32 gradient value whose `x * scale`, stored in `F` (nearest-even), has the fate class
/// `fate`; either sign. Magnitudes are drawn uniformly over the f32 bit patterns of the fate's
/// range, so every binade in it gets its share; for `Exact` the low bits are cleared so the
/// product fits, and a quarter of the `Subnormal` draws sit on the subnormal grid (exact ones).
///
/// ```
/// use halfscale_core::half::f16;
/// use halfscale_core::kit::grads::{grad_value, FateClass};
/// use halfscale_core::{fate_f32, Fate};
/// use proptest::prelude::*;
/// let lost = grad_value::<f16>(FateClass::FlushedToZero, 1024.0).unwrap();
/// proptest!(|(x in lost)| {
///     prop_assert!(x != 0.0 && x.is_finite());
///     prop_assert_eq!(fate_f32::<f16>(x, 1024.0), Fate::FlushedToZero);
/// });
/// ```
pub fn grad_value<F: Format>(
    fate: FateClass,
    scale: f32,
) -> Result<BoxedStrategy<f32>, GradStrategyError> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(GradStrategyError::Scale(scale));
    }
    let unreachable = GradStrategyError::Unreachable { fate, scale };
    let sign = |negative: bool| if negative { 0x8000_0000u32 } else { 0 };
    match fate {
        FateClass::Zero => {
            return Ok(any::<bool>()
                .prop_map(move |n| f32::from_bits(sign(n)))
                .boxed())
        }
        FateClass::Inf => {
            return Ok(any::<bool>()
                .prop_map(move |n| f32::from_bits(sign(n) | 0x7f80_0000))
                .boxed())
        }
        FateClass::Nan => {
            return Ok((any::<bool>(), 1u32..=0x7f_ffff)
                .prop_map(move |(n, payload)| f32::from_bits(sign(n) | 0x7f80_0000 | payload))
                .boxed())
        }
        _ => {}
    }
    let frac = F::FRAC_BITS as i32;
    let smallest_subnormal = libm::ldexp(1.0, F::EMIN - frac);
    let min_normal = libm::ldexp(1.0, F::EMIN);
    let max_finite = libm::ldexp(2.0 - libm::ldexp(1.0, -frac), F::EMAX);
    // Halfway between the largest finite value and 2^(emax+1): nearest-even rounds it up to inf.
    let overflow = libm::ldexp(2.0 - libm::ldexp(1.0, -frac - 1), F::EMAX);
    // The range of |x * scale| for the fate (the filter below settles the ends).
    let (lo, hi) = match fate {
        FateClass::Exact | FateClass::Rounded => (min_normal, max_finite),
        FateClass::Subnormal => (smallest_subnormal / 2.0, min_normal),
        FateClass::FlushedToZero => (0.0, smallest_subnormal / 2.0),
        FateClass::Overflow => (overflow, f64::INFINITY),
        FateClass::Zero | FateClass::Inf | FateClass::Nan => unreachable!("handled above"),
    };
    let s = f64::from(scale);
    let lo_bits = if lo == 0.0 {
        Some(1)
    } else {
        f32_bits_at_least(lo / s)
    };
    let hi_bits = f32_bits_at_most(hi / s);
    let (Some(lo_bits), Some(hi_bits)) = (lo_bits, hi_bits) else {
        return Err(unreachable);
    };
    if lo_bits > hi_bits {
        return Err(unreachable);
    }
    // An exact store needs x * scale to fit the format's significand: keep at most
    // PRECISION - (significant bits of the scale - 1) significant bits of x.
    let keep_mask = if fate == FateClass::Exact {
        let spare = F::PRECISION + 1;
        let keep = spare
            .checked_sub(significant_bits(scale))
            .filter(|&k| k > 0);
        let Some(keep) = keep else {
            return Err(unreachable);
        };
        !((1u32 << (24 - keep.min(24))) - 1)
    } else {
        u32::MAX
    };
    let uniform = (any::<bool>(), lo_bits..=hi_bits)
        .prop_map(move |(n, m)| f32::from_bits(sign(n) | (m & keep_mask)))
        .boxed();
    let drawn = if fate == FateClass::Subnormal {
        // Uniform f32 patterns almost never land on the subnormal grid itself (a subnormal that
        // loses nothing); a quarter of the draws are grid points k * 2^(emin - frac) / scale.
        let quantum = smallest_subnormal;
        let on_grid = (any::<bool>(), 1..=F::FRAC_MASK)
            .prop_map(move |(n, k)| {
                let x = (k as f64 * quantum / s) as f32;
                if n {
                    -x
                } else {
                    x
                }
            })
            .boxed();
        prop_oneof![3 => uniform, 1 => on_grid].boxed()
    } else {
        uniform
    };
    Ok(drawn
        .prop_filter("fate of x * scale", move |&x| {
            FateClass::of(fate_f32::<F>(x, scale)) == fate
        })
        .boxed())
}

/// A gradient slice of `len` f32 values, each drawn (with equal weight) to one of `fates` at
/// `scale` in `F` (see [`grad_value`]). One fate gives a slice of that fate only; `&[Exact,
/// Inf]` mostly-clean slices with infs at random positions.
///
/// ```
/// use halfscale_core::half::bf16;
/// use halfscale_core::kit::grads::{grad_slice, FateClass};
/// use halfscale_core::scaler::{check_non_finite, Found};
/// use proptest::prelude::*;
/// let finite = grad_slice::<bf16>(&[FateClass::Rounded, FateClass::Subnormal], 65536.0, 1..64)?;
/// proptest!(|(g in finite)| {
///     prop_assert_eq!(check_non_finite(&g).found(), Found::Finite);
/// });
/// # Ok::<(), halfscale_core::kit::grads::GradStrategyError>(())
/// ```
pub fn grad_slice<F: Format>(
    fates: &[FateClass],
    scale: f32,
    len: impl Into<SizeRange>,
) -> Result<BoxedStrategy<Vec<f32>>, GradStrategyError> {
    if fates.is_empty() {
        return Err(GradStrategyError::NoFates);
    }
    let mut options = Vec::with_capacity(fates.len());
    for &fate in fates {
        options.push(grad_value::<F>(fate, scale)?);
    }
    Ok(proptest::collection::vec(Union::new(options), len).boxed())
}
