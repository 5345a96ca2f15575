//! `GradScaler<O>`: PyTorch's `torch.amp.GradScaler` around any candle optimizer.
//!
//! One iteration is PyTorch's `scaler.scale(loss).backward(); scaler.step(opt); scaler.update()`:
//! 1. the loss, taken to f32 (autocast computes losses in f32), is multiplied by the f32 scale
//!    (`GradScaler.scale`: `outputs * self._scale`);
//! 2. `backward()` runs on the scaled loss;
//! 3. the gradient of every variable of the optimizer is unscaled in place and checked, one fused
//!    pass per tensor ([`unscale_grad`], halfscale-core's kernel, `inv = f32(1 / f64(scale))`);
//! 4. the inner optimizer steps only if every gradient was finite (`GradScaler._maybe_opt_step`);
//! 5. the scale is updated by halfscale-core's [`LossScaler`] (`_amp_update_scale_`, plus the
//!    policies of the configuration).
//!
//! A skipped step never calls the inner optimizer, so its state (AdamW's moments and step count)
//! and every variable stay bit-identical; the returned [`StepOutcome`] says so, so a caller can
//! gate its LR schedule (PyTorch's "Detected call of `lr_scheduler.step()` before
//! `optimizer.step()`" warning exists because it cannot).

use crate::error::AdapterError;
use crate::unscale::unscale_grad;
use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor, Var};
use candle_nn::Optimizer;
use halfscale_core::scaler::{
    LossScaler, NonFiniteReport, OptimizerId, ScaleChange, ScalerConfig, ScalerError, ScalerState,
    StepOutcome,
};

/// The configuration of a [`GradScaler`] built through [`Optimizer::new`]: the inner optimizer's
/// own configuration and the scaler's.
#[derive(Clone, Debug)]
pub struct GradScalerConfig<C> {
    /// The inner optimizer's configuration (e.g. `candle_nn::ParamsAdamW`).
    pub optimizer: C,
    /// The loss scaler's configuration ([`ScalerConfig::pytorch`] for PyTorch's defaults).
    pub scaler: ScalerConfig,
}

/// A dynamic loss scaler wrapping the candle optimizer `O`.
///
/// It knows the variables the optimizer updates, because, as in PyTorch, only their gradients
/// are unscaled and checked (the `GradStore` also holds every intermediate tensor's gradient).
///
/// ```
/// use candle_core::{DType, Device, Tensor, Var};
/// use candle_nn::{AdamW, Optimizer, ParamsAdamW};
/// use halfscale_candle::GradScaler;
/// use halfscale_core::scaler::{ScalerConfig, StepOutcome};
///
/// let w = Var::new(&[0.25f32, -0.125], &Device::Cpu)?;
/// let adamw = AdamW::new(vec![w.clone()], ParamsAdamW::default())?;
/// let mut scaler = GradScaler::new(adamw, vec![w.clone()], ScalerConfig::pytorch())?;
/// // f16 compute, the loss in f32 (as autocast does).
/// let loss = w.as_tensor().to_dtype(DType::F16)?.sqr()?.to_dtype(DType::F32)?.mean_all()?;
/// assert_eq!(scaler.backward_step(&loss)?, StepOutcome::Stepped);
/// assert_eq!(scaler.scale(), 65536.0);
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Debug)]
pub struct GradScaler<O> {
    optimizer: O,
    vars: Vec<Var>,
    scaler: LossScaler,
    last_report: Option<NonFiniteReport>,
    last_outcome: Option<StepOutcome>,
}

impl<O: Optimizer> GradScaler<O> {
    /// Wraps `optimizer`, built over `vars`, with a scaler under `config`
    /// ([`ScalerConfig::pytorch`] reproduces `torch.amp.GradScaler()`). An invalid configuration
    /// is an error.
    pub fn new(optimizer: O, vars: Vec<Var>, config: ScalerConfig) -> Result<Self> {
        let scaler = LossScaler::new(config).map_err(AdapterError::from)?;
        Ok(Self::with_scaler(optimizer, vars, scaler))
    }

    /// Wraps `optimizer` with PyTorch's default scaler (init 2^16, growth 2 every 2000 clean
    /// steps, backoff 0.5).
    pub fn pytorch(optimizer: O, vars: Vec<Var>) -> Self {
        Self::with_scaler(optimizer, vars, LossScaler::pytorch())
    }

    /// Wraps `optimizer` with an existing scaler (e.g. one restored with
    /// [`LossScaler::from_state`]).
    pub fn with_scaler(optimizer: O, vars: Vec<Var>, scaler: LossScaler) -> Self {
        Self {
            optimizer,
            vars,
            scaler,
            last_report: None,
            last_outcome: None,
        }
    }

    /// The scale the next backward pass uses (PyTorch's `get_scale()`; 1.0 when disabled).
    pub fn scale(&self) -> f64 {
        self.scaler.scale()
    }

    /// The loss scaler (scale, growth tracker, skipped steps, configuration).
    pub fn scaler(&self) -> &LossScaler {
        &self.scaler
    }

    /// The inner optimizer.
    pub fn optimizer(&self) -> &O {
        &self.optimizer
    }

    /// The inner optimizer, mutably (e.g. to change its parameters).
    pub fn optimizer_mut(&mut self) -> &mut O {
        &mut self.optimizer
    }

    /// The variables whose gradients are unscaled and checked.
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// The inner optimizer and the scaler, taken apart.
    pub fn into_parts(self) -> (O, LossScaler) {
        (self.optimizer, self.scaler)
    }

    /// What the last unscale found (counts and first positions of NaN and inf, the positions
    /// flat over the variables' gradients in order).
    pub fn last_report(&self) -> Option<NonFiniteReport> {
        self.last_report
    }

    /// The outcome of the last step.
    pub fn last_outcome(&self) -> Option<StepOutcome> {
        self.last_outcome
    }

    /// `loss * scale`, PyTorch's `scaler.scale(loss)`: the loss is taken to f32 first (an f16 loss
    /// times 2^16 would overflow f16, and autocast computes losses in f32 anyway), then multiplied
    /// by the f32 scale. The identity (in f32) when disabled.
    ///
    /// The scale is a tensor operand, not `affine`'s constant: candle's backward drops an
    /// `affine` whose factor is 0, and PyTorch's scale can collapse to 0, where `0 * inf = NaN`
    /// must still reach the check (as it does in PyTorch) rather than no gradient at all.
    pub fn scale_loss(&self, loss: &Tensor) -> Result<Tensor> {
        let loss = loss.to_dtype(DType::F32)?;
        if !self.scaler.is_enabled() {
            return Ok(loss);
        }
        let scale = Tensor::new(self.scaler.scale_f32(), loss.device())?;
        loss.broadcast_mul(&scale)
    }

    /// Unscales and checks the gradients of the variables in `grads`, in place (PyTorch's
    /// `unscale_(optimizer)`), returning the merged report. A non-contiguous gradient is first
    /// replaced in the store by a contiguous copy. Disabled: nothing is touched or checked.
    pub fn unscale(&self, grads: &mut GradStore) -> Result<NonFiniteReport> {
        for var in &self.vars {
            if let Some(g) = grads.get(var) {
                if !g.is_contiguous() {
                    let g = g.contiguous()?;
                    grads.insert(var, g);
                }
            }
        }
        self.unscale_shared(grads)
    }

    /// [`unscale`](Self::unscale) through a shared store; a non-contiguous gradient is an error.
    /// No variable with a gradient is PyTorch's "No inf checks were recorded for this optimizer."
    fn unscale_shared(&self, grads: &GradStore) -> Result<NonFiniteReport> {
        let mut report = NonFiniteReport::default();
        if !self.scaler.is_enabled() {
            return Ok(report);
        }
        let inv = self.scaler.inv_scale();
        let mut checked = 0;
        for var in &self.vars {
            if let Some(g) = grads.get(var) {
                report = report.merge(unscale_grad(g, inv)?);
                checked += 1;
            }
        }
        if checked == 0 {
            let optimizer = OptimizerId(0);
            return Err(
                AdapterError::from(ScalerError::NoInfChecksForOptimizer { optimizer }).into(),
            );
        }
        Ok(report)
    }

    /// Steps the inner optimizer on already unscaled `grads` unless `report` found a non-finite
    /// value, then updates the scale: PyTorch's `step(optimizer)` + `update()`. Under
    /// `NanPolicy::Error` a NaN is an error and nothing changes (no step, no update).
    pub fn step_unscaled(
        &mut self,
        grads: &GradStore,
        report: NonFiniteReport,
    ) -> Result<StepOutcome> {
        let outcome = if self.scaler.is_enabled() {
            StepOutcome::from_found(report.found())
        } else {
            StepOutcome::Stepped
        };
        if outcome.is_stepped() {
            self.optimizer.step(grads)?;
        }
        self.update(&report)?;
        self.last_report = Some(report);
        self.last_outcome = Some(outcome);
        Ok(outcome)
    }

    fn update(&mut self, report: &NonFiniteReport) -> Result<ScaleChange> {
        Ok(self
            .scaler
            .update_from_report(report)
            .map_err(AdapterError::from)?)
    }

    /// One whole iteration: scale the loss, `backward()`, unscale and check the variables'
    /// gradients in place, step the inner optimizer unless a gradient was inf or NaN, update the
    /// scale. Returns whether the optimizer stepped, so a caller can gate its LR schedule.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<StepOutcome> {
        let mut grads = self.scale_loss(loss)?.backward()?;
        let report = self.unscale(&mut grads)?;
        self.step_unscaled(&grads, report)
    }

    /// The state to save, PyTorch's `state_dict()`: with halfscale-core's `serde` feature it
    /// serialises under PyTorch's keys (`scale`, `growth_factor`, `backoff_factor`,
    /// `growth_interval`, `_growth_tracker`), plus this crate's counters. `None` when disabled
    /// (PyTorch returns `{}`).
    pub fn state_dict(&self) -> Option<ScalerState> {
        self.scaler.state()
    }

    /// Continues from a saved state, PyTorch's `load_state_dict` (the saved factors and interval
    /// replace the configured ones). A state that does not fit is an error and changes nothing.
    pub fn load_state_dict(&mut self, state: &ScalerState) -> Result<()> {
        Ok(self.scaler.load_state(state).map_err(AdapterError::from)?)
    }
}

impl<O: Optimizer> Optimizer for GradScaler<O> {
    type Config = GradScalerConfig<O::Config>;

    fn new(vars: Vec<Var>, config: Self::Config) -> Result<Self> {
        let optimizer = O::new(vars.clone(), config.optimizer)?;
        GradScaler::new(optimizer, vars, config.scaler)
    }

    /// `grads` must come from `backward()` on [`GradScaler::scale_loss`]'s result: they are
    /// unscaled in place, checked, and the inner optimizer steps unless one is inf or NaN. The
    /// outcome is [`GradScaler::last_outcome`].
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let report = self.unscale_shared(grads)?;
        self.step_unscaled(grads, report).map(|_| ())
    }

    fn learning_rate(&self) -> f64 {
        self.optimizer.learning_rate()
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.optimizer.set_learning_rate(lr)
    }

    /// Scales the loss before `backward()` (see [`GradScaler::backward_step`], which also
    /// returns the outcome).
    fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        GradScaler::backward_step(self, loss).map(|_| ())
    }
}
