//! # halfscale-gpu
//!
//! The CUDA half of halfscale: the seed's SimpleCNN training step in autocast fp16 on an NVIDIA
//! GPU, behind the simulator's [`halfscale_sim::Backend`] trait, so `halfscale train --device cuda`
//! runs the very loop the simulator runs and the simulator can check it.
//!
//! * Built with the `cuda` feature: [`GpuBackend`] drives kernels written in CUDA C
//!   (`gpu-shim/kernels/*.cu`), compiled to PTX by `gpu-shim/scripts/gen-ptx` and embedded
//!   ([`ptx`]), through `cust` 0.3.2 ([`driver`]: thin functions returning [`Result`] and RAII
//!   device buffers).
//! * Built without it: a stand-in with the same public API whose constructor returns
//!   [`GpuError::NotBuilt`], so callers need no `cfg`.
//! * Built with `emulate` instead (tests and CI): the same backend over a host emulation of the
//!   driver that runs the kernel sources compiled as C++ (`emulator/`), so the GPU tests run on
//!   a machine without a GPU.
//!
//! Synchronisation is explicit: the [`halfscale_sim::Backend`] methods that return host values
//! (`forward_backward`'s loss, `unscale_and_check`'s report, `evaluate`) wait for the GPU; the
//! device-scaled path ([`GpuBackend::step_device_scaled`], the trait's queued steps) keeps the
//! loss scale, `found_inf` and Adam's step count on the device and never waits: its per-step
//! records are read in bulk by [`GpuBackend::drain_records`].
//!
//! Accumulation orders and what is bit-identical to the simulator: `gpu-shim/README.md`.

pub mod error;
pub mod ptx;
mod types;

#[cfg(any(feature = "cuda", feature = "emulate"))]
mod args;
#[cfg(any(feature = "cuda", feature = "emulate"))]
mod backend;
#[cfg(feature = "cuda")]
pub mod driver;
#[cfg(all(feature = "emulate", not(feature = "cuda")))]
#[path = "emulator.rs"]
pub mod driver;
#[cfg(not(any(feature = "cuda", feature = "emulate")))]
mod standin;

#[cfg(any(feature = "cuda", feature = "emulate"))]
pub use backend::GpuBackend;
#[cfg(any(feature = "cuda", feature = "emulate"))]
pub use driver::probe;
#[cfg(not(any(feature = "cuda", feature = "emulate")))]
pub use standin::{probe, GpuBackend};

pub use error::{GpuError, Result};
pub use types::{DeviceInfo, DeviceScaler};

/// Whether this build has the CUDA backend (the `cuda` feature; the `emulate` test feature runs
/// the same backend on the CPU and does not count).
pub const BUILT_WITH_CUDA: bool = cfg!(feature = "cuda");
