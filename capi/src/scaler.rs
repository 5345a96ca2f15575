//! The loss scaler: PyTorch's `GradScaler` update bit for bit (`hs_scaler_config_pytorch`), and
//! the policies of its peers, behind an opaque handle.
//!
//! The factors are C `double`s, as PyTorch's Python floats are, and reach halfscale-core's update
//! unrounded: the scale (a float) times the factor is formed in double and rounded once to float,
//! `_amp_update_scale_`'s `static_cast<float>(scale * backoff_factor)`. A factor such as 0.3,
//! which no float holds, therefore gives PyTorch's bits, not those of `scale * 0.3f`.

use halfscale_core::scaler::{
    FloorPolicy, Found, GrowthTiming, LossScaler, NanPolicy, ScalePrecision, ScalerConfig,
    ScalerError, StepOutcome,
};

use crate::guard::{guarded, guarded_value, read, write};
use crate::status::{
    HsStatus, HS_ERR_INTERNAL, HS_ERR_INVALID_ARGUMENT, HS_ERR_INVALID_CONFIG, HS_ERR_NAN_GRADIENT,
    HS_ERR_SCALE_AT_FLOOR,
};

/// What a gradient check found: `HS_FOUND_FINITE`, `HS_FOUND_INF` or `HS_FOUND_NAN`.
pub type HsFound = i32;
/// Every gradient finite.
pub const HS_FOUND_FINITE: HsFound = 0;
/// At least one +-inf, no NaN.
pub const HS_FOUND_INF: HsFound = 1;
/// At least one NaN.
pub const HS_FOUND_NAN: HsFound = 2;

/// What the optimizer step should do: `HS_STEPPED`, `HS_SKIPPED_INF` or `HS_SKIPPED_NAN`.
pub type HsStepOutcome = i32;
/// The gradients were finite (or scaling is disabled): step, and step the LR schedule.
pub const HS_STEPPED: HsStepOutcome = 0;
/// An inf was found: skip the step.
pub const HS_SKIPPED_INF: HsStepOutcome = 1;
/// A NaN was found: skip the step.
pub const HS_SKIPPED_NAN: HsStepOutcome = 2;

/// A backoff at the floor keeps the floor (DeepSpeed with `raise_error_at_min_scale=False`).
pub const HS_FLOOR_HOLD: i32 = 0;
/// A backoff at the floor returns `HS_ERR_SCALE_AT_FLOOR` (DeepSpeed's default).
pub const HS_FLOOR_ERROR: i32 = 1;
/// PyTorch's growth timing: grow on the `growth_interval`-th clean update.
pub const HS_GROWTH_PYTORCH: i32 = 0;
/// DeepSpeed's `DynamicLossScaler` timing: one update later.
pub const HS_GROWTH_DEEPSPEED: i32 = 1;
/// A NaN is an overflow (PyTorch, DeepSpeed).
pub const HS_NAN_IS_OVERFLOW: i32 = 0;
/// A NaN returns `HS_ERR_NAN_GRADIENT` and changes nothing.
pub const HS_NAN_IS_ERROR: i32 = 1;
/// The scale is a float32, products rounded to float (PyTorch).
pub const HS_PRECISION_F32: i32 = 0;
/// The scale is a double (DeepSpeed's Python float).
pub const HS_PRECISION_F64: i32 = 1;

/// A loss scaler's configuration. The first four fields are `torch.amp.GradScaler`'s knobs;
/// the rest select the policies of its peers and are PyTorch's in
/// `hs_scaler_config_pytorch()`. Start from a constructor and change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HsScalerConfig {
    /// Starting scale (PyTorch `init_scale`, 65536), rounded to the precision.
    pub init_scale: f64,
    /// Multiplier on growth, finite and > 1 (PyTorch 2.0).
    pub growth_factor: f64,
    /// Multiplier on backoff, in (0, 1) (PyTorch 0.5).
    pub backoff_factor: f64,
    /// Clean updates between growths, >= 1 (PyTorch 2000).
    pub growth_interval: i32,
    /// 1 to scale, 0 for `GradScaler(enabled=False)` (scale 1, every step taken).
    pub enabled: i32,
    /// Overflows tolerated before a backoff (DeepSpeed `hysteresis`), >= 1; 1 = PyTorch.
    pub hysteresis: i32,
    /// 1: refill the hysteresis on every clean update (DeepSpeed `consecutive_hysteresis`).
    pub consecutive_hysteresis: i32,
    /// A floor for the scale, > 0; 0 = none (PyTorch).
    pub min_scale: f64,
    /// A ceiling for the scale, > 0; 0 = none (PyTorch).
    pub max_scale: f64,
    /// `HS_FLOOR_HOLD` or `HS_FLOOR_ERROR`.
    pub at_floor: i32,
    /// `HS_GROWTH_PYTORCH` or `HS_GROWTH_DEEPSPEED`.
    pub growth_timing: i32,
    /// `HS_NAN_IS_OVERFLOW` or `HS_NAN_IS_ERROR`.
    pub nan_policy: i32,
    /// `HS_PRECISION_F32` or `HS_PRECISION_F64`.
    pub precision: i32,
}

impl From<ScalerConfig> for HsScalerConfig {
    fn from(c: ScalerConfig) -> Self {
        HsScalerConfig {
            init_scale: c.init_scale,
            growth_factor: c.growth_factor,
            backoff_factor: c.backoff_factor,
            growth_interval: c.growth_interval as i32,
            enabled: i32::from(c.enabled),
            hysteresis: c.hysteresis as i32,
            consecutive_hysteresis: i32::from(c.consecutive_hysteresis),
            min_scale: c.min_scale.unwrap_or(0.0),
            max_scale: c.max_scale.unwrap_or(0.0),
            at_floor: match c.at_floor {
                FloorPolicy::Hold => HS_FLOOR_HOLD,
                FloorPolicy::Error => HS_FLOOR_ERROR,
            },
            growth_timing: match c.growth_timing {
                GrowthTiming::PyTorch => HS_GROWTH_PYTORCH,
                GrowthTiming::DeepSpeed => HS_GROWTH_DEEPSPEED,
            },
            nan_policy: match c.nan_policy {
                NanPolicy::Overflow => HS_NAN_IS_OVERFLOW,
                NanPolicy::Error => HS_NAN_IS_ERROR,
            },
            precision: match c.precision {
                ScalePrecision::F32 => HS_PRECISION_F32,
                ScalePrecision::F64 => HS_PRECISION_F64,
            },
        }
    }
}

impl HsScalerConfig {
    /// The core's configuration, every field checked (`HS_ERR_INVALID_CONFIG` otherwise).
    fn to_core(self) -> Result<ScalerConfig, HsStatus> {
        let bad = HS_ERR_INVALID_CONFIG;
        let flag = |v: i32| match v {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(bad),
        };
        let count = |v: i32| u32::try_from(v).map_err(|_| bad);
        let bound = |v: f64| if v == 0.0 { None } else { Some(v) };
        let config = ScalerConfig {
            enabled: flag(self.enabled)?,
            init_scale: self.init_scale,
            growth_factor: self.growth_factor,
            backoff_factor: self.backoff_factor,
            growth_interval: count(self.growth_interval)?,
            hysteresis: count(self.hysteresis)?,
            consecutive_hysteresis: flag(self.consecutive_hysteresis)?,
            min_scale: bound(self.min_scale),
            max_scale: bound(self.max_scale),
            at_floor: match self.at_floor {
                HS_FLOOR_HOLD => FloorPolicy::Hold,
                HS_FLOOR_ERROR => FloorPolicy::Error,
                _ => return Err(bad),
            },
            growth_timing: match self.growth_timing {
                HS_GROWTH_PYTORCH => GrowthTiming::PyTorch,
                HS_GROWTH_DEEPSPEED => GrowthTiming::DeepSpeed,
                _ => return Err(bad),
            },
            nan_policy: match self.nan_policy {
                HS_NAN_IS_OVERFLOW => NanPolicy::Overflow,
                HS_NAN_IS_ERROR => NanPolicy::Error,
                _ => return Err(bad),
            },
            precision: match self.precision {
                HS_PRECISION_F32 => ScalePrecision::F32,
                HS_PRECISION_F64 => ScalePrecision::F64,
                _ => return Err(bad),
            },
        };
        config.validate().map_err(|_| bad)?;
        Ok(config)
    }
}

/// `torch.amp.GradScaler()`: init_scale 65536, growth 2, backoff 0.5, interval 2000, no policies.
#[no_mangle]
pub extern "C" fn hs_scaler_config_pytorch() -> HsScalerConfig {
    ScalerConfig::pytorch().into()
}

/// halfscale's safe defaults: PyTorch plus a floor of 1 (an error there) and NaN as an error.
#[no_mangle]
pub extern "C" fn hs_scaler_config_recommended() -> HsScalerConfig {
    ScalerConfig::recommended().into()
}

/// DeepSpeed's fp16 defaults with its `DynamicLossScaler` (window 1000, hysteresis 2, floor 1,
/// DeepSpeed timing, double scale).
#[no_mangle]
pub extern "C" fn hs_scaler_config_deepspeed() -> HsScalerConfig {
    ScalerConfig::deepspeed().into()
}

/// An opaque loss scaler. Create with `hs_scaler_new`, release with `hs_scaler_free`. Not
/// thread-safe: one thread at a time per scaler.
pub struct HsScaler {
    scaler: LossScaler,
}

/// Creates a scaler at `config->init_scale`; `*out` receives a handle the caller owns and must
/// release with `hs_scaler_free`. On error `*out` is left unchanged.
///
/// # Safety
/// `config` must be NULL (an error) or point to a valid `HsScalerConfig`; `out` NULL (an error)
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn hs_scaler_new(
    config: *const HsScalerConfig,
    out: *mut *mut HsScaler,
) -> HsStatus {
    guarded(|| {
        // SAFETY: the caller's contract.
        let (config, out) = unsafe { (read(config)?, write(out)?) };
        let scaler = LossScaler::new(config.to_core()?).map_err(|_| HS_ERR_INVALID_CONFIG)?;
        *out = Box::into_raw(Box::new(HsScaler { scaler }));
        Ok(())
    })
}

/// Releases a scaler from `hs_scaler_new`; NULL is a no-op.
///
/// # Safety
/// `scaler` must be NULL or a handle from `hs_scaler_new` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn hs_scaler_free(scaler: *mut HsScaler) {
    if !scaler.is_null() {
        // SAFETY: the handle came from Box::into_raw in hs_scaler_new and is freed once.
        drop(unsafe { Box::from_raw(scaler) });
    }
}

/// One update with what this iteration's gradient check found (`HS_FOUND_*`): PyTorch's
/// `_amp_update_scale_` plus the configured policies. `*outcome` says whether to step
/// (`HS_STEPPED`) or skip. On error (`HS_ERR_NAN_GRADIENT`, `HS_ERR_SCALE_AT_FLOOR`,
/// `HS_ERR_INVALID_ARGUMENT`) the scaler and `*outcome` are unchanged.
///
/// # Safety
/// `scaler` NULL (an error) or a live handle; `outcome` NULL (an error) or writable.
#[no_mangle]
pub unsafe extern "C" fn hs_scaler_update(
    scaler: *mut HsScaler,
    found: HsFound,
    outcome: *mut HsStepOutcome,
) -> HsStatus {
    guarded(|| {
        // SAFETY: the caller's contract.
        let (scaler, outcome) = unsafe { (write(scaler)?, write(outcome)?) };
        let found = match found {
            HS_FOUND_FINITE => Found::Finite,
            HS_FOUND_INF => Found::Inf,
            HS_FOUND_NAN => Found::Nan,
            _ => return Err(HS_ERR_INVALID_ARGUMENT),
        };
        scaler.scaler.update(found).map_err(|e| match e {
            ScalerError::NanGradient { .. } => HS_ERR_NAN_GRADIENT,
            ScalerError::ScaleAtFloor { .. } => HS_ERR_SCALE_AT_FLOOR,
            _ => HS_ERR_INTERNAL,
        })?;
        *outcome = if !scaler.scaler.is_enabled() {
            HS_STEPPED
        } else {
            match StepOutcome::from_found(found) {
                StepOutcome::Stepped => HS_STEPPED,
                StepOutcome::SkippedInf => HS_SKIPPED_INF,
                StepOutcome::SkippedNan => HS_SKIPPED_NAN,
            }
        };
        Ok(())
    })
}

/// Runs `f` on a live scaler; `fallback` for NULL.
///
/// # Safety
/// `scaler` NULL or a live handle.
unsafe fn query<T>(scaler: *const HsScaler, fallback: T, f: impl FnOnce(&LossScaler) -> T) -> T {
    // SAFETY: the caller's contract.
    match unsafe { read(scaler) } {
        Ok(s) => guarded_value(fallback, || f(&s.scaler)),
        Err(_) => fallback,
    }
}

/// The scale as a float, the factor to multiply a float loss by (PyTorch's `get_scale()`); 1
/// when disabled; NaN for a NULL scaler.
///
/// # Safety
/// `scaler` NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn hs_scaler_scale(scaler: *const HsScaler) -> f32 {
    // SAFETY: forwarded contract.
    unsafe { query(scaler, f32::NAN, LossScaler::scale_f32) }
}

/// The scale as held: exact for a double-precision (DeepSpeed) scale; NaN for NULL.
///
/// # Safety
/// `scaler` NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn hs_scaler_scale_f64(scaler: *const HsScaler) -> f64 {
    // SAFETY: forwarded contract.
    unsafe { query(scaler, f64::NAN, LossScaler::scale) }
}

/// `(float)(1.0 / (double)scale)`, the factor to unscale gradients by (PyTorch's
/// `_scale.double().reciprocal().float()`); NaN for NULL.
///
/// # Safety
/// `scaler` NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn hs_scaler_inv_scale(scaler: *const HsScaler) -> f32 {
    // SAFETY: forwarded contract.
    unsafe { query(scaler, f32::NAN, LossScaler::inv_scale) }
}

/// The growth tracker (PyTorch `_growth_tracker`): clean updates since the last growth or
/// backoff; -1 for NULL.
///
/// # Safety
/// `scaler` NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn hs_scaler_growth_tracker(scaler: *const HsScaler) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { query(scaler, -1, |s| s.growth_tracker() as i32) }
}

/// Updates that found a non-finite gradient (skipped steps); 0 for NULL.
///
/// # Safety
/// `scaler` NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn hs_scaler_skipped_steps(scaler: *const HsScaler) -> u64 {
    // SAFETY: forwarded contract.
    unsafe { query(scaler, 0, LossScaler::skipped_steps) }
}
