//! The ready scaler property passes a correct update and fails deliberately broken ones, and the
//! configuration and event strategies reach what they promise (growth, backoff, refused growth,
//! factors f32 cannot hold, every policy).

use halfscale_core::kit::scaler::{
    check_scale_update, events, pytorch_cases, replay_scale_update, scaler_configs, ReplayError,
    UpdateArgs,
};
use halfscale_core::scaler::{
    FloorPolicy, Found, GrowthTiming, LossScaler, NanPolicy, ScaleChange, ScalePrecision,
    ScalerConfig,
};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

fn sample<S: Strategy>(strategy: S, n: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::deterministic();
    (0..n)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect()
}

/// PyTorch's `_amp_update_scale_cpu_kernel`, transcribed (aten/src/ATen/native/cpu/
/// AmpGradScalerKernels.cpp): `float` scale, `double` factors, `int` tracker.
fn pytorch_kernel(a: &UpdateArgs) -> (f32, u32) {
    let current_scale: f32 = a.scale;
    let mut growth_tracker = a.growth_tracker as i32;
    let mut new_scale = current_scale;
    if a.found_inf() {
        new_scale = (f64::from(current_scale) * a.backoff_factor) as f32;
        growth_tracker = 0;
    } else {
        let successful = growth_tracker + 1;
        if successful == a.growth_interval as i32 {
            let candidate = (f64::from(current_scale) * a.growth_factor) as f32;
            if candidate.is_finite() {
                new_scale = candidate;
            }
            growth_tracker = 0;
        } else {
            growth_tracker = successful;
        }
    }
    (new_scale, growth_tracker as u32)
}

#[test]
fn a_transcription_of_pytorchs_kernel_passes() {
    check_scale_update(pytorch_kernel).unwrap();
}

fn must_fail(name: &str, update: impl FnMut(&UpdateArgs) -> (f32, u32)) {
    let err = check_scale_update(update).expect_err(name);
    let text = err.to_string();
    assert!(text.contains("halfscale gives"), "{name}: {text}");
}

#[test]
fn growth_one_step_late_is_caught() {
    must_fail("growth off by one", |a| {
        if a.found_inf() {
            pytorch_kernel(a)
        } else if a.growth_tracker + 1 > a.growth_interval {
            ((f64::from(a.scale) * a.growth_factor) as f32, 0)
        } else {
            (a.scale, a.growth_tracker + 1)
        }
    });
}

#[test]
fn backoff_not_applied_is_caught() {
    must_fail("backoff not applied", |a| {
        if a.found_inf() {
            (a.scale, 0)
        } else {
            pytorch_kernel(a)
        }
    });
}

#[test]
fn tracker_kept_on_overflow_is_caught() {
    must_fail("tracker not reset", |a| {
        if a.found_inf() {
            (pytorch_kernel(a).0, a.growth_tracker)
        } else {
            pytorch_kernel(a)
        }
    });
}

#[test]
fn factors_rounded_to_f32_are_caught() {
    must_fail("f32 factors", |a| {
        if a.found_inf() {
            (a.scale * a.backoff_factor as f32, 0)
        } else {
            pytorch_kernel(a)
        }
    });
}

#[test]
fn growth_to_inf_is_caught() {
    must_fail("growth past f32", |a| {
        if !a.found_inf() && a.growth_tracker + 1 == a.growth_interval {
            ((f64::from(a.scale) * a.growth_factor) as f32, 0)
        } else {
            pytorch_kernel(a)
        }
    });
}

#[test]
fn nan_ignored_is_caught() {
    must_fail("NaN not an overflow", |a| {
        if a.found == Found::Nan {
            pytorch_kernel(&UpdateArgs {
                found: Found::Finite,
                ..*a
            })
        } else {
            pytorch_kernel(a)
        }
    });
}

#[test]
fn replay_reports_the_first_differing_step() {
    // PyTorch's defaults: 65536 for 1999 clean steps, 131072 on the 2000th, 65536 after an inf.
    let mut events = vec![Found::Finite; 2000];
    events.push(Found::Inf);
    let config = ScalerConfig::pytorch();
    replay_scale_update(&config, &events, pytorch_kernel).unwrap();
    let never_grows = |a: &UpdateArgs| {
        let (s, t) = pytorch_kernel(a);
        (s.min(a.scale), t)
    };
    match replay_scale_update(&config, &events, never_grows) {
        Err(ReplayError::Mismatch(m)) => {
            assert_eq!(m.step, 1999);
            assert_eq!(m.expected, (131072.0, 0));
            assert_eq!(m.got, (65536.0, 0));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        replay_scale_update(&ScalerConfig::recommended(), &events, pytorch_kernel),
        Err(ReplayError::NotPyTorchRule)
    );
}

#[test]
fn pytorch_cases_reach_growth_backoff_refusal_and_unrounded_factors() {
    let (mut grew, mut backed_off, mut refused, mut nan, mut inexact_factor) = (0, 0, 0, 0, 0);
    for (config, events) in sample(pytorch_cases(), 400) {
        assert!(config.follows_pytorch_rule() && config.validate().is_ok());
        assert!(events.len() <= 300);
        if f64::from(config.backoff_factor as f32) != config.backoff_factor {
            inexact_factor += 1;
        }
        let mut s = LossScaler::new(config).unwrap();
        for e in events {
            nan += usize::from(e == Found::Nan);
            match s.update(e).unwrap() {
                ScaleChange::Grew => grew += 1,
                ScaleChange::BackedOff => backed_off += 1,
                ScaleChange::GrowthRefused => refused += 1,
                _ => {}
            }
        }
    }
    assert!(grew >= 200, "grew {grew}");
    assert!(backed_off >= 1000, "backed off {backed_off}");
    assert!(refused >= 5, "refused {refused}");
    assert!(nan >= 200, "nan {nan}");
    assert!(
        inexact_factor >= 50,
        "inexact backoff factors {inexact_factor}"
    );
}

#[test]
fn events_respect_their_length_and_mix_all_findings() {
    let mut counts = [0usize; 3];
    let mut longest_clean = 0;
    for ev in sample(events(50), 300) {
        assert!(!ev.is_empty() && ev.len() <= 50);
        let mut run = 0;
        for e in ev {
            counts[e as usize] += 1;
            run = if e == Found::Finite { run + 1 } else { 0 };
            longest_clean = longest_clean.max(run);
        }
    }
    // Runs of up to 70 clean steps are cut at 50, so clean steps dominate; NaN ends 2 runs in 9.
    assert!(
        counts[0] > 5000 && counts[1] > 300 && counts[2] > 100,
        "{counts:?}"
    );
    assert!(longest_clean >= 45, "longest clean run {longest_clean}");
}

#[test]
fn scaler_configs_are_valid_and_cover_every_policy() {
    let configs = sample(scaler_configs(), 600);
    assert!(configs.iter().all(|c| c.validate().is_ok()));
    let count = |p: &dyn Fn(&ScalerConfig) -> bool| configs.iter().filter(|c| p(c)).count();
    for (name, n) in [
        ("disabled", count(&|c| !c.enabled)),
        ("hysteresis", count(&|c| c.hysteresis > 1)),
        ("consecutive", count(&|c| c.consecutive_hysteresis)),
        ("floor", count(&|c| c.min_scale.is_some())),
        ("ceiling", count(&|c| c.max_scale.is_some())),
        ("floor error", count(&|c| c.at_floor == FloorPolicy::Error)),
        (
            "deepspeed",
            count(&|c| c.growth_timing == GrowthTiming::DeepSpeed),
        ),
        ("nan error", count(&|c| c.nan_policy == NanPolicy::Error)),
        ("f64", count(&|c| c.precision == ScalePrecision::F64)),
        ("pytorch rule", count(&|c| c.follows_pytorch_rule())),
    ] {
        assert!(n >= 10, "{name}: {n} of 600");
    }
}
