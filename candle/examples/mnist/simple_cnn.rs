//! The seed's `SimpleCNN` in candle (`scripts/seed_mnist_amp.py`, `sim/src/model.rs`):
//!
//! ```text
//! conv1 1->32 k5, max_pool 2, relu; conv2 32->64 k5, max_pool 2, relu;
//! flatten 1024, fc1 1024->128, relu, fc2 128->10, log_softmax
//! ```
//!
//! The parameters are named as PyTorch's `named_parameters()` (`conv1.weight`, ..., `fc2.bias`)
//! with PyTorch's shapes, so halfscale-sim's seeded PyTorch initialisation loads into them.
//!
//! How an f16 convolution or linear layer computes is a choice ([`Kernels`]): as a GPU does under
//! autocast (f16 operands, f32 accumulation, one rounding of the result to f16: cuDNN's and
//! cuBLAS's f16 paths with an f32 compute type), written as widen -> f32 op -> round; or with
//! candle's own f16 CPU kernels, whose convolution backward (`conv_transpose2d`) accumulates in
//! f16 and is ~25x slower than its f32 counterpart (see the crate README).

use candle_core::{DType, Result, Tensor, D};
use candle_nn::{conv2d, linear, Conv2d, Linear, Module, VarBuilder};

/// How the convolutions and linear layers of a 16-bit model compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernels {
    /// f16/bf16 operands, f32 accumulation, the result rounded once to the model's dtype.
    AccumulateF32,
    /// candle's own kernels for the model's dtype.
    Native,
}

/// The four layers.
pub struct SimpleCnn {
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
    kernels: Kernels,
}

impl SimpleCnn {
    /// The model over the tensors of `vb` (created there if `vb` is over a `VarMap`).
    pub fn new(vb: VarBuilder, kernels: Kernels) -> Result<Self> {
        Ok(Self {
            kernels,
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
        let x = self.conv(&self.conv1, x)?.max_pool2d(2)?.relu()?;
        let x = self.conv(&self.conv2, &x)?.max_pool2d(2)?.relu()?;
        let x = x.flatten_from(1)?;
        let x = self.linear(&self.fc1, &x)?.relu()?;
        let logits = self.linear(&self.fc2, &x)?.to_dtype(DType::F32)?;
        candle_nn::ops::log_softmax(&logits, D::Minus1)
    }

    /// The convolution, then the bias added in the model's dtype (PyTorch adds a convolution's
    /// bias as a separate tensor op).
    fn conv(&self, conv: &Conv2d, x: &Tensor) -> Result<Tensor> {
        if self.kernels == Kernels::Native || x.dtype() == DType::F32 {
            return conv.forward(x);
        }
        let w = conv.weight().to_dtype(DType::F32)?;
        let y = x
            .to_dtype(DType::F32)?
            .conv2d(&w, 0, 1, 1, 1)?
            .to_dtype(x.dtype())?;
        match conv.bias() {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }

    /// `x @ w^T + b`, accumulated and biased in f32 and rounded once (cuBLAS's addmm epilogue).
    fn linear(&self, lin: &Linear, x: &Tensor) -> Result<Tensor> {
        if self.kernels == Kernels::Native || x.dtype() == DType::F32 {
            return lin.forward(x);
        }
        let y = x
            .to_dtype(DType::F32)?
            .matmul(&lin.weight().to_dtype(DType::F32)?.t()?)?;
        let y = match lin.bias() {
            Some(b) => y.broadcast_add(&b.to_dtype(DType::F32)?)?,
            None => y,
        };
        y.to_dtype(x.dtype())
    }
}
