//! `GradScaler` around candle's `AdamW`: a skipped step changes nothing, a finite step is the
//! inner optimizer's step on the unscaled gradients, and the scale follows halfscale-core's
//! `LossScaler` step for step.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use halfscale_candle::{GradScaler, GradScalerConfig};
use halfscale_core::scaler::{
    Found, LossScaler, NanPolicy, ScalerConfig, ScalerState, StepOutcome,
};

type R<T = ()> = candle_core::Result<T>;

/// Two f32 parameters with non-trivial values, fresh each call (same values every time).
fn params() -> R<Vec<Var>> {
    let dev = Device::Cpu;
    let w = Var::from_tensor(
        &Tensor::arange(0f32, 12.0, &dev)?
            .affine(0.37, -1.9)?
            .reshape((3, 4))?,
    )?;
    let b = Var::new(&[0.25f32, -0.5, 0.125, 1.0], &dev)?;
    Ok(vec![w, b])
}

/// A small loss: `sum((x @ w + b)^2) * k`, with `x` chosen by the caller; `k` keeps the
/// gradients in a range where a 2^16 scale neither overflows nor underflows f32.
fn loss(vars: &[Var], x: &Tensor) -> R<Tensor> {
    let y = x
        .matmul(vars[0].as_tensor())?
        .broadcast_add(vars[1].as_tensor())?;
    y.sqr()?.sum_all()?.affine(0.01, 0.0)
}

fn input(step: usize) -> R<Tensor> {
    let s = step as f32;
    Tensor::new(
        &[[1.0f32, -0.5 + s, 0.75], [0.1 * s, 2.0, -1.25]],
        &Device::Cpu,
    )
}

/// The loss of step `step` plus `sum(b * [0, bad, 0, 0])`: the gradient of `b[1]`, flat
/// position 12 + 1 over `[w, b]`, becomes inf or NaN; every other gradient stays finite.
fn poisoned_loss(vars: &[Var], step: usize, bad: f32) -> R<Tensor> {
    let mask = Tensor::new(&[0.0f32, bad, 0.0, 0.0], &Device::Cpu)?;
    loss(vars, &input(step)?)? + (vars[1].as_tensor() * mask)?.sum_all()?
}

fn bits(vars: &[Var]) -> R<Vec<Vec<u32>>> {
    vars.iter()
        .map(|v| {
            Ok(v.as_tensor()
                .flatten_all()?
                .to_vec1::<f32>()?
                .into_iter()
                .map(f32::to_bits)
                .collect())
        })
        .collect()
}

fn adamw(vars: &[Var]) -> R<AdamW> {
    // Weight decay on: a step with zero gradients would still move every weight.
    AdamW::new(
        vars.to_vec(),
        ParamsAdamW {
            lr: 0.01,
            weight_decay: 0.1,
            ..ParamsAdamW::default()
        },
    )
}

/// A skipped step (inf, then NaN) leaves every variable and AdamW's state bit-identical: after
/// the skip, the wrapped AdamW and a twin that never saw the bad step take the same finite step
/// to the same bits (AdamW's moments and step count feed that step, so they must be equal too).
#[test]
fn a_skipped_step_leaves_vars_and_adamw_state_bit_identical() -> R {
    for (bad, expected) in [
        (f32::INFINITY, StepOutcome::SkippedInf),
        (f32::NAN, StepOutcome::SkippedNan),
    ] {
        let vars = params()?;
        let mut scaler = GradScaler::new(adamw(&vars)?, vars.clone(), ScalerConfig::pytorch())?;
        let twin_vars = params()?;
        let mut twin = GradScaler::new(
            adamw(&twin_vars)?,
            twin_vars.clone(),
            ScalerConfig::pytorch(),
        )?;
        for step in 0..2 {
            assert!(scaler
                .backward_step(&loss(&vars, &input(step)?)?)?
                .is_stepped());
            assert!(twin
                .backward_step(&loss(&twin_vars, &input(step)?)?)?
                .is_stepped());
        }
        let before = bits(&vars)?;
        let adam_before = format!("{:?}", scaler.optimizer());
        assert!(adam_before.contains("step_t: 2"), "{adam_before}");

        let outcome = scaler.backward_step(&poisoned_loss(&vars, 2, bad)?)?;
        assert_eq!(outcome, expected);
        assert_eq!(bits(&vars)?, before, "a skipped step moved a variable");
        assert!(format!("{:?}", scaler.optimizer()).contains("step_t: 2"));
        assert_eq!(scaler.scale(), 32768.0, "one backoff");
        assert_eq!(scaler.scaler().skipped_steps(), 1);
        let report = scaler.last_report().expect("a report");
        assert_eq!((report.len, report.nan + report.inf), (16, 1));
        if expected == StepOutcome::SkippedInf {
            assert_eq!((report.found(), report.first_inf), (Found::Inf, Some(13)));
        } else {
            assert_eq!((report.found(), report.first_nan), (Found::Nan, Some(13)));
        }

        // The next finite step: same bits as the twin that never saw the bad batch. The twin's
        // scale is still 2^16, the wrapped one's 2^15: both are powers of two, so the unscaled
        // gradients are the same and so must be the step.
        assert!(scaler
            .backward_step(&loss(&vars, &input(2)?)?)?
            .is_stepped());
        assert!(twin
            .backward_step(&loss(&twin_vars, &input(2)?)?)?
            .is_stepped());
        assert_eq!(bits(&vars)?, bits(&twin_vars)?);
    }
    Ok(())
}

/// The gradients the inner optimizer gets are those of the unscaled loss, bit for bit, and the
/// step is AdamW's own step on them.
#[test]
fn a_finite_step_is_the_inner_step_on_the_unscaled_gradients() -> R {
    let vars = params()?;
    let mut scaler = GradScaler::new(adamw(&vars)?, vars.clone(), ScalerConfig::pytorch())?;
    let plain_vars = params()?;
    let mut plain = adamw(&plain_vars)?;
    for step in 0..4 {
        let x = input(step)?;
        let l = loss(&vars, &x)?;
        let mut grads = scaler.scale_loss(&l)?.backward()?;
        let report = scaler.unscale(&mut grads)?;
        assert_eq!(report.found(), Found::Finite);
        assert_eq!(report.len, 16);

        let plain_grads = loss(&plain_vars, &x)?.backward()?;
        for (v, p) in vars.iter().zip(&plain_vars) {
            let g: Vec<u32> = grads
                .get(v)
                .expect("grad")
                .flatten_all()?
                .to_vec1::<f32>()?
                .into_iter()
                .map(f32::to_bits)
                .collect();
            let e: Vec<u32> = plain_grads
                .get(p)
                .expect("grad")
                .flatten_all()?
                .to_vec1::<f32>()?
                .into_iter()
                .map(f32::to_bits)
                .collect();
            assert_eq!(
                g, e,
                "step {step}: unscaled gradient differs from the unscaled loss's"
            );
        }
        assert_eq!(scaler.step_unscaled(&grads, report)?, StepOutcome::Stepped);
        plain.step(&plain_grads)?;
        assert_eq!(bits(&vars)?, bits(&plain_vars)?, "step {step}");
    }
    Ok(())
}

/// Injected infs and NaNs at chosen steps: the scale, growth tracker and skip count follow
/// halfscale-core's `LossScaler` fed the same verdicts, under PyTorch's rule with a short
/// interval and under DeepSpeed's (hysteresis, f64 scale, later growth).
#[test]
fn the_scale_trajectory_is_the_loss_scalers() -> R {
    let configs = [
        ScalerConfig {
            growth_interval: 3,
            ..ScalerConfig::pytorch()
        },
        ScalerConfig {
            growth_interval: 3,
            init_scale: 1024.0,
            ..ScalerConfig::deepspeed()
        },
    ];
    let bad: [Option<f32>; 14] = [
        None,
        None,
        None,
        Some(f32::INFINITY),
        None,
        Some(f32::NAN),
        Some(f32::NEG_INFINITY),
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    ];
    for config in configs {
        let vars = params()?;
        let mut scaler = GradScaler::new(adamw(&vars)?, vars.clone(), config)?;
        let mut reference = LossScaler::new(config).expect("valid");
        let mut scales = vec![scaler.scale()];
        for (step, poison) in bad.iter().enumerate() {
            let l = match poison {
                Some(b) => poisoned_loss(&vars, step, *b)?,
                None => loss(&vars, &input(step)?)?,
            };
            let outcome = scaler.backward_step(&l)?;
            let found = match poison {
                None => Found::Finite,
                Some(b) if b.is_nan() => Found::Nan,
                Some(_) => Found::Inf,
            };
            assert_eq!(outcome, StepOutcome::from_found(found), "step {step}");
            reference.update(found).expect("update");
            assert_eq!(
                scaler.scale().to_bits(),
                reference.scale().to_bits(),
                "step {step}"
            );
            assert_eq!(scaler.scaler().growth_tracker(), reference.growth_tracker());
            assert_eq!(scaler.scaler().skipped_steps(), reference.skipped_steps());
            scales.push(scaler.scale());
        }
        // The trajectory did grow and back off (the test would be vacuous otherwise).
        assert!(scales.windows(2).any(|w| w[1] > w[0]), "{scales:?}");
        assert!(scales.windows(2).any(|w| w[1] < w[0]), "{scales:?}");
    }
    Ok(())
}

/// Under `NanPolicy::Error` a NaN is an error naming its position, and nothing changes.
#[test]
fn a_nan_under_the_error_policy_is_an_error_and_changes_nothing() -> R {
    let vars = params()?;
    let config = ScalerConfig {
        nan_policy: NanPolicy::Error,
        ..ScalerConfig::pytorch()
    };
    let mut scaler = GradScaler::new(adamw(&vars)?, vars.clone(), config)?;
    let before = bits(&vars)?;
    let err = scaler
        .backward_step(&poisoned_loss(&vars, 0, f32::NAN)?)
        .expect_err("NaN must be an error");
    assert!(err.to_string().contains("NaN"), "{err}");
    assert_eq!(bits(&vars)?, before);
    assert_eq!(scaler.scale(), 65536.0);
    assert_eq!(scaler.scaler().iteration(), 0);
    Ok(())
}

/// Built through `Optimizer::new` and driven through the trait's `backward_step`, the wrapper
/// still scales (the gradients it steps on are the unscaled ones: same bits as plain AdamW).
#[test]
fn the_optimizer_trait_path_scales_and_unscales() -> R {
    let vars = params()?;
    let mut scaler = <GradScaler<AdamW> as Optimizer>::new(
        vars.clone(),
        GradScalerConfig {
            optimizer: ParamsAdamW {
                lr: 0.01,
                weight_decay: 0.1,
                ..ParamsAdamW::default()
            },
            scaler: ScalerConfig {
                growth_interval: 1,
                ..ScalerConfig::pytorch()
            },
        },
    )?;
    let plain_vars = params()?;
    let mut plain = adamw(&plain_vars)?;
    for step in 0..3 {
        Optimizer::backward_step(&mut scaler, &loss(&vars, &input(step)?)?)?;
        plain.backward_step(&loss(&plain_vars, &input(step)?)?)?;
        assert_eq!(bits(&vars)?, bits(&plain_vars)?);
    }
    assert_eq!(scaler.scale(), 65536.0 * 8.0, "grew once per step");
    assert_eq!(scaler.learning_rate(), 0.01);
    // `step` on the gradients of a scaled loss, by hand.
    let grads = scaler
        .scale_loss(&poisoned_loss(&vars, 3, f32::INFINITY)?)?
        .backward()?;
    scaler.step(&grads)?;
    assert_eq!(scaler.last_outcome(), Some(StepOutcome::SkippedInf));
    Ok(())
}

/// An invalid configuration is a typed error, not a panic.
#[test]
fn an_invalid_config_is_an_error() -> R {
    let vars = params()?;
    let config = ScalerConfig {
        backoff_factor: 1.5,
        ..ScalerConfig::pytorch()
    };
    let err = GradScaler::new(adamw(&vars)?, vars, config).expect_err("backoff 1.5");
    assert!(
        err.to_string()
            .contains("invalid loss-scaler configuration"),
        "{err}"
    );
    Ok(())
}

/// `state_dict` serialises under PyTorch's keys, and a `json.dumps(scaler.state_dict())` from
/// PyTorch loads into it.
#[test]
fn the_state_dict_has_pytorchs_keys() -> R {
    let vars = params()?;
    let mut scaler = GradScaler::pytorch(adamw(&vars)?, vars.clone());
    scaler.backward_step(&loss(&vars, &input(0)?)?)?;
    let state = scaler.state_dict().expect("enabled");
    let json = serde_json::to_value(state).expect("serialise");
    let obj = json.as_object().expect("an object");
    for key in [
        "scale",
        "growth_factor",
        "backoff_factor",
        "growth_interval",
        "_growth_tracker",
    ] {
        assert!(obj.contains_key(key), "missing {key} in {json}");
    }
    assert_eq!(obj["scale"], 65536.0);
    assert_eq!(obj["_growth_tracker"], 1);

    // torch.amp.GradScaler(init_scale=1024., growth_interval=100) after 7 clean steps:
    let dump = r#"{"scale": 1024.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 100, "_growth_tracker": 7}"#;
    let loaded: ScalerState = serde_json::from_str(dump).expect("PyTorch's dump parses");
    scaler.load_state_dict(&loaded)?;
    assert_eq!(scaler.scale(), 1024.0);
    assert_eq!(scaler.scaler().growth_tracker(), 7);
    assert_eq!(scaler.scaler().config().growth_interval, 100);
    // A state that does not fit changes nothing.
    let bad = ScalerState {
        growth_tracker: 500,
        ..loaded
    };
    assert!(scaler.load_state_dict(&bad).is_err());
    assert_eq!(scaler.scaler().growth_tracker(), 7);
    Ok(())
}

/// Disabled: the loss is not scaled, nothing is checked, every step steps.
#[test]
fn a_disabled_scaler_always_steps() -> R {
    let vars = params()?;
    let mut scaler = GradScaler::new(adamw(&vars)?, vars.clone(), ScalerConfig::disabled())?;
    let l = loss(&vars, &input(0)?)?;
    assert_eq!(
        scaler.scale_loss(&l)?.to_scalar::<f32>()?.to_bits(),
        l.to_scalar::<f32>()?.to_bits()
    );
    let before = bits(&vars)?;
    assert_eq!(
        scaler.backward_step(&poisoned_loss(&vars, 0, f32::INFINITY)?)?,
        StepOutcome::Stepped
    );
    assert_ne!(bits(&vars)?, before);
    assert!(scaler.state_dict().is_none());
    Ok(())
}

/// The scaled loss is `f32(loss) * f32(scale)`, also for an f16 loss (which would overflow at
/// 2^16 if scaled in f16).
#[test]
fn an_f16_loss_is_scaled_in_f32() -> R {
    let vars = params()?;
    let scaler = GradScaler::pytorch(adamw(&vars)?, vars);
    let l = Tensor::new(3.5f32, &Device::Cpu)?.to_dtype(DType::F16)?;
    let s = scaler.scale_loss(&l)?;
    assert_eq!(s.dtype(), DType::F32);
    assert_eq!(s.to_scalar::<f32>()?, 3.5 * 65536.0);
    Ok(())
}

/// The verification kit's ready property (`halfscale_core::kit::scaler::check_scale_update`):
/// 256 PyTorch-rule configurations and event sequences, each step run through a whole
/// `GradScaler::backward_step` (scale the loss, backward, unscale and check, step or skip,
/// update) from the state the property hands over, compared bit for bit with `LossScaler`.
#[test]
fn the_scale_update_passes_the_kits_property() {
    use halfscale_core::kit::scaler::check_scale_update;
    use halfscale_core::scaler::Found;
    let result = check_scale_update(|args| {
        let config = ScalerConfig {
            growth_factor: args.growth_factor,
            backoff_factor: args.backoff_factor,
            growth_interval: args.growth_interval,
            ..ScalerConfig::pytorch()
        };
        let state = ScalerState {
            scale: f64::from(args.scale),
            growth_factor: args.growth_factor,
            backoff_factor: args.backoff_factor,
            growth_interval: args.growth_interval,
            growth_tracker: args.growth_tracker,
            hysteresis_left: None,
            skipped_steps: 0,
            iteration: 0,
        };
        let scaler = LossScaler::from_state(config, &state).expect("the kit's state loads");
        let w = Var::new(&[1.0f32, 2.0], &Device::Cpu).expect("var");
        let sgd = candle_nn::SGD::new(vec![w.clone()], 0.1).expect("sgd");
        let mut gs = GradScaler::with_scaler(sgd, vec![w.clone()], scaler);
        // d/dw = 2^-126 per element: finite at every f32 scale, so only the event decides.
        let tiny = f32::MIN_POSITIVE;
        let bad = match args.found {
            Found::Finite => 0.0,
            Found::Inf => f32::INFINITY,
            Found::Nan => f32::NAN,
        };
        let c = Tensor::new(&[tiny, tiny], &Device::Cpu).expect("tensor");
        let m = Tensor::new(&[0.0f32, bad], &Device::Cpu).expect("tensor");
        let loss = ((w.as_tensor() * c).expect("mul").sum_all().expect("sum")
            + (w.as_tensor() * m).expect("mul").sum_all().expect("sum"))
        .expect("add");
        gs.backward_step(&loss)
            .expect("a PyTorch-rule step cannot fail");
        (gs.scaler().scale_f32(), gs.scaler().growth_tracker())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// At a scale that collapsed to 0 (PyTorch's scale can, after 166 backoffs from 2^16), an inf
/// in the graph still reaches the check as `0 * inf = NaN` and the step is skipped, as in
/// PyTorch (found by the kit's property: `affine(0, 0)` would drop the backward graph).
#[test]
fn at_scale_zero_an_inf_still_skips_the_step() -> R {
    let vars = params()?;
    let mut scaler = GradScaler::new(adamw(&vars)?, vars.clone(), ScalerConfig::pytorch())?;
    let state = ScalerState {
        scale: 0.0,
        ..scaler.state_dict().expect("enabled")
    };
    scaler.load_state_dict(&state)?;
    let before = bits(&vars)?;
    let outcome = scaler.backward_step(&poisoned_loss(&vars, 0, f32::INFINITY)?)?;
    assert!(!outcome.is_stepped(), "{outcome}");
    assert_eq!(bits(&vars)?, before);
    assert_eq!(scaler.scale(), 0.0);
    Ok(())
}

/// No variable has a gradient: PyTorch's "No inf checks were recorded for this optimizer."
#[test]
fn no_gradient_at_all_is_an_error() -> R {
    let vars = params()?;
    let mut scaler = GradScaler::new(adamw(&vars)?, vars.clone(), ScalerConfig::pytorch())?;
    let other = Var::new(&[1.0f32], &Device::Cpu)?;
    let err = scaler
        .backward_step(&other.as_tensor().sum_all()?)
        .expect_err("no gradient for the optimizer's variables");
    assert!(err.to_string().contains("no inf checks"), "{err}");
    assert_eq!(scaler.scaler().iteration(), 0);
    Ok(())
}
