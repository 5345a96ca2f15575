//! PyTorch's `_amp_foreach_non_finite_check_and_unscale_`, exact, in one pass, reporting NaN and
//! inf apart.
//!
//! The kernel (CPU `AmpGradScalerKernels.cpp`, CUDA `AmpKernels.cu`), for an f32 gradient `val`:
//! `if (!isfinite(val)) *found_inf = 1.f; return inv_scale == 1.f ? val : val * inv_scale;` with
//! `inv_scale` a float32 tensor that `GradScaler.unscale_` computes as
//! `self._scale.double().reciprocal().float()` ("FP32 division can be imprecise for certain
//! compile options, so we carry out the reciprocal in FP64"). So: `inv = f32(1 / f64(scale))`
//! ([`inv_scale`]), then one f32 multiply per element, skipped when `inv == 1`. A float16 or
//! bfloat16 gradient is widened to f32 (`opmath_t`), multiplied, and stored back nearest-even.

use half::{bf16, f16};

/// What a gradient check found, the worst first: a NaN outranks an inf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Found {
    /// Every element finite.
    Finite,
    /// At least one +-inf and no NaN.
    Inf,
    /// At least one NaN (PyTorch's `found_inf` does not tell them apart).
    Nan,
}

impl Found {
    /// PyTorch's `found_inf != 0`.
    #[inline]
    pub const fn is_non_finite(self) -> bool {
        !matches!(self, Found::Finite)
    }

    /// The worse of two checks (how `GradScaler.update` sums the `found_inf`s of all optimizers).
    #[inline]
    pub const fn worst(self, other: Found) -> Found {
        match (self, other) {
            (Found::Nan, _) | (_, Found::Nan) => Found::Nan,
            (Found::Inf, _) | (_, Found::Inf) => Found::Inf,
            _ => Found::Finite,
        }
    }
}

/// The result of checking a gradient slice (or several, [`merge`](Self::merge)d in order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NonFiniteReport {
    /// Elements checked.
    pub len: usize,
    /// NaN elements.
    pub nan: usize,
    /// +-inf elements.
    pub inf: usize,
    /// Flat index of the first NaN.
    pub first_nan: Option<usize>,
    /// Flat index of the first inf.
    pub first_inf: Option<usize>,
}

impl NonFiniteReport {
    /// The verdict: NaN if any NaN, else inf if any inf, else finite.
    #[inline]
    pub const fn found(&self) -> Found {
        if self.nan > 0 {
            Found::Nan
        } else if self.inf > 0 {
            Found::Inf
        } else {
            Found::Finite
        }
    }

    /// PyTorch's `found_inf` flag: any non-finite element.
    #[inline]
    pub const fn found_inf(&self) -> bool {
        self.nan + self.inf > 0
    }

    /// This report followed by `next`, as if the two slices were one: `next`'s positions are
    /// shifted by `self.len`.
    pub const fn merge(self, next: NonFiniteReport) -> NonFiniteReport {
        NonFiniteReport {
            len: self.len + next.len,
            nan: self.nan + next.nan,
            inf: self.inf + next.inf,
            first_nan: match (self.first_nan, next.first_nan) {
                (Some(i), _) => Some(i),
                (None, Some(j)) => Some(self.len + j),
                (None, None) => None,
            },
            first_inf: match (self.first_inf, next.first_inf) {
                (Some(i), _) => Some(i),
                (None, Some(j)) => Some(self.len + j),
                (None, None) => None,
            },
        }
    }
}

/// `f32(1 / f64(scale))`: `GradScaler.unscale_`'s `self._scale.double().reciprocal().float()`,
/// and DeepSpeed's `grad.mul_(1. / cur_scale)` (a Python-float reciprocal applied to a float32
/// tensor as an f32). A scale of 0 gives +inf, as in PyTorch.
#[inline]
pub fn inv_scale(scale: f64) -> f32 {
    (1.0 / scale) as f32
}

const EXP: u32 = 0x7f80_0000;
const ABS: u32 = 0x7fff_ffff;
/// Elements per block: the fast path tests a whole block for non-finite values with a
/// branch-free reduction (which the compiler vectorises) and only a block that has one is
/// classified element by element.
const BLOCK: usize = 64;

#[inline(always)]
fn block_has_non_finite(block: &[f32]) -> bool {
    let mut any = 0u32;
    for g in block {
        any |= u32::from(g.to_bits() & EXP == EXP);
    }
    any != 0
}

#[cold]
#[inline(never)]
fn classify_block(block: &[f32], base: usize, report: &mut NonFiniteReport) {
    for (i, g) in block.iter().enumerate() {
        let a = g.to_bits() & ABS;
        if a > EXP {
            report.nan += 1;
            report.first_nan.get_or_insert(base + i);
        } else if a == EXP {
            report.inf += 1;
            report.first_inf.get_or_insert(base + i);
        }
    }
}

/// Checks `grads` for NaN and inf and multiplies each element by `inv_scale` in f32, in place, in
/// one pass: PyTorch's `_amp_foreach_non_finite_check_and_unscale_` for a float32 gradient,
/// bit for bit. When `inv_scale == 1` the elements are left untouched, as the kernel does.
/// Non-finite elements are classified before the multiply, so an `inv_scale` of inf or 0 (a
/// collapsed or enormous scale) cannot disguise them.
///
/// ```
/// use halfscale_core::scaler::{inv_scale, unscale_and_check, Found};
/// let mut g = [1024.0f32, f32::INFINITY, -2048.0, f32::NAN];
/// let report = unscale_and_check(&mut g, inv_scale(1024.0));
/// assert_eq!((report.nan, report.inf), (1, 1));
/// assert_eq!((report.first_inf, report.first_nan), (Some(1), Some(3)));
/// assert_eq!(report.found(), Found::Nan);
/// assert_eq!((g[0], g[2]), (1.0, -2.0));
/// ```
pub fn unscale_and_check(grads: &mut [f32], inv_scale: f32) -> NonFiniteReport {
    if inv_scale == 1.0 {
        return check_non_finite(grads);
    }
    let mut report = NonFiniteReport {
        len: grads.len(),
        ..NonFiniteReport::default()
    };
    let mut base = 0;
    let mut blocks = grads.chunks_exact_mut(BLOCK);
    for block in &mut blocks {
        if block_has_non_finite(block) {
            classify_block(block, base, &mut report);
        }
        for g in block.iter_mut() {
            *g *= inv_scale;
        }
        base += BLOCK;
    }
    let tail = blocks.into_remainder();
    classify_block_if_needed(tail, base, &mut report);
    for g in tail.iter_mut() {
        *g *= inv_scale;
    }
    report
}

#[inline]
fn classify_block_if_needed(block: &[f32], base: usize, report: &mut NonFiniteReport) {
    if block_has_non_finite(block) {
        classify_block(block, base, report);
    }
}

/// The check alone, without touching the values (what `unscale_and_check` does when
/// `inv_scale == 1`, and what DeepSpeed's `has_overflow` asks).
pub fn check_non_finite(grads: &[f32]) -> NonFiniteReport {
    let mut report = NonFiniteReport {
        len: grads.len(),
        ..NonFiniteReport::default()
    };
    let mut base = 0;
    let mut blocks = grads.chunks_exact(BLOCK);
    for block in &mut blocks {
        classify_block_if_needed(block, base, &mut report);
        base += BLOCK;
    }
    classify_block_if_needed(blocks.remainder(), base, &mut report);
    report
}

/// The 16-bit gradient types the fused unscale handles, with the f32 -> 16-bit store PyTorch's
/// CPU kernel uses (`c10::Half` / `c10::BFloat16` from `float`).
trait Half16: Copy {
    fn widen(self) -> f32;
    /// Nearest-even for numbers; a NaN becomes c10's quiet NaN.
    fn store(x: f32) -> Self;
}

impl Half16 for f16 {
    #[inline]
    fn widen(self) -> f32 {
        self.to_f32()
    }
    /// `c10::detail::fp16_ieee_from_fp32_value`: nearest-even, NaN -> sign | `0x7E00`.
    #[inline]
    fn store(x: f32) -> Self {
        if x.is_nan() {
            let sign = ((x.to_bits() >> 16) & 0x8000) as u16;
            f16::from_bits(sign | 0x7E00)
        } else {
            f16::from_f32(x)
        }
    }
}

impl Half16 for bf16 {
    #[inline]
    fn widen(self) -> f32 {
        self.to_f32()
    }
    /// `c10::detail::round_to_nearest_even`: nearest-even, any NaN -> `0x7FC0`.
    #[inline]
    fn store(x: f32) -> Self {
        if x.is_nan() {
            bf16::from_bits(0x7FC0)
        } else {
            bf16::from_f32(x)
        }
    }
}

fn unscale_and_check_half<H: Half16>(grads: &mut [H], inv_scale: f32) -> NonFiniteReport {
    let mut report = NonFiniteReport {
        len: grads.len(),
        ..NonFiniteReport::default()
    };
    for (i, g) in grads.iter_mut().enumerate() {
        let v = g.widen();
        if v.is_nan() {
            report.nan += 1;
            report.first_nan.get_or_insert(i);
        } else if v.is_infinite() {
            report.inf += 1;
            report.first_inf.get_or_insert(i);
        }
        if inv_scale != 1.0 {
            *g = H::store(v * inv_scale);
        }
    }
    report
}

/// [`unscale_and_check`] for a float16 gradient, as PyTorch's kernel does it for `at::Half`:
/// the element widened to f32 (exact), checked, multiplied by `inv_scale` in f32 and stored back
/// to f16 nearest-even (`static_cast<scalar_t>(val * inv_scale)` with an f32 `opmath_t`); a NaN
/// product is stored as `c10`'s quiet NaN (sign | `0x7E00`). Untouched when `inv_scale == 1`.
///
/// ```
/// use halfscale_core::half::f16;
/// use halfscale_core::scaler::{unscale_and_check_f16, Found};
/// let mut g = [f16::from_f32(1024.0), f16::INFINITY, f16::from_f32(-3.0)];
/// let report = unscale_and_check_f16(&mut g, 1.0 / 1024.0);
/// assert_eq!((report.inf, report.first_inf, report.found()), (1, Some(1), Found::Inf));
/// assert_eq!(g[0], f16::ONE);
/// assert_eq!(g[2].to_bits(), 0x9A00); // -3/1024 = -1.5 * 2^-9, exact in f16
/// ```
pub fn unscale_and_check_f16(grads: &mut [f16], inv_scale: f32) -> NonFiniteReport {
    unscale_and_check_half(grads, inv_scale)
}

/// [`unscale_and_check_f16`] for a bfloat16 gradient (`at::BFloat16`): widened, checked,
/// multiplied in f32, stored back nearest-even; a NaN product is stored as `0x7FC0`.
pub fn unscale_and_check_bf16(grads: &mut [bf16], inv_scale: f32) -> NonFiniteReport {
    unscale_and_check_half(grads, inv_scale)
}

/// `loss * scale` as PyTorch's `GradScaler.scale` computes it for a float32 loss: an f32
/// multiply by the f32 scale (`outputs * self._scale`). For an f64-held scale (DeepSpeed) the
/// Python float is applied to the float32 tensor as an f32, i.e. rounded to nearest first.
#[inline]
pub fn scale_loss(loss: f32, scale: f64) -> f32 {
    loss * (scale as f32)
}
