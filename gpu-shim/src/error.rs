//! The crate's one error type: every failure names what was being done.

/// Everything that can go wrong between the host and the GPU.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GpuError {
    /// The crate was compiled without the `cuda` feature (the stand-in).
    #[error(
        "this binary was built without CUDA: rebuild it with `cargo build --release --features cuda` \
         (linking needs the NVIDIA driver's libcuda.so, or the stub from gpu-shim/scripts/make-stub-libcuda \
         with CUDA_LIBRARY_PATH set; see gpu-shim/README.md)"
    )]
    NotBuilt,
    /// No usable NVIDIA driver or device (cuInit or cuDriverGetVersion failed).
    #[error("no CUDA device: {message}")]
    NoDevice { message: String },
    /// The driver predates the PTX ISA of the embedded kernels.
    #[error(
        "the NVIDIA driver supports CUDA {}.{} but the kernels are PTX ISA 9.0 (nvcc 13.0), which needs CUDA {}.{} \
         (driver 580 or newer): update the driver",
        found / 1000, (found % 1000) / 10, needed / 1000, (needed % 1000) / 10
    )]
    DriverTooOld { found: i32, needed: i32 },
    /// The driver rejected an embedded PTX module (JIT failure).
    #[error("loading the PTX module `{module}`: {message}")]
    Load {
        module: &'static str,
        message: String,
    },
    /// A driver call failed; `context` says which.
    #[error("{context}: {message}")]
    Driver {
        context: &'static str,
        message: String,
    },
    /// A kernel launch failed.
    #[error("launching kernel `{kernel}`: {message}")]
    Launch {
        kernel: &'static str,
        message: String,
    },
    /// A recipe, size or batch the backend does not handle.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A batch of the wrong shape, or a call out of order.
    #[error("invalid use: {0}")]
    Invalid(String),
}

/// `Result` with [`GpuError`].
pub type Result<T, E = GpuError> = std::result::Result<T, E>;

/// The one route from a [`GpuError`] to the simulator's error: a device error naming the CUDA
/// backend, the `GpuError` kept as its source.
impl From<GpuError> for halfscale_sim::SimError {
    fn from(e: GpuError) -> Self {
        halfscale_sim::error::DeviceError::Backend {
            backend: "cuda backend",
            source: Box::new(e),
        }
        .into()
    }
}
