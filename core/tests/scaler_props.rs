//! Properties over random configurations and event sequences.

use halfscale_core::scaler::{
    inv_scale, pytorch_update_scale, FloorPolicy, Found, GradScaler, GrowthTiming, LossScaler,
    NanPolicy, OptimizerId, ScalePrecision, ScalerConfig, ScalerError, StepOutcome,
};
use proptest::prelude::*;

fn found() -> impl Strategy<Value = Found> {
    prop_oneof![6 => Just(Found::Finite), 2 => Just(Found::Inf), 1 => Just(Found::Nan)]
}

fn timing() -> impl Strategy<Value = GrowthTiming> {
    prop_oneof![Just(GrowthTiming::PyTorch), Just(GrowthTiming::DeepSpeed)]
}

fn precision() -> impl Strategy<Value = ScalePrecision> {
    prop_oneof![Just(ScalePrecision::F32), Just(ScalePrecision::F64)]
}

/// Any valid configuration: factors exact or not, bounds or not, every policy.
fn config() -> impl Strategy<Value = ScalerConfig> {
    (
        (
            prop_oneof![Just(65536.0f64), Just(1.0), Just(3.0e4), 1e-3f64..1e9],
            prop_oneof![Just(2.0f64), Just(3.0), Just(1.1), 1.0001f64..8.0],
            prop_oneof![Just(0.5f64), Just(0.3), Just(0.25), 0.01f64..0.999],
            1u32..6,
        ),
        (
            1u32..4,
            any::<bool>(),
            proptest::option::of(0.0f64..1.0),
            proptest::option::of(1.0f64..64.0),
        ),
        (
            prop_oneof![Just(FloorPolicy::Hold), Just(FloorPolicy::Error)],
            timing(),
            prop_oneof![Just(NanPolicy::Overflow), Just(NanPolicy::Error)],
            precision(),
        ),
    )
        .prop_map(
            |(
                (init_scale, growth_factor, backoff_factor, growth_interval),
                (hysteresis, consecutive_hysteresis, floor_frac, ceiling_mul),
                (at_floor, growth_timing, nan_policy, precision),
            )| {
                // Bounds relative to the initial scale, so the configuration is always valid.
                let init = precision.round(init_scale);
                ScalerConfig {
                    enabled: true,
                    init_scale,
                    growth_factor,
                    backoff_factor,
                    growth_interval,
                    hysteresis,
                    consecutive_hysteresis,
                    min_scale: floor_frac
                        .map(|f| init * f)
                        .filter(|m| precision.round(*m) > 0.0),
                    max_scale: ceiling_mul.map(|m| init * m),
                    at_floor,
                    growth_timing,
                    nan_policy,
                    precision,
                }
            },
        )
        .prop_filter("valid", |c| c.validate().is_ok())
}

fn is_power_of_two_or_zero(x: f64) -> bool {
    x == 0.0
        || (x > 0.0 && x.is_finite() && {
            let b = x.to_bits();
            let exp = (b >> 52) & 0x7ff;
            let frac = b & ((1u64 << 52) - 1);
            if exp == 0 {
                frac.is_power_of_two()
            } else {
                frac == 0
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The invariants after every update: tracker in range, bounds held, hysteresis in range,
    /// skipped steps counted, errors change nothing, and an f32 scale stays an f32 value.
    #[test]
    fn invariants_hold(c in config(), events in proptest::collection::vec(found(), 0..300)) {
        let mut s = LossScaler::new(c).unwrap();
        let floor = c.min_scale.map(|m| c.precision.round(m));
        let ceiling = c.max_scale.map(|m| c.precision.round(m));
        let mut skipped = 0u64;
        for f in events {
            let before = s.clone();
            match s.update(f) {
                Ok(_) => {
                    if f != Found::Finite {
                        skipped += 1;
                    }
                }
                Err(e) => {
                    prop_assert_eq!(&s, &before);
                    let expected_error = match e {
                        ScalerError::NanGradient { .. } => {
                            f == Found::Nan && c.nan_policy == NanPolicy::Error
                        }
                        ScalerError::ScaleAtFloor { scale } => {
                            f != Found::Finite
                                && c.at_floor == FloorPolicy::Error
                                && Some(scale) == floor
                                && before.hysteresis_left() == 1
                        }
                        _ => false,
                    };
                    prop_assert!(expected_error, "{:?}", e);
                }
            }
            let max_tracker = match c.growth_timing {
                GrowthTiming::PyTorch => c.growth_interval - 1,
                GrowthTiming::DeepSpeed => c.growth_interval,
            };
            prop_assert!(s.growth_tracker() <= max_tracker);
            if let Some(lo) = floor {
                prop_assert!(s.scale() >= lo);
            }
            if let Some(hi) = ceiling {
                prop_assert!(s.scale() <= hi);
            }
            prop_assert!(s.scale() >= 0.0 && s.scale().is_finite());
            prop_assert!(s.hysteresis_left() >= 1 && s.hysteresis_left() <= c.hysteresis);
            prop_assert_eq!(s.skipped_steps(), skipped);
            if c.precision == ScalePrecision::F32 {
                prop_assert_eq!(f64::from(s.scale() as f32), s.scale());
            }
        }
    }

    /// With power-of-two factors, initial scale and bounds, the scale stays a power of two (or
    /// PyTorch's collapse to 0, without a floor).
    #[test]
    fn power_of_two_factors_keep_a_power_of_two(
        g in 1i32..4, b in 1i32..4, k in -20i32..40,
        floor in proptest::option::of(-30i32..0),
        interval in 1u32..4,
        hysteresis in 1u32..3,
        timing in timing(),
        precision in precision(),
        events in proptest::collection::vec(found(), 0..400),
    ) {
        let c = ScalerConfig {
            init_scale: 2f64.powi(k),
            growth_factor: 2f64.powi(g),
            backoff_factor: 2f64.powi(-b),
            growth_interval: interval,
            hysteresis,
            min_scale: floor.map(|e| 2f64.powi(e.min(k))),
            growth_timing: timing,
            precision,
            ..ScalerConfig::pytorch()
        };
        let mut s = LossScaler::new(c).unwrap();
        for f in events {
            s.update(f).unwrap();
            prop_assert!(is_power_of_two_or_zero(s.scale()), "{}", s.scale());
            if c.min_scale.is_some() {
                prop_assert!(s.scale() > 0.0);
            }
        }
    }

    /// PyTorch mode, any factors: the scaler is the kernel.
    #[test]
    fn pytorch_mode_is_the_kernel(
        init in 1e-3f64..1e9,
        growth in 1.0001f64..8.0,
        backoff in 0.01f64..0.999,
        interval in 1u32..6,
        events in proptest::collection::vec(found(), 0..300),
    ) {
        let c = ScalerConfig {
            init_scale: init,
            growth_factor: growth,
            backoff_factor: backoff,
            growth_interval: interval,
            ..ScalerConfig::pytorch()
        };
        let mut s = LossScaler::new(c).unwrap();
        let mut scale = init as f32;
        let mut tracker = 0;
        for f in events {
            s.update(f).unwrap();
            (scale, tracker) = pytorch_update_scale(scale, tracker, f.is_non_finite(), growth, backoff, interval);
            prop_assert_eq!(s.scale(), f64::from(scale));
            prop_assert_eq!(s.growth_tracker(), tracker);
        }
    }

    /// Saving mid-sequence and continuing from the saved state is identical to never stopping.
    #[test]
    fn save_and_load_continue_identically(
        c in config(),
        events in proptest::collection::vec(found(), 0..200),
        cut in 0usize..200,
    ) {
        let c = ScalerConfig { nan_policy: NanPolicy::Overflow, at_floor: FloorPolicy::Hold, ..c };
        let cut = cut.min(events.len());
        let mut straight = LossScaler::new(c).unwrap();
        let mut first = LossScaler::new(c).unwrap();
        for f in &events[..cut] {
            straight.update(*f).unwrap();
            first.update(*f).unwrap();
        }
        let state = first.state().unwrap();
        let mut resumed = LossScaler::from_state(c, &state).unwrap();
        prop_assert_eq!(&resumed, &straight);
        for f in &events[cut..] {
            let a = straight.update(*f).unwrap();
            let b = resumed.update(*f).unwrap();
            prop_assert_eq!(a, b);
            prop_assert_eq!(straight.scale().to_bits(), resumed.scale().to_bits());
        }
        prop_assert_eq!(straight.state(), resumed.state());
    }

    /// A skipped step changes nothing the caller's step would have changed: the optimizer
    /// closure runs exactly on the finite iterations, with the gradients the kernel produces.
    #[test]
    fn skipped_steps_never_touch_parameters(
        iterations in proptest::collection::vec(
            proptest::collection::vec(
                prop_oneof![8 => -1e3f32..1e3, 1 => Just(f32::INFINITY), 1 => Just(f32::NAN)],
                1..6,
            ),
            1..40,
        ),
        interval in 1u32..4,
    ) {
        let config = ScalerConfig { growth_interval: interval, ..ScalerConfig::pytorch() };
        let mut scaler: GradScaler<1> = GradScaler::new(config).unwrap();
        let opt = OptimizerId(3);
        let mut params = [0.0f32; 6];
        // Reference: the kernel's scale and an element-by-element unscale.
        let mut ref_params = [0.0f32; 6];
        let mut ref_scale = 65536.0f32;
        let mut ref_tracker = 0;
        for raw in &iterations {
            // "Backward": gradients scaled by the current scale.
            let scaled: Vec<f32> = raw.iter().map(|g| scaler.scale_loss(*g)).collect();
            let mut grads = scaled.clone();
            scaler.unscale_(opt, &mut grads).unwrap();
            let (outcome, ran) = scaler
                .step_with(opt, || {
                    for (p, g) in params.iter_mut().zip(&grads) {
                        *p -= 0.01 * g;
                    }
                })
                .unwrap();
            scaler.update().unwrap();

            let inv = inv_scale(f64::from(ref_scale));
            let ref_grads: Vec<f32> = raw.iter().map(|g| (g * ref_scale) * inv).collect();
            let non_finite = ref_grads.iter().any(|g| !g.is_finite());
            prop_assert_eq!(ran.is_some(), !non_finite);
            prop_assert_eq!(outcome == StepOutcome::Stepped, !non_finite);
            if !non_finite {
                for (p, g) in ref_params.iter_mut().zip(&ref_grads) {
                    *p -= 0.01 * g;
                }
            }
            (ref_scale, ref_tracker) =
                pytorch_update_scale(ref_scale, ref_tracker, non_finite, 2.0, 0.5, interval);
            prop_assert!(params.iter().zip(&ref_params).all(|(a, b)| a.to_bits() == b.to_bits()));
            prop_assert_eq!(scaler.scale(), f64::from(ref_scale));
        }
    }
}
