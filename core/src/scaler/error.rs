//! Every way a scaler call can be refused. A call that returns an error changes nothing (the one
//! exception, documented on `unscale_`, is that a gradient pass that ran is recorded).

use core::fmt;

use super::config::ConfigError;
use super::optimizer::OptimizerId;

/// A loaded [`ScalerState`](super::ScalerState) that the configuration cannot continue from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StateError {
    /// `scale` is negative, NaN or infinite (after rounding to the precision). 0 is accepted:
    /// PyTorch really reaches it, and a dump of such a run must load.
    Scale(f64),
    /// `scale` lies outside the configured floor and ceiling.
    ScaleOutOfBounds {
        scale: f64,
        min_scale: Option<f64>,
        max_scale: Option<f64>,
    },
    /// `_growth_tracker` is past what the growth timing can reach (PyTorch: below
    /// `growth_interval`; DeepSpeed: at most `growth_interval`). PyTorch itself would accept it
    /// and then never grow again, since its kernel tests `successful == growth_interval`.
    GrowthTracker { tracker: u32, max: u32 },
    /// `hysteresis_left` is 0 or above the configured `hysteresis`.
    HysteresisLeft { left: u32, hysteresis: u32 },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Scale(v) => write!(f, "scale must be finite and >= 0, got {v}"),
            StateError::ScaleOutOfBounds {
                scale,
                min_scale,
                max_scale,
            } => write!(
                f,
                "scale {scale} lies outside the configured bounds (min_scale {min_scale:?}, max_scale {max_scale:?})"
            ),
            StateError::GrowthTracker { tracker, max } => {
                write!(f, "_growth_tracker {tracker} is above its maximum {max}")
            }
            StateError::HysteresisLeft { left, hysteresis } => write!(
                f,
                "hysteresis_left {left} must lie in 1..={hysteresis}"
            ),
        }
    }
}

impl core::error::Error for StateError {}

/// Why a scaler call was refused. The per-optimizer variants mirror the checks (and quote the
/// messages) of PyTorch's `GradScaler`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScalerError {
    /// The configuration is invalid.
    Config(ConfigError),
    /// A loaded state does not fit the configuration.
    State(StateError),
    /// A NaN was found and the [`NanPolicy`](super::NanPolicy) is `Error`. `optimizer` and
    /// `index` (the flat position of the first NaN in the gradients that optimizer unscaled, in
    /// the order given) are known when the NaN came through an unscale.
    NanGradient {
        optimizer: Option<OptimizerId>,
        index: Option<usize>,
    },
    /// An overflow at the floor with [`FloorPolicy::Error`](super::FloorPolicy::Error)
    /// (DeepSpeed: "Current loss scale already at minimum - cannot decrease scale anymore").
    ScaleAtFloor { scale: f64 },
    /// PyTorch: "unscale_() has already been called on this optimizer since the last update()."
    UnscaleTwice { optimizer: OptimizerId },
    /// PyTorch: "unscale_() is being called after step()."
    UnscaleAfterStep { optimizer: OptimizerId },
    /// PyTorch: "step() has already been called since the last update()."
    StepTwice { optimizer: OptimizerId },
    /// PyTorch: "No inf checks were recorded for this optimizer." (step before any unscale, or
    /// an unscale that was given no gradient tensors).
    NoInfChecksForOptimizer { optimizer: OptimizerId },
    /// PyTorch: "No inf checks were recorded prior to update."
    NoInfChecks,
    /// More distinct optimizers than the `OptimizerStates<N>` capacity.
    TooManyOptimizers { capacity: usize },
    /// A manual scale ([`LossScaler::set_scale`](super::LossScaler::set_scale)) that is not
    /// finite, not > 0, or outside the bounds.
    InvalidScale(f64),
}

impl From<ConfigError> for ScalerError {
    fn from(e: ConfigError) -> Self {
        ScalerError::Config(e)
    }
}

impl From<StateError> for ScalerError {
    fn from(e: StateError) -> Self {
        ScalerError::State(e)
    }
}

impl fmt::Display for ScalerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScalerError::Config(e) => write!(f, "invalid scaler configuration: {e}"),
            ScalerError::State(e) => write!(f, "invalid scaler state: {e}"),
            ScalerError::NanGradient { optimizer, index } => {
                f.write_str("NaN gradient")?;
                if let Some(o) = optimizer {
                    write!(f, " in {o}")?;
                }
                if let Some(i) = index {
                    write!(f, " at index {i}")?;
                }
                f.write_str(" (nan policy: error)")
            }
            ScalerError::ScaleAtFloor { scale } => write!(
                f,
                "loss scale already at its minimum {scale} - cannot decrease scale anymore"
            ),
            ScalerError::UnscaleTwice { optimizer } => write!(
                f,
                "unscale_() has already been called on {optimizer} since the last update()"
            ),
            ScalerError::UnscaleAfterStep { optimizer } => {
                write!(f, "unscale_() is being called after step() on {optimizer}")
            }
            ScalerError::StepTwice { optimizer } => write!(
                f,
                "step() has already been called on {optimizer} since the last update()"
            ),
            ScalerError::NoInfChecksForOptimizer { optimizer } => {
                write!(f, "no inf checks were recorded for {optimizer}")
            }
            ScalerError::NoInfChecks => {
                f.write_str("no inf checks were recorded prior to update()")
            }
            ScalerError::TooManyOptimizers { capacity } => {
                write!(f, "more than {capacity} optimizers (the state's capacity)")
            }
            ScalerError::InvalidScale(v) => {
                write!(
                    f,
                    "scale {v} is not finite and > 0 within the configured bounds"
                )
            }
        }
    }
}

impl core::error::Error for ScalerError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            ScalerError::Config(e) => Some(e),
            ScalerError::State(e) => Some(e),
            _ => None,
        }
    }
}
