//! Saved state: a JSON dump of PyTorch's `GradScaler.state_dict()` loads as is, and a JSON save,
//! load and continue is bit-identical to never stopping. Needs the `serde` feature (on whenever
//! the workspace is tested together, or with `--features serde`). Bit-identical JSON needs an
//! exact float parser: serde_json's `float_roundtrip` feature (enabled for these tests); without
//! it an f64 scale with 17 significant digits can come back one ulp off.
#![cfg(feature = "serde")]

use halfscale_core::scaler::{
    Found, GrowthTiming, LossScaler, ScalePrecision, ScalerConfig, ScalerError, ScalerState,
    StateError,
};
use proptest::prelude::*;

#[test]
fn a_pytorch_state_dict_dump_loads() {
    // json.dumps(torch.amp.GradScaler().state_dict()) after some training.
    let dump = r#"{"scale": 32768.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 17}"#;
    let state: ScalerState = serde_json::from_str(dump).unwrap();
    assert_eq!(
        state,
        ScalerState {
            scale: 32768.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
            growth_tracker: 17,
            hysteresis_left: None,
            skipped_steps: 0,
            iteration: 0,
        }
    );
    let mut s = LossScaler::from_state(ScalerConfig::pytorch(), &state).unwrap();
    assert_eq!((s.scale(), s.growth_tracker()), (32768.0, 17));
    for _ in 0..1983 {
        s.update(Found::Finite).unwrap();
    }
    assert_eq!((s.scale(), s.growth_tracker()), (65536.0, 0));
    // An integer scale (a hand-written dump) is a number too.
    let int: ScalerState = serde_json::from_str(
        r#"{"scale": 1024, "growth_factor": 2, "backoff_factor": 0.5, "growth_interval": 10, "_growth_tracker": 0}"#,
    )
    .unwrap();
    assert_eq!(int.scale, 1024.0);
}

#[test]
fn loading_replaces_the_factors_as_pytorch_does() {
    let dump = r#"{"scale": 0.30000001192092896, "growth_factor": 3.0, "backoff_factor": 0.3, "growth_interval": 5, "_growth_tracker": 4}"#;
    let state: ScalerState = serde_json::from_str(dump).unwrap();
    let mut s = LossScaler::from_state(ScalerConfig::pytorch(), &state).unwrap();
    assert_eq!(s.config().growth_factor, 3.0);
    assert_eq!(s.config().growth_interval, 5);
    assert_eq!(s.scale(), f64::from(0.3f32));
    s.update(Found::Finite).unwrap();
    assert_eq!(s.scale(), f64::from((f64::from(0.3f32) * 3.0) as f32));
}

#[test]
fn a_saved_state_has_pytorchs_five_keys() {
    let mut s = LossScaler::new(ScalerConfig {
        growth_interval: 3,
        hysteresis: 2,
        ..ScalerConfig::pytorch()
    })
    .unwrap();
    s.update(Found::Finite).unwrap();
    s.update(Found::Inf).unwrap();
    s.update(Found::Finite).unwrap();
    let json = serde_json::to_string(&s.state().unwrap()).unwrap();
    assert_eq!(
        json,
        r#"{"scale":65536.0,"growth_factor":2.0,"backoff_factor":0.5,"growth_interval":3,"_growth_tracker":1,"hysteresis_left":1,"skipped_steps":1,"iteration":3}"#
    );
}

#[test]
fn a_collapsed_pytorch_scale_still_loads() {
    let dump = r#"{"scale": 0.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 0}"#;
    let state: ScalerState = serde_json::from_str(dump).unwrap();
    let s = LossScaler::from_state(ScalerConfig::pytorch(), &state).unwrap();
    assert_eq!(s.scale(), 0.0);
}

#[test]
fn bad_states_are_typed_errors() {
    let p = ScalerConfig::pytorch();
    let base = LossScaler::pytorch().state().unwrap();
    let cases = [
        (
            ScalerState {
                growth_tracker: 2000,
                ..base
            },
            ScalerError::State(StateError::GrowthTracker {
                tracker: 2000,
                max: 1999,
            }),
        ),
        (
            ScalerState {
                scale: -1.0,
                ..base
            },
            ScalerError::State(StateError::Scale(-1.0)),
        ),
        (
            ScalerState {
                scale: 1e39,
                ..base
            },
            ScalerError::State(StateError::Scale(1e39)),
        ),
        (
            ScalerState {
                hysteresis_left: Some(2),
                ..base
            },
            ScalerError::State(StateError::HysteresisLeft {
                left: 2,
                hysteresis: 1,
            }),
        ),
        (
            ScalerState {
                growth_interval: 0,
                ..base
            },
            ScalerError::Config(halfscale_core::scaler::ConfigError::GrowthIntervalZero),
        ),
    ];
    for (state, expected) in cases {
        let mut s = LossScaler::pytorch();
        let before = s.clone();
        assert_eq!(s.load_state(&state), Err(expected), "{state:?}");
        assert_eq!(s, before, "a refused load changes nothing");
    }
    let below_floor = ScalerState { scale: 0.5, ..base };
    assert!(matches!(
        LossScaler::from_state(ScalerConfig::recommended(), &below_floor),
        Err(ScalerError::State(StateError::ScaleOutOfBounds { .. }))
    ));
    // DeepSpeed timing allows the tracker to reach the interval.
    let ds = ScalerConfig {
        growth_timing: GrowthTiming::DeepSpeed,
        ..p
    };
    assert!(LossScaler::from_state(
        ds,
        &ScalerState {
            growth_tracker: 2000,
            ..base
        }
    )
    .is_ok());
    // Missing keys are a deserialisation error, not a panic.
    assert!(serde_json::from_str::<ScalerState>(r#"{"scale": 1.0}"#).is_err());
    assert!(serde_json::from_str::<ScalerState>("{}").is_err());
}

#[test]
fn config_round_trips_through_json() {
    for c in [
        ScalerConfig::pytorch(),
        ScalerConfig::recommended(),
        ScalerConfig::deepspeed(),
    ] {
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<ScalerConfig>(&json).unwrap(), c);
    }
    let json = serde_json::to_string(&ScalerConfig::deepspeed()).unwrap();
    assert!(
        json.contains(r#""growth_timing":"deep_speed""#)
            || json.contains(r#""growth_timing":"deepspeed""#),
        "{json}"
    );
}

fn found() -> impl Strategy<Value = Found> {
    prop_oneof![5 => Just(Found::Finite), 2 => Just(Found::Inf), 1 => Just(Found::Nan)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Save to JSON mid-sequence, load, continue: bit-identical to never stopping.
    #[test]
    fn json_save_load_continue_is_bit_identical(
        growth in prop_oneof![Just(2.0f64), Just(3.0), 1.0001f64..4.0],
        backoff in prop_oneof![Just(0.5f64), Just(0.3), 0.01f64..0.999],
        interval in 1u32..5,
        hysteresis in 1u32..4,
        consecutive in any::<bool>(),
        deepspeed in any::<bool>(),
        f64_scale in any::<bool>(),
        events in proptest::collection::vec(found(), 0..200),
        cut in 0usize..200,
    ) {
        let c = ScalerConfig {
            growth_factor: growth,
            backoff_factor: backoff,
            growth_interval: interval,
            hysteresis,
            consecutive_hysteresis: consecutive,
            min_scale: Some(1e-3),
            growth_timing: if deepspeed { GrowthTiming::DeepSpeed } else { GrowthTiming::PyTorch },
            precision: if f64_scale { ScalePrecision::F64 } else { ScalePrecision::F32 },
            ..ScalerConfig::pytorch()
        };
        let cut = cut.min(events.len());
        let mut straight = LossScaler::new(c).unwrap();
        for f in &events[..cut] {
            straight.update(*f).unwrap();
        }
        let json = serde_json::to_string(&straight.state().unwrap()).unwrap();
        let loaded: ScalerState = serde_json::from_str(&json).unwrap();
        let mut resumed = LossScaler::from_state(c, &loaded).unwrap();
        prop_assert_eq!(&resumed, &straight);
        for f in &events[cut..] {
            straight.update(*f).unwrap();
            resumed.update(*f).unwrap();
            prop_assert_eq!(straight.scale().to_bits(), resumed.scale().to_bits());
            prop_assert_eq!(straight.growth_tracker(), resumed.growth_tracker());
        }
    }
}
