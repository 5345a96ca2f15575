//! The adapter's errors, and how they travel through candle's `Result`.

use candle_core::DType;
use halfscale_core::scaler::{ConfigError, ScalerError};

/// What can go wrong in the adapter itself (candle's own errors pass through unchanged).
///
/// Every variant converts into `candle_core::Error` (wrapped, so its message survives), because
/// the adapter's methods return candle's `Result` like every other candle type does.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The scaler configuration was refused by halfscale-core.
    #[error("invalid loss-scaler configuration: {0}")]
    Config(#[from] ConfigError),
    /// The scaler refused an update or a state (a NaN under `NanPolicy::Error`, a state that does
    /// not fit the configuration, ...).
    #[error("loss scaler: {0}")]
    Scaler(#[from] ScalerError),
    /// A gradient whose dtype is not f32, f16 or bf16 (the dtypes PyTorch's unscale kernel takes).
    #[error("cannot unscale a {dtype:?} gradient: only f32, f16 and bf16 are supported")]
    UnsupportedGradDtype { dtype: DType },
    /// A gradient on a device other than the CPU (the fused kernel is a CPU kernel).
    #[error("cannot unscale a gradient on {device}: only CPU tensors are supported")]
    UnsupportedDevice { device: &'static str },
    /// A gradient that is not contiguous in memory cannot be unscaled in place (through
    /// `Optimizer::step`'s shared `&GradStore`); `GradScaler::backward_step` and
    /// `GradScaler::unscale` make such a gradient contiguous first. `backward()` never yields one.
    #[error(
        "gradient of shape {shape:?} is not contiguous; unscale it through GradScaler::unscale"
    )]
    NonContiguousGradient { shape: Vec<usize> },
    /// A master weight that is not f32 (the masters exist to hold f32).
    #[error("master weight `{name}` is {dtype:?}; master weights must be f32")]
    MasterNotF32 { name: String, dtype: DType },
    /// A compute dtype other than f16 or bf16 for the master weights' copies.
    #[error("compute dtype {dtype:?}: master weights hand out f16 or bf16 copies (or f32 for a plain run)")]
    UnsupportedComputeDtype { dtype: DType },
}

impl From<AdapterError> for candle_core::Error {
    fn from(e: AdapterError) -> Self {
        candle_core::Error::wrap(e)
    }
}
