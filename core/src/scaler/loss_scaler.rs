//! The scale and its update counters: what `GradScaler` keeps in `_scale` and `_growth_tracker`,
//! plus the extras of its peers. No per-optimizer state (that is [`GradScaler`](super::GradScaler)).

use super::config::{ConfigError, ScalerConfig};
use super::error::{ScalerError, StateError};
use super::state::ScalerState;
use super::unscale::{self, Found, NonFiniteReport};
use super::update::{max_tracker, ScaleChange};

/// A dynamic loss scale under a validated [`ScalerConfig`].
///
/// Use it directly when the gradient checks happen elsewhere (a GPU, another process, a replayed
/// log): one [`update`](Self::update) per iteration with what the check found. For the
/// per-optimizer unscale/step/update protocol use [`GradScaler`](super::GradScaler).
#[derive(Clone, Debug, PartialEq)]
pub struct LossScaler {
    pub(crate) config: ScalerConfig,
    /// The floor and ceiling, rounded to the precision.
    pub(crate) floor: Option<f64>,
    pub(crate) ceiling: Option<f64>,
    /// The scale; under `ScalePrecision::F32` always a value an f32 holds exactly.
    pub(crate) scale: f64,
    pub(crate) growth_tracker: u32,
    pub(crate) hysteresis_left: u32,
    pub(crate) skipped_steps: u64,
    pub(crate) iteration: u64,
}

impl LossScaler {
    /// A scaler at the configuration's initial scale (rounded to its precision, as PyTorch's
    /// `torch.full((), init_scale, dtype=torch.float32)` does).
    pub fn new(config: ScalerConfig) -> Result<Self, ConfigError> {
        let b = config.bounds()?;
        Ok(Self {
            config,
            floor: b.floor,
            ceiling: b.ceiling,
            scale: b.init,
            growth_tracker: 0,
            hysteresis_left: config.hysteresis,
            skipped_steps: 0,
            iteration: 0,
        })
    }

    /// A scaler that continues from a saved state (see [`load_state`](Self::load_state)).
    pub fn from_state(config: ScalerConfig, state: &ScalerState) -> Result<Self, ScalerError> {
        let mut s = Self::new(config)?;
        s.load_state(state)?;
        Ok(s)
    }

    /// The configuration in force (after a [`load_state`](Self::load_state), with the loaded
    /// factors and interval).
    pub fn config(&self) -> &ScalerConfig {
        &self.config
    }

    /// Whether scaling is enabled.
    pub fn is_enabled(&self) -> bool {
        self.config.enabled
    }

    /// The scale, exactly as the framework holds it (PyTorch's `get_scale()`: the f32 value as
    /// an f64; DeepSpeed's `cur_scale`). 1.0 when disabled.
    pub fn scale(&self) -> f64 {
        if self.config.enabled {
            self.scale
        } else {
            1.0
        }
    }

    /// The scale as an f32, the factor actually applied to an f32 loss (nearest rounding; exact
    /// under `ScalePrecision::F32`).
    pub fn scale_f32(&self) -> f32 {
        self.scale() as f32
    }

    /// `f32(1 / f64(scale))`, the factor the gradients are unscaled by (1.0 when disabled).
    pub fn inv_scale(&self) -> f32 {
        if self.config.enabled {
            unscale::inv_scale(self.scale)
        } else {
            1.0
        }
    }

    /// `loss * scale` in f32, PyTorch's `GradScaler.scale(loss)` for a float32 loss; the
    /// identity when disabled.
    pub fn scale_loss(&self, loss: f32) -> f32 {
        if self.config.enabled {
            unscale::scale_loss(loss, self.scale)
        } else {
            loss
        }
    }

    /// Unscales `grads` by [`inv_scale`](Self::inv_scale) and checks them (see
    /// [`unscale_and_check`](super::unscale_and_check)). Disabled: the gradients are left alone
    /// and nothing is checked, as PyTorch's `unscale_` returns at once.
    pub fn unscale(&self, grads: &mut [f32]) -> NonFiniteReport {
        if self.config.enabled {
            unscale::unscale_and_check(grads, unscale::inv_scale(self.scale))
        } else {
            NonFiniteReport::default()
        }
    }

    /// The growth tracker after the last update. PyTorch timing: `_growth_tracker`, clean updates
    /// since the last overflow or growth, in `0..growth_interval`. DeepSpeed timing: the
    /// `stable_interval` (`cur_iter - last_overflow_iter - 1`) the next update will test, kept in
    /// `0..=growth_interval`: 0 right after an overflow, then counting clean updates, wrapping
    /// from `growth_interval` to 1 at a growth (DeepSpeed counts the growing update in the next
    /// window); a clean update that finds it at `growth_interval` grows the scale.
    pub fn growth_tracker(&self) -> u32 {
        self.growth_tracker
    }

    /// Overflows still tolerated before a backoff (DeepSpeed `cur_hysteresis`).
    pub fn hysteresis_left(&self) -> u32 {
        self.hysteresis_left
    }

    /// Updates whose check found a non-finite gradient (iterations whose steps were skipped).
    pub fn skipped_steps(&self) -> u64 {
        self.skipped_steps
    }

    /// Updates performed.
    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    /// One update with what this iteration's check found: PyTorch's `_amp_update_scale_` plus
    /// the configured policies. An error (a NaN under `NanPolicy::Error`, an overflow at the
    /// floor under `FloorPolicy::Error`) changes nothing. Disabled: `Ok(ScaleChange::Disabled)`.
    ///
    /// ```
    /// use halfscale_core::scaler::{Found, LossScaler, ScaleChange, ScalerConfig};
    /// let mut s = LossScaler::new(ScalerConfig { growth_interval: 2, ..ScalerConfig::pytorch() })?;
    /// assert_eq!(s.update(Found::Finite)?, ScaleChange::Unchanged);
    /// assert_eq!(s.update(Found::Finite)?, ScaleChange::Grew);
    /// assert_eq!(s.scale(), 131072.0);
    /// assert_eq!(s.update(Found::Inf)?, ScaleChange::BackedOff);
    /// assert_eq!((s.scale(), s.growth_tracker(), s.skipped_steps()), (65536.0, 0, 1));
    /// # Ok::<(), halfscale_core::scaler::ScalerError>(())
    /// ```
    pub fn update(&mut self, found: Found) -> Result<ScaleChange, ScalerError> {
        self.apply(found, None, None)
    }

    /// [`update`](Self::update) from a report, so a NaN error names the first NaN's index.
    pub fn update_from_report(
        &mut self,
        report: &NonFiniteReport,
    ) -> Result<ScaleChange, ScalerError> {
        self.apply(report.found(), None, report.first_nan)
    }

    /// Sets the scale by hand, PyTorch's `update(new_scale)`: the value is rounded to the
    /// precision (`self._scale.fill_(new_scale)`), the tracker is kept. Refused when not finite,
    /// not > 0 or outside the bounds. A no-op when disabled.
    pub fn set_scale(&mut self, new_scale: f64) -> Result<(), ScalerError> {
        if !self.config.enabled {
            return Ok(());
        }
        let s = self.config.precision.round(new_scale);
        if !(s.is_finite() && s > 0.0)
            || self.floor.is_some_and(|lo| s < lo)
            || self.ceiling.is_some_and(|hi| s > hi)
        {
            return Err(ScalerError::InvalidScale(new_scale));
        }
        self.scale = s;
        Ok(())
    }

    /// The state to save, PyTorch's `state_dict()`; `None` when disabled (PyTorch returns `{}`).
    pub fn state(&self) -> Option<ScalerState> {
        if !self.config.enabled {
            return None;
        }
        Some(ScalerState {
            scale: self.scale,
            growth_factor: self.config.growth_factor,
            backoff_factor: self.config.backoff_factor,
            growth_interval: self.config.growth_interval,
            growth_tracker: self.growth_tracker,
            hysteresis_left: Some(self.hysteresis_left),
            skipped_steps: self.skipped_steps,
            iteration: self.iteration,
        })
    }

    /// Continues from a saved state, PyTorch's `load_state_dict`: the scale (rounded to the
    /// precision, as `fill_` does), the tracker, and the saved `growth_factor`,
    /// `backoff_factor` and `growth_interval`, which replace the configured ones. Everything is
    /// checked before anything changes; a no-op when disabled (as in PyTorch).
    pub fn load_state(&mut self, state: &ScalerState) -> Result<(), ScalerError> {
        if !self.config.enabled {
            return Ok(());
        }
        let config = ScalerConfig {
            growth_factor: state.growth_factor,
            backoff_factor: state.backoff_factor,
            growth_interval: state.growth_interval,
            ..self.config
        };
        let b = config.bounds()?;
        let scale = config.precision.round(state.scale);
        if !(scale.is_finite() && scale >= 0.0) || scale.is_sign_negative() {
            return Err(StateError::Scale(state.scale).into());
        }
        if b.floor.is_some_and(|lo| scale < lo) || b.ceiling.is_some_and(|hi| scale > hi) {
            return Err(StateError::ScaleOutOfBounds {
                scale,
                min_scale: b.floor,
                max_scale: b.ceiling,
            }
            .into());
        }
        let max = max_tracker(config.growth_timing, config.growth_interval);
        if state.growth_tracker > max {
            return Err(StateError::GrowthTracker {
                tracker: state.growth_tracker,
                max,
            }
            .into());
        }
        let left = state.hysteresis_left.unwrap_or(config.hysteresis);
        if left == 0 || left > config.hysteresis {
            return Err(StateError::HysteresisLeft {
                left,
                hysteresis: config.hysteresis,
            }
            .into());
        }
        *self = Self {
            config,
            floor: b.floor,
            ceiling: b.ceiling,
            scale,
            growth_tracker: state.growth_tracker,
            hysteresis_left: left,
            skipped_steps: state.skipped_steps,
            iteration: state.iteration,
        };
        Ok(())
    }

    /// `ScalerConfig::pytorch()`'s scaler (infallible).
    pub fn pytorch() -> Self {
        Self::trusted(ScalerConfig::pytorch(), None)
    }

    /// `ScalerConfig::recommended()`'s scaler (infallible).
    pub fn recommended() -> Self {
        Self::trusted(ScalerConfig::recommended(), Some(1.0))
    }

    /// `ScalerConfig::deepspeed()`'s scaler (infallible).
    pub fn deepspeed() -> Self {
        Self::trusted(ScalerConfig::deepspeed(), Some(1.0))
    }

    /// A scaler for one of the built-in configurations, whose numbers are exact in f32 and valid.
    fn trusted(config: ScalerConfig, floor: Option<f64>) -> Self {
        Self {
            config,
            floor,
            ceiling: None,
            scale: config.init_scale,
            growth_tracker: 0,
            hysteresis_left: config.hysteresis,
            skipped_steps: 0,
            iteration: 0,
        }
    }
}
