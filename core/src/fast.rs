//! Nearest-even hot paths without flags, for the simulator and the benches.
//!
//! binary16 and bfloat16 add, sub, mul, div and sqrt computed in f32 and rounded once to the
//! narrow format are correctly rounded: f32 carries 24 >= 2p + 2 significand bits for p = 11
//! (binary16) and p = 8 (bfloat16), so the double rounding is innocuous (Figueroa, "When is double
//! rounding innocuous?", 1995). fma is not among them: use [`crate::arith::fma`].
//! The f32 -> f16 conversion here is `half`'s, which is a single correct rounding (F16C where the
//! CPU has it); NaN results are quiet but their payload follows the hardware, not [`crate::NanStyle`].
//!
//! [`f32_to_e4m3`] and [`scaled_f32_slice_to_e4m3`] quantise to FP8 E4M3 with bit arithmetic the
//! compiler vectorises (no table, no branch per element); a test compares them with the generic
//! conversion on every exponent, every rounding-relevant significand pattern and 16M random inputs.

use crate::env::Overflow;
use crate::minifloat::E4M3;
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

/// `a + b` in binary16, nearest-even.
#[inline]
pub fn add_f16(a: f16, b: f16) -> f16 {
    f16::from_f32(a.to_f32() + b.to_f32())
}

/// `a - b` in binary16, nearest-even.
#[inline]
pub fn sub_f16(a: f16, b: f16) -> f16 {
    f16::from_f32(a.to_f32() - b.to_f32())
}

/// `a * b` in binary16, nearest-even.
#[inline]
pub fn mul_f16(a: f16, b: f16) -> f16 {
    f16::from_f32(a.to_f32() * b.to_f32())
}

/// `a / b` in binary16, nearest-even.
#[inline]
pub fn div_f16(a: f16, b: f16) -> f16 {
    f16::from_f32(a.to_f32() / b.to_f32())
}

/// `sqrt(a)` in binary16, nearest-even.
#[inline]
pub fn sqrt_f16(a: f16) -> f16 {
    f16::from_f32(libm::sqrtf(a.to_f32()))
}

/// `a + b` in bfloat16, nearest-even.
#[inline]
pub fn add_bf16(a: bf16, b: bf16) -> bf16 {
    bf16::from_f32(a.to_f32() + b.to_f32())
}

/// `a - b` in bfloat16, nearest-even.
#[inline]
pub fn sub_bf16(a: bf16, b: bf16) -> bf16 {
    bf16::from_f32(a.to_f32() - b.to_f32())
}

/// `a * b` in bfloat16, nearest-even.
#[inline]
pub fn mul_bf16(a: bf16, b: bf16) -> bf16 {
    bf16::from_f32(a.to_f32() * b.to_f32())
}

/// `a / b` in bfloat16, nearest-even.
#[inline]
pub fn div_bf16(a: bf16, b: bf16) -> bf16 {
    bf16::from_f32(a.to_f32() / b.to_f32())
}

/// `sqrt(a)` in bfloat16, nearest-even.
#[inline]
pub fn sqrt_bf16(a: bf16) -> bf16 {
    bf16::from_f32(libm::sqrtf(a.to_f32()))
}

/// Chunk size for the in-place round trips: small enough to live on the stack.
const CHUNK: usize = 256;

/// Rounds every element to the nearest binary16 value (ties to even) and back to f32, in place:
/// what storing an f32 tensor as fp16 does. Overflow gives +-inf, tiny values become subnormal or
/// zero. Uses F16C through `half` where the CPU has it.
pub fn round_slice_through_f16(values: &mut [f32]) {
    let mut buf = [f16::ZERO; CHUNK];
    for chunk in values.chunks_mut(CHUNK) {
        let narrow = &mut buf[..chunk.len()];
        narrow.convert_from_f32_slice(chunk);
        narrow.convert_to_f32_slice(chunk);
    }
}

/// Rounds every element to the nearest bfloat16 value (ties to even) and back to f32, in place:
/// `half`'s `bf16::from_f32` then `to_f32` bit for bit (a NaN keeps its sign and top payload bits
/// and is made quiet), written without branches so that the compiler vectorises it (the
/// per-element conversion did not, and made a bf16 training step about 20 % slower than fp32).
#[inline]
pub fn round_slice_through_bf16(values: &mut [f32]) {
    for v in values.iter_mut() {
        let x = v.to_bits();
        let nan = (x & 0x7FFF_FFFF) > 0x7F80_0000;
        // Nearest-even on the 16 dropped bits: up when the half-way bit is set and a lower bit
        // or the last kept bit is too. A carry walks into the exponent (to infinity at the top).
        let up = u32::from((x & 0x8000) != 0 && (x & 0x1_7FFF) != 0);
        let rounded = ((x >> 16) + up) << 16;
        let quiet = (x & 0xFFFF_0000) | 0x0040_0000;
        *v = f32::from_bits(if nan { quiet } else { rounded });
    }
}

/// Converts f32 to binary16, nearest-even, element by element (`dst.len()` must equal `src.len()`;
/// a mismatch panics, as `copy_from_slice` does).
pub fn f32_slice_to_f16(src: &[f32], dst: &mut [f16]) {
    dst.convert_from_f32_slice(src);
}

/// Converts binary16 to f32 (exact), element by element (lengths must match).
pub fn f16_slice_to_f32(src: &[f16], dst: &mut [f32]) {
    src.convert_to_f32_slice(dst);
}

/// f32 -> E4M3, nearest-even, as [`crate::from_f32`] with [`Overflow`] `overflow` computes it, and
/// a NaN as `0x7F` with its sign (as every profile but CUDA's gives it).
///
/// Normal results: E4M3 keeps 3 of f32's 23 fraction bits, so adding `0x7FFFF` plus the last kept
/// bit to the magnitude's bits rounds the dropped 20 to nearest-even (a carry walks into the
/// exponent, as it should); rebasing the exponent from bias 127 to 7 subtracts `120 << 3` from the
/// shifted code. Subnormal results (below 2^-6): `|x| + 2^14` in f32 has an ulp of 2^-9, E4M3's
/// subnormal quantum, so the hardware's nearest-even addition rounds `|x|` to it and the low bits
/// of the sum are the code (8 = 2^-6, the smallest normal, follows on). Codes past `0x7E` overflow:
/// clamped to `0x7E` when saturating, to `0x7F` (NaN) otherwise; infinity lands there too.
#[inline]
pub fn f32_to_e4m3(x: f32, overflow: Overflow) -> E4M3 {
    const MIN_NORMAL_BITS: i32 = 0x3C80_0000; // 2^-6
    const SUBNORMAL_MAGIC: f32 = 16384.0; // 2^14: ulp 2^-9
    let bits = x.to_bits();
    let sign = (bits >> 24) & 0x80;
    // Below 2^31, so signed: SSE2 compares signed 32-bit lanes in one instruction.
    let abs = (bits & 0x7FFF_FFFF) as i32;
    // Wraps only for NaNs with high payloads, whose code is replaced below.
    let rounded = abs.wrapping_add(0x7_FFFF + ((abs >> 20) & 1)) >> 20;
    let normal = rounded - (120 << 3);
    let subnormal = (f32::from_bits(abs as u32) + SUBNORMAL_MAGIC).to_bits() as i32
        - SUBNORMAL_MAGIC.to_bits() as i32;
    let code = if abs < MIN_NORMAL_BITS {
        subnormal
    } else {
        normal
    };
    let limit = match overflow {
        Overflow::Saturate => 0x7E,
        Overflow::Ieee => 0x7F,
    };
    let code = if abs > 0x7F80_0000 {
        0x7F
    } else {
        code.min(limit)
    };
    E4M3::from_code((code as u32 | sign) as u8)
}

/// Quantises `src * scale` (the product rounded to f32, as a framework multiplies before it
/// casts) to E4M3, nearest-even, element by element; see [`f32_to_e4m3`]. `dst.len()` must
/// equal `src.len()` (a mismatch panics).
pub fn scaled_f32_slice_to_e4m3(src: &[f32], scale: f32, dst: &mut [E4M3], overflow: Overflow) {
    assert_eq!(
        src.len(),
        dst.len(),
        "source and destination lengths differ"
    );
    match overflow {
        // Two monomorphic loops, so the policy is a constant in each and the loop vectorises.
        Overflow::Saturate => {
            for (d, &x) in dst.iter_mut().zip(src) {
                *d = f32_to_e4m3(x * scale, Overflow::Saturate);
            }
        }
        Overflow::Ieee => {
            for (d, &x) in dst.iter_mut().zip(src) {
                *d = f32_to_e4m3(x * scale, Overflow::Ieee);
            }
        }
    }
}

/// Rounds a finite f32 whose magnitude is at most the format's largest value to the nearest code
/// (ties to even) of the small float format with `EBITS` exponent and `MBITS` fraction bits (IEEE
/// layout, bias `2^(EBITS-1) - 1`, subnormals, the all-ones exponent holding numbers: E4M3's 448
/// is `0x7E`, E5M2's 57344 `0x7B`), the code right-aligned in the byte. The hot path of MX
/// quantization, where the input is clamped to `+-max_pos` first; infinities and NaN are outside
/// its contract (the result is then meaningless, never a panic). `core/tests/recipe_mx.rs` proves
/// it equal to the generic [`crate::convert::from_f32`] over every rounding class of every f32
/// exponent.
///
/// Normal results: the f32 bits are rebiased and rounded in integer arithmetic (add half an ulp
/// of the target minus one, plus the lowest kept bit, then truncate). Subnormal results: adding
/// `2^(emin - MBITS + 23)` in f32 lands the value's rounded fraction in the low bits of the sum,
/// the FPU doing the round to nearest even.
#[inline]
pub fn f32_to_minifloat_clamped<const EBITS: u32, const MBITS: u32>(y: f32) -> u8 {
    let bias = (1u32 << (EBITS - 1)) - 1;
    let bits = y.to_bits();
    let sign = ((bits >> 31) as u8) << (EBITS + MBITS);
    let a = bits & 0x7FFF_FFFF;
    // 2^(1 - bias), the smallest normal.
    let min_normal = (128 - bias) << 23;
    let shift = 23 - MBITS;
    // Wrapping throughout: for a subnormal result this value is garbage (and discarded below).
    let normal = a
        .wrapping_sub((127 - bias) << 23)
        .wrapping_add((1 << (shift - 1)) - 1)
        .wrapping_add((a >> shift) & 1)
        >> shift;
    let magic_bits = (127 - bias + shift + 1) << 23;
    let subnormal = (f32::from_bits(a) + f32::from_bits(magic_bits))
        .to_bits()
        .wrapping_sub(magic_bits);
    let magnitude = if a < min_normal { subnormal } else { normal };
    magnitude as u8 | sign
}

/// The f32 value of a finite code of the small float formats [`f32_to_minifloat_clamped`]
/// produces (IEEE layout, `EBITS` exponent and `MBITS` fraction bits, bias
/// `2^(EBITS-1) - 1`, subnormals; the all-ones exponent read as a number, as E4M3 reads it
/// below its NaN). Exact. A NaN or infinity code is outside its contract (the result is then a
/// large finite number, never a panic): the hot path of fake quantization, where a NaN input is
/// carried past the cast instead. Branch-free, so loops over it vectorise;
/// `core/tests/recipe_mx.rs` proves it equal to the generic [`crate::convert::to_f32`] on every
/// finite code of E4M3, E5M2, E3M2, E2M3 and E2M1.
///
/// Normal codes: the exponent is rebased from the format's bias to f32's and the fraction
/// shifted to the top of f32's. Subnormal codes: the fraction times `2^(1 - bias - MBITS)`, one
/// exact f32 multiply.
#[inline]
pub fn minifloat_clamped_to_f32<const EBITS: u32, const MBITS: u32>(code: u8) -> f32 {
    let bias = (1u32 << (EBITS - 1)) - 1;
    let c = u32::from(code);
    let sign = (c >> (EBITS + MBITS)) << 31;
    let magnitude = c & ((1 << (EBITS + MBITS)) - 1);
    let exponent = magnitude >> MBITS;
    let fraction = magnitude & ((1 << MBITS) - 1);
    let normal = (exponent + 127 - bias) << 23 | fraction << (23 - MBITS);
    let quantum = f32::from_bits((127 + 1 - bias - MBITS) << 23);
    let subnormal = (fraction as f32 * quantum).to_bits();
    f32::from_bits(sign | if exponent == 0 { subnormal } else { normal })
}
