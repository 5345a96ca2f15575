//! OCP Microscaling (MX v1.0) block quantization as torchao 0.18 does it: one E8M0 scale per block
//! of 32 elements, the elements in FP8 (E4M3, E5M2), FP6 (E3M2, E2M3) or FP4 (E2M1), unpacked (one
//! code per byte, right-aligned).
//!
//! [`quantize_block`] transcribes `torchao.prototype.mx_formats.mx_tensor.to_mx` (torchao 0.18.0,
//! torch 2.15 on the CPU) step by step; [`dequantize_block`] transcribes `to_dtype(...,
//! torch.float32)`. [`quantize`] is the same function over a slice with a fast path for blocks
//! without NaN (proved equal to [`quantize_block`] in `core/tests/recipe_mx.rs`).
//!
//! ## The scale
//! `amax = torch.amax(torch.abs(block))` (the canonical NaN `0x7FC00000` when any element is
//! NaN, whatever its payload). Then, per
//! [`ScaleMode`] (`target` is the exponent of the element format's largest power of two: 8, 15, 4,
//! 2, 2 for E4M3, E5M2, E3M2, E2M3, E2M1, `max_pos` its largest value):
//!
//! | mode | E8M0 code | elements are |
//! | --- | --- | --- |
//! | FLOOR | `clamp(exp(amax) - target, -127, 128) + 127`, 255 if amax is NaN | `x / max(2^(code-127), 2^-126)` |
//! | CEIL | as FLOOR, `exp(amax) + 1` when amax has fraction bits | as FLOOR |
//! | EVEN | as FLOOR on `amax` rounded to the element's precision first (bits `+ 2^(22-mbits)`, `& 0xFF800000`; NaN kept) | as FLOOR |
//! | RCEIL | `descale = amax / max_pos` (f32); 255 if NaN, 254 if inf, else `clamp(ceil(log2(descale)), -127, 127) + 127` | `x * rcp`, `rcp` = descale (255), 2^-127 (254), 1.0 (code 0), `exp2(127 - code)` |
//!
//! `exp(v)` is the biased exponent field of the f32 `v` minus 127 (so -127 for zero and every
//! subnormal, 128 for inf and NaN). Consequences worth knowing, all reproduced:
//! - an infinite element without NaN is *not* a NaN block in FLOOR/CEIL/EVEN: its scale is
//!   `128 - target + 127` (0xF7 for E4M3) and the infinity saturates to `max_pos`; in RCEIL it is
//!   code 0xFE with `rcp = 2^-127`;
//! - code 0 divides by 2^-126 in FLOOR/CEIL/EVEN (torchao clamps the f32 scale to the smallest
//!   normal) and multiplies by 1.0 in RCEIL, while dequantization multiplies by 2^-127;
//! - EVEN can round a finite amax near `f32::MAX` up to infinity (scale as for an inf block);
//! - RCEIL's `ceil(log2(descale))` is computed in float32, so a descale a few ulps above `2^k`
//!   gets `k`, not `k + 1` (see [`super::torch_log2`]), and the elements can then exceed `max_pos`
//!   before the clamp.
//!
//! ## The elements
//! E4M3 and E5M2: `torch.clamp(y, -max_pos, max_pos)` (NaN kept), then torch's cast, round to
//! nearest even; a NaN becomes `S.1111111` (0x7F or 0xFF, the sign kept) in both formats.
//! E3M2, E2M3, E2M1: torchao's `_f32_to_floatx_unpacked`: round to nearest even with saturation
//! (infinities to the largest magnitude, sign kept). It has no NaN branch: a NaN goes through the
//! normal-number bit arithmetic and comes out as a code that depends on its payload (see
//! [`torchao_fpx_code_of_nan`]).
//!
//! NaN bits inside the computation follow x86 SSE, as torch's CPU kernels do: an operation with a
//! NaN operand returns the first NaN operand quieted; an invalid operation (inf/inf) returns the
//! default NaN `0xFFC00000`. FLOOR/CEIL/EVEN divide `x / divisor`, so in a NaN block (divisor
//! +inf) a NaN element keeps its own sign and payload, inf becomes `0xFFC00000` and a finite
//! element `+-0`; RCEIL multiplies `rcp * x`, so in a NaN block every element is `rcp`, the
//! canonical NaN (all recorded in the fixture, identical on torch's AVX-512, AVX2 and scalar
//! kernels).

use core::fmt;

use crate::e8m0::E8M0;
use crate::env::{FpEnv, Overflow, RoundingMode};
use crate::minifloat::{E2M1, E2M3, E3M2, E4M3, E5M2};
use crate::profile::Profile;
use crate::{convert, fast, Format};

use super::torch_log2::{ceil_log2, exp2_integer};

/// Elements per MX block (OCP MX v1.0 section 5.1; torchao's `BLOCK_SIZE_DEFAULT`).
pub const BLOCK_SIZE: usize = 32;

/// torchao's `ScaleCalculationMode`: how the block amax becomes an E8M0 scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScaleMode {
    /// The OCP MX v1.0 reference: `2^(floor(log2(amax)) - target)`.
    Floor,
    /// NVIDIA's cuBLAS / Blackwell rule: `2^ceil(log2(amax / max_pos))`, no element overflows.
    Rceil,
    /// `floor`, plus one when the amax is not a power of two.
    Ceil,
    /// `floor` of the amax first rounded to the element's precision.
    Even,
}

impl ScaleMode {
    pub const ALL: [ScaleMode; 4] = [
        ScaleMode::Floor,
        ScaleMode::Rceil,
        ScaleMode::Ceil,
        ScaleMode::Even,
    ];

    /// The CLI name (`floor`, `rceil`, `ceil`, `even`).
    pub const fn name(self) -> &'static str {
        match self {
            ScaleMode::Floor => "floor",
            ScaleMode::Rceil => "rceil",
            ScaleMode::Ceil => "ceil",
            ScaleMode::Even => "even",
        }
    }

    /// Parses a CLI name, case-insensitively.
    pub fn parse(name: &str) -> Option<ScaleMode> {
        ScaleMode::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }
}

/// The element format of an MX block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Element {
    /// MXFP8 E4M3 (`torch.float8_e4m3fn`).
    E4M3,
    /// MXFP8 E5M2 (`torch.float8_e5m2`).
    E5M2,
    /// MXFP6 E3M2 (torchao `"fp6_e3m2"`).
    E3M2,
    /// MXFP6 E2M3 (torchao `"fp6_e2m3"`).
    E2M3,
    /// MXFP4 E2M1 (`torch.float4_e2m1fn_x2`, here unpacked).
    E2M1,
}

impl Element {
    pub const ALL: [Element; 5] = [
        Element::E4M3,
        Element::E5M2,
        Element::E3M2,
        Element::E2M3,
        Element::E2M1,
    ];

    /// The CLI name (`e4m3`, ...), the format's [`Format::NAME`].
    pub const fn name(self) -> &'static str {
        match self {
            Element::E4M3 => E4M3::NAME,
            Element::E5M2 => E5M2::NAME,
            Element::E3M2 => E3M2::NAME,
            Element::E2M3 => E2M3::NAME,
            Element::E2M1 => E2M1::NAME,
        }
    }

    /// Parses a CLI name, case-insensitively.
    pub fn parse(name: &str) -> Option<Element> {
        Element::ALL
            .into_iter()
            .find(|e| e.name().eq_ignore_ascii_case(name))
    }

    /// Exponent and fraction widths.
    pub const fn bits(self) -> (u32, u32) {
        match self {
            Element::E4M3 => (E4M3::EXP_BITS, E4M3::FRAC_BITS),
            Element::E5M2 => (E5M2::EXP_BITS, E5M2::FRAC_BITS),
            Element::E3M2 => (E3M2::EXP_BITS, E3M2::FRAC_BITS),
            Element::E2M3 => (E2M3::EXP_BITS, E2M3::FRAC_BITS),
            Element::E2M1 => (E2M1::EXP_BITS, E2M1::FRAC_BITS),
        }
    }

    /// Code width in bits (8, 6 or 4).
    pub const fn width(self) -> u32 {
        let (e, m) = self.bits();
        1 + e + m
    }

    /// torchao's `max_pos` (`F8E4M3_MAX`, ..., `F4_E2M1_MAX`): the largest finite value.
    pub const fn max_pos(self) -> f32 {
        match self {
            Element::E4M3 => 448.0,
            Element::E5M2 => 57344.0,
            Element::E3M2 => 28.0,
            Element::E2M3 => 7.5,
            Element::E2M1 => 6.0,
        }
    }

    /// torchao's `target_max_pow2` (`F8E4M3_MAX_POW2`, ...): the exponent of the largest power of
    /// two the format holds.
    pub const fn max_pow2(self) -> i32 {
        match self {
            Element::E4M3 => 8,
            Element::E5M2 => 15,
            Element::E3M2 => 4,
            Element::E2M3 | Element::E2M1 => 2,
        }
    }

    /// The code torchao stores for a scaled element `y` (after the clamp for FP8): round to
    /// nearest even, saturating. FP8 goes through torch's cast ([`Profile::Torch`]: a NaN becomes
    /// `S.1111111`, the sign kept); FP6/FP4 through the generic conversion with saturation, a NaN
    /// as torchao's bit arithmetic makes it ([`torchao_fpx_code_of_nan`]).
    pub fn encode(self, y: f32) -> u8 {
        let mut env = FpEnv::new(RoundingMode::NearestEven).with_overflow(Overflow::Saturate);
        let torch = Profile::Torch;
        match self {
            Element::E4M3 => torch
                .narrow::<f32, E4M3>(y, &mut env)
                .expect(TORCH_HAS)
                .code(),
            Element::E5M2 => torch
                .narrow::<f32, E5M2>(y, &mut env)
                .expect(TORCH_HAS)
                .code(),
            _ if y.is_nan() => torchao_fpx_code_of_nan(self, y),
            Element::E3M2 => convert::from_f32::<E3M2>(y, &mut env).code(),
            Element::E2M3 => convert::from_f32::<E2M3>(y, &mut env).code(),
            Element::E2M1 => convert::from_f32::<E2M1>(y, &mut env).code(),
        }
    }

    /// The f32 value of a code as `to_dtype` reads it (exact; bits above the width are ignored).
    /// An FP8 NaN comes back as torch's cast makes it ([`Profile::Torch`]: sign and payload kept,
    /// quieted, so `0x7F` -> `0x7FF00000`).
    pub fn decode(self, code: u8) -> f32 {
        let mut env = FpEnv::new(RoundingMode::NearestEven);
        let torch = Profile::Torch;
        match self {
            Element::E4M3 => torch
                .widen(E4M3::from_code(code), &mut env)
                .expect(TORCH_HAS),
            Element::E5M2 => torch
                .widen(E5M2::from_code(code), &mut env)
                .expect(TORCH_HAS),
            Element::E3M2 => convert::to_f32(E3M2::from_code(code), &mut env),
            Element::E2M3 => convert::to_f32(E2M3::from_code(code), &mut env),
            Element::E2M1 => convert::to_f32(E2M1::from_code(code), &mut env),
        }
    }
}

const TORCH_HAS: &str = "torch's profile covers E4M3 and E5M2";

/// The code torchao's `_f32_to_floatx_unpacked(x, ebits, mbits)` produces for a NaN `x`: NaN
/// fails both the saturation test (`x >= max_normal`) and the subnormal test (`x < min_normal`),
/// so it takes the normal branch, integer arithmetic on its bits:
///
/// ```text
/// sign = bits & 0x80000000; x = bits ^ sign
/// x += ((exp_bias - 127) << 23) + (1 << (22 - mbits)) - 1 + ((x >> (23 - mbits)) & 1)
/// code = uint8(x >> (23 - mbits)) | (sign >> (31 - ebits - mbits))    # uint8 wraps modulo 256
/// ```
pub fn torchao_fpx_code_of_nan(elem: Element, y: f32) -> u8 {
    let (ebits, mbits) = elem.bits();
    let bias = (1i32 << (ebits - 1)) - 1;
    let bits = y.to_bits();
    let sign = bits & 0x8000_0000;
    let x = (bits ^ sign) as i32;
    let odd = (x >> (23 - mbits)) & 1;
    let x = x
        .wrapping_add((bias - 127) << 23)
        .wrapping_add((1 << (22 - mbits)) - 1)
        .wrapping_add(odd);
    ((x >> (23 - mbits)) as u8) | (sign >> (31 - ebits - mbits)) as u8
}

/// One quantized MX block: the shared scale and 32 unpacked element codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MxBlock {
    pub scale: E8M0,
    pub codes: [u8; BLOCK_SIZE],
}

/// `x` with its quiet bit set, as an x86 operation returns a NaN operand.
fn quieted(x: f32) -> f32 {
    f32::from_bits(x.to_bits() | 0x0040_0000)
}

/// `a * b` with x86 SSE NaN results: the first NaN operand quieted, else the default NaN
/// `0xFFC00000` for an invalid product.
fn mul_x86(a: f32, b: f32) -> f32 {
    nan_x86(a, b, a * b)
}

/// `a / b` with x86 SSE NaN results (see [`mul_x86`]).
fn div_x86(a: f32, b: f32) -> f32 {
    nan_x86(a, b, a / b)
}

fn nan_x86(a: f32, b: f32, result: f32) -> f32 {
    if a.is_nan() {
        quieted(a)
    } else if b.is_nan() {
        quieted(b)
    } else if result.is_nan() {
        f32::from_bits(0xFFC0_0000)
    } else {
        result
    }
}

/// `torch.amax(torch.abs(block))`: the largest magnitude, or, when any element is NaN, the
/// canonical NaN `0x7FC00000` whatever the NaN's sign and payload (torch's max reduction returns
/// its own NaN; recorded in the fixture with payload NaNs, which RCEIL's FP6/FP4 codes expose).
pub fn block_amax(block: &[f32; BLOCK_SIZE]) -> f32 {
    let mut amax = 0.0f32;
    for &x in block {
        if x.is_nan() {
            return f32::from_bits(0x7FC0_0000);
        }
        let a = x.abs();
        if a > amax {
            amax = a;
        }
    }
    amax
}

/// The block scale and what the elements are multiplied by (FLOOR/CEIL/EVEN: the reciprocal of
/// torchao's divisor, exact since the divisor is a power of two or infinity).
#[derive(Clone, Copy, Debug, PartialEq)]
struct BlockScale {
    code: u8,
    /// FLOOR/CEIL/EVEN: the f32 torchao divides by; RCEIL: the f32 it multiplies by.
    factor: f32,
}

/// The scale of a block from its amax (see the module table).
fn block_scale(amax: f32, elem: Element, mode: ScaleMode) -> BlockScale {
    if mode == ScaleMode::Rceil {
        // descale = max_abs / max_pos; torch divides by the f32 scalar max_pos.
        let descale = div_x86(amax, elem.max_pos());
        let code = if descale.is_nan() {
            255
        } else if descale.is_infinite() {
            254
        } else {
            // torch.clamp(ceil(log2(descale)), -127, 127) + 127; -inf (descale 0) clamps to -127.
            (ceil_log2(descale).clamp(-127.0, 127.0) as i32 + 127) as u8
        };
        let factor = match code {
            255 => descale,
            254 => exp2_integer(-127.0),
            0 => 1.0,
            // exp2(127 - code), a normal f32 for codes 1..=253: biased exponent 254 - code.
            c => f32::from_bits(u32::from(254 - c) << 23),
        };
        return BlockScale { code, factor };
    }
    let mut amax_bits = amax.to_bits();
    if mode == ScaleMode::Even && !amax.is_nan() {
        let (_, mbits) = elem.bits();
        amax_bits = amax_bits.wrapping_add(1 << (22 - mbits)) & 0xFF80_0000;
    }
    let mut exponent = ((amax_bits >> 23) & 0xFF) as i32 - 127;
    if mode == ScaleMode::Ceil && amax_bits & 0x007F_FFFF != 0 {
        exponent += 1;
    }
    let unbiased = (exponent - elem.max_pow2()).clamp(-127, 128);
    let code = if amax.is_nan() {
        255
    } else {
        (unbiased + 127) as u8
    };
    // scale_fp32 = (code << 23) viewed as f32 (255 -> +inf), clamped below at F32_MIN_NORMAL.
    let divisor = f32::from_bits(u32::from(code) << 23).max(f32::MIN_POSITIVE);
    BlockScale {
        code,
        factor: divisor,
    }
}

/// The scaled element before the cast: FLOOR/CEIL/EVEN `x / divisor`, RCEIL `x * rcp`; then, for
/// FP8 (always in RCEIL), `torch.clamp(y, -max_pos, max_pos)`, which keeps NaN.
fn scaled(x: f32, scale: BlockScale, elem: Element, mode: ScaleMode) -> f32 {
    let y = if mode == ScaleMode::Rceil {
        // torch's kernel evaluates `data_hp * rcp_fp32` with the broadcast rcp as the first
        // operand: in a NaN block every element becomes rcp's NaN, a NaN element's own sign lost
        // (recorded: the fixture's NaN blocks, on AVX-512, AVX2 and the scalar kernels alike).
        mul_x86(scale.factor, x)
    } else {
        div_x86(x, scale.factor)
    };
    let clamps = mode == ScaleMode::Rceil || matches!(elem, Element::E4M3 | Element::E5M2);
    if clamps && !y.is_nan() {
        y.clamp(-elem.max_pos(), elem.max_pos())
    } else {
        y
    }
}

/// torchao 0.18 `to_mx(block, elem_dtype, 32, scaling_mode)` for one block: the E8M0 scale and the
/// 32 element codes, unpacked. The reference transcription; [`quantize`] is the fast one.
pub fn quantize_block(block: &[f32; BLOCK_SIZE], elem: Element, mode: ScaleMode) -> MxBlock {
    let scale = block_scale(block_amax(block), elem, mode);
    let mut codes = [0u8; BLOCK_SIZE];
    for (code, &x) in codes.iter_mut().zip(block) {
        *code = elem.encode(scaled(x, scale, elem, mode));
    }
    MxBlock {
        scale: E8M0::from_code(scale.code),
        codes,
    }
}

/// torchao 0.18 `to_dtype(data_lp, scale, elem_dtype, 32, torch.float32)` for one block: each code
/// widened exactly, times `2^(scale - 127)` in f32 (`get_fp_scale`: 2^-127 for code 0, a
/// subnormal); a NaN scale makes every element the NaN `0x7FC00000` (torch's vectorised CPU
/// kernels; its scalar fallback would keep an element's own NaN), an FP8 NaN code gives its NaN
/// quieted. Overflow gives infinity (E4M3 448 at scale 2^127).
pub fn dequantize_block(block: &MxBlock, elem: Element) -> [f32; BLOCK_SIZE] {
    let mut out = [0.0f32; BLOCK_SIZE];
    let factor = match block.scale.exponent() {
        None => {
            out.fill(f32::from_bits(0x7FC0_0000));
            return out;
        }
        Some(e) => exp2_integer(e as f32),
    };
    for (o, &code) in out.iter_mut().zip(&block.codes) {
        *o = mul_x86(elem.decode(code), factor);
    }
    out
}

/// Why a slice could not be (de)quantized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MxError {
    /// The input length is not a multiple of [`BLOCK_SIZE`].
    PartialBlock { len: usize },
    /// An output slice has the wrong length.
    OutputLength {
        what: &'static str,
        expected: usize,
        found: usize,
    },
}

impl fmt::Display for MxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MxError::PartialBlock { len } => write!(
                f,
                "{len} elements do not fill blocks of {BLOCK_SIZE} (torchao's to_mx asserts the same)"
            ),
            MxError::OutputLength {
                what,
                expected,
                found,
            } => write!(f, "{what} has {found} slots, {expected} needed"),
        }
    }
}

impl core::error::Error for MxError {}

fn check_lengths(n: usize, scales: usize, codes: usize) -> Result<usize, MxError> {
    if !n.is_multiple_of(BLOCK_SIZE) {
        return Err(MxError::PartialBlock { len: n });
    }
    let blocks = n / BLOCK_SIZE;
    if scales != blocks {
        return Err(MxError::OutputLength {
            what: "scales",
            expected: blocks,
            found: scales,
        });
    }
    if codes != n {
        return Err(MxError::OutputLength {
            what: "codes",
            expected: n,
            found: codes,
        });
    }
    Ok(blocks)
}

/// [`quantize_block`] over a slice of whole blocks (`input.len() == 32 * scales.len() ==
/// codes.len()`), with a fast path: a block without NaN is scaled by one f32 multiplication per
/// element (by the exact reciprocal of torchao's power-of-two divisor, which rounds the same as the
/// division), clamped to `+-max_pos` (saturation) and rounded by
/// [`fast::f32_to_minifloat_clamped`]; a block with a NaN takes the reference path.
pub fn quantize(
    input: &[f32],
    elem: Element,
    mode: ScaleMode,
    scales: &mut [E8M0],
    codes: &mut [u8],
) -> Result<(), MxError> {
    check_lengths(input.len(), scales.len(), codes.len())?;
    match elem {
        Element::E4M3 => quantize_fast::<4, 3>(input, elem, mode, scales, codes),
        Element::E5M2 => quantize_fast::<5, 2>(input, elem, mode, scales, codes),
        Element::E3M2 => quantize_fast::<3, 2>(input, elem, mode, scales, codes),
        Element::E2M3 => quantize_fast::<2, 3>(input, elem, mode, scales, codes),
        Element::E2M1 => quantize_fast::<2, 1>(input, elem, mode, scales, codes),
    }
    Ok(())
}

fn quantize_fast<const EBITS: u32, const MBITS: u32>(
    input: &[f32],
    elem: Element,
    mode: ScaleMode,
    scales: &mut [E8M0],
    codes: &mut [u8],
) {
    let max_pos = elem.max_pos();
    for ((block, scale_out), codes_out) in input
        .chunks_exact(BLOCK_SIZE)
        .zip(scales.iter_mut())
        .zip(codes.chunks_exact_mut(BLOCK_SIZE))
    {
        let block: &[f32; BLOCK_SIZE] = block.try_into().expect("chunks_exact");
        // The magnitudes' bit patterns as i32 (non-negative, ordered as the values): their max is
        // torch's amax, or above the infinity pattern exactly when an element is NaN, which then
        // takes the reference path. Signed compare-and-select vectorises with baseline SSE2.
        let top = block.iter().fold(0i32, |m, x| {
            let a = (x.to_bits() & 0x7FFF_FFFF) as i32;
            if a > m {
                a
            } else {
                m
            }
        });
        if top > 0x7F80_0000 {
            let q = quantize_block(block, elem, mode);
            *scale_out = q.scale;
            codes_out.copy_from_slice(&q.codes);
            continue;
        }
        let amax = f32::from_bits(top as u32);
        let scale = block_scale(amax, elem, mode);
        let factor = if mode == ScaleMode::Rceil {
            scale.factor
        } else {
            1.0 / scale.factor
        };
        *scale_out = E8M0::from_code(scale.code);
        for (code, &x) in codes_out.iter_mut().zip(block) {
            let y = (x * factor).clamp(-max_pos, max_pos);
            *code = fast::f32_to_minifloat_clamped::<EBITS, MBITS>(y);
        }
    }
}

/// [`dequantize_block`] over whole blocks: `codes.len() == 32 * scales.len() == out.len()`.
pub fn dequantize(
    scales: &[E8M0],
    codes: &[u8],
    elem: Element,
    out: &mut [f32],
) -> Result<(), MxError> {
    check_lengths(codes.len(), scales.len(), out.len())?;
    for ((&scale, block_codes), block_out) in scales
        .iter()
        .zip(codes.chunks_exact(BLOCK_SIZE))
        .zip(out.chunks_exact_mut(BLOCK_SIZE))
    {
        let block = MxBlock {
            scale,
            codes: block_codes.try_into().expect("chunks_exact"),
        };
        block_out.copy_from_slice(&dequantize_block(&block, elem));
    }
    Ok(())
}
