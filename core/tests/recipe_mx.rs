//! The fast MX paths against the reference ones: `fast::f32_to_minifloat_clamped` against the
//! generic `convert::from_f32` (saturating, nearest even) over every rounding class of every f32
//! exponent, `fast::minifloat_clamped_to_f32` against `convert::to_f32` on every finite code, and
//! `mx::quantize` against `mx::quantize_block` on random blocks of every kind.

use halfscale_core::e8m0::E8M0;
use halfscale_core::minifloat::{E2M1, E2M3, E3M2, E4M3, E5M2};
use halfscale_core::recipe::mx::{self, Element, MxBlock, ScaleMode, BLOCK_SIZE};
use halfscale_core::{convert, fast, Format, FpEnv, Overflow, RoundingMode};

/// Every f32 with the given sign and exponent field whose magnitude is within the format, by
/// rounding class: the top 9 fraction bits take every value (the rounding position of these
/// formats is at most 3 bits down, or above the fraction for their subnormals), the 14 bits below
/// them are 0, 1, half, all ones, or a pattern (the sticky cases).
fn rounding_classes() -> impl Iterator<Item = f32> {
    (0u32..2).flat_map(|sign| {
        (0u32..255).flat_map(move |exp| {
            (0u32..512).flat_map(move |top| {
                [0u32, 1, 0x2000, 0x3FFF, 0x1555]
                    .map(move |low| f32::from_bits(sign << 31 | exp << 23 | top << 14 | low))
            })
        })
    })
}

fn check_format<F: Format, const EBITS: u32, const MBITS: u32>() {
    let mut env = FpEnv::new(RoundingMode::NearestEven).with_overflow(Overflow::Saturate);
    let max = convert::to_f32(F::from_bits(F::MAX_FINITE_BITS), &mut env);
    let mut checked = 0u64;
    for x in rounding_classes().filter(|x| x.abs() <= max) {
        let generic = convert::from_f32::<F>(x, &mut env).to_bits() as u8;
        let fast = fast::f32_to_minifloat_clamped::<EBITS, MBITS>(x);
        assert_eq!(fast, generic, "{} of {x:e} ({:08X})", F::NAME, x.to_bits());
        checked += 1;
    }
    assert!(checked > 100_000, "{checked}");
}

fn check_decode<F: Format, const EBITS: u32, const MBITS: u32>() {
    let mut env = FpEnv::new(RoundingMode::NearestEven);
    let width = 1 + EBITS + MBITS;
    let mut finite = 0;
    for code in 0..(1u32 << width) {
        let generic = convert::to_f32(F::from_bits(code.into()), &mut env);
        if !generic.is_finite() {
            continue;
        }
        let fast = fast::minifloat_clamped_to_f32::<EBITS, MBITS>(code as u8);
        assert_eq!(
            fast.to_bits(),
            generic.to_bits(),
            "{} code {code:#04X}",
            F::NAME
        );
        finite += 1;
    }
    assert!(finite >= (1 << width) - 8, "{} {finite}", F::NAME);
}

#[test]
fn the_fast_decoding_of_finite_codes_is_the_generic_one() {
    check_decode::<E4M3, 4, 3>();
    check_decode::<E5M2, 5, 2>();
    check_decode::<E3M2, 3, 2>();
    check_decode::<E2M3, 2, 3>();
    check_decode::<E2M1, 2, 1>();
}

#[test]
fn the_fast_element_rounding_is_the_generic_one() {
    check_format::<E4M3, 4, 3>();
    check_format::<E5M2, 5, 2>();
    check_format::<E3M2, 3, 2>();
    check_format::<E2M3, 2, 3>();
    check_format::<E2M1, 2, 1>();
}

/// xorshift64*, seeded: reproducible random blocks without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_block(rng: &mut Rng) -> [f32; BLOCK_SIZE] {
    let kind = rng.below(6);
    let exp_lo = rng.below(254) as u32;
    core::array::from_fn(|_| {
        let raw = rng.next() as u32;
        let bits = match kind {
            // Raw bit patterns: NaNs and infinities included.
            0 => raw,
            // Finite values around one exponent (normals and, low down, subnormals).
            1..=3 => (raw & 0x807F_FFFF) | ((exp_lo + rng.below(8) as u32).min(254) << 23),
            // Subnormals and zeros.
            4 => raw & 0x807F_FFFF & if rng.below(4) == 0 { 0x8000_0000 } else { !0 },
            // A rare special in a finite block.
            _ => match rng.below(40) {
                0 => 0x7F80_0000 | (raw & 0x8000_0000),
                1 => 0x7FC0_0000 | raw,
                _ => (raw & 0x807F_FFFF) | (exp_lo << 23),
            },
        };
        f32::from_bits(bits)
    })
}

#[test]
fn the_fast_slice_path_is_the_reference_transcription() {
    let mut rng = Rng(0x6D78_2026_1204);
    let blocks: Vec<[f32; BLOCK_SIZE]> = (0..4000).map(|_| random_block(&mut rng)).collect();
    let flat: Vec<f32> = blocks.iter().flatten().copied().collect();
    for elem in Element::ALL {
        for mode in ScaleMode::ALL {
            let mut scales = vec![E8M0::NAN; blocks.len()];
            let mut codes = vec![0u8; flat.len()];
            mx::quantize(&flat, elem, mode, &mut scales, &mut codes).unwrap();
            for (i, block) in blocks.iter().enumerate() {
                let fast = MxBlock {
                    scale: scales[i],
                    codes: codes[i * BLOCK_SIZE..][..BLOCK_SIZE].try_into().unwrap(),
                };
                assert_eq!(
                    fast,
                    mx::quantize_block(block, elem, mode),
                    "{elem:?} {mode:?} {block:?}"
                );
            }
        }
    }
}

#[test]
fn slices_must_hold_whole_blocks() {
    let mut scales = [E8M0::NAN; 1];
    let mut codes = [0u8; 32];
    assert_eq!(
        mx::quantize(
            &[0.0; 31],
            Element::E4M3,
            ScaleMode::Floor,
            &mut scales,
            &mut codes
        ),
        Err(mx::MxError::PartialBlock { len: 31 })
    );
    assert!(matches!(
        mx::quantize(
            &[0.0; 64],
            Element::E4M3,
            ScaleMode::Floor,
            &mut scales,
            &mut codes
        ),
        Err(mx::MxError::OutputLength { what: "scales", .. })
    ));
    let mut out = [0.0f32; 31];
    assert!(matches!(
        mx::dequantize(&scales, &codes, Element::E4M3, &mut out),
        Err(mx::MxError::OutputLength { what: "codes", .. })
    ));
}

#[test]
fn dequantize_multiplies_by_the_scale_exactly() {
    // E4M3 448 (0x7E) at scale 2^-8 is 1.75; at 2^127 it overflows f32.
    let block = MxBlock {
        scale: E8M0::from_code(127 - 8),
        codes: [0x7E; BLOCK_SIZE],
    };
    assert_eq!(
        mx::dequantize_block(&block, Element::E4M3),
        [1.75; BLOCK_SIZE]
    );
    let block = MxBlock {
        scale: E8M0::MAX,
        codes: [0x7E; BLOCK_SIZE],
    };
    assert_eq!(
        mx::dequantize_block(&block, Element::E4M3),
        [f32::INFINITY; BLOCK_SIZE]
    );
    // Scale code 0 is 2^-127: E2M1 6.0 (0x7) becomes 6 * 2^-127, an f32 subnormal.
    let block = MxBlock {
        scale: E8M0::MIN,
        codes: [0x7; BLOCK_SIZE],
    };
    assert_eq!(
        mx::dequantize_block(&block, Element::E2M1)[0],
        (6.0 * 2f64.powi(-127)) as f32
    );
}
