//! f32 master weights with f16 (or bf16) copies for the forward pass.
//!
//! PyTorch's mixed precision keeps the parameters in f32 and lets autocast cast them to f16 at
//! each op that runs in f16 (`torch.autocast`, the "fp32 master weights" of Micikevicius et al.,
//! "Mixed Precision Training", 2018): the optimizer updates f32 values, so small updates are not
//! lost to f16 rounding, while the matmuls and convolutions run in f16. candle has no autocast and
//! its optimizers keep no masters, so this helper does it by hand: the `Var`s stay f32, and each
//! forward pass builds the model from `var.to_dtype(F16)` copies. Because `to_dtype` is a tracked
//! op, `backward()` casts each copy's gradient back to f32 onto its master.

use crate::error::AdapterError;
use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use std::collections::HashMap;

/// Named f32 variables and the dtype the model computes in.
#[derive(Clone, Debug)]
pub struct MasterWeights {
    /// Sorted by name, so [`vars`](Self::vars) has one order run after run.
    named: Vec<(String, Var)>,
    compute: DType,
    device: Device,
}

impl MasterWeights {
    /// Masters from named f32 variables, computing in `compute` (f16, bf16, or f32 for a plain
    /// run, where the "copies" are the variables themselves). Errors: a variable that is not f32,
    /// or another compute dtype.
    pub fn new(named: impl IntoIterator<Item = (String, Var)>, compute: DType) -> Result<Self> {
        if !matches!(compute, DType::F16 | DType::BF16 | DType::F32) {
            return Err(AdapterError::UnsupportedComputeDtype { dtype: compute }.into());
        }
        let mut named: Vec<(String, Var)> = named.into_iter().collect();
        for (name, var) in &named {
            if var.dtype() != DType::F32 {
                return Err(AdapterError::MasterNotF32 {
                    name: name.clone(),
                    dtype: var.dtype(),
                }
                .into());
            }
        }
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let device = named
            .first()
            .map_or(Device::Cpu, |(_, v)| v.device().clone());
        Ok(Self {
            named,
            compute,
            device,
        })
    }

    /// The variables of a `VarMap` (typically filled by building the model once over
    /// `VarBuilder::from_varmap(&varmap, DType::F32, &device)`).
    pub fn from_varmap(varmap: &VarMap, compute: DType) -> Result<Self> {
        let named: Vec<(String, Var)> = varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::msg("the VarMap's lock is poisoned"))?
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Self::new(named, compute)
    }

    /// The f32 master variables, by name: what the optimizer (and the [`GradScaler`]) get.
    ///
    /// [`GradScaler`]: crate::GradScaler
    pub fn vars(&self) -> Vec<Var> {
        self.named.iter().map(|(_, v)| v.clone()).collect()
    }

    /// The names and variables, sorted by name.
    pub fn named_vars(&self) -> &[(String, Var)] {
        &self.named
    }

    /// The dtype the forward pass computes in.
    pub fn compute_dtype(&self) -> DType {
        self.compute
    }

    /// This step's compute copies, by name: `master.to_dtype(compute)`, each rounded to nearest
    /// even (candle's cast, checked against halfscale-core in this crate's tests) and tracked,
    /// so gradients reach the masters.
    pub fn compute_copies(&self) -> Result<HashMap<String, Tensor>> {
        self.named
            .iter()
            .map(|(name, var)| Ok((name.clone(), var.as_tensor().to_dtype(self.compute)?)))
            .collect()
    }

    /// A `VarBuilder` over this step's compute copies: build the model from it for each forward
    /// pass (building a candle model from existing tensors costs a few map look-ups).
    pub fn var_builder(&self) -> Result<VarBuilder<'static>> {
        Ok(VarBuilder::from_tensors(
            self.compute_copies()?,
            self.compute,
            &self.device,
        ))
    }
}
