//! The kit's gradient strategies draw values of the fate they are asked for, judged by Berkeley
//! SoftFloat's nearest-even conversion of the exact product, and refuse exactly the fates no f32
//! can reach.

mod oracle;

use halfscale_core::half::{bf16, f16};
use halfscale_core::kit::grads::{grad_slice, grad_value, FateClass, GradStrategyError};
use halfscale_core::{Flags, Format, FpEnv, RoundingMode};
use oracle::{bf16_via_odd, d, run};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use softfloat_sys as sf;

fn sample<S: Strategy>(strategy: S, n: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::deterministic();
    (0..n)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect()
}

/// The fate class of `x * scale` stored in 16 bits, from SoftFloat's nearest-even conversion
/// (`to16` returns the bits and flags) of the exact f64 product.
fn oracle_class(x: f32, scale: f32, exp_mask: u16, to16: fn(f64) -> (u16, Flags)) -> FateClass {
    if x.is_nan() {
        return FateClass::Nan;
    }
    if x.is_infinite() {
        return FateClass::Inf;
    }
    let y = f64::from(x) * f64::from(scale);
    if y == 0.0 {
        return FateClass::Zero;
    }
    let (bits, flags) = to16(y);
    let mag = bits & 0x7FFF;
    if mag == exp_mask {
        FateClass::Overflow
    } else if mag == 0 {
        FateClass::FlushedToZero
    } else if mag & exp_mask == 0 {
        FateClass::Subnormal
    } else if flags.contains(Flags::INEXACT) {
        FateClass::Rounded
    } else {
        FateClass::Exact
    }
}

fn f16_oracle(y: f64) -> (u16, Flags) {
    let (r, f) = run(&FpEnv::new(RoundingMode::NearestEven), || unsafe {
        sf::f64_to_f16(d(y.to_bits()))
    });
    (r.v, f)
}

fn bf16_oracle(y: f64) -> (u16, Flags) {
    bf16_via_odd(&FpEnv::new(RoundingMode::NearestEven), || d(y.to_bits()))
}

const SCALES: [f32; 6] = [1.0, 65536.0, 0.00390625, 3.0, 0.3, 1.2676506e30];

/// The (format, fate, scale) triples no f32 reaches, worked out by hand:
/// - Exact at 0.3: 0.3f32 has 23 significant bits and an odd part times an odd part keeps them
///   all, more than any 16-bit significand holds (f16 and bf16).
/// - bf16 FlushedToZero at 2^16 and 2^100: |x * scale| must be <= 2^-134, but the smallest f32,
///   2^-149, already gives 2^-133 (2^16) and 2^-49 (2^100).
/// - bf16 Subnormal at 2^100: below 2^-126 needs |x| < 2^-226.
/// - bf16 Overflow at 2^-8 and 0.3: needs |x| > 3.39e38 * 256 (resp. / 0.3), past f32's max.
fn unreachable(format: &str, fate: FateClass, scale: f32) -> bool {
    use FateClass::*;
    matches!(
        (format, fate, scale),
        ("f16" | "bf16", Exact, 0.3)
            | ("bf16", FlushedToZero, 65536.0 | 1.2676506e30)
            | ("bf16", Subnormal, 1.2676506e30)
            | ("bf16", Overflow, 0.00390625 | 0.3)
    )
}

fn check_format<F: Format>(exp_mask: u16, to16: fn(f64) -> (u16, Flags)) {
    assert_eq!(SCALES[5], 2f32.powi(100));
    let mut subnormal_exact = [0usize; 2];
    for scale in SCALES {
        for fate in FateClass::ALL {
            match grad_value::<F>(fate, scale) {
                Err(e) => {
                    assert!(
                        unreachable(F::NAME, fate, scale),
                        "{} {fate:?} at {scale:e}: {e}",
                        F::NAME
                    );
                    assert_eq!(e, GradStrategyError::Unreachable { fate, scale });
                }
                Ok(strategy) => {
                    assert!(
                        !unreachable(F::NAME, fate, scale),
                        "{} {fate:?} at {scale:e} drawn",
                        F::NAME
                    );
                    let draws = sample(strategy, 300);
                    let mut negative = 0;
                    for x in draws {
                        assert_eq!(
                            oracle_class(x, scale, exp_mask, to16),
                            fate,
                            "{} x = {x:e} ({:#010x}) at scale {scale:e}",
                            F::NAME,
                            x.to_bits()
                        );
                        negative += usize::from(x.is_sign_negative());
                        if fate == FateClass::Subnormal {
                            let y = f64::from(x) * f64::from(scale);
                            subnormal_exact[usize::from(!to16(y).1.contains(Flags::INEXACT))] += 1;
                        }
                    }
                    assert!(
                        (50..=250).contains(&negative),
                        "{fate:?}: {negative} negative of 300"
                    );
                }
            }
        }
    }
    // Uniform bit patterns land on rounded subnormals mostly; exact ones must still appear.
    assert!(
        subnormal_exact[0] > 0 && subnormal_exact[1] > 0,
        "{subnormal_exact:?}"
    );
}

#[test]
fn f16_grad_values_have_the_fate_asked_for() {
    check_format::<f16>(0x7C00, f16_oracle);
}

#[test]
fn bf16_grad_values_have_the_fate_asked_for() {
    check_format::<bf16>(0x7F80, bf16_oracle);
}

#[test]
fn grad_slices_mix_the_fates_asked_for() {
    let strategy = grad_slice::<f16>(&[FateClass::Exact, FateClass::Inf], 65536.0, 1..40).unwrap();
    let mut seen = [0usize; 2];
    for g in sample(strategy, 200) {
        assert!((1..40).contains(&g.len()));
        for x in g {
            match oracle_class(x, 65536.0, 0x7C00, f16_oracle) {
                FateClass::Exact => seen[0] += 1,
                FateClass::Inf => seen[1] += 1,
                other => panic!("{x:e}: {other:?}"),
            }
        }
    }
    assert!(seen[0] > 1000 && seen[1] > 1000, "{seen:?}");
}

#[test]
fn bad_requests_are_refused() {
    assert_eq!(
        grad_slice::<f16>(&[], 1.0, 1..4).err(),
        Some(GradStrategyError::NoFates)
    );
    for bad in [0.0, -1.0, f32::INFINITY] {
        assert_eq!(
            grad_value::<f16>(FateClass::Exact, bad).err(),
            Some(GradStrategyError::Scale(bad))
        );
    }
    assert!(matches!(
        grad_value::<f16>(FateClass::Exact, f32::NAN).err(),
        Some(GradStrategyError::Scale(s)) if s.is_nan()
    ));
}
