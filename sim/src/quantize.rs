//! Fake quantization of GEMM operands for the FP8 recipes: a tensor is quantized to an 8-bit
//! format exactly as the recipe's cast kernel does it and replaced by the f32 value of each
//! code times the dequantization factor, so the f32 GEMM that follows sees exactly the operand
//! an FP8 GEMM would multiply (accumulating in f32, as the tensor cores do).
//!
//! - Per-tensor ([`quantize_tensor`]): Transformer Engine's cast, `fp8 = (fp8_t)(x * scale)`
//!   with `__nv_cvt_float_to_fp8(.., __NV_SATFINITE, ..)` (`cuda_fp8.hpp`: round to nearest even,
//!   magnitudes beyond the format's largest finite value, infinities included, saturate to it,
//!   NaN stays NaN), read back as `value * scale_inv` (TE's dequantize kernel). The product and
//!   the read-back are f32 operations; the code and its value come from the core's
//!   [`f32_to_minifloat_clamped`] and [`minifloat_clamped_to_f32`], proven against the generic
//!   conversions (branch-free, so the loop vectorises).
//! - MX blocks ([`quantize_mx`]): the core's [`mx::quantize`] (torchao 0.18 `to_mx`, one E8M0
//!   scale per 32 elements along the GEMM's reduction axis), read back as `value * 2^e`, exact.
//!   A reduction length that is not a multiple of 32 (conv1's 25 taps, fc2's 10 outputs) ends in
//!   a partial block, quantized as if padded with zeros (a zero changes no block amax).
//!
//! Both count what the cast did to the tensor ([`QuantStats`]): saturated, flushed to zero,
//! subnormal, NaN; the recipe keeps the counts per tensor for the metrics.

use halfscale_core::e8m0::E8M0;
use halfscale_core::fast::{f32_to_minifloat_clamped, minifloat_clamped_to_f32};
use halfscale_core::recipe::mx::{self, Element, ScaleMode, BLOCK_SIZE};
use halfscale_core::recipe::torch_log2::exp2_integer;
use std::cell::RefCell;

/// The 8-bit element formats of the FP8 recipes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fp8Element {
    /// E4M3 (`float8_e4m3fn`): max 448, no infinities.
    E4M3,
    /// E5M2 (`float8_e5m2`): max 57344.
    E5M2,
}

impl Fp8Element {
    /// The core's MX element of the same format.
    pub const fn element(self) -> Element {
        match self {
            Fp8Element::E4M3 => Element::E4M3,
            Fp8Element::E5M2 => Element::E5M2,
        }
    }

    /// The largest finite value (448 or 57344).
    pub const fn max(self) -> f32 {
        self.element().max_pos()
    }

    /// The smallest normal value (2^-6 or 2^-14).
    pub const fn min_normal(self) -> f32 {
        match self {
            Fp8Element::E4M3 => 0.015625,
            Fp8Element::E5M2 => 6.103_515_6e-5,
        }
    }

    /// `"e4m3"` or `"e5m2"`.
    pub const fn name(self) -> &'static str {
        match self {
            Fp8Element::E4M3 => "e4m3",
            Fp8Element::E5M2 => "e5m2",
        }
    }
}

/// What a cast did to a tensor's elements.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QuantStats {
    /// Elements cast.
    pub total: u64,
    /// Finite and beyond the format's range after scaling, clamped to its largest value (an
    /// infinity counts here too: the cast saturates it).
    pub saturated: u64,
    /// Non-zero before the cast, zero after.
    pub flushed_to_zero: u64,
    /// A non-zero subnormal after the cast.
    pub subnormal: u64,
    /// NaN.
    pub nan: u64,
}

impl QuantStats {
    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: &QuantStats) {
        self.total += other.total;
        self.saturated += other.saturated;
        self.flushed_to_zero += other.flushed_to_zero;
        self.subnormal += other.subnormal;
        self.nan += other.nan;
    }

    /// Elements that lost their value to the range: saturated plus flushed to zero.
    pub fn lost(&self) -> u64 {
        self.saturated + self.flushed_to_zero
    }
}

/// [`QuantStats`]'s four fates counted in 32-bit lanes over a run of elements and added to
/// the 64-bit totals once at its end: 64-bit counters per element kept the cast loops scalar.
/// A run must hold fewer than 2^32 elements.
#[derive(Clone, Copy, Default)]
struct LaneCounts {
    nan: u32,
    saturated: u32,
    flushed_to_zero: u32,
    subnormal: u32,
}

impl LaneCounts {
    /// Counts one element: `x` before the cast, `y` the scaled value the cast rounded, `q` the
    /// element's value in the format (before the read-back factor). Branch-free.
    #[inline(always)]
    fn count(&mut self, max: f32, min_normal: f32, x: f32, y: f32, q: f32) {
        self.nan += u32::from(y.is_nan());
        self.saturated += u32::from(y.abs() > max);
        self.flushed_to_zero += u32::from(x != 0.0 && q == 0.0);
        self.subnormal += u32::from(q != 0.0 && q.abs() < min_normal);
    }

    /// Adds the run's counts, `total` elements, to `stats`.
    fn add_to(self, stats: &mut QuantStats, total: usize) {
        stats.total += total as u64;
        stats.nan += u64::from(self.nan);
        stats.saturated += u64::from(self.saturated);
        stats.flushed_to_zero += u64::from(self.flushed_to_zero);
        stats.subnormal += u64::from(self.subnormal);
    }
}

/// The largest magnitude of `values`, NaN ignored (TE's amax kernels reduce with `fmaxf`, which
/// skips NaN); an infinity is the amax.
pub fn amax(values: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F is present.
        return unsafe { amax_avx512(values) };
    }
    amax_lanes(values)
}

/// [`amax`] in sixteen independent running maxima, combined at the end: a maximum is exact and
/// order-free (NaN skipped by every lane alike), so this equals the sequential fold, and each
/// lane's select compiles to a vector max.
#[inline(always)]
fn amax_lanes(values: &[f32]) -> f32 {
    let max = |m: f32, x: f32| if x.abs() > m { x.abs() } else { m };
    let mut lanes = [0.0f32; 16];
    let mut chunks = values.chunks_exact(16);
    for chunk in &mut chunks {
        for (m, &x) in lanes.iter_mut().zip(chunk) {
            *m = max(*m, x);
        }
    }
    let tail = chunks.remainder().iter().fold(0.0f32, |m, &x| max(m, x));
    lanes.iter().fold(tail, |m, &x| max(m, x))
}

/// [`amax_lanes`] compiled with AVX-512 enabled.
///
/// # Safety
/// AVX-512F is present.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn amax_avx512(values: &[f32]) -> f32 {
    amax_lanes(values)
}

/// Per-tensor fake quantization in place: `x <- value(code(x * scale)) * scale_inv` (see the
/// module doc; a NaN stays NaN). Returns what the cast did.
pub fn quantize_tensor(
    values: &mut [f32],
    elem: Fp8Element,
    scale: f32,
    scale_inv: f32,
) -> QuantStats {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F is present.
        return unsafe { quantize_tensor_avx512(values, elem, scale, scale_inv) };
    }
    quantize_tensor_by_element(values, elem, scale, scale_inv)
}

#[inline(always)]
fn quantize_tensor_by_element(
    values: &mut [f32],
    elem: Fp8Element,
    scale: f32,
    scale_inv: f32,
) -> QuantStats {
    match elem {
        Fp8Element::E4M3 => quantize_tensor_as::<4, 3>(values, elem, scale, scale_inv),
        Fp8Element::E5M2 => quantize_tensor_as::<5, 2>(values, elem, scale, scale_inv),
    }
}

/// [`quantize_tensor`]'s loop compiled with AVX-512 enabled (16 lanes; same operations).
///
/// # Safety
/// AVX-512F is present.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn quantize_tensor_avx512(
    values: &mut [f32],
    elem: Fp8Element,
    scale: f32,
    scale_inv: f32,
) -> QuantStats {
    quantize_tensor_by_element(values, elem, scale, scale_inv)
}

/// [`quantize_tensor`] for the format with `EBITS` exponent and `MBITS` fraction bits: the
/// core's branch-free rounding and decoding, so the loop vectorises; the counts in
/// [`LaneCounts`] over pieces of 2^16 elements.
#[inline(always)]
fn quantize_tensor_as<const EBITS: u32, const MBITS: u32>(
    values: &mut [f32],
    elem: Fp8Element,
    scale: f32,
    scale_inv: f32,
) -> QuantStats {
    let (max, min_normal) = (elem.max(), elem.min_normal());
    let mut stats = QuantStats::default();
    for piece in values.chunks_mut(1 << 16) {
        let mut counts = LaneCounts::default();
        for v in piece.iter_mut() {
            let x = *v;
            let y = x * scale;
            let code = f32_to_minifloat_clamped::<EBITS, MBITS>(y.clamp(-max, max));
            let q = minifloat_clamped_to_f32::<EBITS, MBITS>(code);
            // The rounding's contract excludes NaN: the cast keeps a NaN a NaN.
            let q = if y.is_nan() { y } else { q };
            counts.count(max, min_normal, x, y, q);
            *v = q * scale_inv;
        }
        counts.add_to(&mut stats, piece.len());
    }
    stats
}

/// The axis of a row-major `[rows][cols]` matrix along which a GEMM reduces, so along which MX
/// blocks run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// Blocks along each row (contiguous elements).
    Rows,
    /// Blocks down each column (elements `cols` apart).
    Cols,
}

thread_local! {
    /// A band of blocks laid out contiguously, its scales and codes (grown once, reused every
    /// step).
    static SCRATCH: RefCell<(Vec<f32>, Vec<E8M0>, Vec<u8>)> = const {
        RefCell::new((Vec::new(), Vec::new(), Vec::new()))
    };
}

/// MX fake quantization in place of the row-major `[rows][cols]` matrix `values`, blocks of 32
/// along `axis` (see the module doc). Returns what the cast did (the scaled element is the
/// element over its block's scale).
///
/// The blocks are gathered into a contiguous band for the core's [`mx::quantize`]: along rows,
/// one row at a time (zero-padded to whole blocks); down columns, 32 rows at a time transposed
/// so that each column's 32 elements are one block (cache-friendly: the rows are read in
/// order).
pub fn quantize_mx(
    values: &mut [f32],
    rows: usize,
    cols: usize,
    axis: Axis,
    elem: Fp8Element,
    mode: ScaleMode,
) -> QuantStats {
    assert_eq!(values.len(), rows * cols, "matrix shape and length differ");
    let mut stats = QuantStats::default();
    SCRATCH.with(|s| {
        let (buf, scales, codes) = &mut *s.borrow_mut();
        match axis {
            Axis::Rows => {
                let padded = cols.div_ceil(BLOCK_SIZE) * BLOCK_SIZE;
                for row in values.chunks_exact_mut(cols) {
                    buf.clear();
                    buf.extend_from_slice(row);
                    buf.resize(padded, 0.0);
                    cast_band(buf, scales, codes, elem, mode, &mut stats);
                    // Block b of the row is block b of the band.
                    row.copy_from_slice(&buf[..cols]);
                }
            }
            Axis::Cols => {
                for band in (0..rows).step_by(BLOCK_SIZE) {
                    let height = BLOCK_SIZE.min(rows - band);
                    buf.clear();
                    buf.resize(cols * BLOCK_SIZE, 0.0);
                    for i in 0..height {
                        let row = &values[(band + i) * cols..(band + i + 1) * cols];
                        for (c, &x) in row.iter().enumerate() {
                            buf[c * BLOCK_SIZE + i] = x;
                        }
                    }
                    // Padding zeros (rows past the end) are counted as cast zeros: take them
                    // back out of the total.
                    let mut band_stats = QuantStats::default();
                    cast_band(buf, scales, codes, elem, mode, &mut band_stats);
                    band_stats.total -= ((BLOCK_SIZE - height) * cols) as u64;
                    stats.merge(&band_stats);
                    for i in 0..height {
                        let row = &mut values[(band + i) * cols..(band + i + 1) * cols];
                        for (c, x) in row.iter_mut().enumerate() {
                            *x = buf[c * BLOCK_SIZE + i];
                        }
                    }
                }
                return;
            }
        }
        // Rows: padding zeros were counted too.
        let padded = cols.div_ceil(BLOCK_SIZE) * BLOCK_SIZE;
        stats.total -= ((padded - cols) * rows) as u64;
    });
    stats
}

/// Casts whole blocks in place through the core's [`mx::quantize`] and reads them back as
/// `value * 2^e` (exact; the NaN scale reads back as NaN), counting into `stats`.
fn cast_band(
    buf: &mut [f32],
    scales: &mut Vec<E8M0>,
    codes: &mut Vec<u8>,
    elem: Fp8Element,
    mode: ScaleMode,
    stats: &mut QuantStats,
) {
    let blocks = buf.len() / BLOCK_SIZE;
    scales.resize(blocks, E8M0::from_code(0));
    codes.resize(buf.len(), 0);
    mx::quantize(buf, elem.element(), mode, scales, codes)
        .expect("whole blocks and matching lengths by construction");
    match elem {
        Fp8Element::E4M3 => read_back::<4, 3>(buf, scales, codes, elem, stats),
        Fp8Element::E5M2 => read_back::<5, 2>(buf, scales, codes, elem, stats),
    }
}

/// Replaces each element of the cast blocks by its code's value times `2^e` (the core's exact
/// decoding; a NaN scale, from a NaN in the block, reads back as NaN), counting into `stats`.
/// The counts run in [`LaneCounts`] over the band, so the loop vectorises.
fn read_back<const EBITS: u32, const MBITS: u32>(
    buf: &mut [f32],
    scales: &[E8M0],
    codes: &[u8],
    elem: Fp8Element,
    stats: &mut QuantStats,
) {
    let (max, min_normal) = (elem.max(), elem.min_normal());
    let mut counts = LaneCounts::default();
    for ((block, &scale), codes) in buf
        .chunks_exact_mut(BLOCK_SIZE)
        .zip(scales.iter())
        .zip(codes.chunks_exact(BLOCK_SIZE))
    {
        let (factor, inv) = match scale.exponent() {
            Some(e) => (exp2_integer(e as f32), exp2_integer(-e as f32)),
            None => (f32::NAN, f32::NAN),
        };
        for (x, &code) in block.iter_mut().zip(codes) {
            let q = minifloat_clamped_to_f32::<EBITS, MBITS>(code);
            counts.count(max, min_normal, *x, *x * inv, q);
            *x = q * factor;
        }
    }
    counts.add_to(stats, buf.len());
}
