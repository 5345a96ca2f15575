//! The kit's value strategies hit the classes they advertise, with both signs, and their ties
//! are exactly halfway by Berkeley SoftFloat's directed roundings.

mod oracle;

use std::collections::HashMap;

use halfscale_core::half::{bf16, f16};
use halfscale_core::kit::values::{conversion_ties, edge_bits, tie_class, EdgeClass, TieClass};
use halfscale_core::{FpEnv, RoundingMode};
use oracle::{bf16_from_f32, run, s};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use softfloat_sys as sf;

fn sample<S: Strategy>(strategy: S, n: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::deterministic();
    (0..n)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect()
}

/// The class of a 16-bit pattern, from literal masks (exponent mask, fraction width).
fn class_of(bits: u16, exp_mask: u16, frac_bits: u32) -> &'static str {
    let mag = bits & 0x7FFF;
    let frac_mask = (1u16 << frac_bits) - 1;
    let quiet = 1u16 << (frac_bits - 1);
    let min_normal = 1u16 << frac_bits;
    let max_finite = exp_mask - 1;
    let one = exp_mask >> 1 & !frac_mask; // bias << frac_bits
    if mag == 0 {
        "zero"
    } else if mag == exp_mask {
        "inf"
    } else if mag > exp_mask {
        if mag & quiet != 0 {
            "qnan"
        } else {
            "snan"
        }
    } else if mag < min_normal {
        if mag >= min_normal - 4 {
            "near_min_normal"
        } else {
            "subnormal"
        }
    } else if mag <= min_normal + 4 {
        "near_min_normal"
    } else if mag >= max_finite - 7 {
        "overflow_edge"
    } else if mag.abs_diff(one) <= 4 {
        "near_one"
    } else {
        "normal"
    }
}

fn check_edge_coverage(draws: &[u64], exp_mask: u16, frac_bits: u32) {
    let mut counts: HashMap<(&str, bool), usize> = HashMap::new();
    for &b in draws {
        assert!(b <= 0xFFFF, "a 16-bit pattern, got {b:#x}");
        let b = b as u16;
        *counts
            .entry((class_of(b, exp_mask, frac_bits), b & 0x8000 != 0))
            .or_default() += 1;
    }
    // 20,000 draws; weights out of 18 (classes of weight 1 expect ~550 per sign). Each class,
    // each sign, must be drawn at least 100 times: a strategy that lost a class fails.
    for class in [
        "zero",
        "subnormal",
        "near_min_normal",
        "overflow_edge",
        "inf",
        "qnan",
        "snan",
        "near_one",
        "normal",
    ] {
        for negative in [false, true] {
            let n = counts.get(&(class, negative)).copied().unwrap_or(0);
            assert!(
                n >= 100,
                "{class} (negative: {negative}) drawn {n} times: {counts:?}"
            );
        }
    }
}

#[test]
fn f16_edge_bits_hit_every_class_with_both_signs() {
    let draws = sample(edge_bits::<f16>(), 20_000);
    check_edge_coverage(&draws, 0x7C00, 10);
    // The exact extremes are among the draws.
    for must in [0x0001u64, 0x03FF, 0x0400, 0x7BFF, 0x7C00, 0xFBFF] {
        assert!(draws.contains(&must), "{must:#06x} never drawn");
    }
}

#[test]
fn bf16_edge_bits_hit_every_class_with_both_signs() {
    let draws = sample(edge_bits::<bf16>(), 20_000);
    check_edge_coverage(&draws, 0x7F80, 7);
    for must in [0x0001u64, 0x007F, 0x0080, 0x7F7F, 0x7F80, 0xFF7F] {
        assert!(draws.contains(&must), "{must:#06x} never drawn");
    }
}

/// f32 -> f16 in SoftFloat in a mode; `None` for the magnitude above the largest finite.
fn sf_f16(x: f32, mode: RoundingMode) -> u16 {
    let (r, _) = run(&FpEnv::new(mode), || unsafe {
        sf::f32_to_f16(s(x.to_bits()))
    });
    r.v
}

fn f16_value(bits: u16) -> f64 {
    if bits & 0x7FFF == 0x7C00 {
        65536.0 // the virtual neighbour above 65504
    } else {
        f64::from(f16::from_bits(bits).to_f32())
    }
}

fn bf16_value(bits: u16) -> f64 {
    if bits & 0x7FFF == 0x7F80 {
        2f64.powi(128)
    } else {
        f64::from(f32::from_bits(u32::from(bits) << 16))
    }
}

/// Checks `x` (> 0) is exactly halfway between its toward-zero and upward roundings, and that
/// nearest-even picks the one with an even significand.
fn check_tie(x: f32, down: u16, up: u16, nearest: u16, value: fn(u16) -> f64) {
    assert_eq!(up, down + 1, "{x:e}: neighbours {down:#06x} {up:#06x}");
    let mid = (value(down) + value(up)) / 2.0;
    assert_eq!(f64::from(x), mid, "{x:e} is not halfway");
    assert_eq!(
        nearest & 1,
        0,
        "{x:e}: nearest-even gave odd {nearest:#06x}"
    );
}

#[test]
fn f16_conversion_ties_are_halfway_by_softfloat() {
    let mut classes: HashMap<TieClass, usize> = HashMap::new();
    for x in sample(conversion_ties::<f16>(), 4_000) {
        *classes.entry(tie_class::<f16>(x)).or_default() += 1;
        let a = x.abs();
        check_tie(
            a,
            sf_f16(a, RoundingMode::TowardZero),
            sf_f16(a, RoundingMode::TowardPositive),
            sf_f16(a, RoundingMode::NearestEven),
            f16_value,
        );
        // The class, from literal thresholds: 2^-24 the smallest subnormal, 2^-14 the smallest
        // normal, 65504 the largest finite.
        let expected = if a < 2f32.powi(-24) {
            TieClass::Underflow
        } else if a < 2f32.powi(-14) {
            TieClass::Subnormal
        } else if a > 65504.0 {
            TieClass::Overflow
        } else {
            TieClass::Normal
        };
        assert_eq!(tie_class::<f16>(x), expected, "{x:e}");
    }
    for class in [
        TieClass::Underflow,
        TieClass::Subnormal,
        TieClass::Normal,
        TieClass::Overflow,
    ] {
        assert!(
            classes.get(&class).copied().unwrap_or(0) >= 500,
            "{classes:?}"
        );
    }
    // The two extreme ties: 2^-25 flushes to zero and 65520 overflows under nearest-even.
    assert!(sample(conversion_ties::<f16>(), 4_000).contains(&65520.0));
}

#[test]
fn bf16_conversion_ties_are_halfway_by_softfloat() {
    let mut classes: HashMap<TieClass, usize> = HashMap::new();
    for x in sample(conversion_ties::<bf16>(), 4_000) {
        *classes.entry(tie_class::<bf16>(x)).or_default() += 1;
        let a = x.abs().to_bits();
        let mode = |m| bf16_from_f32(&FpEnv::new(m), a).0;
        check_tie(
            x.abs(),
            mode(RoundingMode::TowardZero),
            mode(RoundingMode::TowardPositive),
            mode(RoundingMode::NearestEven),
            bf16_value,
        );
    }
    assert_eq!(classes.len(), 4, "{classes:?}");
}

#[test]
fn edge_class_labels_agree_with_the_literal_masks_on_every_pattern() {
    fn name(c: EdgeClass) -> &'static str {
        match c {
            EdgeClass::Zero => "zero",
            EdgeClass::Subnormal => "subnormal",
            EdgeClass::MinNormal => "near_min_normal",
            EdgeClass::OverflowEdge => "overflow_edge",
            EdgeClass::Infinity => "inf",
            EdgeClass::QuietNan => "qnan",
            EdgeClass::SignallingNan => "snan",
            EdgeClass::NearOne => "near_one",
            EdgeClass::Normal => "normal",
        }
    }
    for bits in 0..=u16::MAX {
        assert_eq!(
            name(EdgeClass::of::<f16>(bits.into())),
            class_of(bits, 0x7C00, 10),
            "f16 {bits:#06x}"
        );
        assert_eq!(
            name(EdgeClass::of::<bf16>(bits.into())),
            class_of(bits, 0x7F80, 7),
            "bf16 {bits:#06x}"
        );
    }
}
