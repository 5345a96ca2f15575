//! The `arbitrary` impls: every byte string gives a value, every value is reachable, and flags
//! never carry undefined bits.

use arbitrary::{Arbitrary, Unstructured};
use halfscale_core::half::{bf16, f16};
use halfscale_core::kit::fuzzing::Operand;
use halfscale_core::scaler::{Found, ScalerConfig, ScalerState};
use halfscale_core::{Flags, FpEnv, NanStyle, RoundingMode, StepOutcome};
use std::collections::HashSet;

#[test]
fn flags_keep_only_the_five_defined_bits_and_reach_all_32_sets() {
    let mut seen = HashSet::new();
    for byte in 0..=255u8 {
        let f = Flags::arbitrary(&mut Unstructured::new(&[byte])).unwrap();
        assert_eq!(f.bits() & !0x1F, 0, "byte {byte:#04x}");
        seen.insert(f.bits());
    }
    assert_eq!(seen.len(), 32);
}

#[test]
fn operands_read_every_16_bit_pattern_little_endian() {
    for bits in 0..=u16::MAX {
        let bytes = bits.to_le_bytes();
        let h = Operand::<f16>::arbitrary(&mut Unstructured::new(&bytes)).unwrap();
        let b = Operand::<bf16>::arbitrary(&mut Unstructured::new(&bytes)).unwrap();
        assert_eq!((h.0.to_bits(), b.0.to_bits()), (bits, bits));
    }
    // half's own impl for f16 reads the same two bytes.
    let h = f16::arbitrary(&mut Unstructured::new(&[0x00, 0x7C])).unwrap();
    assert_eq!(h, f16::INFINITY);
    assert_eq!(
        <Operand<f32>>::size_hint(0),
        (4, Some(4)),
        "an f32 operand takes four bytes"
    );
}

/// A deterministic byte stream (xorshift), so the test is reproducible.
fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn environments_and_outcomes_reach_every_variant() {
    let mut modes = HashSet::new();
    let mut nans = HashSet::new();
    let mut found = HashSet::new();
    let mut outcomes = HashSet::new();
    for seed in 0..500 {
        let data = bytes(seed, 64);
        let mut u = Unstructured::new(&data);
        let env = FpEnv::arbitrary(&mut u).unwrap();
        assert_eq!(env.flags.bits() & !0x1F, 0);
        modes.insert(env.rounding);
        nans.insert(env.nan);
        found.insert(Found::arbitrary(&mut u).unwrap());
        outcomes.insert(StepOutcome::arbitrary(&mut u).unwrap());
    }
    assert_eq!(modes.len(), RoundingMode::ALL.len());
    assert_eq!(nans.len(), 3);
    assert!(nans.contains(&NanStyle::Cuda));
    assert_eq!((found.len(), outcomes.len()), (3, 3));
}

#[test]
fn configurations_and_states_reach_both_valid_and_invalid() {
    let (mut valid, mut invalid, mut states) = (0, 0, 0);
    for seed in 0..2000 {
        let data = bytes(seed, 256);
        let mut u = Unstructured::new(&data);
        let c = ScalerConfig::arbitrary(&mut u).unwrap();
        if c.validate().is_ok() {
            valid += 1;
        } else {
            invalid += 1;
        }
        if ScalerState::arbitrary(&mut u).is_ok() {
            states += 1;
        }
    }
    assert!(valid > 0 && invalid > 0, "valid {valid}, invalid {invalid}");
    assert!(states > 1000);
}
