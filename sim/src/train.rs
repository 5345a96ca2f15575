//! The training loop of the seed, over any [`Backend`]:
//!
//! ```text
//! for epoch in range(epochs):
//!     for batch_idx, (data, target) in enumerate(train_loader):   # batch 64, reshuffled
//!         with autocast(): output = model(data); loss = F.nll_loss(output, target)
//!         scaler.scale(loss).backward()
//!         scaler.step(optimizer)      # unscale, skip on inf/NaN, else Adam
//!         scaler.update()
//!         if batch_idx % 100 == 0: print('Train Epoch: ...')
//! test()
//! ```
//!
//! A run's state is one value, [`TrainState`]; a [`Trainer`] advances it a step at a time
//! ([`Trainer::step`], [`Trainer::run_epoch`]) and can take up a state serialised mid-run, giving
//! exactly the steps the uninterrupted run takes. [`train`] is the whole run from the seed's
//! initial weights.
//!
//! It knows nothing of devices: the backend does the tensor work, the core's `LossScaler` holds
//! the scale, an optional [`CrossCheck`] runs the f32 reference beside checked steps, and an
//! [`Observer`] receives the seed's lines, progress and per-step records. A backend that runs
//! whole steps itself (queued steps, see [`crate::backend`]) gets every step that is not
//! cross-checked; the loop reads their outcomes back only to print a line, before a checked step
//! and at an epoch's end, replaying each into the host's scaler.

use crate::adam::AdamConfig;
use crate::backend::{Backend, Batch, QueuedSteps, StepOutcome};
use crate::crosscheck::{Bounds, CrossCheck, Verdict};
use crate::dataset::{Batches, Dataset, Split};
use crate::error::{DeviceError, Result, SimError};
use crate::model::{Layer, Params};
use crate::quantize::QuantStats;
use crate::recipe::Recipe;
use crate::state::{DataCursor, TrainState};
use crate::state_dict::StateDict;
use halfscale_core::scaler::{LossScaler, ScalerConfig};
use std::time::Instant;

/// Mixed into the seed for the shuffling stream, so the weights and the epoch order come from
/// different ChaCha8 streams.
pub const SHUFFLE_SEED_XOR: u64 = 0x5348_5546_464c_4531; // "SHUFFLE1"

/// The loop's settings; the defaults are the seed's.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub seed: u64,
    /// Print the progress line every this many batches (100).
    pub log_interval: usize,
    pub adam: AdamConfig,
    /// Cross-check every this many steps (1 = every step); ignored without a [`CrossCheck`].
    pub check_every: usize,
    /// Stop each epoch after this many batches (tests, quick runs).
    pub max_batches: Option<usize>,
    /// Evaluate the test split at the end.
    pub evaluate: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 1,
            batch_size: 64,
            seed: 1,
            log_interval: 100,
            adam: AdamConfig::default(),
            check_every: 1,
            max_batches: None,
            evaluate: true,
        }
    }
}

/// One step placed in its run: where it stands, what it did ([`StepOutcome`], the same value
/// whether the step ran through the four calls or queued) and, on cross-checked steps, the
/// verdict. Written to the metrics file as one JSON object (see the `Serialize` impl).
#[derive(Clone, Debug, PartialEq)]
pub struct StepRecord {
    /// Global step number from 0.
    pub step: u64,
    pub epoch: usize,
    pub batch: usize,
    /// What the step did.
    pub outcome: StepOutcome,
    /// Present on cross-checked steps.
    pub check: Option<Verdict>,
    /// The FP8 recipes' GEMM operands this step: format, amax, scale and what the cast did
    /// (empty, and not written, for the other recipes).
    pub tensors: Vec<TensorRecord>,
}

/// One quantized GEMM operand in a step (see [`crate::recipe::TensorScaling`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TensorRecord {
    /// The site's name (`"fc1.input"`).
    pub tensor: String,
    /// `"e4m3"` or `"e5m2"`.
    pub format: &'static str,
    /// The tensor's amax this step.
    pub amax: f32,
    /// The per-tensor scale it was cast with (1 for MX, whose scales are per block).
    pub scale: f32,
    #[serde(flatten)]
    pub stats: QuantStats,
}

impl TensorRecord {
    /// The records of the recipe's quantized tensors after a step.
    pub fn of(recipe: &Recipe) -> Vec<TensorRecord> {
        let per_tensor = recipe.kind() == crate::recipe::RecipeKind::Fp8;
        recipe
            .tensors()
            .iter()
            .map(|t| TensorRecord {
                tensor: t.site.name(),
                format: t.element.name(),
                amax: t.amax,
                scale: if per_tensor { t.scale_used } else { 1.0 },
                stats: t.stats,
            })
            .collect()
    }
}

/// A quantized tensor's casts summed over a run.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct TensorLoss {
    pub tensor: String,
    pub format: &'static str,
    #[serde(flatten)]
    pub stats: QuantStats,
}

/// The metrics line: `step`, `epoch`, `batch`, `loss`, `scale` (as the f64 it is exactly),
/// `skipped`, `found` (`"finite"`, `"inf"`, `"nan"`), `nan`, `inf`, `first_non_finite` (the
/// layer, when there is one) and `check` (checked steps), in that order. The outcome's
/// `next_scale` and `growth_tracker` are the next line's `scale` and are not repeated.
impl serde::Serialize for StepRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let o = &self.outcome;
        let first_non_finite = o.first_non_finite();
        let fields = 9
            + usize::from(first_non_finite.is_some())
            + usize::from(self.check.is_some())
            + usize::from(!self.tensors.is_empty());
        let mut m = s.serialize_struct("StepRecord", fields)?;
        m.serialize_field("step", &self.step)?;
        m.serialize_field("epoch", &self.epoch)?;
        m.serialize_field("batch", &self.batch)?;
        m.serialize_field("loss", &o.loss)?;
        m.serialize_field("scale", &f64::from(o.scale))?;
        m.serialize_field("skipped", &o.skipped)?;
        m.serialize_field("found", o.found())?;
        m.serialize_field("nan", &o.report.nan)?;
        m.serialize_field("inf", &o.report.inf)?;
        match first_non_finite {
            Some(layer) => m.serialize_field("first_non_finite", &layer)?,
            None => m.skip_field("first_non_finite")?,
        }
        match &self.check {
            Some(check) => m.serialize_field("check", check)?,
            None => m.skip_field("check")?,
        }
        if self.tensors.is_empty() {
            m.skip_field("tensors")?;
        } else {
            m.serialize_field("tensors", &self.tensors)?;
        }
        m.end()
    }
}

/// Receives what the loop reports. All methods default to doing nothing.
pub trait Observer {
    /// A line of the seed's output (progress or test line), without newline.
    fn line(&mut self, _line: &str) {}
    /// A batch finished (for a progress bar).
    fn progress(&mut self, _epoch: usize, _batch: usize, _batches: usize) {}
    /// A step finished.
    fn step(&mut self, _record: &StepRecord) -> Result<()> {
        Ok(())
    }
}

/// An observer that ignores everything.
pub struct Silent;
impl Observer for Silent {}

/// The test-set evaluation.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct TestResult {
    /// Summed loss divided by the number of examples.
    pub average_loss: f64,
    pub correct: usize,
    pub total: usize,
}

impl TestResult {
    /// Accuracy in percent.
    pub fn accuracy(&self) -> f64 {
        100.0 * self.correct as f64 / self.total.max(1) as f64
    }

    /// `Test set: Average loss: 0.0456, Accuracy: 9861/10000 (98.61%)`.
    pub fn line(&self) -> String {
        format!(
            "Test set: Average loss: {:.4}, Accuracy: {}/{} ({:.2}%)",
            self.average_loss,
            self.correct,
            self.total,
            self.accuracy()
        )
    }
}

/// The worst cross-check divergence of a run.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Worst {
    pub step: u64,
    pub loss_rel: f64,
    pub logits_rel: f64,
    pub grad_rel: f64,
    pub layer: Layer,
}

/// What a run did.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub backend: String,
    /// Seconds in the training loop (cross-check included when on).
    pub train_seconds: f64,
    /// Seconds of the whole run, evaluation included.
    pub wall_seconds: f64,
    pub images: usize,
    pub steps: u64,
    pub skipped: u64,
    pub final_scale: f64,
    pub test: Option<TestResult>,
    /// Underflowed gradient elements by layer, summed over checked steps.
    pub underflow_by_layer: Vec<(Layer, u64)>,
    /// Underflowed elements of `dL/dlogits`, summed over checked steps.
    pub logit_grad_underflow: u64,
    pub checked_steps: u64,
    pub worst: Option<Worst>,
    pub bounds: Option<Bounds>,
    /// Checked steps over a bound.
    pub divergent_steps: u64,
    /// Checked steps whose skip decision was wrong.
    pub wrong_skips: u64,
    /// The FP8 recipes' quantized tensors, their casts summed over the run (empty otherwise).
    pub tensors: Vec<TensorLoss>,
    /// The master weights at the end.
    pub params: Params,
}

impl Summary {
    /// Training throughput.
    pub fn images_per_second(&self) -> f64 {
        self.images as f64 / self.train_seconds.max(1e-9)
    }
}

/// The seed's progress line: `Train Epoch: {epoch} [{batch_idx * len(data)}/{len(dataset)}
/// ({100. * batch_idx / len(train_loader):.0f}%)]\tLoss: {loss.item():.6f}`. Rust's `{:.0}` and
/// `{:.6}` round the exact binary value half to even, as Python's `format` does.
pub fn progress_line(
    epoch: usize,
    batch_idx: usize,
    batch_len: usize,
    dataset_len: usize,
    batches: usize,
    loss: f32,
) -> String {
    let pct = 100.0 * batch_idx as f64 / batches as f64;
    format!(
        "Train Epoch: {epoch} [{}/{dataset_len} ({pct:.0}%)]\tLoss: {:.6}",
        batch_idx * batch_len,
        f64::from(loss)
    )
}

/// Evaluates `split` in batches of `batch_size` (forward only, under the backend's recipe).
pub fn evaluate(backend: &mut dyn Backend, split: &Split, batch_size: usize) -> Result<TestResult> {
    let (mut loss_sum, mut correct) = (0.0f64, 0usize);
    let mut start = 0;
    while start < split.len() {
        let end = (start + batch_size).min(split.len());
        let (images, labels) = split.slice(start, end);
        let s = backend.evaluate(Batch { images, labels })?;
        loss_sum += s.loss_sum;
        correct += s.correct;
        start = end;
    }
    Ok(TestResult {
        average_loss: loss_sum / split.len().max(1) as f64,
        correct,
        total: split.len(),
    })
}

/// Where a step stands in the run.
#[derive(Clone, Copy)]
struct StepAt {
    /// Global step number from 0.
    step: u64,
    epoch: usize,
    batch: usize,
    /// Examples in the batch.
    len: usize,
}

/// One finished step, however it ran, as the loop accounts for it.
struct DoneStep {
    at: StepAt,
    /// The quantized tensors' records (FP8 recipes).
    tensors: Vec<TensorRecord>,
    outcome: StepOutcome,
    /// The cross-check's verdict.
    check: Option<Verdict>,
}

/// The loop's running account: the summary so far and where lines and records go.
struct Ledger<'a> {
    summary: Summary,
    observer: &'a mut dyn Observer,
    log_interval: usize,
    dataset_len: usize,
    per_epoch: usize,
}

impl Ledger<'_> {
    /// Adds a finished step to the summary, prints the seed's line when due and hands the
    /// step's record to the observer.
    fn account(&mut self, done: DoneStep) -> Result<()> {
        let at = done.at;
        let summary = &mut self.summary;
        let outcome = done.outcome;
        summary.steps += 1;
        summary.skipped += u64::from(outcome.skipped);
        summary.images += at.len;
        for t in &done.tensors {
            match summary.tensors.iter_mut().find(|s| s.tensor == t.tensor) {
                Some(s) => s.stats.merge(&t.stats),
                None => summary.tensors.push(TensorLoss {
                    tensor: t.tensor.clone(),
                    format: t.format,
                    stats: t.stats,
                }),
            }
        }
        if let Some(r) = &done.check {
            summary.checked_steps += 1;
            summary.divergent_steps += u64::from(!r.within_bounds);
            summary.wrong_skips += u64::from(!r.skip_ok);
            for (acc, l) in summary.underflow_by_layer.iter_mut().zip(&r.layers) {
                acc.1 += l.census.underflowed();
            }
            summary.logit_grad_underflow += r.logit_grad_census.underflowed();
            if let Some(l) = r.worst_layer() {
                if summary.worst.is_none_or(|w| r.max_grad_rel > w.grad_rel) {
                    summary.worst = Some(Worst {
                        step: at.step,
                        loss_rel: r.loss_rel,
                        logits_rel: r.logits_rel,
                        grad_rel: r.max_grad_rel,
                        layer: l.layer,
                    });
                }
            }
        }
        if at.batch.is_multiple_of(self.log_interval) {
            self.observer.line(&progress_line(
                at.epoch,
                at.batch,
                at.len,
                self.dataset_len,
                self.per_epoch,
                outcome.loss,
            ));
        }
        self.observer.step(&StepRecord {
            step: at.step,
            epoch: at.epoch,
            batch: at.batch,
            outcome,
            check: done.check,
            tensors: done.tensors,
        })
    }
}

/// The queued-step extension of a backend that accepted the run's queued steps.
fn queued(backend: &mut dyn Backend) -> Result<&mut dyn QueuedSteps> {
    if backend.queued_steps().is_none() {
        return Err(DeviceError::NoQueuedSteps {
            backend: backend.describe(),
        }
        .into());
    }
    backend.queued_steps().ok_or_else(|| {
        DeviceError::NoQueuedSteps {
            backend: String::new(),
        }
        .into()
    })
}

/// Queued steps in flight: the backend runs them whole, the loop accounts for them when it
/// drains (before a line is printed, a step it runs itself, the end of an epoch and a sync).
struct Queue {
    pending: Vec<StepAt>,
    /// The backend holds the host scaler's current scale and tracker.
    scale_loaded: bool,
}

impl Queue {
    /// Reads the outcomes of the pending steps, replays each into the host's scaler (which must
    /// reach the backend's scale bit for bit) and accounts for them in order.
    fn drain(
        &mut self,
        backend: &mut dyn Backend,
        scaler: &mut LossScaler,
        ledger: &mut Ledger<'_>,
    ) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let outcomes = queued(backend)?.drain()?;
        if outcomes.len() != self.pending.len() {
            return Err(DeviceError::OutcomeCount {
                queued: self.pending.len(),
                returned: outcomes.len(),
            }
            .into());
        }
        for (at, o) in self.pending.drain(..).zip(outcomes) {
            let step = at.step;
            let disagree = |what: &'static str, backend_value: String, host_value: String| {
                SimError::from(DeviceError::Disagrees {
                    step,
                    what,
                    backend_value,
                    host_value,
                })
            };
            let scale = scaler.scale_f32();
            if o.scale.to_bits() != scale.to_bits() {
                return Err(disagree(
                    "loss scale",
                    o.scale.to_string(),
                    scale.to_string(),
                ));
            }
            let skipped = o.report.found_inf();
            if o.skipped != skipped {
                return Err(disagree(
                    "skip decision",
                    o.skipped.to_string(),
                    skipped.to_string(),
                ));
            }
            scaler
                .update_from_report(&o.report)
                .map_err(|source| SimError::Scaler { step, source })?;
            let next = scaler.scale_f32();
            if o.next_scale.to_bits() != next.to_bits() {
                return Err(disagree(
                    "updated scale",
                    o.next_scale.to_string(),
                    next.to_string(),
                ));
            }
            let tracker = scaler.growth_tracker();
            if o.growth_tracker != tracker {
                return Err(disagree(
                    "growth tracker",
                    o.growth_tracker.to_string(),
                    tracker.to_string(),
                ));
            }
            ledger.account(DoneStep {
                at,
                tensors: Vec::new(),
                outcome: o,
                check: None,
            })?;
        }
        Ok(())
    }
}

/// Runs a [`TrainState`] forward, one step at a time, on a backend: the seed's loop body (see
/// the module doc) with the scaler, the optional cross-check and the observer.
///
/// The trainer takes a state's tensors into the backend on its first step (or on
/// [`Trainer::load`]) and keeps them there while it steps: [`Trainer::step`] advances the
/// state's step, cursor and scaler state, the backend its weights and moments.
/// [`Trainer::sync`] brings the tensors (and the outcomes of queued steps) back, after which the
/// state is complete: serialised, read back and handed to a new trainer on a new backend, it
/// continues with exactly the steps the uninterrupted run takes.
///
/// Steps that are not cross-checked run as queued steps when the backend offers them (see
/// [`crate::backend::QueuedSteps`]): no host round trip until a line is printed. The result is
/// the same either way; the host's scaler replays every step and must agree bit for bit.
pub struct Trainer<'a> {
    backend: &'a mut dyn Backend,
    check: Option<&'a mut CrossCheck>,
    data: &'a Dataset,
    config: TrainConfig,
    scaler_config: ScalerConfig,
    scaler: LossScaler,
    /// The epoch order: the current epoch's permutation, drawn at `cursor.rng_word_pos`.
    batches: Batches,
    /// The epoch whose order `batches` holds.
    order_epoch: Option<usize>,
    queue: Option<Queue>,
    /// The step of the state whose tensors the backend holds.
    bound: Option<u64>,
    ledger: Ledger<'a>,
    images: Vec<f32>,
    labels: Vec<u8>,
}

impl<'a> Trainer<'a> {
    /// A trainer of `backend` on `data` under `config` and the scaler policy `scaler`; offers the
    /// backend queued steps (uploading the training split when it accepts).
    pub fn new(
        backend: &'a mut dyn Backend,
        check: Option<&'a mut CrossCheck>,
        data: &'a Dataset,
        config: &TrainConfig,
        scaler: ScalerConfig,
        observer: &'a mut dyn Observer,
    ) -> Result<Self> {
        if config.batch_size == 0 || config.log_interval == 0 || config.check_every == 0 {
            return Err(SimError::Config(
                "batch size, log interval and check interval must be at least 1".into(),
            ));
        }
        if data.train.is_empty() {
            return Err(SimError::Config("the training split is empty".into()));
        }
        let host_scaler = LossScaler::new(scaler).map_err(SimError::ScalerConfig)?;
        let checks_every_step = check.is_some() && config.check_every == 1;
        // Queued steps follow PyTorch's skip rule, so only with the scaler on.
        let queue = if host_scaler.is_enabled()
            && !checks_every_step
            && match backend.queued_steps() {
                Some(q) => q.start(&data.train, &scaler)?,
                None => false,
            } {
            Some(Queue {
                pending: Vec::new(),
                scale_loaded: false,
            })
        } else {
            None
        };
        let batches = Batches::new(data.train.len(), config.batch_size, 0);
        let per_epoch = batches.batches_per_epoch();
        let ledger = Ledger {
            summary: Summary {
                backend: backend.describe(),
                train_seconds: 0.0,
                wall_seconds: 0.0,
                images: 0,
                steps: 0,
                skipped: 0,
                final_scale: host_scaler.scale(),
                test: None,
                underflow_by_layer: Layer::ALL.iter().map(|&l| (l, 0)).collect(),
                logit_grad_underflow: 0,
                checked_steps: 0,
                worst: None,
                bounds: check.as_ref().map(|c| *c.bounds()),
                divergent_steps: 0,
                wrong_skips: 0,
                tensors: Vec::new(),
                params: Params::zeros(),
            },
            observer,
            log_interval: config.log_interval,
            dataset_len: data.train.len(),
            per_epoch,
        };
        Ok(Self {
            backend,
            check,
            data,
            config: config.clone(),
            scaler_config: scaler,
            scaler: host_scaler,
            batches,
            order_epoch: None,
            queue,
            bound: None,
            ledger,
            images: Vec::new(),
            labels: Vec::new(),
        })
    }

    /// Hands `state` to the backend (weights, Adam state) and to the host's scaler; the next
    /// [`Self::step`] continues it. Outcomes of queued steps of a previous state are accounted
    /// for first.
    pub fn load(&mut self, state: &TrainState) -> Result<()> {
        self.drain()?;
        let mut scaler = LossScaler::new(self.scaler_config).map_err(SimError::ScalerConfig)?;
        match (&state.scaler, scaler.is_enabled()) {
            (Some(s), true) => scaler.load_state(s).map_err(|source| SimError::Scaler {
                step: state.step,
                source,
            })?,
            (None, false) => {}
            (saved, _) => {
                return Err(SimError::Config(format!(
                    "state at step {}: loss scaling is {} in the state but {} in the run",
                    state.step,
                    if saved.is_some() { "on" } else { "off" },
                    if scaler.is_enabled() { "on" } else { "off" },
                )))
            }
        }
        // The recipe's state must be the backend's recipe's (its tensors, when a recipe has
        // some, travel with the backend's state).
        self.backend.load_recipe_state(&state.recipe)?;
        self.backend
            .import_state(&StateDict::from_training(&state.params, &state.adam)?)?;
        self.scaler = scaler;
        self.order_epoch = None;
        if let Some(q) = self.queue.as_mut() {
            q.scale_loaded = false;
        }
        self.bound = Some(state.step);
        Ok(())
    }

    /// The steps of an epoch: `max_batches` or all of them.
    fn batches_per_epoch(&self) -> usize {
        let per_epoch = self.ledger.per_epoch;
        self.config
            .max_batches
            .map_or(per_epoch, |m| m.min(per_epoch))
    }

    /// Whether `state` has run all the configured epochs.
    pub fn is_done(&self, state: &TrainState) -> bool {
        state.cursor.epoch >= self.config.epochs || self.batches_per_epoch() == 0
    }

    /// Accounts for the queued steps still pending.
    fn drain(&mut self) -> Result<()> {
        if let Some(q) = self.queue.as_mut() {
            q.drain(self.backend, &mut self.scaler, &mut self.ledger)?;
        }
        Ok(())
    }

    /// Takes one step of `state` (the batch its cursor points at), unless the run is done;
    /// returns whether it took one. Loads the state first when the backend holds another one
    /// (see [`Self::load`]).
    pub fn step(&mut self, state: &mut TrainState) -> Result<bool> {
        if self.is_done(state) {
            return Ok(false);
        }
        if self.bound != Some(state.step) {
            self.load(state)?;
        }
        let cursor = state.cursor;
        if self.order_epoch != Some(cursor.epoch) {
            self.batches = Batches::at(
                self.data.train.len(),
                self.config.batch_size,
                cursor.shuffle_seed,
                cursor.rng_word_pos,
            );
            let order = self.batches.next_order();
            if self.queue.is_some() {
                queued(self.backend)?.set_order(order)?;
            }
            self.order_epoch = Some(cursor.epoch);
        }
        let batch_size = self.config.batch_size;
        let start = cursor.batch * batch_size;
        let end = (start + batch_size).min(self.data.train.len());
        let at = StepAt {
            step: state.step,
            epoch: cursor.epoch,
            batch: cursor.batch,
            len: end - start,
        };
        let shown = self.batches_per_epoch();
        let checked =
            self.check.is_some() && at.step.is_multiple_of(self.config.check_every as u64);
        if let Some(q) = self.queue.as_mut().filter(|_| !checked) {
            if !q.scale_loaded {
                queued(self.backend)?
                    .load_scale(self.scaler.scale_f32(), self.scaler.growth_tracker())?;
                q.scale_loaded = true;
            }
            queued(self.backend)?.queue_step(start, at.len, &self.config.adam)?;
            q.pending.push(at);
            // The loss is read back only when its line is printed.
            if at.batch.is_multiple_of(self.config.log_interval) {
                q.drain(self.backend, &mut self.scaler, &mut self.ledger)?;
            }
        } else {
            if let Some(q) = self.queue.as_mut() {
                // The host's scaler must be current before a step it drives.
                q.drain(self.backend, &mut self.scaler, &mut self.ledger)?;
                q.scale_loaded = false;
            }
            self.direct_step(at, checked)?;
        }
        self.ledger.observer.progress(at.epoch, at.batch, shown);
        state.step += 1;
        state.cursor.batch += 1;
        if state.cursor.batch >= shown {
            self.drain()?;
            state.cursor = DataCursor {
                epoch: cursor.epoch + 1,
                batch: 0,
                shuffle_seed: cursor.shuffle_seed,
                rng_word_pos: self.batches.word_pos(),
            };
        }
        if self.queue.as_ref().is_none_or(|q| q.pending.is_empty()) {
            state.scaler = self.scaler.state();
        }
        self.bound = Some(state.step);
        Ok(true)
    }

    /// One step through the four calls (and the cross-check when `checked`).
    fn direct_step(&mut self, at: StepAt, checked: bool) -> Result<()> {
        let order = self.batches.order();
        let start = at.batch * self.config.batch_size;
        let indices = &order[start..start + at.len];
        self.data
            .train
            .gather(indices, &mut self.images, &mut self.labels);
        let batch = Batch {
            images: &self.images,
            labels: &self.labels,
        };
        let scaler = &mut self.scaler;
        let scale = scaler.scale_f32();
        let loss = self.backend.forward_backward(batch, scale)?;
        let comparison = match self.check.as_deref_mut() {
            Some(c) if checked => {
                Some(c.compare(&*self.backend, batch, loss, scale, scaler.inv_scale())?)
            }
            _ => None,
        };
        let report = self.backend.unscale_and_check(scaler.inv_scale())?;
        // GradScaler.step: skip on any inf/NaN; a disabled scaler always steps.
        let skipped = scaler.is_enabled() && report.found_inf();
        if !skipped {
            self.backend.adam_step(&self.config.adam)?;
        }
        scaler
            .update_from_report(&report)
            .map_err(|source| SimError::Scaler {
                step: at.step,
                source,
            })?;
        let verdict = comparison.map(|c| c.judge(skipped, scaler.is_enabled()));
        let tensors = TensorRecord::of(self.backend.recipe());
        self.ledger.account(DoneStep {
            at,
            tensors,
            outcome: StepOutcome {
                loss,
                scale,
                report,
                skipped,
                next_scale: scaler.scale_f32(),
                growth_tracker: scaler.growth_tracker(),
            },
            check: verdict,
        })
    }

    /// Steps `state` to the end of its current epoch (or the end of the run).
    pub fn run_epoch(&mut self, state: &mut TrainState) -> Result<()> {
        let epoch = state.cursor.epoch;
        while state.cursor.epoch == epoch && self.step(state)? {}
        Ok(())
    }

    /// Steps `state` through the remaining epochs.
    pub fn run(&mut self, state: &mut TrainState) -> Result<()> {
        while self.step(state)? {}
        Ok(())
    }

    /// Completes `state`: accounts for queued steps (their scaler updates included) and copies
    /// the weights and the Adam state back from the backend (drained first: a backend with
    /// queued steps refuses to export past undrained outcomes). After it the state holds everything
    /// the run needs to continue. A state this trainer does not hold (never stepped here, or
    /// replaced since) is complete already and left as it is.
    pub fn sync(&mut self, state: &mut TrainState) -> Result<()> {
        if self.bound != Some(state.step) {
            return Ok(());
        }
        self.drain()?;
        state.scaler = self.scaler.state();
        state.recipe = self.backend.recipe().state();
        let tensors = self.backend.export_state()?;
        tensors.copy_params_into(&mut state.params)?;
        tensors.copy_adam_into(&mut state.adam)?;
        Ok(())
    }

    /// Evaluates the test split with the backend's weights and prints the seed's test line.
    pub fn evaluate(&mut self) -> Result<TestResult> {
        self.drain()?;
        let test = evaluate(self.backend, &self.data.test, self.config.batch_size)?;
        self.ledger.observer.line(&test.line());
        Ok(test)
    }

    /// The host's loss scaler (current after [`Self::sync`]).
    pub fn scaler(&self) -> &LossScaler {
        &self.scaler
    }

    /// What the steps this trainer took added up to (its `test`, timings and `params` are left
    /// to the caller).
    pub fn summary(&self) -> &Summary {
        &self.ledger.summary
    }
}

/// Trains `backend` on `data` from the seed's initial weights through all of `config`'s epochs
/// (see [`Trainer`]), evaluates the test split when configured, and leaves `scaler` as the run
/// left it.
pub fn train(
    backend: &mut dyn Backend,
    scaler: &mut LossScaler,
    check: Option<&mut CrossCheck>,
    data: &Dataset,
    config: &TrainConfig,
    observer: &mut dyn Observer,
) -> Result<Summary> {
    let recipe = backend.recipe().state();
    let state = TrainState::init(config, scaler, recipe);
    let (summary, _) = train_from(
        state,
        backend,
        scaler,
        check,
        data,
        config,
        observer,
        &mut |_, _| Ok(true),
    )?;
    Ok(summary)
}

/// Called after every step with the trainer and the state, e.g. to write a checkpoint (call
/// [`Trainer::sync`] first: between steps the state's tensors live in the backend); returns
/// whether to go on (false stops the run there, without the test evaluation).
pub type AfterStep<'f> = dyn FnMut(&mut Trainer<'_>, &mut TrainState) -> Result<bool> + 'f;

/// [`train`] from any state (a resumed checkpoint, weights from a file), calling `after_step`
/// after every step; returns the summary and the final, synchronised state. `scaler` gives the
/// policy (the state carries the scaler's state) and is left as the run left it.
#[allow(clippy::too_many_arguments)]
pub fn train_from(
    mut state: TrainState,
    backend: &mut dyn Backend,
    scaler: &mut LossScaler,
    check: Option<&mut CrossCheck>,
    data: &Dataset,
    config: &TrainConfig,
    observer: &mut dyn Observer,
    after_step: &mut AfterStep<'_>,
) -> Result<(Summary, TrainState)> {
    let wall = Instant::now();
    let mut trainer = Trainer::new(backend, check, data, config, *scaler.config(), observer)?;
    trainer.load(&state)?;
    let train_start = Instant::now();
    let mut finished = true;
    while trainer.step(&mut state)? {
        if !after_step(&mut trainer, &mut state)? {
            finished = trainer.is_done(&state);
            break;
        }
    }
    trainer.sync(&mut state)?;
    let train_seconds = train_start.elapsed().as_secs_f64();
    let test = if finished && config.evaluate && !data.test.is_empty() {
        Some(trainer.evaluate()?)
    } else {
        None
    };
    *scaler = trainer.scaler().clone();
    let mut summary = trainer.summary().clone();
    summary.train_seconds = train_seconds;
    summary.final_scale = scaler.scale();
    summary.test = test;
    summary.params = state.params.clone();
    summary.wall_seconds = wall.elapsed().as_secs_f64();
    Ok((summary, state))
}
