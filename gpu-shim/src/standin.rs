//! The stand-in compiled without the `cuda` feature: the public API of the CUDA backend, whose
//! constructor and [`probe`] return [`GpuError::NotBuilt`]. No value of [`GpuBackend`] can exist,
//! so every method body is unreachable by construction.

use crate::error::{GpuError, Result};
use crate::types::{DeviceInfo, DeviceScaler};
use halfscale_core::scaler::NonFiniteReport;
use halfscale_sim::adam::AdamConfig;
use halfscale_sim::backend::{Backend, Batch, EvalStats};
use halfscale_sim::{Params, Recipe, StateDict, StepOutcome};

/// Always [`GpuError::NotBuilt`] in this build.
pub fn probe() -> Result<DeviceInfo> {
    Err(GpuError::NotBuilt)
}

/// The CUDA backend's stand-in: cannot be constructed in a build without CUDA.
#[derive(Debug)]
pub struct GpuBackend {
    never: std::convert::Infallible,
}

impl GpuBackend {
    /// Always [`GpuError::NotBuilt`] in this build.
    pub fn new(_recipe: Recipe, _capacity: usize) -> Result<Self> {
        Err(GpuError::NotBuilt)
    }
    /// Whether the CUDA build's kernels run `recipe` (every site rounded to binary16).
    pub fn runs(recipe: &Recipe) -> bool {
        recipe.uniform_format() == Some(halfscale_sim::LowFormat::F16)
    }
    pub fn device(&self) -> &DeviceInfo {
        match self.never {}
    }
    pub fn capacity(&self) -> usize {
        match self.never {}
    }
    pub fn upload_train_set(&mut self, _images: &[f32], _labels: &[u8]) -> Result<()> {
        match self.never {}
    }
    pub fn set_order(&mut self, _order: &[u32]) -> Result<()> {
        match self.never {}
    }
    pub fn set_device_scaler(&mut self, _scaler: DeviceScaler) -> Result<()> {
        match self.never {}
    }
    pub fn load_device_scale(&mut self, _scale: f32, _growth_tracker: u32) -> Result<()> {
        match self.never {}
    }
    pub fn step_device_scaled(
        &mut self,
        _start: usize,
        _n: usize,
        _adam: &AdamConfig,
    ) -> Result<()> {
        match self.never {}
    }
    pub fn drain_records(&mut self) -> Result<Vec<StepOutcome>> {
        match self.never {}
    }
    pub fn device_scale(&self) -> Result<(f32, u32)> {
        match self.never {}
    }
    pub fn synchronize(&self) -> Result<()> {
        match self.never {}
    }
}

impl Backend for GpuBackend {
    fn describe(&self) -> String {
        match self.never {}
    }
    fn recipe(&self) -> &Recipe {
        match self.never {}
    }
    fn export_state(&self) -> halfscale_sim::Result<StateDict> {
        match self.never {}
    }
    fn import_state(&mut self, _state: &StateDict) -> halfscale_sim::Result<()> {
        match self.never {}
    }
    fn forward_backward(
        &mut self,
        _batch: Batch<'_>,
        _loss_scale: f32,
    ) -> halfscale_sim::Result<f32> {
        match self.never {}
    }
    fn read_logits(&self, _out: &mut Vec<f32>) -> halfscale_sim::Result<()> {
        match self.never {}
    }
    fn read_grads(&self, _out: &mut Params) -> halfscale_sim::Result<()> {
        match self.never {}
    }
    fn unscale_and_check(&mut self, _inv_scale: f32) -> halfscale_sim::Result<NonFiniteReport> {
        match self.never {}
    }
    fn adam_step(&mut self, _config: &AdamConfig) -> halfscale_sim::Result<()> {
        match self.never {}
    }
    fn evaluate(&mut self, _batch: Batch<'_>) -> halfscale_sim::Result<EvalStats> {
        match self.never {}
    }
}
