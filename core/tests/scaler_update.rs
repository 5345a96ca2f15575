//! The scale update: PyTorch's own cases, the f64-then-f32 rounding of its kernel, DeepSpeed's
//! rule against a line-by-line port of `DynamicLossScaler.update_scale`, and the policies.

use halfscale_core::scaler::{
    pytorch_update_scale, ConfigError, FloorPolicy, Found, GrowthTiming, LossScaler, NanPolicy,
    ScaleChange, ScalePrecision, ScalerConfig, ScalerError,
};

fn cfg(growth: f64, backoff: f64, interval: u32) -> ScalerConfig {
    ScalerConfig {
        growth_factor: growth,
        backoff_factor: backoff,
        growth_interval: interval,
        ..ScalerConfig::pytorch()
    }
}

/// PyTorch `test_grad_scaling_update_scale`: scale 4, growth 2, backoff 0.25, interval 2.
#[test]
fn pytorch_test_grad_scaling_update_scale() {
    let mut s = LossScaler::new(ScalerConfig {
        init_scale: 4.0,
        ..cfg(2.0, 0.25, 2)
    })
    .unwrap();
    assert_eq!(s.update(Found::Finite), Ok(ScaleChange::Unchanged));
    assert_eq!((s.scale(), s.growth_tracker()), (4.0, 1));
    assert_eq!(s.update(Found::Finite), Ok(ScaleChange::Grew));
    assert_eq!((s.scale(), s.growth_tracker()), (8.0, 0));
    assert_eq!(s.update(Found::Inf), Ok(ScaleChange::BackedOff));
    assert_eq!((s.scale(), s.growth_tracker()), (2.0, 0));
    // NaN is an overflow in PyTorch.
    assert_eq!(s.update(Found::Nan), Ok(ScaleChange::BackedOff));
    assert_eq!((s.scale(), s.growth_tracker()), (0.5, 0));
    assert_eq!(s.skipped_steps(), 2);
    assert_eq!(s.iteration(), 4);
}

#[test]
fn pytorch_defaults() {
    let c = ScalerConfig::pytorch();
    assert_eq!(
        (
            c.enabled,
            c.init_scale,
            c.growth_factor,
            c.backoff_factor,
            c.growth_interval
        ),
        (true, 65536.0, 2.0, 0.5, 2000)
    );
    assert_eq!(ScalerConfig::default(), c);
    let s = LossScaler::pytorch();
    assert_eq!(s, LossScaler::new(c).unwrap());
    assert_eq!(s.scale_f32().to_bits(), 0x4780_0000);
    assert_eq!(
        LossScaler::recommended(),
        LossScaler::new(ScalerConfig::recommended()).unwrap()
    );
    assert_eq!(
        LossScaler::deepspeed(),
        LossScaler::new(ScalerConfig::deepspeed()).unwrap()
    );
}

/// Growth 2 on the 2000th clean update, not before.
#[test]
fn grows_on_the_interval_th_clean_update() {
    let mut s = LossScaler::pytorch();
    for i in 1..2000u32 {
        assert_eq!(s.update(Found::Finite), Ok(ScaleChange::Unchanged));
        assert_eq!(s.growth_tracker(), i);
    }
    assert_eq!(s.update(Found::Finite), Ok(ScaleChange::Grew));
    assert_eq!((s.scale(), s.growth_tracker()), (131072.0, 0));
}

/// The kernel forms `float * double` in double and rounds to float: with backoff 0.3 that is not
/// an f32 multiply by `0.3f32`.
#[test]
fn backoff_0_3_rounds_through_f64_not_f32() {
    let scale = f32::from_bits(0x45b8_51ec); // 5898.24, reached from 2^16 by two 0.3 backoffs and a 3x growth
    let ours = LossScaler::new(ScalerConfig {
        init_scale: f64::from(scale),
        ..cfg(3.0, 0.3, 1)
    })
    .map(|mut s| {
        s.update(Found::Inf).unwrap();
        s.scale()
    })
    .unwrap();
    assert_eq!((ours as f32).to_bits(), 0x44dd_2f1b);
    assert_eq!(
        (scale * 0.3f32).to_bits(),
        0x44dd_2f1c,
        "a plain f32 multiply differs"
    );
    assert_eq!(
        pytorch_update_scale(scale, 0, true, 3.0, 0.3, 1)
            .0
            .to_bits(),
        0x44dd_2f1b
    );
}

/// Growth 3 / backoff 0.3 from 2^16, alternating overflow and growth: the trajectory leaves a
/// plain f32 multiply's on the fifth update.
#[test]
fn growth_3_backoff_0_3_trajectory_differs_from_f32_multiply() {
    let mut s = LossScaler::new(ScalerConfig {
        init_scale: 65536.0,
        ..cfg(3.0, 0.3, 1)
    })
    .unwrap();
    let mut plain = 65536.0f32;
    let mut first_difference = None;
    for i in 0..5 {
        let overflow = i % 2 == 0;
        s.update(if overflow { Found::Inf } else { Found::Finite })
            .unwrap();
        plain = if overflow { plain * 0.3 } else { plain * 3.0 };
        if first_difference.is_none() && s.scale() as f32 != plain {
            first_difference = Some(i);
        }
    }
    assert_eq!(first_difference, Some(4));
    assert_eq!((s.scale() as f32).to_bits(), 0x4678_d4ff);
    assert_eq!(plain.to_bits(), 0x4678_d500);
}

/// Two roundings, not one: with growth 1.1 the kernel's result is not the correctly rounded
/// product, and the scaler reproduces the kernel.
#[test]
fn growth_1_1_double_rounding_is_reproduced() {
    let scale = f32::from_bits(0x3f80_0007);
    let (kernel, _) = pytorch_update_scale(scale, 0, false, 1.1, 0.5, 1);
    assert_eq!(kernel.to_bits(), 0x3f8c_ccd4);
    // The exact product rounded once to f32 is the next float up (checked with an exact
    // two-product: the f64 product lands exactly on an f32 midpoint and the lost part is > 0).
    let p = f64::from(scale) * 1.1;
    let err = f64::from(scale).mul_add(1.1, -p);
    assert!(err > 0.0);
    let lo = f32::from_bits(0x3f8c_ccd4);
    let hi = f32::from_bits(0x3f8c_ccd5);
    assert_eq!(p, (f64::from(lo) + f64::from(hi)) / 2.0);
    let mut s = LossScaler::new(ScalerConfig {
        init_scale: f64::from(scale),
        ..cfg(1.1, 0.5, 1)
    })
    .unwrap();
    assert_eq!(s.update(Found::Finite), Ok(ScaleChange::Grew));
    assert_eq!((s.scale() as f32).to_bits(), 0x3f8c_ccd4);
}

/// PyTorch's trap: 166 backoffs from 2^16 reach exactly 0 (2^-149 * 0.5 rounds to even, 0), and
/// the scale then stays 0 for good. A floor prevents it.
#[test]
fn pytorch_collapses_to_zero_after_166_backoffs_and_a_floor_prevents_it() {
    let mut s = LossScaler::pytorch();
    for _ in 0..165 {
        s.update(Found::Inf).unwrap();
    }
    assert_eq!(
        s.scale(),
        f64::from(f32::from_bits(1)),
        "2^-149, the least subnormal"
    );
    s.update(Found::Inf).unwrap();
    assert_eq!(s.scale(), 0.0);
    assert_eq!(s.inv_scale(), f32::INFINITY);
    for _ in 0..2000 {
        s.update(Found::Finite).unwrap();
    }
    assert_eq!(s.scale(), 0.0, "0 * 2 is 0: it never recovers");

    let mut held = LossScaler::new(ScalerConfig {
        min_scale: Some(1.0),
        ..ScalerConfig::pytorch()
    })
    .unwrap();
    for i in 0..200 {
        let change = held.update(Found::Inf).unwrap();
        if i < 16 {
            assert_eq!(change, ScaleChange::BackedOff);
        } else {
            assert_eq!(change, ScaleChange::ClampedToFloor);
        }
    }
    assert_eq!(held.scale(), 1.0);
    assert_eq!(held.skipped_steps(), 200);
}

#[test]
fn floor_error_policy_refuses_and_changes_nothing() {
    let mut s = LossScaler::new(ScalerConfig {
        init_scale: 4.0,
        min_scale: Some(1.5),
        at_floor: FloorPolicy::Error,
        ..ScalerConfig::pytorch()
    })
    .unwrap();
    assert_eq!(s.update(Found::Inf), Ok(ScaleChange::BackedOff));
    assert_eq!(s.scale(), 2.0);
    // 2 * 0.5 = 1 < 1.5: clamped to the floor, not an error yet (DeepSpeed: max(cur/2, min)).
    assert_eq!(s.update(Found::Inf), Ok(ScaleChange::ClampedToFloor));
    assert_eq!(s.scale(), 1.5);
    let before = s.clone();
    assert_eq!(
        s.update(Found::Inf),
        Err(ScalerError::ScaleAtFloor { scale: 1.5 })
    );
    assert_eq!(s, before);
    // A clean update still works.
    assert_eq!(s.update(Found::Finite), Ok(ScaleChange::Unchanged));
}

#[test]
fn ceiling_clamps_growth() {
    let mut s = LossScaler::new(ScalerConfig {
        init_scale: 1.0,
        max_scale: Some(3.0),
        ..cfg(2.0, 0.5, 1)
    })
    .unwrap();
    assert_eq!(s.update(Found::Finite), Ok(ScaleChange::Grew));
    assert_eq!(s.scale(), 2.0);
    assert_eq!(s.update(Found::Finite), Ok(ScaleChange::ClampedToCeiling));
    assert_eq!(s.scale(), 3.0);
    assert_eq!(s.update(Found::Finite), Ok(ScaleChange::ClampedToCeiling));
    assert_eq!(s.scale(), 3.0);
}

/// PyTorch refuses a growth to inf (f32): 2^127 stays, the tracker resets.
#[test]
fn growth_past_f32_max_is_refused_in_f32_but_not_in_f64() {
    let big = 2f64.powi(127);
    let mut s = LossScaler::new(ScalerConfig {
        init_scale: big,
        ..cfg(2.0, 0.5, 1)
    })
    .unwrap();
    assert_eq!(s.update(Found::Finite), Ok(ScaleChange::GrowthRefused));
    assert_eq!((s.scale(), s.growth_tracker()), (big, 0));
    assert_eq!(
        pytorch_update_scale(big as f32, 0, false, 2.0, 0.5, 1),
        (big as f32, 0)
    );

    let mut d = LossScaler::new(ScalerConfig {
        init_scale: big,
        precision: ScalePrecision::F64,
        ..cfg(2.0, 0.5, 1)
    })
    .unwrap();
    assert_eq!(d.update(Found::Finite), Ok(ScaleChange::Grew));
    assert_eq!(d.scale(), 2f64.powi(128));
    assert_eq!(d.scale_f32(), f32::INFINITY);
}

#[test]
fn nan_policy_error_refuses_and_changes_nothing() {
    let mut s = LossScaler::new(ScalerConfig {
        nan_policy: NanPolicy::Error,
        ..ScalerConfig::pytorch()
    })
    .unwrap();
    s.update(Found::Finite).unwrap();
    let before = s.clone();
    assert_eq!(
        s.update(Found::Nan),
        Err(ScalerError::NanGradient {
            optimizer: None,
            index: None
        })
    );
    assert_eq!(s, before);
    let report = halfscale_core::scaler::check_non_finite(&[1.0, f32::INFINITY, 2.0, f32::NAN]);
    assert_eq!(
        s.update_from_report(&report),
        Err(ScalerError::NanGradient {
            optimizer: None,
            index: Some(3)
        })
    );
    assert_eq!(s.update(Found::Inf), Ok(ScaleChange::BackedOff));
}

#[test]
fn disabled_is_the_identity() {
    let mut s = LossScaler::new(ScalerConfig::disabled()).unwrap();
    assert_eq!(s.scale(), 1.0);
    assert_eq!(s.inv_scale(), 1.0);
    assert_eq!(s.scale_loss(3.5), 3.5);
    for f in [Found::Inf, Found::Nan, Found::Finite] {
        assert_eq!(s.update(f), Ok(ScaleChange::Disabled));
    }
    assert_eq!((s.scale(), s.skipped_steps(), s.iteration()), (1.0, 0, 0));
    assert_eq!(s.state(), None);
    let mut g = [f32::INFINITY, 2.0];
    assert_eq!(s.unscale(&mut g), Default::default());
    assert_eq!(g[1], 2.0);
}

#[test]
fn set_scale_rounds_and_validates() {
    let mut s = LossScaler::pytorch();
    s.set_scale(0.1).unwrap();
    assert_eq!(s.scale(), f64::from(0.1f32));
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e39] {
        assert!(
            matches!(s.set_scale(bad), Err(ScalerError::InvalidScale(v)) if v.to_bits() == bad.to_bits()),
            "{bad}"
        );
    }
    assert_eq!(s.scale(), f64::from(0.1f32));
}

#[test]
fn invalid_configs_are_typed_errors() {
    let p = ScalerConfig::pytorch();
    let cases: [(ScalerConfig, ConfigError); 14] = [
        (
            ScalerConfig {
                growth_factor: 1.0,
                ..p
            },
            ConfigError::GrowthFactor(1.0),
        ),
        (
            ScalerConfig {
                growth_factor: 0.5,
                ..p
            },
            ConfigError::GrowthFactor(0.5),
        ),
        (
            ScalerConfig {
                growth_factor: f64::INFINITY,
                ..p
            },
            ConfigError::GrowthFactor(f64::INFINITY),
        ),
        (
            ScalerConfig {
                backoff_factor: 1.0,
                ..p
            },
            ConfigError::BackoffFactor(1.0),
        ),
        (
            ScalerConfig {
                backoff_factor: 0.0,
                ..p
            },
            ConfigError::BackoffFactor(0.0),
        ),
        (
            ScalerConfig {
                backoff_factor: -0.5,
                ..p
            },
            ConfigError::BackoffFactor(-0.5),
        ),
        (
            ScalerConfig {
                growth_interval: 0,
                ..p
            },
            ConfigError::GrowthIntervalZero,
        ),
        (
            ScalerConfig { hysteresis: 0, ..p },
            ConfigError::HysteresisZero,
        ),
        (
            ScalerConfig {
                init_scale: 0.0,
                ..p
            },
            ConfigError::InitScale(0.0),
        ),
        (
            ScalerConfig {
                init_scale: -2.0,
                ..p
            },
            ConfigError::InitScale(-2.0),
        ),
        // Finite in f64 but inf once held in f32, as torch.full(..., dtype=float32) would.
        (
            ScalerConfig {
                init_scale: 1e39,
                ..p
            },
            ConfigError::InitScale(1e39),
        ),
        (
            ScalerConfig {
                min_scale: Some(0.0),
                ..p
            },
            ConfigError::MinScale(0.0),
        ),
        (
            ScalerConfig {
                min_scale: Some(4.0),
                max_scale: Some(2.0),
                ..p
            },
            ConfigError::FloorAboveCeiling {
                min_scale: 4.0,
                max_scale: 2.0,
            },
        ),
        (
            ScalerConfig {
                min_scale: Some(1e6),
                ..p
            },
            ConfigError::InitScaleOutOfBounds {
                init_scale: 65536.0,
                min_scale: Some(1e6),
                max_scale: None,
            },
        ),
    ];
    for (config, expected) in cases {
        assert_eq!(config.validate(), Err(expected), "{config:?}");
        assert_eq!(LossScaler::new(config), Err(expected));
    }
    let nan = ScalerConfig {
        init_scale: f64::NAN,
        ..p
    }
    .validate();
    assert!(matches!(nan, Err(ConfigError::InitScale(v)) if v.is_nan()));
    let nan = ScalerConfig {
        backoff_factor: f64::NAN,
        ..p
    }
    .validate();
    assert!(matches!(nan, Err(ConfigError::BackoffFactor(v)) if v.is_nan()));
    assert!(ScalerConfig::recommended().validate().is_ok());
    assert!(ScalerConfig::deepspeed().validate().is_ok());
    // 1e39 is fine for an f64 scale.
    assert!(ScalerConfig {
        init_scale: 1e39,
        precision: ScalePrecision::F64,
        ..p
    }
    .validate()
    .is_ok());
}

#[test]
fn hysteresis_tolerates_then_backs_off_and_is_refilled_by_growth() {
    let mut s = LossScaler::new(ScalerConfig {
        hysteresis: 3,
        ..cfg(2.0, 0.5, 2)
    })
    .unwrap();
    assert_eq!(s.update(Found::Inf), Ok(ScaleChange::Absorbed));
    assert_eq!(s.update(Found::Inf), Ok(ScaleChange::Absorbed));
    assert_eq!(s.scale(), 65536.0);
    assert_eq!(s.update(Found::Inf), Ok(ScaleChange::BackedOff));
    // Not refilled by the backoff: the next overflow backs off at once (DeepSpeed, Megatron).
    assert_eq!(s.update(Found::Inf), Ok(ScaleChange::BackedOff));
    assert_eq!(s.scale(), 16384.0);
    assert_eq!(s.skipped_steps(), 4);
    // Nor by clean updates that do not grow.
    assert_eq!(s.update(Found::Finite), Ok(ScaleChange::Unchanged));
    assert_eq!(s.hysteresis_left(), 1);
    assert_eq!(s.update(Found::Finite), Ok(ScaleChange::Grew));
    assert_eq!(s.hysteresis_left(), 3);
    assert_eq!(s.update(Found::Inf), Ok(ScaleChange::Absorbed));

    let mut c = LossScaler::new(ScalerConfig {
        hysteresis: 2,
        consecutive_hysteresis: true,
        ..cfg(2.0, 0.5, 100)
    })
    .unwrap();
    // Isolated overflows never back off with consecutive hysteresis 2.
    for _ in 0..10 {
        assert_eq!(c.update(Found::Inf), Ok(ScaleChange::Absorbed));
        assert_eq!(c.update(Found::Finite), Ok(ScaleChange::Unchanged));
    }
    assert_eq!(c.update(Found::Inf), Ok(ScaleChange::Absorbed));
    assert_eq!(c.update(Found::Inf), Ok(ScaleChange::BackedOff));
}

/// DeepSpeed grows one update later than PyTorch: on the (W+1)-th clean update after an overflow
/// (or the start), then every W.
#[test]
fn deepspeed_timing_is_one_update_later() {
    let w = 3;
    let mut ds = LossScaler::new(ScalerConfig {
        growth_timing: GrowthTiming::DeepSpeed,
        ..cfg(2.0, 0.5, w)
    })
    .unwrap();
    let mut pt = LossScaler::new(cfg(2.0, 0.5, w)).unwrap();
    let mut ds_growths = Vec::new();
    let mut pt_growths = Vec::new();
    for i in 1..=10u32 {
        if ds.update(Found::Finite) == Ok(ScaleChange::Grew) {
            ds_growths.push(i);
        }
        if pt.update(Found::Finite) == Ok(ScaleChange::Grew) {
            pt_growths.push(i);
        }
    }
    assert_eq!(pt_growths, [3, 6, 9]);
    assert_eq!(ds_growths, [4, 7, 10]);
    ds.update(Found::Inf).unwrap();
    assert_eq!(ds.growth_tracker(), 0);
    let mut after = Vec::new();
    for i in 1..=8u32 {
        if ds.update(Found::Finite) == Ok(ScaleChange::Grew) {
            after.push(i);
        }
        assert!(ds.growth_tracker() >= 1 && ds.growth_tracker() <= w);
    }
    assert_eq!(after, [4, 7]);
}

/// A line-by-line port of DeepSpeed's `DynamicLossScaler.update_scale` (current form, and the
/// legacy `(cur_iter - last_overflow_iter) % scale_window == 0` form), Python floats as f64.
#[derive(Debug)]
struct DeepSpeedOracle {
    cur_scale: f64,
    cur_iter: i64,
    last_overflow_iter: i64,
    scale_factor: f64,
    scale_window: i64,
    min_scale: f64,
    delayed_shift: u32,
    cur_hysteresis: u32,
    consecutive_hysteresis: bool,
    raise_error_at_min_scale: bool,
    legacy: bool,
}

impl DeepSpeedOracle {
    fn update_scale(&mut self, overflow: bool) -> Result<(), ()> {
        if overflow {
            if self.delayed_shift == 1 || self.cur_hysteresis == 1 {
                if self.cur_scale == self.min_scale && self.raise_error_at_min_scale {
                    return Err(());
                }
                let next = self.cur_scale / self.scale_factor;
                // Python's max(a, b) returns a unless b > a.
                self.cur_scale = if self.min_scale > next {
                    self.min_scale
                } else {
                    next
                };
            } else {
                self.cur_hysteresis -= 1;
            }
            self.last_overflow_iter = self.cur_iter;
        } else {
            if self.consecutive_hysteresis {
                self.cur_hysteresis = self.delayed_shift;
            }
            let grow = if self.legacy {
                (self.cur_iter - self.last_overflow_iter) % self.scale_window == 0
            } else {
                let stable_interval = (self.cur_iter - self.last_overflow_iter) - 1;
                stable_interval > 0 && stable_interval % self.scale_window == 0
            };
            if grow {
                if !self.consecutive_hysteresis {
                    self.cur_hysteresis = self.delayed_shift;
                }
                self.cur_scale *= self.scale_factor;
            }
        }
        self.cur_iter += 1;
        Ok(())
    }
}

/// A deterministic event stream (xorshift), overflow with probability about 1/`one_in`.
fn events(seed: u64, n: usize, one_in: u64) -> Vec<bool> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % one_in == 1 // probability 1/one_in
        })
        .collect()
}

fn deepspeed_matches(legacy: bool) {
    let mut checked = 0;
    // DeepSpeed backs off by dividing by its one scale_factor; x / 3 is not x * (1/3) in f64.
    // The older rule is PyTorch timing, which multiplies: only factor 2 is the same there.
    let factors: &[f64] = if legacy { &[2.0] } else { &[2.0, 3.0] };
    for &factor in factors {
        for seed in 1..=60u64 {
            for (init, min_scale) in [
                (65536.0, 1.0),
                (1000.0, 0.3),
                (4.0, 4.0),
                (3.0e9, 1.0),
                (7.0, 0.01),
            ] {
                for (hysteresis, consecutive) in [(1, false), (2, false), (3, true), (2, true)] {
                    for raise in [false, true] {
                        let window = 1 + (seed % 5) as u32;
                        let config = ScalerConfig {
                            init_scale: init,
                            growth_interval: window,
                            hysteresis,
                            consecutive_hysteresis: consecutive,
                            min_scale: Some(min_scale),
                            at_floor: if raise {
                                FloorPolicy::Error
                            } else {
                                FloorPolicy::Hold
                            },
                            growth_timing: if legacy {
                                GrowthTiming::PyTorch
                            } else {
                                GrowthTiming::DeepSpeed
                            },
                            precision: ScalePrecision::F64,
                            growth_factor: factor,
                            backoff_factor: 1.0 / factor,
                            ..ScalerConfig::deepspeed()
                        };
                        let mut ours = LossScaler::new(config).unwrap();
                        let mut oracle = DeepSpeedOracle {
                            cur_scale: init,
                            cur_iter: 0,
                            last_overflow_iter: -1,
                            scale_factor: factor,
                            scale_window: i64::from(window),
                            min_scale,
                            delayed_shift: hysteresis,
                            cur_hysteresis: hysteresis,
                            consecutive_hysteresis: consecutive,
                            raise_error_at_min_scale: raise,
                            legacy,
                        };
                        for (step, overflow) in
                            events(seed, 400, 2 + seed % 4).into_iter().enumerate()
                        {
                            let found = if overflow { Found::Inf } else { Found::Finite };
                            let a = ours.update(found);
                            let b = oracle.update_scale(overflow);
                            assert_eq!(
                                a.is_err(),
                                b.is_err(),
                                "seed {seed} step {step} {config:?}"
                            );
                            if b.is_err() {
                                break;
                            }
                            assert_eq!(
                                ours.scale().to_bits(),
                                oracle.cur_scale.to_bits(),
                                "seed {seed} step {step} {config:?}"
                            );
                            assert_eq!(ours.hysteresis_left(), oracle.cur_hysteresis);
                            if !legacy {
                                // The tracker is DeepSpeed's next stable_interval, reduced into 0..=W.
                                let s = oracle.cur_iter - oracle.last_overflow_iter - 1;
                                let w = i64::from(window);
                                let reduced = if s == 0 { 0 } else { (s - 1) % w + 1 };
                                assert_eq!(i64::from(ours.growth_tracker()), reduced);
                            }
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 100_000, "{checked}");
}

#[test]
fn deepspeed_timing_matches_a_port_of_dynamic_loss_scaler() {
    deepspeed_matches(false);
}

/// DeepSpeed's older rule, `(cur_iter - last_overflow_iter) % scale_window == 0`, is PyTorch's
/// timing with an f64 scale.
#[test]
fn legacy_deepspeed_rule_is_pytorch_timing_in_f64() {
    deepspeed_matches(true);
}

/// `pytorch_update_scale` and `LossScaler` agree with a direct transcription of the C++ kernel on
/// long sequences, with factors that are not exact in f32.
#[test]
fn pytorch_mode_matches_the_kernel_transcription() {
    for (growth, backoff, interval) in [(2.0, 0.5, 3), (3.0, 0.3, 2), (1.1, 0.9, 1), (1.7, 0.61, 4)]
    {
        for seed in 1..=40u64 {
            let mut ours = LossScaler::new(cfg(growth, backoff, interval)).unwrap();
            // The kernel: float current_scale, int growth_tracker, double factors.
            let mut current_scale: f32 = 65536.0;
            let mut growth_tracker: i32 = 0;
            for overflow in events(seed, 500, 3) {
                if overflow {
                    current_scale = (f64::from(current_scale) * backoff) as f32;
                    growth_tracker = 0;
                } else {
                    let successful = growth_tracker + 1;
                    if successful == interval as i32 {
                        let new_scale = (f64::from(current_scale) * growth) as f32;
                        if new_scale.is_finite() {
                            current_scale = new_scale;
                        }
                        growth_tracker = 0;
                    } else {
                        growth_tracker = successful;
                    }
                }
                ours.update(if overflow { Found::Inf } else { Found::Finite })
                    .unwrap();
                assert_eq!((ours.scale() as f32).to_bits(), current_scale.to_bits());
                assert_eq!(f64::from(current_scale), ours.scale());
                assert_eq!(ours.growth_tracker() as i32, growth_tracker);
            }
        }
    }
}
