//! `torch.amp.GradScaler`'s protocol: scale the loss, unscale each optimizer's gradients, step
//! each optimizer (or skip it), update once per iteration.

use super::config::{ConfigError, ScalerConfig};
use super::error::ScalerError;
use super::loss_scaler::LossScaler;
use super::optimizer::{OptStage, OptimizerId, OptimizerStates, StepOutcome};
use super::state::ScalerState;
use super::unscale::{unscale_and_check, NonFiniteReport};
use super::update::ScaleChange;

/// A [`LossScaler`] plus the per-optimizer state machine, for up to `N` optimizers.
#[derive(Clone, Debug)]
pub struct GradScaler<const N: usize> {
    scaler: LossScaler,
    optimizers: OptimizerStates<N>,
}

impl<const N: usize> GradScaler<N> {
    /// A scaler for `config`.
    pub fn new(config: ScalerConfig) -> Result<Self, ConfigError> {
        Ok(Self::from_scaler(LossScaler::new(config)?))
    }

    /// Wraps an existing scale state (e.g. one loaded with [`LossScaler::from_state`]).
    pub const fn from_scaler(scaler: LossScaler) -> Self {
        Self {
            scaler,
            optimizers: OptimizerStates::new(),
        }
    }

    /// The scale and its counters.
    pub fn scaler(&self) -> &LossScaler {
        &self.scaler
    }

    /// The per-optimizer states of the current iteration.
    pub fn optimizers(&self) -> &OptimizerStates<N> {
        &self.optimizers
    }

    /// The current scale ([`LossScaler::scale`]).
    pub fn scale(&self) -> f64 {
        self.scaler.scale()
    }

    /// `loss * scale` in f32 ([`LossScaler::scale_loss`]).
    pub fn scale_loss(&self, loss: f32) -> f32 {
        self.scaler.scale_loss(loss)
    }

    /// The stage of an optimizer in this iteration.
    pub fn stage(&self, id: OptimizerId) -> OptStage {
        self.optimizers.stage(id)
    }

    /// PyTorch's `unscale_(optimizer)` for one gradient buffer: refuses a second unscale or one
    /// after `step` (before touching the gradients), then unscales and checks them in one pass
    /// and records the check. Disabled: returns an empty report and records nothing.
    pub fn unscale_(
        &mut self,
        id: OptimizerId,
        grads: &mut [f32],
    ) -> Result<NonFiniteReport, ScalerError> {
        self.unscale_tensors(id, core::iter::once(grads))
    }

    /// [`unscale_`](Self::unscale_) for an optimizer with several gradient tensors; the report's
    /// positions are flat over the tensors in the order given. An optimizer given no tensor at all
    /// records no check, so its `step` fails as PyTorch's does ("No inf checks were recorded for
    /// this optimizer").
    pub fn unscale_tensors<'a, I>(
        &mut self,
        id: OptimizerId,
        tensors: I,
    ) -> Result<NonFiniteReport, ScalerError>
    where
        I: IntoIterator<Item = &'a mut [f32]>,
    {
        if !self.scaler.is_enabled() {
            return Ok(NonFiniteReport::default());
        }
        let inv = self.scaler.inv_scale();
        let recorded = self.optimizers.unscale_with(id, || {
            tensors
                .into_iter()
                .map(|t| unscale_and_check(t, inv))
                .reduce(NonFiniteReport::merge)
        })?;
        Ok(recorded.unwrap_or_default())
    }

    /// PyTorch's `step(optimizer)` once the gradients are unscaled: the outcome says whether to
    /// run the optimizer (and its LR scheduler). Refuses a second step and a step with no inf
    /// check (PyTorch would unscale here; use [`unscale_and_step`](Self::unscale_and_step));
    /// under `NanPolicy::Error` a NaN is an error naming the first NaN. Disabled: always
    /// `Stepped`.
    pub fn step(&mut self, id: OptimizerId) -> Result<StepOutcome, ScalerError> {
        if !self.scaler.is_enabled() {
            return Ok(StepOutcome::Stepped);
        }
        self.optimizers.step(id, self.scaler.config().nan_policy)
    }

    /// [`step`](Self::step) that runs `optimizer_step` only when the step really happens, and
    /// returns its value (PyTorch returns `optimizer.step()`'s value, or `None` when skipped).
    pub fn step_with<R>(
        &mut self,
        id: OptimizerId,
        optimizer_step: impl FnOnce() -> R,
    ) -> Result<(StepOutcome, Option<R>), ScalerError> {
        let outcome = self.step(id)?;
        let value = outcome.is_stepped().then(optimizer_step);
        Ok((outcome, value))
    }

    /// PyTorch's `step(optimizer)` in full: unscales `grads` first if this optimizer was not
    /// unscaled yet this iteration (if it was, `grads` is not touched again), then steps.
    pub fn unscale_and_step(
        &mut self,
        id: OptimizerId,
        grads: &mut [f32],
    ) -> Result<StepOutcome, ScalerError> {
        if self.scaler.is_enabled() && self.optimizers.stage(id) == OptStage::Ready {
            self.unscale_(id, grads)?;
        }
        self.step(id)
    }

    /// PyTorch's `update()`: combines every optimizer's check (any NaN makes it a NaN, else any
    /// inf an inf), updates the scale once, and readies every optimizer for the next iteration.
    /// Refused with no check recorded; on any error nothing changes (after a NaN error under
    /// `NanPolicy::Error`, [`discard_iteration`](Self::discard_iteration) drops the iteration).
    pub fn update(&mut self) -> Result<ScaleChange, ScalerError> {
        if !self.scaler.is_enabled() {
            return Ok(ScaleChange::Disabled);
        }
        let found = self.optimizers.found().ok_or(ScalerError::NoInfChecks)?;
        let (optimizer, index) = match self.optimizers.first_nan() {
            Some((id, index)) => (Some(id), index),
            None => (None, None),
        };
        let change = self.scaler.apply(found, optimizer, index)?;
        self.optimizers.reset();
        Ok(change)
    }

    /// PyTorch's `update(new_scale)`: sets the scale by hand and readies every optimizer.
    pub fn update_to(&mut self, new_scale: f64) -> Result<(), ScalerError> {
        self.scaler.set_scale(new_scale)?;
        self.optimizers.reset();
        Ok(())
    }

    /// Drops the current iteration without updating the scale: every optimizer is `Ready` again.
    pub fn discard_iteration(&mut self) {
        self.optimizers.reset();
    }

    /// [`LossScaler::state`]. Save after `update()`, as PyTorch advises.
    pub fn state(&self) -> Option<ScalerState> {
        self.scaler.state()
    }

    /// [`LossScaler::load_state`].
    pub fn load_state(&mut self, state: &ScalerState) -> Result<(), ScalerError> {
        self.scaler.load_state(state)
    }
}
