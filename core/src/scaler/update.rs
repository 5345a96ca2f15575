//! The scale update: PyTorch's `_amp_update_scale_` exactly, and the policies of its peers.
//!
//! PyTorch's kernel (CPU `_amp_update_scale_cpu_kernel`, CUDA `amp_update_scale_cuda_kernel`),
//! with `current_scale` a `float`, `growth_factor`/`backoff_factor` `double`s and the tracker an
//! `int`:
//!
//! ```text
//! if (*found_inf) {
//!   *current_scale = (*current_scale) * backoff_factor;      // float * double -> double -> float
//!   *growth_tracker = 0;
//! } else {
//!   auto successful = (*growth_tracker) + 1;
//!   if (successful == growth_interval) {
//!     auto new_scale = static_cast<float>((*current_scale) * growth_factor);
//!     if (std::isfinite(new_scale)) *current_scale = new_scale;  // never grow to inf
//!     *growth_tracker = 0;
//!   } else {
//!     *growth_tracker = successful;
//!   }
//! }
//! ```
//!
//! The `float * double` product is formed in double and then rounded to float: two roundings,
//! which this module reproduces with [`ScalePrecision::mul`](super::ScalePrecision::mul). With a factor that is not exact in
//! f32 (backoff 0.3) that differs from an f32 multiply `scale * 0.3f32`; with power-of-two
//! factors every variant agrees.

use super::config::{FloorPolicy, GrowthTiming, NanPolicy};
use super::error::ScalerError;
use super::loss_scaler::LossScaler;
use super::optimizer::OptimizerId;
use super::unscale::Found;

/// `_amp_update_scale_` on its own: the next `(scale, growth_tracker)` from the current ones,
/// bit for bit as PyTorch computes it. `found_inf` is PyTorch's flag (any inf or NaN).
///
/// ```
/// use halfscale_core::scaler::pytorch_update_scale;
/// // PyTorch's test_grad_scaling_update_scale: growth 2, backoff 0.25, interval 2.
/// let (s, t) = pytorch_update_scale(4.0, 0, false, 2.0, 0.25, 2);
/// assert_eq!((s, t), (4.0, 1));
/// let (s, t) = pytorch_update_scale(s, t, false, 2.0, 0.25, 2);
/// assert_eq!((s, t), (8.0, 0));
/// let (s, t) = pytorch_update_scale(s, t, true, 2.0, 0.25, 2);
/// assert_eq!((s, t), (2.0, 0));
/// ```
pub fn pytorch_update_scale(
    scale: f32,
    growth_tracker: u32,
    found_inf: bool,
    growth_factor: f64,
    backoff_factor: f64,
    growth_interval: u32,
) -> (f32, u32) {
    if found_inf {
        ((f64::from(scale) * backoff_factor) as f32, 0)
    } else {
        let successful = growth_tracker.wrapping_add(1);
        if successful == growth_interval {
            let new_scale = (f64::from(scale) * growth_factor) as f32;
            (
                if new_scale.is_finite() {
                    new_scale
                } else {
                    scale
                },
                0,
            )
        } else {
            (scale, successful)
        }
    }
}

/// What an update did to the scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScaleChange {
    /// Scaling is disabled: nothing changes.
    Disabled,
    /// A clean update that did not reach a growth point: only the tracker moved.
    Unchanged,
    /// A growth point: the scale was multiplied by `growth_factor`.
    Grew,
    /// A growth point whose candidate was not finite in the scale's precision: the scale is
    /// kept (PyTorch: "Do not grow the scale past fp32 bounds to inf").
    GrowthRefused,
    /// A growth point whose candidate was above `max_scale`: the scale is the ceiling.
    ClampedToCeiling,
    /// An overflow: the scale was multiplied by `backoff_factor`.
    BackedOff,
    /// An overflow whose backoff fell below `min_scale`: the scale is the floor.
    ClampedToFloor,
    /// An overflow tolerated by hysteresis: the step is skipped but the scale is kept.
    Absorbed,
}

impl LossScaler {
    /// Applies one update. `optimizer`/`index` only locate a NaN for the error.
    pub(crate) fn apply(
        &mut self,
        found: Found,
        optimizer: Option<OptimizerId>,
        index: Option<usize>,
    ) -> Result<ScaleChange, ScalerError> {
        if !self.config.enabled {
            return Ok(ScaleChange::Disabled);
        }
        let overflow = match found {
            Found::Finite => false,
            Found::Inf => true,
            Found::Nan => match self.config.nan_policy {
                NanPolicy::Overflow => true,
                NanPolicy::Error => return Err(ScalerError::NanGradient { optimizer, index }),
            },
        };
        let change = if overflow {
            let change = self.on_overflow()?;
            self.skipped_steps = self.skipped_steps.saturating_add(1);
            change
        } else {
            self.on_clean()
        };
        self.iteration = self.iteration.saturating_add(1);
        Ok(change)
    }

    /// PyTorch's `found_inf` branch, with DeepSpeed's hysteresis and floor in front of it:
    ///
    /// ```text
    /// if self.delayed_shift == 1 or self.cur_hysteresis == 1:
    ///     if (self.cur_scale == self.min_scale) and self.raise_error_at_min_scale: raise ...
    ///     else: self.cur_scale = max(self.cur_scale / self.scale_factor, self.min_scale)
    /// else:
    ///     self.cur_hysteresis -= 1
    /// self.last_overflow_iter = self.cur_iter        # the growth count restarts
    /// ```
    fn on_overflow(&mut self) -> Result<ScaleChange, ScalerError> {
        let c = self.config;
        if self.hysteresis_left > 1 {
            self.hysteresis_left -= 1;
            self.growth_tracker = 0;
            return Ok(ScaleChange::Absorbed);
        }
        if let Some(floor) = self.floor {
            if self.scale <= floor && c.at_floor == FloorPolicy::Error {
                return Err(ScalerError::ScaleAtFloor { scale: self.scale });
            }
        }
        // DeepSpeed has one `scale_factor` and backs off by dividing by it; with reciprocal
        // factors under DeepSpeed timing, divide as it does (x / 3 and x * (1/3) differ in f64).
        let divides =
            c.growth_timing == GrowthTiming::DeepSpeed && c.backoff_factor * c.growth_factor == 1.0;
        let candidate = if divides {
            c.precision.div(self.scale, c.growth_factor)
        } else {
            c.precision.mul(self.scale, c.backoff_factor)
        };
        let change = match self.floor {
            Some(floor) if candidate < floor => {
                self.scale = floor;
                ScaleChange::ClampedToFloor
            }
            _ => {
                self.scale = candidate;
                ScaleChange::BackedOff
            }
        };
        self.growth_tracker = 0;
        Ok(change)
    }

    /// The clean branch. PyTorch: `successful = tracker + 1; if successful == growth_interval`
    /// grow and reset to 0. DeepSpeed: grow when `stable_interval > 0 && stable_interval % W == 0`
    /// where `stable_interval` is the tracker kept in `0..=W` (0 right after an overflow; it
    /// wraps from `W` to 1 when the scale grows, because DeepSpeed counts the growing update
    /// itself in the next window). Hysteresis is refilled on every clean update with
    /// `consecutive_hysteresis`, otherwise at each growth point.
    fn on_clean(&mut self) -> ScaleChange {
        let c = self.config;
        if c.consecutive_hysteresis {
            self.hysteresis_left = c.hysteresis;
        }
        let grow = match c.growth_timing {
            GrowthTiming::PyTorch => {
                let successful = self.growth_tracker.saturating_add(1);
                if successful >= c.growth_interval {
                    self.growth_tracker = 0;
                    true
                } else {
                    self.growth_tracker = successful;
                    false
                }
            }
            GrowthTiming::DeepSpeed => {
                if self.growth_tracker >= c.growth_interval {
                    self.growth_tracker = 1;
                    true
                } else {
                    self.growth_tracker += 1;
                    false
                }
            }
        };
        if !grow {
            return ScaleChange::Unchanged;
        }
        if !c.consecutive_hysteresis {
            self.hysteresis_left = c.hysteresis;
        }
        let candidate = c.precision.mul(self.scale, c.growth_factor);
        if !candidate.is_finite() {
            return ScaleChange::GrowthRefused;
        }
        match self.ceiling {
            Some(ceiling) if candidate > ceiling => {
                self.scale = ceiling;
                ScaleChange::ClampedToCeiling
            }
            _ => {
                self.scale = candidate;
                ScaleChange::Grew
            }
        }
    }
}

/// The largest tracker value a timing can hold after an update.
pub(crate) const fn max_tracker(timing: GrowthTiming, growth_interval: u32) -> u32 {
    match timing {
        GrowthTiming::PyTorch => growth_interval.saturating_sub(1),
        GrowthTiming::DeepSpeed => growth_interval,
    }
}
