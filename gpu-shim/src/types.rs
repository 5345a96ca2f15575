//! Plain data shared by the CUDA backend and its stand-in.

use halfscale_core::scaler::ScalerConfig;

/// What [`crate::probe`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `cuDeviceGetName` of device 0.
    pub name: String,
    /// `cuDriverGetVersion` (13000 = CUDA 13.0).
    pub driver_version: i32,
    /// Compute capability (major, minor).
    pub compute_capability: (i32, i32),
    /// Global memory in bytes.
    pub memory_bytes: usize,
}

impl std::fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (sm_{}{}, {:.0} GiB, driver CUDA {}.{})",
            self.name,
            self.compute_capability.0,
            self.compute_capability.1,
            self.memory_bytes as f64 / f64::from(1u32 << 30),
            self.driver_version / 1000,
            (self.driver_version % 1000) / 10
        )
    }
}

/// The loss scaler kept on the device: `torch.amp.GradScaler`'s five parameters (enabled, with
/// NaN counted as an overflow). Policies beyond PyTorch's (floors, ceilings, hysteresis) need the
/// host scaler and the [`halfscale_sim::Backend`] path.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeviceScaler {
    pub init_scale: f32,
    pub growth_factor: f64,
    pub backoff_factor: f64,
    pub growth_interval: u32,
}

impl DeviceScaler {
    /// The device scaler of `config`, when the device reproduces it exactly: PyTorch's rule on
    /// its five knobs ([`ScalerConfig::follows_pytorch_rule`]) with an interval the kernel's
    /// `int` holds. Other policies run through the host scaler.
    pub fn from_config(config: &ScalerConfig) -> Option<Self> {
        let interval_fits = i32::try_from(config.growth_interval).is_ok();
        (config.follows_pytorch_rule() && interval_fits).then_some(Self {
            // Validated configs hold an f32-representable scale; PyTorch rounds it so.
            init_scale: config.init_scale as f32,
            growth_factor: config.growth_factor,
            backoff_factor: config.backoff_factor,
            growth_interval: config.growth_interval,
        })
    }
}

impl Default for DeviceScaler {
    /// `GradScaler()`: 2^16, x2 every 2000 clean steps, x0.5 on overflow.
    fn default() -> Self {
        Self {
            init_scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
        }
    }
}
