//! The one error type of the simulator: every way loading data, training or writing output can
//! fail, each variant carrying the file or directory and what was wrong with it, so the CLI can
//! print one line that says what and where.

use halfscale_core::scaler::{ConfigError, ScalerError};
use std::path::PathBuf;

/// Everything that can go wrong in `halfscale-sim`. Never a panic on bad input.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file starts like gzip but does not decompress.
    #[error("{}: gzip error: {source}", path.display())]
    Gzip {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The first four bytes are not an IDX magic number of the expected kind.
    #[error("{}: bad magic {found:#010x}: expected {expected:#010x} (IDX, unsigned bytes, {dims} dimension(s))", path.display())]
    BadMagic {
        path: PathBuf,
        found: u32,
        expected: u32,
        dims: u8,
    },
    /// The header's dimensions describe more data than any file can hold (their product
    /// overflows 64 bits): corrupt, not merely truncated.
    #[error("{}: corrupt header: dimensions {dims:?} describe more than 2^64 bytes", path.display())]
    DimsOverflow { path: PathBuf, dims: Vec<u32> },
    /// The header or the payload is shorter than the header says.
    #[error("{}: truncated: expected {expected} bytes, found {found}", path.display())]
    Truncated {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    /// More bytes than the header accounts for: a wrong header or a concatenated file.
    #[error("{}: trailing data: expected {expected} bytes, found {found}", path.display())]
    TrailingData {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    /// The dimensions in the header do not fit the model (28x28 images, one label each).
    #[error("{}: wrong dimensions: found {found:?}, expected {expected}", path.display())]
    WrongDims {
        path: PathBuf,
        found: Vec<u32>,
        expected: &'static str,
    },
    /// A label outside the model's ten classes.
    #[error("{}: label {label} at index {index} is outside 0..=9", path.display())]
    BadLabel {
        path: PathBuf,
        index: usize,
        label: u8,
    },
    /// The image and label files of one split disagree on the number of examples.
    #[error("{} holds {images} images but {} holds {labels} labels", images_path.display(), labels_path.display())]
    CountMismatch {
        images_path: PathBuf,
        images: usize,
        labels_path: PathBuf,
        labels: usize,
    },
    /// The data directory lacks some of the four IDX files.
    #[error("{}: missing {} (with or without .gz); point --data at a directory holding the four IDX files (MNIST's are in data/MNIST/raw)", dir.display(), missing.join(", "))]
    MissingFiles {
        dir: PathBuf,
        missing: Vec<String>,
        looked_for: Vec<String>,
    },
    /// Parameters or optimizer state of another length than the model's (a mismatched
    /// checkpoint, or state of another model).
    #[error("{what}: {found} values, but the model has {expected}")]
    StateMismatch {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    /// A named tensor ([`crate::state_dict::StateDict`]) that the backend does not hold.
    #[error("state tensor `{name}`: the backend holds no tensor of that name")]
    UnknownTensor { name: String },
    /// A named tensor the backend or the run's state needs and the dictionary lacks.
    #[error("state tensor `{name}` is missing")]
    MissingTensor { name: String },
    /// A named tensor of another length than the backend's.
    #[error("state tensor `{name}`: {found} values, but the backend's has {expected}")]
    TensorLength {
        name: String,
        expected: usize,
        found: usize,
    },
    /// A named tensor of another element type than the backend's.
    #[error("state tensor `{name}`: {found} values, but the backend's are {expected}")]
    TensorType {
        name: String,
        expected: &'static str,
        found: &'static str,
    },
    /// A batch or buffer of the wrong size was handed to a backend.
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    /// An output file (metrics, plot) could not be written.
    #[error("{}: {source}", path.display())]
    Output {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The loss scaler refused an update or a saved state (its policy's error: NaN, overflow at
    /// the floor; a state out of its bounds).
    #[error("loss scaler: step {step}: {source}")]
    Scaler {
        step: u64,
        #[source]
        source: ScalerError,
    },
    /// The loss scaler's configuration is invalid.
    #[error("loss scaler: {0}")]
    ScalerConfig(#[source] ConfigError),
    /// A device backend failed, or disagreed with the host.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// A configuration value out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A weights file that cannot be read or written.
    #[error(transparent)]
    Weights(#[from] crate::weights::WeightsError),
    /// A checkpoint that cannot be read or written, or that belongs to another run.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
}

/// What went wrong on a device backend, or between it and the host.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The backend's own error (the CUDA backend's `GpuError`), named by the backend.
    #[error("{backend}: {source}")]
    Backend {
        backend: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A queued step's outcome that the host's scaler does not reproduce.
    #[error("step {step}: the backend's {what} ({backend_value}) differs from the host scaler's ({host_value})")]
    Disagrees {
        step: u64,
        what: &'static str,
        backend_value: String,
        host_value: String,
    },
    /// A drain that returned another number of outcomes than steps were queued.
    #[error("{queued} steps were queued but the backend returned {returned} outcomes")]
    OutcomeCount { queued: usize, returned: usize },
    /// The backend's state read or replaced while queued steps are not drained: their outcomes
    /// must reach the host's scaler first (`QueuedSteps::drain`).
    #[error("{backend}: {pending} queued step(s) not drained; drain them before reading or replacing the state")]
    Undrained { backend: String, pending: usize },
    /// Queued steps asked of a backend that does not offer them.
    #[error("{backend}: this backend does not run queued steps")]
    NoQueuedSteps { backend: String },
}

/// `Result` with [`SimError`].
pub type Result<T, E = SimError> = std::result::Result<T, E>;
