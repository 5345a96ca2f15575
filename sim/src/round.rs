//! The rounding sites' slice round trips (f32 -> binary16 or bfloat16 -> f32, nearest-even),
//! sixteen lanes at a time where the CPU has AVX-512, else the core's.
//!
//! They run over every activation and gradient the mixed recipes round (5-6 % of a bf16 or
//! fp16 step at the core's 4- and 8-lane widths). Same bits as the core's functions, which
//! stay the definition: binary16 through F16C's `vcvtps2ph`/`vcvtph2ps` (what `half` runs
//! where the CPU has F16C; NaN made quiet, top payload bits kept), bfloat16 through the core's
//! own branch-free code compiled for AVX-512. Tests compare both on every f32 bit pattern.

use halfscale_core::fast::{round_slice_through_bf16, round_slice_through_f16};

/// Rounds each element to the nearest binary16 and back, in place.
pub fn round_through_f16(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F is present.
        return unsafe { x86::round_through_f16_avx512(values) };
    }
    round_slice_through_f16(values)
}

/// Rounds each element to the nearest bfloat16 and back, in place.
pub fn round_through_bf16(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F is present.
        return unsafe { x86::round_through_bf16_avx512(values) };
    }
    round_slice_through_bf16(values)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX-512F is present.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn round_through_f16_avx512(values: &mut [f32]) {
        for chunk in values.chunks_mut(16) {
            let mask = ((1u32 << chunk.len()) - 1) as __mmask16;
            // SAFETY: lanes `..chunk.len()` are inside `chunk`; masked lanes are untouched.
            unsafe {
                let x = _mm512_maskz_loadu_ps(mask, chunk.as_ptr());
                let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
                _mm512_mask_storeu_ps(chunk.as_mut_ptr(), mask, _mm512_cvtph_ps(h));
            }
        }
    }

    /// The core's loop, compiled with AVX-512 enabled: the compiler vectorises it 16 wide.
    ///
    /// # Safety
    /// AVX-512F is present.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn round_through_bf16_avx512(values: &mut [f32]) {
        super::round_slice_through_bf16(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every f32 bit pattern, a block of 2^16 at a time, through both paths.
    fn every_f32(check: impl Fn(&mut [f32], &mut [f32])) {
        let mut fast = vec![0.0f32; 1 << 16];
        let mut core = fast.clone();
        for hi in 0..=u16::MAX {
            for (lo, (f, c)) in fast.iter_mut().zip(core.iter_mut()).enumerate() {
                *f = f32::from_bits(u32::from(hi) << 16 | lo as u32);
                *c = *f;
            }
            check(&mut fast, &mut core);
            for (lo, (f, c)) in fast.iter().zip(&core).enumerate() {
                assert_eq!(
                    f.to_bits(),
                    c.to_bits(),
                    "{:#010x}",
                    u32::from(hi) << 16 | lo as u32
                );
            }
        }
    }

    #[test]
    fn f16_round_trip_equals_the_core_on_every_f32() {
        every_f32(|fast, core| {
            round_through_f16(&mut fast[..65_531]);
            round_through_f16(&mut fast[65_531..]);
            round_slice_through_f16(core);
        });
    }

    #[test]
    fn bf16_round_trip_equals_the_core_on_every_f32() {
        every_f32(|fast, core| {
            round_through_bf16(&mut fast[..65_531]);
            round_through_bf16(&mut fast[65_531..]);
            round_slice_through_bf16(core);
        });
    }
}
