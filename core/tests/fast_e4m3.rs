//! The E4M3 quantisation fast path (`fast::f32_to_e4m3`, `fast::scaled_f32_slice_to_e4m3`) equals
//! the generic conversion (itself checked against rustc_apfloat and exact search) on every f32
//! exponent field with every rounding-relevant significand pattern (the 8 bits from the kept ones
//! down past the round bit, and low bits that are zero, one, all ones or random), on 16M random
//! patterns, and through the slice function with scales.

use halfscale_core::{fast, from_f32, Format, FpEnv, Overflow, RoundingMode, E4M3};

fn generic(x: f32, overflow: Overflow) -> u8 {
    let mut env = FpEnv::new(RoundingMode::NearestEven).with_overflow(overflow);
    from_f32::<E4M3>(x, &mut env).code()
}

#[track_caller]
fn check(bits: u32) {
    let x = f32::from_bits(bits);
    for overflow in [Overflow::Ieee, Overflow::Saturate] {
        assert_eq!(
            fast::f32_to_e4m3(x, overflow).code(),
            generic(x, overflow),
            "{bits:08X} {overflow:?}"
        );
    }
}

#[test]
fn every_exponent_and_rounding_pattern() {
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut n = 0u64;
    for exp in 0u32..=255 {
        for top in 0u32..256 {
            // `top` covers fraction bits 22..15: the 3 kept, the round bit, and 4 more.
            for low in [0, 1, 0x3FFF, 0x4000, 0x4001, 0x7FFF, 0x2000] {
                let low = low as u32 & 0x7FFF;
                let r = (next() as u32) & 0x7FFF;
                for frac in [top << 15 | low, top << 15 | r] {
                    for sign in [0, 0x8000_0000] {
                        check(sign | exp << 23 | frac);
                        n += 1;
                    }
                }
            }
        }
    }
    assert!(n > 1_000_000);
}

#[test]
fn random_patterns() {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..1 << 24 {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        check((s >> 32) as u32);
    }
}

#[test]
fn slices_with_scales_equal_the_generic_path() {
    let src: Vec<f32> = (0..100_000u32)
        .map(|i| f32::from_bits(i.wrapping_mul(2_654_435_761)))
        .chain([
            f32::NAN,
            -f32::INFINITY,
            464.0,
            -464.0,
            480.0,
            1e-3,
            0.0,
            -0.0,
        ])
        .collect();
    for scale in [1.0f32, 0.25, 3.0, 1e-20, 1e30, -2.0] {
        for overflow in [Overflow::Ieee, Overflow::Saturate] {
            let mut dst = vec![E4M3::default(); src.len()];
            fast::scaled_f32_slice_to_e4m3(&src, scale, &mut dst, overflow);
            for (d, &x) in dst.iter().zip(&src) {
                assert_eq!(
                    d.to_bits() as u8,
                    generic(x * scale, overflow),
                    "{x:e} * {scale}"
                );
            }
        }
    }
}
