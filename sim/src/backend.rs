//! The backend interface: everything a training step does to tensors, so the loop in
//! [`crate::train`] and the cross-check in [`crate::crosscheck`] work unchanged on any device.
//!
//! A backend owns the model's master weights (f32), their gradients and the Adam state, wherever
//! it keeps them; the host sees them only through `load_*`/`read_*` copies. One training step is:
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
//! The CPU backends ([`crate::cpu::CpuBackend`] in fp32 and emulated mixed precision) implement
//! it here; a CUDA backend implements the same trait.

use crate::adam::{AdamConfig, AdamState};
use crate::error::Result;
use crate::mixed::Precision;
use crate::model::Params;
use halfscale_core::scaler::NonFiniteReport;

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

/// The operations of a training step on some device.
pub trait Backend {
    /// Human-readable description ("cpu, mixed fp16, 2 threads").
    fn describe(&self) -> String;
    /// The arithmetic this backend emulates or runs.
    fn precision(&self) -> Precision;
    /// Replaces the master weights.
    fn load_params(&mut self, params: &Params);
    /// Copies the master weights out.
    fn read_params(&self, out: &mut Params);
    /// Replaces the optimizer state.
    fn load_optimizer(&mut self, state: &AdamState);
    /// Copies the optimizer state out.
    fn read_optimizer(&self, out: &mut AdamState);
    /// Forward and backward of one batch with the loss multiplied by `loss_scale` before the
    /// backward pass (as `scaler.scale(loss).backward()`). Returns the unscaled mean loss.
    fn forward_backward(&mut self, batch: Batch<'_>, loss_scale: f32) -> Result<f32>;
    /// The logits of the last forward pass (`[n][10]`, upcast to f32), into `out`.
    fn read_logits(&self, out: &mut Vec<f32>);
    /// The gradients of the last backward pass (scaled, or unscaled after
    /// [`Self::unscale_and_check`]), into `out`.
    fn read_grads(&self, out: &mut Params);
    /// Multiplies the gradients by `inv_scale` in f32 and counts NaN/inf found before the
    /// multiply (PyTorch's `_amp_foreach_non_finite_check_and_unscale_`; untouched when
    /// `inv_scale == 1`).
    fn unscale_and_check(&mut self, inv_scale: f32) -> NonFiniteReport;
    /// One `torch.optim.Adam` step of the master weights with the current gradients.
    fn adam_step(&mut self, config: &AdamConfig);
    /// Forward only (as under `torch.no_grad()`, same precision as training): summed loss and
    /// correct count.
    fn evaluate(&mut self, batch: Batch<'_>) -> Result<EvalStats>;
}
