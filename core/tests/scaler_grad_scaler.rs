//! The per-optimizer protocol: PyTorch's `OptState` machine and its errors, outcomes that gate the
//! LR scheduler, several optimizers, the NaN policy, disabled scaling.

use halfscale_core::scaler::{
    FloorPolicy, GradScaler, LossScaler, NanPolicy, OptStage, OptimizerId, ScaleChange,
    ScalerConfig, ScalerError, StepOutcome,
};

const A: OptimizerId = OptimizerId(0);
const B: OptimizerId = OptimizerId(1);

fn scaler<const N: usize>(config: ScalerConfig) -> GradScaler<N> {
    GradScaler::new(config).unwrap()
}

#[test]
fn ready_unscaled_stepped_then_update_resets() {
    let mut s: GradScaler<2> = scaler(ScalerConfig::pytorch());
    assert_eq!(s.stage(A), OptStage::Ready);
    let mut g = [65536.0f32, -131072.0];
    let r = s.unscale_(A, &mut g).unwrap();
    assert_eq!((r.len, r.nan, r.inf), (2, 0, 0));
    assert_eq!(g, [1.0, -2.0]);
    assert_eq!(s.stage(A), OptStage::Unscaled);
    assert_eq!(s.step(A), Ok(StepOutcome::Stepped));
    assert_eq!(s.stage(A), OptStage::Stepped);
    assert_eq!(s.update(), Ok(ScaleChange::Unchanged));
    assert_eq!(s.stage(A), OptStage::Ready);
    assert_eq!(s.scaler().growth_tracker(), 1);
}

#[test]
fn misuse_is_refused_with_pytorchs_errors_and_changes_nothing() {
    let mut s: GradScaler<2> = scaler(ScalerConfig::pytorch());
    // update with no inf check.
    assert_eq!(s.update(), Err(ScalerError::NoInfChecks));
    // step before any unscale.
    assert_eq!(
        s.step(A),
        Err(ScalerError::NoInfChecksForOptimizer { optimizer: A })
    );
    let mut g = [65536.0f32];
    s.unscale_(A, &mut g).unwrap();
    // unscale twice: refused before the gradients are touched.
    assert_eq!(
        s.unscale_(A, &mut g),
        Err(ScalerError::UnscaleTwice { optimizer: A })
    );
    assert_eq!(g, [1.0]);
    assert_eq!(s.step(A), Ok(StepOutcome::Stepped));
    assert_eq!(s.step(A), Err(ScalerError::StepTwice { optimizer: A }));
    assert_eq!(
        s.unscale_(A, &mut g),
        Err(ScalerError::UnscaleAfterStep { optimizer: A })
    );
    assert_eq!(g, [1.0]);
    assert_eq!(s.update(), Ok(ScaleChange::Unchanged));
    assert_eq!(s.scaler().growth_tracker(), 1);
}

#[test]
fn an_unscale_with_no_tensors_records_no_check() {
    let mut s: GradScaler<1> = scaler(ScalerConfig::pytorch());
    let r = s.unscale_tensors(A, core::iter::empty()).unwrap();
    assert_eq!(r.len, 0);
    assert_eq!(s.stage(A), OptStage::Unscaled);
    assert_eq!(
        s.step(A),
        Err(ScalerError::NoInfChecksForOptimizer { optimizer: A })
    );
    assert_eq!(s.update(), Err(ScalerError::NoInfChecks));
}

#[test]
fn capacity_is_a_typed_error() {
    let mut s: GradScaler<1> = scaler(ScalerConfig::pytorch());
    s.unscale_(A, &mut [1.0]).unwrap();
    let mut g = [65536.0f32];
    assert_eq!(
        s.unscale_(B, &mut g),
        Err(ScalerError::TooManyOptimizers { capacity: 1 })
    );
    assert_eq!(g, [65536.0], "refused before touching the gradients");
}

#[test]
fn skipped_steps_are_explicit_and_counted() {
    let mut s: GradScaler<1> = scaler(ScalerConfig::pytorch());
    let mut lr_scheduler_steps = 0;
    let mut params = 10.0f32;
    let batches: [&[f32]; 4] = [
        &[65536.0, 0.0],
        &[f32::INFINITY, 1.0],
        &[f32::NAN, f32::INFINITY],
        &[32768.0, 0.0],
    ];
    let mut outcomes = Vec::new();
    for batch in batches {
        let mut g = batch.to_vec();
        s.unscale_(A, &mut g).unwrap();
        let (outcome, ran) = s
            .step_with(A, || {
                params -= g[0];
                lr_scheduler_steps += 1;
                "stepped"
            })
            .unwrap();
        assert_eq!(ran.is_some(), outcome.is_stepped());
        outcomes.push(outcome);
        s.update().unwrap();
    }
    assert_eq!(
        outcomes,
        [
            StepOutcome::Stepped,
            StepOutcome::SkippedInf,
            StepOutcome::SkippedNan,
            StepOutcome::Stepped
        ]
    );
    assert_eq!(lr_scheduler_steps, 2);
    // 65536 / 65536, then 32768 / 16384 after two backoffs.
    assert_eq!(params, 10.0 - 1.0 - 2.0);
    assert_eq!(s.scaler().skipped_steps(), 2);
    assert_eq!(s.scale(), 16384.0);
}

#[test]
fn several_optimizers_combine_and_any_overflow_backs_off() {
    let mut s: GradScaler<2> = scaler(ScalerConfig::pytorch());
    s.unscale_(A, &mut [1.0, 2.0]).unwrap();
    s.unscale_tensors(B, [&mut [3.0f32][..], &mut [4.0, f32::INFINITY][..]])
        .map(|r| assert_eq!((r.len, r.inf, r.first_inf), (3, 1, Some(2))))
        .unwrap();
    assert_eq!(s.step(A), Ok(StepOutcome::Stepped));
    assert_eq!(s.step(B), Ok(StepOutcome::SkippedInf));
    assert_eq!(s.update(), Ok(ScaleChange::BackedOff));
    assert_eq!(s.scale(), 32768.0);
    // PyTorch's update does not require step: an unscale alone is a check.
    s.unscale_(A, &mut [1.0]).unwrap();
    assert_eq!(s.update(), Ok(ScaleChange::Unchanged));
}

#[test]
fn unscale_and_step_is_pytorchs_step() {
    let mut s: GradScaler<1> = scaler(ScalerConfig::pytorch());
    let mut g = [131072.0f32];
    assert_eq!(s.unscale_and_step(A, &mut g), Ok(StepOutcome::Stepped));
    assert_eq!(g, [2.0]);
    s.update().unwrap();
    // Already unscaled: not unscaled twice.
    let mut g = [131072.0f32];
    s.unscale_(A, &mut g).unwrap();
    assert_eq!(s.unscale_and_step(A, &mut g), Ok(StepOutcome::Stepped));
    assert_eq!(g, [2.0]);
}

#[test]
fn nan_policy_error_names_the_optimizer_and_position() {
    let mut s: GradScaler<2> = scaler(ScalerConfig {
        nan_policy: NanPolicy::Error,
        ..ScalerConfig::pytorch()
    });
    s.unscale_(A, &mut [1.0, 2.0]).unwrap();
    let r = s
        .unscale_tensors(B, [&mut [1.0f32, 2.0][..], &mut [3.0, f32::NAN][..]])
        .unwrap();
    assert_eq!(r.first_nan, Some(3));
    assert_eq!(s.step(A), Ok(StepOutcome::Stepped));
    let nan = ScalerError::NanGradient {
        optimizer: Some(B),
        index: Some(3),
    };
    assert_eq!(s.step(B), Err(nan));
    assert_eq!(s.stage(B), OptStage::Unscaled, "an error changes nothing");
    let before = s.scaler().clone();
    assert_eq!(s.update(), Err(nan));
    assert_eq!(s.scaler(), &before);
    s.discard_iteration();
    assert_eq!(s.stage(A), OptStage::Ready);
    assert_eq!(s.update(), Err(ScalerError::NoInfChecks));
    // An inf is still an ordinary overflow.
    s.unscale_(A, &mut [f32::INFINITY]).unwrap();
    assert_eq!(s.step(A), Ok(StepOutcome::SkippedInf));
    assert_eq!(s.update(), Ok(ScaleChange::BackedOff));
}

#[test]
fn recommended_stops_at_the_floor_instead_of_collapsing() {
    let mut s: GradScaler<1> = scaler(ScalerConfig::recommended());
    let mut backoffs = 0;
    let err = loop {
        let mut g = [f32::INFINITY];
        s.unscale_(A, &mut g).unwrap();
        assert_eq!(s.step(A), Ok(StepOutcome::SkippedInf));
        match s.update() {
            Ok(_) => backoffs += 1,
            Err(e) => break e,
        }
        assert!(backoffs <= 16);
    };
    assert_eq!(backoffs, 16);
    assert_eq!(err, ScalerError::ScaleAtFloor { scale: 1.0 });
    assert_eq!(s.scale(), 1.0);
    assert_eq!(ScalerConfig::recommended().at_floor, FloorPolicy::Error);
}

#[test]
fn disabled_always_steps_and_never_touches_gradients() {
    let mut s: GradScaler<1> = scaler(ScalerConfig::disabled());
    let mut g = [f32::INFINITY, 3.0];
    let r = s.unscale_(A, &mut g).unwrap();
    assert_eq!(r.len, 0);
    assert_eq!(g[1], 3.0);
    assert_eq!(s.step(A), Ok(StepOutcome::Stepped));
    assert_eq!(s.step(A), Ok(StepOutcome::Stepped));
    assert_eq!(s.update(), Ok(ScaleChange::Disabled));
    assert_eq!(s.scale(), 1.0);
    assert_eq!(s.scale_loss(0.75), 0.75);
    assert_eq!(s.state(), None);
}

#[test]
fn update_to_sets_the_scale_by_hand() {
    let mut s: GradScaler<1> = scaler(ScalerConfig::pytorch());
    s.unscale_(A, &mut [1.0]).unwrap();
    s.update_to(1024.0).unwrap();
    assert_eq!(s.scale(), 1024.0);
    assert_eq!(s.stage(A), OptStage::Ready);
    assert_eq!(s.update_to(-1.0), Err(ScalerError::InvalidScale(-1.0)));
    let from = GradScaler::<1>::from_scaler(LossScaler::pytorch());
    assert_eq!(from.scale(), 65536.0);
}

#[test]
fn errors_display_pytorchs_words() {
    let cases = [
        (
            ScalerError::UnscaleTwice { optimizer: A },
            "unscale_() has already been called on optimizer 0 since the last update()",
        ),
        (
            ScalerError::StepTwice { optimizer: B },
            "step() has already been called on optimizer 1 since the last update()",
        ),
        (
            ScalerError::NoInfChecks,
            "no inf checks were recorded prior to update()",
        ),
        (
            ScalerError::NanGradient {
                optimizer: Some(B),
                index: Some(7),
            },
            "NaN gradient in optimizer 1 at index 7 (nan policy: error)",
        ),
    ];
    for (e, text) in cases {
        assert_eq!(e.to_string(), text);
    }
}
