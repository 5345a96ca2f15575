//! What storing a wide value in a narrow format does to it: the *fate* of `x * scale` under a
//! nearest-even conversion to binary16, bfloat16 or an 8-, 6- or 4-bit format, a census of a whole
//! slice, and the window of power-of-two loss scales that keeps a slice finite while losing the
//! least to underflow.
//!
//! These answer the question loss scaling (and FP8 per-tensor scaling) exists for: how many
//! elements would be flushed to zero, lose bits as subnormals, or overflow, at a given scale. What
//! an overflow becomes depends on the format and the [`Overflow`] policy: infinity (IEEE formats),
//! NaN (E4M3 without saturation, as ml_dtypes and `__NV_NOSAT`), or the largest finite number
//! (saturation, as torch's E4M3 cast and `__NV_SATFINITE`, and always in FP6/FP4).

use crate::convert::convert;
use crate::env::{Flags, FpEnv, Overflow, RoundingMode};
use crate::format::{Format, Specials};

/// The fate of one value stored in a narrow format (nearest-even).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fate {
    /// Exactly zero before and after.
    Zero,
    /// A normal number, stored exactly.
    Exact,
    /// A normal number, rounded (relative error at most 2^-precision).
    Rounded,
    /// A non-zero subnormal result: `bits_lost` significand bits fewer than a normal number has
    /// (1 ..= FRAC_BITS); `exact` when the value happened to need no more bits than it kept.
    Subnormal { bits_lost: u32, exact: bool },
    /// A non-zero value that became zero: the gradient is lost.
    FlushedToZero,
    /// A finite value that became +-inf.
    Overflow,
    /// A finite value that overflowed to NaN (a NaN-only format such as E4M3, not saturating).
    OverflowToNan,
    /// A finite value beyond the largest one, clamped to +-largest (saturation, or a format
    /// without infinity and NaN).
    Saturated,
    /// The input was NaN (or `inf * 0`).
    Nan,
    /// The input was already infinite.
    Inf,
}

impl Fate {
    /// Whether the value lost information to underflow (subnormal with lost bits, or flushed).
    pub const fn is_underflow(self) -> bool {
        matches!(
            self,
            Fate::FlushedToZero | Fate::Subnormal { exact: false, .. }
        )
    }

    /// Whether the value was too large for the format (whatever it became).
    pub const fn is_overflow(self) -> bool {
        matches!(self, Fate::Overflow | Fate::OverflowToNan | Fate::Saturated)
    }
}

/// What an overflow becomes in `F` under `policy`.
const fn overflow_fate<F: Format>(policy: Overflow) -> Fate {
    match (policy, F::SPECIALS) {
        (Overflow::Saturate, _) | (_, Specials::FiniteOnly) => Fate::Saturated,
        (Overflow::Ieee, Specials::Ieee) => Fate::Overflow,
        (Overflow::Ieee, Specials::NanOnly) => Fate::OverflowToNan,
    }
}

/// The fate of `x * scale` (the product taken in f64, exact for f32 operands) stored in `F`
/// without saturation.
pub fn fate<F: Format>(x: f64, scale: f64) -> Fate {
    fate_of::<F>(x * scale, Overflow::Ieee)
}

/// The fate of `x * scale` stored in `F` with the given overflow policy.
pub fn fate_with<F: Format>(x: f64, scale: f64, overflow: Overflow) -> Fate {
    fate_of::<F>(x * scale, overflow)
}

/// The fate of an f32 value times an f32 scale stored in `F`; the product is exact.
pub fn fate_f32<F: Format>(x: f32, scale: f32) -> Fate {
    fate_of::<F>(f64::from(x) * f64::from(scale), Overflow::Ieee)
}

fn fate_of<F: Format>(y: f64, overflow: Overflow) -> Fate {
    if y.is_nan() {
        return Fate::Nan;
    }
    if y.is_infinite() {
        return Fate::Inf;
    }
    if y == 0.0 {
        return Fate::Zero;
    }
    if F::PRECISION < 53 && y.is_normal() {
        return fate_of_normal::<F>(y, overflow);
    }
    fate_by_conversion::<F>(y, overflow)
}

/// The fate of a normal f64 in a format narrower than f64, read off its bits: nearest-even
/// rounding of the significand at the target's quantum, as a conversion does it, without one
/// (the census runs this per element; a soft-float conversion was 30x slower than a copy).
fn fate_of_normal<F: Format>(y: f64, overflow: Overflow) -> Fate {
    const F64_FRAC_BITS: u32 = 52;
    let bits = y.to_bits();
    let e = ((bits >> F64_FRAC_BITS) & 0x7ff) as i32 - 1023;
    let m = (bits & ((1 << F64_FRAC_BITS) - 1)) | (1 << F64_FRAC_BITS);
    let p = F::PRECISION as i32;
    // Low significand bits below the target's quantum: 2^(e - p + 1) for a normal result,
    // 2^(EMIN - p + 1) for a subnormal one.
    let dropped = (F64_FRAC_BITS as i32 + 1 - p) + (F::EMIN - e).max(0);
    if dropped >= 64 {
        return Fate::FlushedToZero; // below a quarter of the smallest subnormal
    }
    let rem = m & ((1u64 << dropped) - 1);
    let half = 1u64 << (dropped - 1);
    let q = m >> dropped;
    let q = q + u64::from(rem > half || (rem == half && q & 1 == 1));
    let exact = rem == 0;
    if e >= F::EMIN {
        // q in [2^(p-1), 2^p]; 2^p carries into the next binade.
        let carried = q >> p != 0;
        let e = e + i32::from(carried);
        // A NaN-only format's top binade ends one code early: all ones is the NaN.
        let past_nan = F::SPECIALS == Specials::NanOnly && !carried && q == (1 << p) - 1;
        if e > F::EMAX || (e == F::EMAX && past_nan) {
            overflow_fate::<F>(overflow)
        } else if exact {
            Fate::Exact
        } else {
            Fate::Rounded
        }
    } else if q == 0 {
        Fate::FlushedToZero
    } else if q >> (p - 1) != 0 {
        Fate::Rounded // rounded up to the smallest normal
    } else {
        let kept = 64 - q.leading_zeros();
        Fate::Subnormal {
            bits_lost: F::PRECISION - kept,
            exact,
        }
    }
}

/// The fate of a finite non-zero `y` read off an actual nearest-even conversion: the general
/// case (f64 subnormals, formats as wide as f64).
fn fate_by_conversion<F: Format>(y: f64, overflow: Overflow) -> Fate {
    let mut env = FpEnv::new(RoundingMode::NearestEven).with_overflow(overflow);
    let stored: F = convert::<f64, F>(y, &mut env);
    let bits = stored.to_bits();
    let exact = !env.flags.contains(Flags::INEXACT);
    if env.flags.contains(Flags::OVERFLOW) {
        overflow_fate::<F>(overflow)
    } else if bits & !F::SIGN_MASK == 0 {
        Fate::FlushedToZero
    } else if bits & F::EXP_MASK == 0 {
        // A subnormal with its leading one at bit k of the fraction keeps k + 1 bits.
        let frac = bits & F::FRAC_MASK;
        let kept = 64 - frac.leading_zeros();
        Fate::Subnormal {
            bits_lost: F::PRECISION - kept,
            exact,
        }
    } else if exact {
        Fate::Exact
    } else {
        Fate::Rounded
    }
}

/// Lowest binary exponent the census histogram tells apart; lower ones share the first bin.
pub const HIST_MIN_EXP: i32 = -192;
/// Number of histogram bins: exponents `HIST_MIN_EXP ..= HIST_MIN_EXP + HIST_BINS - 1`, the last
/// bin also holding everything above.
pub const HIST_BINS: usize = 384;

/// Counts per fate over a slice, with a histogram of binary exponents of the scaled values and
/// the extreme magnitudes of the unscaled ones. Fixed size, no allocation.
#[derive(Clone, Debug, PartialEq)]
pub struct Census {
    pub zero: u64,
    pub exact: u64,
    pub rounded: u64,
    /// Non-zero subnormal results, exact or not.
    pub subnormal: u64,
    /// Of `subnormal`, those that lost bits.
    pub subnormal_inexact: u64,
    pub flushed_to_zero: u64,
    /// Became +-inf.
    pub overflow: u64,
    /// Overflowed to NaN (E4M3 without saturation).
    pub overflow_nan: u64,
    /// Overflowed and was clamped to +-largest.
    pub saturated: u64,
    pub nan: u64,
    pub inf: u64,
    /// `hist[i]` counts finite non-zero scaled values with `floor(log2|x * scale|) == HIST_MIN_EXP + i`
    /// (clamped to the ends).
    pub exp_hist: [u64; HIST_BINS],
    /// Largest finite `|x|` (unscaled), 0 when there is none.
    pub max_abs: f64,
    /// Smallest non-zero finite `|x|` (unscaled), `f64::INFINITY` when there is none.
    pub min_nonzero_abs: f64,
}

impl Default for Census {
    fn default() -> Self {
        Census {
            zero: 0,
            exact: 0,
            rounded: 0,
            subnormal: 0,
            subnormal_inexact: 0,
            flushed_to_zero: 0,
            overflow: 0,
            overflow_nan: 0,
            saturated: 0,
            nan: 0,
            inf: 0,
            exp_hist: [0; HIST_BINS],
            max_abs: 0.0,
            min_nonzero_abs: f64::INFINITY,
        }
    }
}

impl Census {
    /// Total number of values counted.
    pub fn total(&self) -> u64 {
        self.zero
            + self.exact
            + self.rounded
            + self.subnormal
            + self.flushed_to_zero
            + self.overflow
            + self.overflow_nan
            + self.saturated
            + self.nan
            + self.inf
    }

    /// Values that lost information to underflow: flushed to zero or inexact subnormals.
    pub fn underflowed(&self) -> u64 {
        self.flushed_to_zero + self.subnormal_inexact
    }

    /// Values too large for the format, whatever they became.
    pub fn overflowed(&self) -> u64 {
        self.overflow + self.overflow_nan + self.saturated
    }

    /// Counts one value, stored in `F` without saturation.
    pub fn add<F: Format>(&mut self, x: f64, scale: f64) {
        self.add_with::<F>(x, scale, Overflow::Ieee);
    }

    /// Counts one value, stored in `F` with the given overflow policy.
    pub fn add_with<F: Format>(&mut self, x: f64, scale: f64, overflow: Overflow) {
        match fate_with::<F>(x, scale, overflow) {
            Fate::Zero => self.zero += 1,
            Fate::Exact => self.exact += 1,
            Fate::Rounded => self.rounded += 1,
            Fate::Subnormal { exact, .. } => {
                self.subnormal += 1;
                self.subnormal_inexact += u64::from(!exact);
            }
            Fate::FlushedToZero => self.flushed_to_zero += 1,
            Fate::Overflow => self.overflow += 1,
            Fate::OverflowToNan => self.overflow_nan += 1,
            Fate::Saturated => self.saturated += 1,
            Fate::Nan => self.nan += 1,
            Fate::Inf => self.inf += 1,
        }
        let y = (x * scale).abs();
        if y.is_finite() && y != 0.0 {
            let bin = (libm::ilogb(y) - HIST_MIN_EXP).clamp(0, HIST_BINS as i32 - 1);
            self.exp_hist[bin as usize] += 1;
        }
        let ax = x.abs();
        if ax.is_finite() && ax != 0.0 {
            self.max_abs = self.max_abs.max(ax);
            self.min_nonzero_abs = self.min_nonzero_abs.min(ax);
        }
    }

    /// Merges another census into this one (for parallel or per-layer sums).
    pub fn merge(&mut self, other: &Census) {
        self.zero += other.zero;
        self.exact += other.exact;
        self.rounded += other.rounded;
        self.subnormal += other.subnormal;
        self.subnormal_inexact += other.subnormal_inexact;
        self.flushed_to_zero += other.flushed_to_zero;
        self.overflow += other.overflow;
        self.overflow_nan += other.overflow_nan;
        self.saturated += other.saturated;
        self.nan += other.nan;
        self.inf += other.inf;
        for (a, b) in self.exp_hist.iter_mut().zip(other.exp_hist.iter()) {
            *a += b;
        }
        self.max_abs = self.max_abs.max(other.max_abs);
        self.min_nonzero_abs = self.min_nonzero_abs.min(other.min_nonzero_abs);
    }
}

/// The census of `values * scale` stored in `F` without saturation (products exact in f64).
pub fn census<F: Format>(values: &[f32], scale: f32) -> Census {
    census_with::<F>(values, scale, Overflow::Ieee)
}

/// The census of `values * scale` stored in `F` with the given overflow policy.
///
/// A power-of-two scale (a loss scale: `GradScaler` only ever doubles and halves it) reads
/// most fates off the f32 bits (`census_power_of_two`, the same census bit for bit); any other
/// scale counts each element by [`Census::add_with`].
pub fn census_with<F: Format>(values: &[f32], scale: f32, overflow: Overflow) -> Census {
    let mut c = Census::default();
    let scale_bits = scale.to_bits();
    let scale_exp = (scale_bits >> 23) & 0xff;
    if scale_bits & 0x007f_ffff == 0 && scale_exp != 0 && scale_exp != 0xff && F::PRECISION <= 24 {
        census_power_of_two::<F>(&mut c, values, scale, scale_exp as i32 - 127, overflow);
    } else {
        for &x in values {
            c.add_with::<F>(f64::from(x), f64::from(scale), overflow);
        }
    }
    c
}

/// [`census_with`] for `scale = +-2^k` (a normal f32) and `F` at most as precise as f32, read
/// off each element's f32 bits. The product `x * 2^k` of a normal f32 `x` with exponent `e_x` is
/// exact, with exponent `e = e_x + k` and `x`'s own 24-bit significand; when
/// `F::EMIN <= e < F::EMAX` it is a normal number of `F` after nearest-even rounding (a carry
/// reaches at most `F::EMAX`, whose binade holds it even in a NaN-only format, whose one missing
/// code is the top one). So its fate is [`Fate::Exact`] when the `24 - F::PRECISION` low
/// significand bits are zero, [`Fate::Rounded`] otherwise; its histogram bin is `e`; and the
/// extremes of `|x|` are the extremes of its bits with the sign cleared (the order of positive
/// floats is the order of their bits). A zero is a zero. Every other element (f32 subnormal,
/// inf, NaN, a result that underflows or overflows `F`) goes through [`Census::add_with`], so
/// the census is the same as element by element, bit for bit (`tests/fate.rs` checks it over
/// every exponent of every format). The shortcut is a loop of integer operations with no f64
/// and no `ilogb`: the cross-check runs a census over every reference gradient of every step.
fn census_power_of_two<F: Format>(
    c: &mut Census,
    values: &[f32],
    scale: f32,
    k: i32,
    overflow: Overflow,
) {
    let low_bits = (1u32 << (24 - F::PRECISION)) - 1;
    let (mut zero, mut exact, mut rounded) = (0u64, 0u64, 0u64);
    let (mut max_abs_bits, mut min_abs_bits) = (0u32, u32::MAX);
    for &x in values {
        let bits = x.to_bits();
        let biased = (bits >> 23) & 0xff;
        let e = biased as i32 - 127 + k;
        if biased != 0 && biased != 0xff && e >= F::EMIN && e < F::EMAX {
            if bits & low_bits == 0 {
                exact += 1;
            } else {
                rounded += 1;
            }
            c.exp_hist[(e - HIST_MIN_EXP).clamp(0, HIST_BINS as i32 - 1) as usize] += 1;
            let abs_bits = bits & 0x7fff_ffff;
            max_abs_bits = max_abs_bits.max(abs_bits);
            min_abs_bits = min_abs_bits.min(abs_bits);
        } else if bits & 0x7fff_ffff == 0 {
            // +-0 (a dead unit's gradient): zero, no bin, no extreme.
            zero += 1;
        } else {
            c.add_with::<F>(f64::from(x), f64::from(scale), overflow);
        }
    }
    c.zero += zero;
    c.exact += exact;
    c.rounded += rounded;
    if min_abs_bits != u32::MAX {
        c.max_abs = c.max_abs.max(f64::from(f32::from_bits(max_abs_bits)));
        c.min_nonzero_abs = c
            .min_nonzero_abs
            .min(f64::from(f32::from_bits(min_abs_bits)));
    }
}

/// The power-of-two scales `2^k` worth using on a slice, from its [`Census`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScaleWindow {
    /// Largest `k` for which no element overflows.
    pub max_exp: i32,
    /// Smallest `k` for which no non-zero element is flushed to zero.
    pub min_exp_no_flush: i32,
    /// The scale exponent that loses the fewest elements to underflow without overflowing any:
    /// underflow only shrinks as the scale grows, so it is `max_exp`.
    pub best_exp: i32,
}

impl ScaleWindow {
    /// Whether some scale keeps every element finite and none flushed to zero.
    pub fn is_lossless(&self) -> bool {
        self.min_exp_no_flush <= self.max_exp
    }
}

/// The safe window of power-of-two scales for the values a census saw, storing into `F`;
/// `None` when the census saw no finite non-zero value.
pub fn safe_scale_window<F: Format>(census: &Census) -> Option<ScaleWindow> {
    if census.max_abs == 0.0 || !census.min_nonzero_abs.is_finite() {
        return None;
    }
    let overflows = |k: i32| fate::<F>(census.max_abs, libm::ldexp(1.0, k)).is_overflow();
    let flushes =
        |k: i32| fate::<F>(census.min_nonzero_abs, libm::ldexp(1.0, k)) == Fate::FlushedToZero;
    // Start from the exponent estimate and step at most two places to the exact boundary.
    let mut max_exp = F::EMAX - libm::ilogb(census.max_abs);
    while overflows(max_exp) {
        max_exp -= 1;
    }
    while !overflows(max_exp + 1) {
        max_exp += 1;
    }
    let mut min_exp = F::EMIN - F::FRAC_BITS as i32 - 1 - libm::ilogb(census.min_nonzero_abs);
    while flushes(min_exp) {
        min_exp += 1;
    }
    while !flushes(min_exp - 1) {
        min_exp -= 1;
    }
    Some(ScaleWindow {
        max_exp,
        min_exp_no_flush: min_exp,
        best_exp: max_exp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::{bf16, f16};

    /// The bit-level classifier against the conversion (itself checked against SoftFloat) on
    /// every binade from far below the smallest subnormal to past the largest finite value, with
    /// the significands that sit on rounding decisions (ties, one off a tie, carries into the
    /// next binade, exact values) at every dropped-bit count, and pseudo-random ones.
    fn sweep<F: Format>() {
        let p = F::PRECISION as i32;
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut checked = 0u32;
        for e in (F::EMIN - p - 4)..=(F::EMAX + 2) {
            let dropped = (53 - p + (F::EMIN - e).max(0)).min(63) as u32;
            let half = 1u64 << (dropped - 1);
            let low = (1u64 << dropped.min(52)) - 1;
            let mut significands = [0u64; 12 + 64];
            let specials = [0, 1, half - 1, half, half + 1, low, half | 1, low - 1];
            for (slot, &r) in significands.iter_mut().zip(&specials) {
                *slot = r & ((1 << 52) - 1);
            }
            for slot in &mut significands[specials.len()..] {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                *slot = state >> 12;
            }
            for &frac in &significands {
                for high in [0u64, 1 << 51, (1 << 52) - (1 << dropped.min(52))] {
                    let frac = (frac | high) & ((1 << 52) - 1);
                    let bits = (((e + 1023) as u64) << 52) | frac;
                    for sign in [0, 1u64 << 63] {
                        let y = f64::from_bits(bits | sign);
                        for policy in [Overflow::Ieee, Overflow::Saturate] {
                            assert_eq!(
                                fate_of_normal::<F>(y, policy),
                                fate_by_conversion::<F>(y, policy),
                                "{} fate of {y:e} ({:#018x})",
                                F::NAME,
                                y.to_bits()
                            );
                        }
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 1_000);
    }

    #[test]
    fn bit_level_fates_match_the_conversion_f16() {
        sweep::<f16>();
    }

    #[test]
    fn bit_level_fates_match_the_conversion_bf16() {
        sweep::<bf16>();
    }

    #[test]
    fn bit_level_fates_match_the_conversion_f32() {
        sweep::<f32>();
    }

    #[test]
    fn bit_level_fates_match_the_conversion_small_formats() {
        use crate::minifloat::{E2M1, E2M3, E3M2, E4M3, E5M2};
        sweep::<E4M3>();
        sweep::<E5M2>();
        sweep::<E3M2>();
        sweep::<E2M3>();
        sweep::<E2M1>();
    }
}
