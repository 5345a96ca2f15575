//! The backend interface: everything a training step does to tensors, so the loop in
//! [`crate::train`] and the cross-check in [`crate::crosscheck`] work unchanged on any device.
//!
//! A backend owns the model's master weights (f32), their gradients and the Adam state, wherever
//! it keeps them; the host sees them only as copies of named tensors
//! ([`Backend::export_state`], [`Backend::import_state`]: a [`StateDict`] under PyTorch's
//! `state_dict` names, see [`crate::state_dict`]), so the trait knows no model or optimizer
//! type. One training step is:
//!
//! 1. [`Backend::forward_backward`]: forward on the batch, the loss multiplied by the loss scale,
//!    backward: f32 gradients of the master weights (scaled) left in the backend;
//! 2. [`Backend::unscale_and_check`]: the scaler's `unscale_` over those gradients (multiply by
//!    `1/scale` in f32, count NaN and inf, as `_amp_foreach_non_finite_check_and_unscale_`);
//! 3. [`Backend::adam_step`] unless the check found a non-finite value (then nothing changes:
//!    weights and optimizer state stay bit-identical);
//! 4. the scaler's update: `halfscale_core::scaler::LossScaler::update`, on the host (the scale
//!    is one scalar; a device backend reports its check and receives the new scale).
//!
//! A backend that can keep the training set, the scale and the growth tracker itself may also run
//! whole steps with no host round trip (*queued steps*, PyTorch's rules only), an optional
//! extension: [`Backend::queued_steps`] hands out its [`QueuedSteps`]. The loop offers it the
//! run with [`QueuedSteps::start`], queues steps with [`QueuedSteps::queue_step`], and reads the
//! outcomes back with [`QueuedSteps::drain`] only when it prints a line or needs the host's
//! scaler, and always before it reads the backend's state back; it replays each outcome into its
//! `LossScaler` and fails if the backend's scale or growth tracker disagrees. A backend without
//! the extension (the default) runs every step through the four calls above.
//!
//! Queued steps and the state: a backend with queued steps refuses
//! [`Backend::export_state`] and [`Backend::import_state`] while outcomes are not drained
//! ([`crate::error::DeviceError::Undrained`]) rather than draining them itself: the outcomes
//! belong to the host's scaler, and a state read past them would pair the weights of step
//! `n + k` with the scaler of step `n`. [`crate::train::Trainer::sync`] and
//! [`crate::train::Trainer::load`] drain first.
//!
//! The CPU backends ([`crate::cpu::CpuBackend`] in fp32 and emulated mixed precision) implement
//! it here; a CUDA backend implements the same trait, queued steps included.

use crate::adam::AdamConfig;
use crate::dataset::Split;
use crate::error::Result;
use crate::model::{Layer, Params};
use crate::recipe::{Recipe, RecipeState};
use crate::state_dict::StateDict;
use halfscale_core::scaler::{Found, NonFiniteReport, ScalerConfig};

/// A batch of images (`[n][28*28]`, pixels in `[0, 1]`) and their labels.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    pub images: &'a [f32],
    pub labels: &'a [u8],
}

impl Batch<'_> {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Summed test loss and correct predictions over an evaluation batch.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EvalStats {
    /// `nll_loss(..., reduction='sum')`, accumulated in f64.
    pub loss_sum: f64,
    /// Predictions (first maximum of the output) equal to the label.
    pub correct: usize,
    /// Examples seen.
    pub count: usize,
}

/// What one GradScaler step did, however it ran: through the four calls on the host, or whole
/// on a backend ([`QueuedSteps::drain`] returns these). The loop replays a queued step's
/// outcome into the host's scaler, which must reach the same `next_scale` and `growth_tracker`
/// bit for bit, and places every outcome in the run as a [`crate::train::StepRecord`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepOutcome {
    /// Mean loss of the batch (unscaled).
    pub loss: f32,
    /// The loss scale the backward pass used (1 without scaling).
    pub scale: f32,
    /// What the unscale and check found in the gradients (before unscaling).
    pub report: NonFiniteReport,
    /// The optimizer step was skipped (a non-finite gradient under an enabled scaler).
    pub skipped: bool,
    /// The scale after the scaler's update.
    pub next_scale: f32,
    /// The growth tracker after the scaler's update (clean steps since the last change).
    pub growth_tracker: u32,
}

impl StepOutcome {
    /// `"finite"`, `"inf"` or `"nan"`: what the gradient check found (NaN wins).
    pub fn found(&self) -> &'static str {
        match self.report.found() {
            Found::Finite => "finite",
            Found::Inf => "inf",
            Found::Nan => "nan",
        }
    }

    /// The layer holding the first NaN (else the first inf) of the gradients, when there is one.
    pub fn first_non_finite(&self) -> Option<Layer> {
        self.report
            .first_nan
            .or(self.report.first_inf)
            .and_then(Layer::of_index)
    }
}

/// The operations of a training step on some device.
pub trait Backend {
    /// Human-readable description ("cpu, mixed fp16, 2 threads").
    fn describe(&self) -> String;
    /// The recipe this backend emulates or runs: what it does at each rounding site.
    fn recipe(&self) -> &Recipe;
    /// Copies every tensor the backend keeps across steps out, by name: the master weights,
    /// the optimizer's moments and step (see [`crate::state_dict`]). Refused while queued
    /// steps are not drained (see the module doc).
    fn export_state(&self) -> Result<StateDict>;
    /// The master weights alone, by name: [`Self::export_state`] without the optimizer's
    /// tensors, what the cross-check's reference takes every checked step. The default filters
    /// [`Self::export_state`]; a backend overrides it to skip copying its optimizer state.
    fn export_weights(&self) -> Result<StateDict> {
        let mut state = self.export_state()?;
        state.retain(|name| !name.starts_with(crate::state_dict::OPTIMIZER));
        Ok(state)
    }
    /// Replaces the tensors `state` names and leaves the others as they are (as PyTorch's
    /// `load_state_dict(strict=False)`; the cross-check's reference takes the weights alone).
    /// A name the backend does not hold is a [`crate::SimError::UnknownTensor`], another length
    /// a [`crate::SimError::TensorLength`], another element type a
    /// [`crate::SimError::TensorType`]; all are checked before anything changes. Refused while
    /// queued steps are not drained.
    fn import_state(&mut self, state: &StateDict) -> Result<()>;
    /// Continues the recipe from a saved state (its per-tensor scaling histories). The default
    /// serves backends whose recipes keep no state: it checks that `state` is empty and of
    /// the backend's recipe.
    fn load_recipe_state(&mut self, state: &RecipeState) -> Result<()> {
        self.recipe().clone().load_state(state)
    }
    /// Forward and backward of one batch with the loss multiplied by `loss_scale` before the
    /// backward pass (as `scaler.scale(loss).backward()`). Returns the unscaled mean loss.
    fn forward_backward(&mut self, batch: Batch<'_>, loss_scale: f32) -> Result<f32>;
    /// The logits of the last forward pass (`[n][10]`, upcast to f32), into `out`.
    fn read_logits(&self, out: &mut Vec<f32>) -> Result<()>;
    /// The gradients of the last backward pass (scaled, or unscaled after
    /// [`Self::unscale_and_check`]), into `out` (resized to the model's length).
    fn read_grads(&self, out: &mut Params) -> Result<()>;
    /// Multiplies the gradients by `inv_scale` in f32 and counts NaN/inf found before the
    /// multiply (PyTorch's `_amp_foreach_non_finite_check_and_unscale_`; untouched when
    /// `inv_scale == 1`).
    fn unscale_and_check(&mut self, inv_scale: f32) -> Result<NonFiniteReport>;
    /// One `torch.optim.Adam` step of the master weights with the current gradients.
    fn adam_step(&mut self, config: &AdamConfig) -> Result<()>;
    /// Forward only (as under `torch.no_grad()`, same precision as training): summed loss and
    /// correct count.
    fn evaluate(&mut self, batch: Batch<'_>) -> Result<EvalStats>;

    /// The queued-step extension, when the backend has it. Default: none.
    fn queued_steps(&mut self) -> Option<&mut dyn QueuedSteps> {
        None
    }
}

/// The optional sync-free protocol: whole GradScaler steps the backend runs without the host,
/// read back late (see the module doc). The caller drains before it reads the backend's state.
pub trait QueuedSteps {
    /// Offers the backend to run whole steps without the host under `scaler`: it keeps `train`
    /// (uploaded once) and the scale. Returns whether it accepted; a backend accepts only
    /// policies it reproduces exactly.
    fn start(&mut self, train: &Split, scaler: &ScalerConfig) -> Result<bool>;
    /// Takes the host scaler's scale and growth tracker (before the first queued step, and after
    /// steps the loop ran through the four calls).
    fn load_scale(&mut self, scale: f32, growth_tracker: u32) -> Result<()>;
    /// The example order (indices into the kept training split) of the steps that follow.
    fn set_order(&mut self, order: &[u32]) -> Result<()>;
    /// Queues one whole GradScaler step on examples `order[start..start + n]`: forward, backward
    /// scaled by the kept scale, fused unscale and check, Adam unless something was not finite,
    /// the scale update. Reads nothing back.
    fn queue_step(&mut self, start: usize, n: usize, adam: &AdamConfig) -> Result<()>;
    /// Waits for the queued steps and returns their outcomes, in order, since the last drain.
    fn drain(&mut self) -> Result<Vec<StepOutcome>>;
}
