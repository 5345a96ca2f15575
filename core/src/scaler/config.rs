//! What a loss scaler is told: PyTorch's five knobs, and the policies of its peers, each off
//! unless chosen.

use core::fmt;

/// When the scale grows after a run of clean (all-finite) updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum GrowthTiming {
    /// PyTorch `_amp_update_scale_`: the tracker counts clean updates and the scale grows on the
    /// `growth_interval`-th one, after which the tracker restarts from 0. Megatron-LM's
    /// `DynamicGradScaler`, and DeepSpeed's `DynamicLossScaler` before it switched to the
    /// `stable_interval` rule, grow on the same updates.
    PyTorch,
    /// DeepSpeed `DynamicLossScaler.update_scale` (current form): with
    /// `stable_interval = cur_iter - last_overflow_iter - 1`, the scale grows on a clean update
    /// when `stable_interval > 0 && stable_interval % scale_window == 0`, i.e. on the
    /// `(W + 1)`-th clean update after an overflow (or after the start), then every `W`: one
    /// update later than PyTorch.
    DeepSpeed,
}

/// What a NaN among the gradients means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum NanPolicy {
    /// PyTorch and DeepSpeed: a NaN is an overflow like an inf (the step is skipped and the scale
    /// backs off). The step outcome still says `SkippedNan`, so it is never invisible.
    Overflow,
    /// A NaN is almost always a bug (0 * inf, log of a negative, a bad kernel), not a scale that
    /// is too high: backing off only hides it. The step and the update return
    /// [`ScalerError::NanGradient`](super::ScalerError::NanGradient) naming the first NaN, and
    /// change nothing.
    Error,
}

/// What a backoff does when the scale is already at the floor (`min_scale`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum FloorPolicy {
    /// Stay at the floor (DeepSpeed with `raise_error_at_min_scale=False`, Megatron-LM): steps
    /// keep being skipped but the scale never collapses to 0.
    Hold,
    /// Return [`ScalerError::ScaleAtFloor`](super::ScalerError::ScaleAtFloor) (DeepSpeed's default,
    /// "Current loss scale already at minimum - cannot decrease scale anymore"): a run that
    /// overflows at the floor is making no progress and should stop.
    Error,
}

/// The number type the framework keeps the scale in, which decides how every multiply rounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum ScalePrecision {
    /// PyTorch: the scale is a float32 tensor and the factors are C++ `double`s, so the kernel
    /// computes `static_cast<float>(double(scale) * factor)`: the product is taken in f64 and
    /// rounded once more to f32 (exactly `((scale as f64) * factor) as f32` in Rust).
    F32,
    /// DeepSpeed: `cur_scale` is a Python float, i.e. an f64, and `cur_scale *= 2.0` /
    /// `cur_scale / 2.0` round in f64 only.
    F64,
}

impl ScalePrecision {
    /// `x` rounded (to nearest, ties to even) to the values this precision holds.
    #[inline]
    pub fn round(self, x: f64) -> f64 {
        match self {
            ScalePrecision::F32 => f64::from(x as f32),
            ScalePrecision::F64 => x,
        }
    }

    /// `scale * factor` as the framework computes it: an f64 product, rounded to the precision.
    #[inline]
    pub fn mul(self, scale: f64, factor: f64) -> f64 {
        self.round(scale * factor)
    }

    /// `scale / divisor` as the framework computes it: an f64 quotient, rounded to the precision.
    #[inline]
    pub fn div(self, scale: f64, divisor: f64) -> f64 {
        self.round(scale / divisor)
    }
}

/// A loss scaler's configuration. [`ScalerConfig::pytorch`] is `torch.amp.GradScaler()`
/// exactly; every field beyond PyTorch's five is a policy from another system, off there.
///
/// Build one from a constructor and struct update syntax, then [`validate`](Self::validate)
/// (the scaler constructors validate for you):
///
/// ```
/// use halfscale_core::scaler::ScalerConfig;
/// let config = ScalerConfig { growth_interval: 100, ..ScalerConfig::pytorch() };
/// assert!(config.validate().is_ok());
/// let bad = ScalerConfig { backoff_factor: 1.0, ..ScalerConfig::pytorch() };
/// assert!(bad.validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ScalerConfig {
    /// `enabled=False` in PyTorch: scaling is the identity, every step happens, the scale reads 1.
    pub enabled: bool,
    /// Starting scale (PyTorch `init_scale`, DeepSpeed `2**initial_scale_power`).
    pub init_scale: f64,
    /// Multiplier on growth; must be finite and > 1 (PyTorch asserts `> 1.0`).
    pub growth_factor: f64,
    /// Multiplier on backoff; must lie in (0, 1) (PyTorch asserts `< 1.0`; 0 would zero the scale).
    pub backoff_factor: f64,
    /// PyTorch `growth_interval`, DeepSpeed `scale_window` / `loss_scale_window`; at least 1.
    pub growth_interval: u32,
    /// DeepSpeed `delayed_shift` (config key `hysteresis`), Megatron-LM `hysteresis`: the scale
    /// backs off on the `hysteresis`-th overflow; earlier ones only skip the step. 1 = at once
    /// (PyTorch). The count is refilled when the scale grows, and is *not* refilled by a backoff,
    /// so after one backoff every overflow backs off until the next growth (both systems).
    pub hysteresis: u32,
    /// DeepSpeed `consecutive_hysteresis`: refill the hysteresis count on every clean update, so
    /// only `hysteresis` *consecutive* overflows back off.
    pub consecutive_hysteresis: bool,
    /// A floor (DeepSpeed `min_scale`/`min_loss_scale`, Megatron `min_scale`): a backoff never goes
    /// below it (`max(scale * backoff, floor)`), so the scale never reaches 0 as PyTorch's does
    /// after 166 halvings from 2^16. Must be finite and > 0.
    pub min_scale: Option<f64>,
    /// A ceiling: growth is clamped to it (`min(scale * growth, ceiling)`). Must be finite, > 0.
    pub max_scale: Option<f64>,
    /// What a backoff at the floor does.
    pub at_floor: FloorPolicy,
    /// When the scale grows.
    pub growth_timing: GrowthTiming,
    /// What a NaN means.
    pub nan_policy: NanPolicy,
    /// How the scale is held and multiplied.
    pub precision: ScalePrecision,
}

impl Default for ScalerConfig {
    /// [`ScalerConfig::pytorch`].
    fn default() -> Self {
        Self::pytorch()
    }
}

impl ScalerConfig {
    /// `torch.amp.GradScaler()` exactly: init_scale 2^16, growth 2, backoff 0.5, interval 2000,
    /// no hysteresis, no floor or ceiling, NaN = overflow, f32 scale.
    pub const fn pytorch() -> Self {
        Self {
            enabled: true,
            init_scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
            hysteresis: 1,
            consecutive_hysteresis: false,
            min_scale: None,
            max_scale: None,
            at_floor: FloorPolicy::Hold,
            growth_timing: GrowthTiming::PyTorch,
            nan_policy: NanPolicy::Overflow,
            precision: ScalePrecision::F32,
        }
    }

    /// This crate's safe defaults: PyTorch's update, plus
    /// - a floor of 1.0, with an error on an overflow at the floor: PyTorch's own `update`
    ///   docstring warns that a scale below 1 means "something is likely wrong", DeepSpeed's
    ///   default `min_loss_scale` is 1 and its default is to raise there; the scale can never
    ///   collapse to 0 and skip every step silently;
    /// - NaN reported as an error naming the first NaN, not mistaken for an overflow.
    pub const fn recommended() -> Self {
        Self {
            min_scale: Some(1.0),
            at_floor: FloorPolicy::Error,
            nan_policy: NanPolicy::Error,
            ..Self::pytorch()
        }
    }

    /// DeepSpeed's fp16 defaults with its `DynamicLossScaler`: `initial_scale_power` 16,
    /// `loss_scale_window` 1000, `hysteresis` 2, `consecutive_hysteresis` false,
    /// `min_loss_scale` 1, `raise_error_at_min_scale` true, `scale_factor` 2 (backoff divides by
    /// 2, identical to multiplying by 0.5), DeepSpeed growth timing, Python-float (f64) scale.
    pub const fn deepspeed() -> Self {
        Self {
            enabled: true,
            init_scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 1000,
            hysteresis: 2,
            consecutive_hysteresis: false,
            min_scale: Some(1.0),
            max_scale: None,
            at_floor: FloorPolicy::Error,
            growth_timing: GrowthTiming::DeepSpeed,
            nan_policy: NanPolicy::Overflow,
            precision: ScalePrecision::F64,
        }
    }

    /// A disabled scaler (`GradScaler(enabled=False)`).
    pub const fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::pytorch()
        }
    }

    /// True when the update is `_amp_update_scale_` on PyTorch's five knobs and nothing else:
    /// enabled, no hysteresis, no floor or ceiling, NaN an overflow, PyTorch timing, f32 scale.
    /// A device kernel that implements PyTorch's rule reproduces exactly these configurations.
    ///
    /// ```
    /// use halfscale_core::scaler::ScalerConfig;
    /// assert!(ScalerConfig { growth_interval: 7, ..ScalerConfig::pytorch() }.follows_pytorch_rule());
    /// assert!(!ScalerConfig::recommended().follows_pytorch_rule());
    /// assert!(!ScalerConfig::deepspeed().follows_pytorch_rule());
    /// assert!(!ScalerConfig::disabled().follows_pytorch_rule());
    /// ```
    pub fn follows_pytorch_rule(&self) -> bool {
        self.enabled
            && self.hysteresis == 1
            && self.min_scale.is_none()
            && self.max_scale.is_none()
            && self.growth_timing == GrowthTiming::PyTorch
            && self.nan_policy == NanPolicy::Overflow
            && self.precision == ScalePrecision::F32
    }

    /// Checks every field; the first problem found is returned. Bounds and the initial scale are
    /// checked after rounding to [`precision`](Self::precision), since that is what is held
    /// (PyTorch's `torch.full((), init_scale, dtype=torch.float32)` rounds to f32).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.bounds().map(|_| ())
    }

    /// The validated initial scale, floor and ceiling, rounded to the precision.
    pub(crate) fn bounds(&self) -> Result<Bounds, ConfigError> {
        let p = self.precision;
        if !(self.growth_factor.is_finite() && self.growth_factor > 1.0) {
            return Err(ConfigError::GrowthFactor(self.growth_factor));
        }
        if !(self.backoff_factor > 0.0 && self.backoff_factor < 1.0) {
            return Err(ConfigError::BackoffFactor(self.backoff_factor));
        }
        if self.growth_interval == 0 {
            return Err(ConfigError::GrowthIntervalZero);
        }
        if self.hysteresis == 0 {
            return Err(ConfigError::HysteresisZero);
        }
        let init = p.round(self.init_scale);
        if !(init.is_finite() && init > 0.0) {
            return Err(ConfigError::InitScale(self.init_scale));
        }
        let floor = match self.min_scale {
            None => None,
            Some(m) => {
                let r = p.round(m);
                if !(r.is_finite() && r > 0.0) {
                    return Err(ConfigError::MinScale(m));
                }
                Some(r)
            }
        };
        let ceiling = match self.max_scale {
            None => None,
            Some(m) => {
                let r = p.round(m);
                if !(r.is_finite() && r > 0.0) {
                    return Err(ConfigError::MaxScale(m));
                }
                Some(r)
            }
        };
        if let (Some(lo), Some(hi)) = (floor, ceiling) {
            if lo > hi {
                return Err(ConfigError::FloorAboveCeiling {
                    min_scale: lo,
                    max_scale: hi,
                });
            }
        }
        if floor.is_some_and(|lo| init < lo) || ceiling.is_some_and(|hi| init > hi) {
            return Err(ConfigError::InitScaleOutOfBounds {
                init_scale: init,
                min_scale: floor,
                max_scale: ceiling,
            });
        }
        Ok(Bounds {
            init,
            floor,
            ceiling,
        })
    }
}

/// Validated, rounded numbers derived from a config.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Bounds {
    pub init: f64,
    pub floor: Option<f64>,
    pub ceiling: Option<f64>,
}

/// An invalid [`ScalerConfig`] field.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ConfigError {
    /// `init_scale` is not finite or not > 0 (after rounding to the precision).
    InitScale(f64),
    /// `growth_factor` is not finite or not > 1.
    GrowthFactor(f64),
    /// `backoff_factor` is not in the open interval (0, 1).
    BackoffFactor(f64),
    /// `growth_interval` is 0 (PyTorch would then never grow: `successful == 0` is never true).
    GrowthIntervalZero,
    /// `hysteresis` is 0 (DeepSpeed requires a positive `delayed_shift`).
    HysteresisZero,
    /// `min_scale` is not finite or not > 0 (after rounding to the precision).
    MinScale(f64),
    /// `max_scale` is not finite or not > 0 (after rounding to the precision).
    MaxScale(f64),
    /// The floor is above the ceiling.
    FloorAboveCeiling { min_scale: f64, max_scale: f64 },
    /// The initial scale lies outside `[min_scale, max_scale]`.
    InitScaleOutOfBounds {
        init_scale: f64,
        min_scale: Option<f64>,
        max_scale: Option<f64>,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::InitScale(v) => {
                write!(
                    f,
                    "init_scale must be finite and > 0 in the scale's precision, got {v}"
                )
            }
            ConfigError::GrowthFactor(v) => {
                write!(f, "growth_factor must be finite and > 1, got {v}")
            }
            ConfigError::BackoffFactor(v) => {
                write!(f, "backoff_factor must lie in (0, 1), got {v}")
            }
            ConfigError::GrowthIntervalZero => f.write_str("growth_interval must be at least 1"),
            ConfigError::HysteresisZero => f.write_str("hysteresis must be at least 1"),
            ConfigError::MinScale(v) => {
                write!(
                    f,
                    "min_scale must be finite and > 0 in the scale's precision, got {v}"
                )
            }
            ConfigError::MaxScale(v) => {
                write!(
                    f,
                    "max_scale must be finite and > 0 in the scale's precision, got {v}"
                )
            }
            ConfigError::FloorAboveCeiling {
                min_scale,
                max_scale,
            } => write!(f, "min_scale {min_scale} is above max_scale {max_scale}"),
            ConfigError::InitScaleOutOfBounds {
                init_scale,
                min_scale,
                max_scale,
            } => {
                write!(f, "init_scale {init_scale} lies outside [")?;
                match min_scale {
                    Some(v) => write!(f, "{v}")?,
                    None => f.write_str("0")?,
                }
                f.write_str(", ")?;
                match max_scale {
                    Some(v) => write!(f, "{v}]"),
                    None => f.write_str("inf)"),
                }
            }
        }
    }
}

impl core::error::Error for ConfigError {}
