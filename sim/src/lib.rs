//! # halfscale-sim
//!
//! The seed's workload: MNIST (any 28x28 IDX set), the `SimpleCNN`, cross-entropy on
//! log-softmax, `torch.optim.Adam`, under a recipe (f32, or emulated autocast mixed precision in
//! fp16 or bf16) with the core's loss scaler, every mixed step optionally cross-checked against
//! an f32 reference step from the same weights and batch; the CPU backend here, the interface
//! any device backend implements, and the resumable loop over a run's state.
//!
//! One concept per module: data ([`idx`], [`dataset`], [`rng`]), layers ([`conv2d`], [`pool`],
//! [`relu`], [`linear`], [`loss`], over [`gemm`]), the model ([`model`]) and optimizer
//! ([`adam`]), the device interface ([`backend`]) and its CPU implementation ([`cpu`], with the
//! autocast rules and the per-site recipes in [`recipe`]), a run's state ([`state`]) and a backend's tensors by name ([`state_dict`]), the loop ([`train`]), the cross-check ([`crosscheck`]), and
//! output ([`metrics`], [`plot`]).

pub mod adam;
pub mod aligned;
pub mod backend;
pub mod checkpoint;
pub mod conv2d;
pub mod cpu;
pub mod crosscheck;
pub mod dataset;
pub mod error;
pub mod gemm;
pub mod idx;
pub mod linear;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod plot;
pub mod pool;
pub mod quantize;
pub mod recipe;
pub mod relu;
pub mod rng;
pub mod round;
pub mod state;
pub mod state_dict;
pub mod train;
pub mod weights;

pub use backend::{Backend, Batch, EvalStats, StepOutcome};
pub use error::{Result, SimError};
pub use model::{Layer, Params};
pub use recipe::{LowFormat, Recipe, RecipeKind};
pub use state_dict::{StateDict, Values};
