//! # halfscale-candle
//!
//! PyTorch's dynamic loss scaling and f32 master weights for [candle](https://github.com/huggingface/candle),
//! built on halfscale-core's bit-exact scaler.
//!
//! - [`GradScaler`] wraps any `candle_nn::Optimizer`: it scales the loss, runs `backward()`,
//!   unscales each gradient in place with one fused unscale + non-finite check (f32, f16, bf16),
//!   skips the inner step on inf or NaN, and updates the scale exactly as
//!   `torch.amp.GradScaler` does ([`ScalerConfig::pytorch`], or any other [`ScalerConfig`]).
//! - [`MasterWeights`] keeps the parameters as f32 `Var`s and hands the model f16 (or bf16)
//!   copies for each forward pass, so gradients flow back to the f32 masters.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::{linear, Module, Optimizer, ParamsAdamW, AdamW, VarBuilder, VarMap};
//! use halfscale_candle::{GradScaler, MasterWeights};
//! use halfscale_core::scaler::ScalerConfig;
//!
//! let dev = Device::Cpu;
//! let varmap = VarMap::new();
//! linear(4, 2, VarBuilder::from_varmap(&varmap, DType::F32, &dev).pp("fc"))?; // f32 init
//! let masters = MasterWeights::from_varmap(&varmap, DType::F16)?;
//! let adamw = AdamW::new(masters.vars(), ParamsAdamW::default())?;
//! let mut scaler = GradScaler::new(adamw, masters.vars(), ScalerConfig::pytorch())?;
//!
//! let x = Tensor::full(0.1f32, (3, 4), &dev)?.to_dtype(DType::F16)?;
//! let fc = linear(4, 2, masters.var_builder()?.pp("fc"))?; // f16 copies of the masters
//! let loss = fc.forward(&x)?.to_dtype(DType::F32)?.sqr()?.mean_all()?;
//! let outcome = scaler.backward_step(&loss)?;
//! assert!(outcome.is_stepped());
//! # Ok::<(), candle_core::Error>(())
//! ```
//!
//! [`ScalerConfig`]: halfscale_core::scaler::ScalerConfig
//! [`ScalerConfig::pytorch`]: halfscale_core::scaler::ScalerConfig::pytorch
#![forbid(unsafe_code)]

mod error;
mod grad_scaler;
mod master;
mod unscale;

pub use error::AdapterError;
pub use grad_scaler::{GradScaler, GradScalerConfig};
pub use master::MasterWeights;
pub use unscale::unscale_grad;
