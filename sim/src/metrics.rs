//! `--metrics FILE.jsonl`: one JSON object per training step, written as the step ends (loss,
//! scale, whether it was skipped and why, and the cross-check figures when the step was checked).

use crate::error::{Result, SimError};
use crate::train::StepRecord;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// A JSON-lines writer of [`StepRecord`]s.
pub struct MetricsWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl MetricsWriter {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|source| SimError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    fn err(&self, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> SimError {
        SimError::Output {
            path: self.path.clone(),
            source: e.into(),
        }
    }

    /// Appends one record as a line.
    pub fn write(&mut self, record: &StepRecord) -> Result<()> {
        serde_json::to_writer(&mut self.out, record).map_err(|e| self.err(e))?;
        self.out.write_all(b"\n").map_err(|e| self.err(e))
    }

    /// Flushes to disk.
    pub fn finish(mut self) -> Result<()> {
        self.out.flush().map_err(|e| self.err(e))
    }
}
