//! The seed's `SimpleCNN` in candle (`scripts/seed_mnist_amp.py`, `sim/src/model.rs`):
//!
//! ```text
//! conv1 1->32 k5, max_pool 2, relu; conv2 32->64 k5, max_pool 2, relu;
//! flatten 1024, fc1 1024->128, relu, fc2 128->10, log_softmax
//! ```
//!
//! The parameters are named as PyTorch's `named_parameters()` (`conv1.weight`, ..., `fc2.bias`)
//! with PyTorch's shapes, so halfscale-sim's seeded PyTorch initialisation loads into them.

use candle_core::{DType, Result, Tensor, D};
use candle_nn::{conv2d, linear, Conv2d, Linear, Module, VarBuilder};

/// The four layers.
pub struct SimpleCnn {
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
}

impl SimpleCnn {
    /// The model over the tensors of `vb` (created there if `vb` is over a `VarMap`).
    pub fn new(vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            conv1: conv2d(1, 32, 5, Default::default(), vb.pp("conv1"))?,
            conv2: conv2d(32, 64, 5, Default::default(), vb.pp("conv2"))?,
            fc1: linear(1024, 128, vb.pp("fc1"))?,
            fc2: linear(128, 10, vb.pp("fc2"))?,
        })
    }

    /// Log-probabilities `[n, 10]` in f32 for images `[n, 1, 28, 28]` in the model's dtype. The
    /// layers run in the input's dtype; `log_softmax` runs in f32, as autocast does (it is on
    /// autocast's fp32 list).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.conv1.forward(x)?.max_pool2d(2)?.relu()?;
        let x = self.conv2.forward(&x)?.max_pool2d(2)?.relu()?;
        let x = x.flatten_from(1)?;
        let x = self.fc1.forward(&x)?.relu()?;
        let logits = self.fc2.forward(&x)?.to_dtype(DType::F32)?;
        candle_nn::ops::log_softmax(&logits, D::Minus1)
    }
}
