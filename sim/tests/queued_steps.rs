//! Queued steps: a backend that runs whole GradScaler steps on its own and reports them late must
//! give the run the four calls give, bit for bit, read back only when a line is printed, and be
//! stopped, naming the step, when its scale disagrees with the host's scaler.

mod common;

use common::{data, Collect};
use halfscale_core::scaler::NonFiniteReport;
use halfscale_core::scaler::{inv_scale, pytorch_update_scale, LossScaler, ScalerConfig};
use halfscale_sim::adam::{AdamConfig, AdamState};
use halfscale_sim::backend::{EvalStats, QueuedSteps, StepOutcome};
use halfscale_sim::cpu::CpuBackend;
use halfscale_sim::crosscheck::CrossCheck;
use halfscale_sim::dataset::Split;
use halfscale_sim::error::DeviceError;
use halfscale_sim::model::{Params, PARAM_COUNT};
use halfscale_sim::train::{self, Summary, TrainConfig};
use halfscale_sim::{Backend, Batch, Recipe, SimError, StateDict};

const BATCH: usize = 64;
const EPOCHS: usize = 3;
/// 256 synthetic examples: four batches an epoch.
const STEPS: usize = EPOCHS * 4;

/// The CPU's mixed backend running queued steps itself, as a device backend does: it keeps the
/// training split, the scale and the tracker, and hands the outcomes back only when drained.
struct Queuing {
    inner: CpuBackend,
    train: Option<Split>,
    scaler: ScalerConfig,
    scale: f32,
    tracker: u32,
    order: Vec<u32>,
    outcomes: Vec<StepOutcome>,
    queued: usize,
    drains: usize,
    /// Corrupt the updated scale of this queued step (counted from 0).
    tamper: Option<usize>,
    images: Vec<f32>,
    labels: Vec<u8>,
}

impl Queuing {
    fn new(tamper: Option<usize>) -> Self {
        Self {
            inner: CpuBackend::new(Recipe::mixed_fp16(), BATCH),
            train: None,
            scaler: ScalerConfig::pytorch(),
            scale: f32::NAN,
            tracker: u32::MAX,
            order: Vec::new(),
            outcomes: Vec::new(),
            queued: 0,
            drains: 0,
            tamper,
            images: Vec::new(),
            labels: Vec::new(),
        }
    }
}

impl Queuing {
    /// The extension's contract: no state read or replaced past undrained outcomes.
    fn refuse_undrained(&self) -> halfscale_sim::Result<()> {
        if self.outcomes.is_empty() {
            Ok(())
        } else {
            Err(DeviceError::Undrained {
                backend: self.describe(),
                pending: self.outcomes.len(),
            }
            .into())
        }
    }
}

impl Backend for Queuing {
    fn describe(&self) -> String {
        "queuing test backend".into()
    }
    fn recipe(&self) -> &Recipe {
        self.inner.recipe()
    }
    fn export_state(&self) -> halfscale_sim::Result<StateDict> {
        self.refuse_undrained()?;
        self.inner.export_state()
    }
    fn import_state(&mut self, state: &StateDict) -> halfscale_sim::Result<()> {
        self.refuse_undrained()?;
        self.inner.import_state(state)
    }
    fn forward_backward(
        &mut self,
        batch: Batch<'_>,
        loss_scale: f32,
    ) -> halfscale_sim::Result<f32> {
        self.inner.forward_backward(batch, loss_scale)
    }
    fn read_logits(&self, out: &mut Vec<f32>) -> halfscale_sim::Result<()> {
        self.inner.read_logits(out)
    }
    fn read_grads(&self, out: &mut Params) -> halfscale_sim::Result<()> {
        self.inner.read_grads(out)
    }
    fn unscale_and_check(&mut self, inv_scale: f32) -> halfscale_sim::Result<NonFiniteReport> {
        self.inner.unscale_and_check(inv_scale)
    }
    fn adam_step(&mut self, config: &AdamConfig) -> halfscale_sim::Result<()> {
        self.inner.adam_step(config)
    }
    fn evaluate(&mut self, batch: Batch<'_>) -> halfscale_sim::Result<EvalStats> {
        self.inner.evaluate(batch)
    }
    fn queued_steps(&mut self) -> Option<&mut dyn QueuedSteps> {
        Some(self)
    }
}

impl QueuedSteps for Queuing {
    fn start(&mut self, train: &Split, scaler: &ScalerConfig) -> halfscale_sim::Result<bool> {
        if !scaler.follows_pytorch_rule() {
            return Ok(false);
        }
        self.train = Some(train.clone());
        self.scaler = *scaler;
        Ok(true)
    }
    fn load_scale(&mut self, scale: f32, growth_tracker: u32) -> halfscale_sim::Result<()> {
        (self.scale, self.tracker) = (scale, growth_tracker);
        Ok(())
    }
    fn set_order(&mut self, order: &[u32]) -> halfscale_sim::Result<()> {
        self.order = order.to_vec();
        Ok(())
    }
    fn queue_step(
        &mut self,
        start: usize,
        n: usize,
        adam: &AdamConfig,
    ) -> halfscale_sim::Result<()> {
        let train = self.train.as_ref().expect("start_queued_steps first");
        train.gather(
            &self.order[start..start + n],
            &mut self.images,
            &mut self.labels,
        );
        let batch = Batch {
            images: &self.images,
            labels: &self.labels,
        };
        let scale = self.scale;
        let loss = self.inner.forward_backward(batch, scale)?;
        let report = self.inner.unscale_and_check(inv_scale(f64::from(scale)))?;
        let skipped = report.found_inf();
        if !skipped {
            self.inner.adam_step(adam)?;
        }
        (self.scale, self.tracker) = pytorch_update_scale(
            scale,
            self.tracker,
            skipped,
            self.scaler.growth_factor,
            self.scaler.backoff_factor,
            self.scaler.growth_interval,
        );
        let mut next_scale = self.scale;
        if self.tamper == Some(self.queued) {
            next_scale *= 4.0;
        }
        self.outcomes.push(StepOutcome {
            loss,
            scale,
            report,
            skipped,
            next_scale,
            growth_tracker: self.tracker,
        });
        self.queued += 1;
        Ok(())
    }
    fn drain(&mut self) -> halfscale_sim::Result<Vec<StepOutcome>> {
        self.drains += 1;
        Ok(std::mem::take(&mut self.outcomes))
    }
}

/// A scaler that overflows at first (2^24 makes fp16's dL/dlogits inf), backs off, and grows
/// every other clean step, so the runs skip, back off and grow.
fn busy_scaler() -> ScalerConfig {
    ScalerConfig {
        init_scale: 16_777_216.0,
        growth_interval: 2,
        ..ScalerConfig::pytorch()
    }
}

struct Run {
    summary: Summary,
    seen: Collect,
    adam: AdamState,
}

fn run(
    backend: &mut dyn Backend,
    scaler: ScalerConfig,
    check_every: Option<usize>,
) -> halfscale_sim::Result<Run> {
    let mut scaler = LossScaler::new(scaler).unwrap();
    let mut check = check_every.map(|_| {
        CrossCheck::new(
            Box::new(CpuBackend::new(Recipe::fp32(), BATCH)),
            &Recipe::mixed_fp16(),
        )
    });
    let mut seen = Collect::default();
    let config = TrainConfig {
        epochs: EPOCHS,
        log_interval: 2,
        check_every: check_every.unwrap_or(1),
        ..TrainConfig::default()
    };
    let summary = train::train(
        backend,
        &mut scaler,
        check.as_mut(),
        &data(),
        &config,
        &mut seen,
    )?;
    let mut adam = AdamState::new(PARAM_COUNT);
    backend.export_state()?.copy_adam_into(&mut adam)?;
    Ok(Run {
        summary,
        seen,
        adam,
    })
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Everything a run leaves, compared bit for bit.
fn assert_same_run(queued: &Run, direct: &Run) {
    let (q, d) = (&queued.summary, &direct.summary);
    assert_eq!(
        (q.steps, q.skipped, q.images, q.final_scale.to_bits()),
        (d.steps, d.skipped, d.images, d.final_scale.to_bits())
    );
    assert_eq!(q.test, d.test);
    assert_eq!(bits(&q.params.data), bits(&d.params.data), "weights");
    assert_eq!(bits(&queued.adam.exp_avg), bits(&direct.adam.exp_avg));
    assert_eq!(bits(&queued.adam.exp_avg_sq), bits(&direct.adam.exp_avg_sq));
    assert_eq!(queued.adam.step, direct.adam.step);
    assert_eq!(queued.seen.lines, direct.seen.lines);
    // Debug text, so NaN divergences (an overflowed step's check) compare equal to themselves.
    assert_eq!(queued.seen.records.len(), direct.seen.records.len());
    for (q, d) in queued.seen.records.iter().zip(&direct.seen.records) {
        assert_eq!(format!("{q:?}"), format!("{d:?}"), "step {}", d.step);
    }
}

#[test]
fn queued_steps_give_the_run_the_four_calls_give_and_read_back_only_to_print() {
    let mut queuing = Queuing::new(None);
    let queued = run(&mut queuing, busy_scaler(), None).unwrap();
    let direct = run(
        &mut CpuBackend::new(Recipe::mixed_fp16(), BATCH),
        busy_scaler(),
        None,
    )
    .unwrap();
    assert_same_run(&queued, &direct);
    assert_eq!(queuing.queued, STEPS, "every step ran queued");
    // The run exercised skips, backoffs and growth.
    let records = &queued.seen.records;
    assert!(
        records.iter().any(|r| r.outcome.skipped) && records.iter().any(|r| !r.outcome.skipped)
    );
    let grew = records
        .windows(2)
        .any(|w| w[1].outcome.scale > w[0].outcome.scale);
    let backed_off = records
        .windows(2)
        .any(|w| w[1].outcome.scale < w[0].outcome.scale);
    assert!(
        grew && backed_off,
        "scales: {:?}",
        records.iter().map(|r| r.outcome.scale).collect::<Vec<_>>()
    );
    // Read back at each printed line (batches 0 and 2) and at each epoch's end, no more.
    let lines = EPOCHS * 2;
    assert_eq!(
        queued.seen.lines.len(),
        lines + 1,
        "progress lines and the test line"
    );
    assert_eq!(queuing.drains, lines + EPOCHS);
}

#[test]
fn cross_checked_steps_interleave_with_queued_ones() {
    let mut queuing = Queuing::new(None);
    let queued = run(&mut queuing, busy_scaler(), Some(3)).unwrap();
    let direct = run(
        &mut CpuBackend::new(Recipe::mixed_fp16(), BATCH),
        busy_scaler(),
        Some(3),
    )
    .unwrap();
    assert_same_run(&queued, &direct);
    let checked = queued
        .seen
        .records
        .iter()
        .filter(|r| r.check.is_some())
        .count();
    assert_eq!(checked, STEPS.div_ceil(3));
    assert_eq!(queued.summary.checked_steps, checked as u64);
    assert_eq!(queuing.queued, STEPS - checked);
}

#[test]
fn a_backend_scale_that_disagrees_with_the_host_stops_the_run_naming_the_step() {
    let mut queuing = Queuing::new(Some(2));
    let err = run(&mut queuing, busy_scaler(), None)
        .err()
        .expect("an error");
    let text = err.to_string();
    assert!(matches!(err, SimError::Device(_)), "{text}");
    assert!(
        text.contains("step 2") && text.contains("updated scale"),
        "{text}"
    );
}

#[test]
fn policies_beyond_pytorch_and_checking_every_step_use_the_four_calls() {
    for (scaler, check) in [
        (ScalerConfig::recommended(), None),
        (ScalerConfig::deepspeed(), None),
        (ScalerConfig::disabled(), None),
        (busy_scaler(), Some(1)),
    ] {
        let mut queuing = Queuing::new(None);
        let via_trait = run(&mut queuing, scaler, check).unwrap();
        let direct = run(
            &mut CpuBackend::new(Recipe::mixed_fp16(), BATCH),
            scaler,
            check,
        )
        .unwrap();
        assert_same_run(&via_trait, &direct);
        assert_eq!(queuing.queued, 0, "{scaler:?}, check {check:?}");
    }
}

#[test]
fn a_backend_without_queued_steps_offers_none_and_one_with_them_declines_other_policies() {
    let mut cpu = CpuBackend::new(Recipe::mixed_fp16(), BATCH);
    assert!(cpu.queued_steps().is_none());
    let mut queuing = Queuing::new(None);
    let q = queuing.queued_steps().expect("offered");
    assert!(!q
        .start(&data().train, &ScalerConfig::recommended())
        .unwrap());
    assert!(q.start(&data().train, &ScalerConfig::pytorch()).unwrap());
}

#[test]
fn a_queued_run_split_and_resumed_from_json_takes_the_uninterrupted_steps() {
    use halfscale_sim::state::TrainState;
    use halfscale_sim::train::Trainer;
    let data = data();
    let config = TrainConfig {
        epochs: EPOCHS,
        log_interval: 2,
        evaluate: false,
        ..TrainConfig::default()
    };
    // Splits between drains (step 5 is queued and not yet read back when the run stops).
    let split = |splits: &[u64]| {
        let mut state = TrainState::init(
            &config,
            &LossScaler::new(busy_scaler()).unwrap(),
            Recipe::mixed_fp16().state(),
        );
        let mut seen = Collect::default();
        let mut queued = 0;
        for end in splits.iter().copied().chain([STEPS as u64]) {
            let mut queuing = Queuing::new(None);
            let mut trainer =
                Trainer::new(&mut queuing, None, &data, &config, busy_scaler(), &mut seen).unwrap();
            while state.step < end {
                assert!(trainer.step(&mut state).unwrap());
            }
            trainer.sync(&mut state).unwrap();
            drop(trainer);
            queued += queuing.queued;
            state = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
        }
        (state, seen, queued)
    };
    let (whole, whole_seen, _) = split(&[]);
    let (resumed, resumed_seen, queued) = split(&[3, 5, 9]);
    assert_eq!(queued, STEPS, "every step ran queued");
    assert_eq!(resumed, whole);
    assert_eq!(resumed_seen.lines, whole_seen.lines);
    assert_eq!(
        format!("{:?}", resumed_seen.records),
        format!("{:?}", whole_seen.records)
    );
    let direct = run(
        &mut CpuBackend::new(Recipe::mixed_fp16(), BATCH),
        busy_scaler(),
        None,
    )
    .unwrap();
    assert_eq!(bits(&whole.params.data), bits(&direct.summary.params.data));
}

#[test]
fn the_state_is_not_read_or_replaced_past_undrained_queued_steps() {
    use halfscale_sim::error::DeviceError;
    let data = data();
    let mut queuing = Queuing::new(None);
    let q = queuing.queued_steps().unwrap();
    assert!(q.start(&data.train, &ScalerConfig::pytorch()).unwrap());
    q.load_scale(65536.0, 0).unwrap();
    q.set_order(&(0..data.train.len() as u32).collect::<Vec<_>>())
        .unwrap();
    q.queue_step(0, BATCH, &AdamConfig::default()).unwrap();
    let err = queuing.export_state().unwrap_err();
    assert!(
        matches!(
            err,
            SimError::Device(DeviceError::Undrained { pending: 1, .. })
        ),
        "{err}"
    );
    let state = StateDict::from_params(&Params::init(1)).unwrap();
    assert!(queuing.import_state(&state).is_err());
    assert_eq!(queuing.queued_steps().unwrap().drain().unwrap().len(), 1);
    queuing.export_state().unwrap();
    queuing.import_state(&state).unwrap();
}
