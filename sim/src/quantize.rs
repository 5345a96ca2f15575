//! Fake quantization of GEMM operands for the FP8 recipes: a tensor is quantized to an 8-bit
//! format exactly as the recipe's cast kernel does it and replaced by the f32 value of each
//! code times the dequantization factor, so the f32 GEMM that follows sees exactly the operand
//! an FP8 GEMM would multiply (accumulating in f32, as the tensor cores do).
//!
//! - Per-tensor ([`quantize_tensor`]): Transformer Engine's cast, `fp8 = (fp8_t)(x * scale)`
//!   with `__nv_cvt_float_to_fp8(.., __NV_SATFINITE, ..)` (`cuda_fp8.hpp`: round to nearest even,
//!   magnitudes beyond the format's largest finite value, infinities included, saturate to it,
//!   NaN stays NaN), read back as `value * scale_inv` (TE's dequantize kernel). The product and
//!   the read-back are f32 operations; the code itself comes from the core's
//!   [`f32_to_minifloat_clamped`], proven against the generic conversion.
//! - MX blocks ([`quantize_mx`]): the core's [`mx::quantize`] (torchao 0.18 `to_mx`, one E8M0
//!   scale per 32 elements along the GEMM's reduction axis), read back as `value * 2^e`, exact.
//!   A reduction length that is not a multiple of 32 (conv1's 25 taps, fc2's 10 outputs) ends in
//!   a partial block, quantized as if padded with zeros (a zero changes no block amax).
//!
//! Both count what the cast did to the tensor ([`QuantStats`]): saturated, flushed to zero,
//! subnormal, NaN; the recipe keeps the counts per tensor for the metrics.

use halfscale_core::e8m0::E8M0;
use halfscale_core::fast::f32_to_minifloat_clamped;
use halfscale_core::recipe::mx::{self, Element, ScaleMode, BLOCK_SIZE};
use halfscale_core::recipe::torch_log2::exp2_integer;
use std::cell::RefCell;
use std::sync::OnceLock;

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

    /// The code of `y` with saturation to `+-max` (NaN: the format's NaN code).
    #[inline]
    fn encode_saturating(self, y: f32) -> u8 {
        if y.is_nan() {
            return 0x7F | ((y.to_bits() >> 24) as u8 & 0x80);
        }
        let m = self.max();
        let y = y.clamp(-m, m);
        match self {
            Fp8Element::E4M3 => f32_to_minifloat_clamped::<4, 3>(y),
            Fp8Element::E5M2 => f32_to_minifloat_clamped::<5, 2>(y),
        }
    }

    /// The f32 value of every code, from the core's decoding (exact).
    fn table(self) -> &'static [f32; 256] {
        static TABLES: OnceLock<[[f32; 256]; 2]> = OnceLock::new();
        let tables = TABLES.get_or_init(|| {
            let mut t = [[0.0; 256]; 2];
            for (i, e) in [Element::E4M3, Element::E5M2].into_iter().enumerate() {
                for code in 0..=255u8 {
                    t[i][usize::from(code)] = e.decode(code);
                }
            }
            t
        });
        &tables[self as usize]
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

    #[inline]
    fn count(&mut self, elem: Fp8Element, x: f32, y: f32, q: f32) {
        self.total += 1;
        self.nan += u64::from(y.is_nan());
        self.saturated += u64::from(y.abs() > elem.max());
        self.flushed_to_zero += u64::from(x != 0.0 && q == 0.0);
        self.subnormal += u64::from(q != 0.0 && q.abs() < elem.min_normal());
    }
}

/// The largest magnitude of `values`, NaN ignored (TE's amax kernels reduce with `fmaxf`, which
/// skips NaN); an infinity is the amax.
pub fn amax(values: &[f32]) -> f32 {
    values
        .iter()
        .fold(0.0f32, |m, &x| if x.abs() > m { x.abs() } else { m })
}

/// Per-tensor fake quantization in place: `x <- code(x * scale) * scale_inv` (see the module
/// doc). Returns what the cast did.
pub fn quantize_tensor(
    values: &mut [f32],
    elem: Fp8Element,
    scale: f32,
    scale_inv: f32,
) -> QuantStats {
    let table = elem.table();
    let mut stats = QuantStats::default();
    for v in values.iter_mut() {
        let x = *v;
        let y = x * scale;
        let code = elem.encode_saturating(y);
        let q = table[usize::from(code)];
        stats.count(elem, x, y, q);
        *v = q * scale_inv;
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
    /// Gather buffer, scales and codes of one line of blocks (grown once, reused every step).
    static SCRATCH: RefCell<(Vec<f32>, Vec<E8M0>, Vec<u8>)> = const {
        RefCell::new((Vec::new(), Vec::new(), Vec::new()))
    };
}

/// MX fake quantization in place of the row-major `[rows][cols]` matrix `values`, blocks of 32
/// along `axis` (see the module doc). Returns what the cast did (the scaled element is the
/// element over its block's scale).
pub fn quantize_mx(
    values: &mut [f32],
    rows: usize,
    cols: usize,
    axis: Axis,
    elem: Fp8Element,
    mode: ScaleMode,
) -> QuantStats {
    assert_eq!(values.len(), rows * cols, "matrix shape and length differ");
    let (lines, len, stride, step) = match axis {
        Axis::Rows => (rows, cols, 1, cols),
        Axis::Cols => (cols, rows, cols, 1),
    };
    let padded = len.div_ceil(BLOCK_SIZE) * BLOCK_SIZE;
    let table = elem.table();
    let mut stats = QuantStats::default();
    SCRATCH.with(|s| {
        let (buf, scales, codes) = &mut *s.borrow_mut();
        buf.resize(padded, 0.0);
        scales.resize(padded / BLOCK_SIZE, E8M0::from_code(0));
        codes.resize(padded, 0);
        for line in 0..lines {
            let at = line * step;
            for (i, b) in buf[..len].iter_mut().enumerate() {
                *b = values[at + i * stride];
            }
            buf[len..].fill(0.0);
            mx::quantize(buf, elem.element(), mode, scales, codes)
                .expect("whole blocks and matching lengths by construction");
            for (block, &scale) in scales.iter().enumerate() {
                // 2^e exactly (E8M0 spans 2^-127..2^127: a subnormal factor for the lowest codes,
                // still exact); the NaN scale reads back as NaN.
                let factor = match scale.exponent() {
                    Some(e) => exp2_integer(e as f32),
                    None => f32::NAN,
                };
                let start = block * BLOCK_SIZE;
                let end = (start + BLOCK_SIZE).min(len);
                for i in start..end {
                    let x = buf[i];
                    let q = table[usize::from(codes[i])];
                    stats.count(elem, x, x / factor, q);
                    values[at + i * stride] = q * factor;
                }
            }
        }
    });
    stats
}
