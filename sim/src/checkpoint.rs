//! Whole-run checkpoints: a [`TrainState`] and the configuration of its run in one safetensors
//! file, written so that a crash at any instant leaves a valid file (the previous one or the new
//! one), and read back so that the resumed run takes exactly the steps the uninterrupted run
//! takes.
//!
//! Layout (safetensors, all tensors F32 little-endian):
//! - the eight weight tensors under PyTorch's `state_dict()` names and shapes (see
//!   [`crate::weights`]), so `halfscale eval --weights CHECKPOINT` evaluates it;
//! - Adam's moments as `optimizer.exp_avg.<name>` and `optimizer.exp_avg_sq.<name>`, the shapes
//!   of the weights (`torch.optim.Adam`'s per-parameter `exp_avg`/`exp_avg_sq`);
//! - metadata: `format` = `pt`, `halfscale.checkpoint` = the layout version, `halfscale.state` =
//!   the rest of the state as JSON (step, data cursor with the shuffling stream's position, Adam's
//!   step count, the loss scaler's state: PyTorch's five `GradScaler.state_dict()` keys and this
//!   project's extras, the recipe's state), `halfscale.run` = the run's configuration as JSON
//!   ([`RunConfig`]: recipe, scaler policy, batch size, epochs, dataset identity).
//!
//! A resume compares the run it is asked for with the checkpoint's [`RunConfig`] and refuses,
//! naming the field and both values, when they differ where it matters ([`RunConfig::check`]).

use crate::adam::AdamState;
use crate::dataset::Dataset;
use crate::model::{Params, PARAM_COUNT};
use crate::recipe::RecipeState;
use crate::state::{DataCursor, TrainState};
use crate::weights;
use halfscale_core::scaler::{ScalerConfig, ScalerState};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The layout version this module writes and reads.
pub const VERSION: &str = "1";

/// What identifies a dataset for a resume: the sizes of both splits and a CRC-32 of each split's
/// labels (a different dataset, or the same one in another order, changes them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DatasetId {
    pub train: usize,
    pub test: usize,
    pub train_labels_crc32: u32,
    pub test_labels_crc32: u32,
}

impl DatasetId {
    /// The identity of `data`.
    pub fn of(data: &Dataset) -> Self {
        Self {
            train: data.train.len(),
            test: data.test.len(),
            train_labels_crc32: crc32fast::hash(&data.train.labels),
            test_labels_crc32: crc32fast::hash(&data.test.labels),
        }
    }
}

impl std::fmt::Display for DatasetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} train / {} test images, label CRC-32 {:08x} / {:08x}",
            self.train, self.test, self.train_labels_crc32, self.test_labels_crc32
        )
    }
}

/// The configuration a checkpoint's run was started with: what must match for a resume to
/// continue that run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunConfig {
    /// The recipe's CLI name (`fp32`, `mixed`, `bf16`, `fp8`, `mxfp8`).
    pub precision: String,
    /// The recipe with its settings, as [`crate::Recipe::name`] spells it (the FP8 recipes'
    /// scaling settings); empty in checkpoints written before it was recorded.
    #[serde(default)]
    pub recipe: String,
    /// The scaler policy's CLI name (`pytorch`, `recommended`, `deepspeed`, `none`).
    pub scaler_policy: String,
    /// The scaler's exact configuration.
    pub scaler: ScalerConfig,
    pub batch_size: usize,
    /// The epochs the run was started for (a resume may change it).
    pub epochs: usize,
    /// Batches per epoch when capped (`--max-batches`).
    pub max_batches: Option<usize>,
    pub seed: u64,
    pub dataset: DatasetId,
}

impl RunConfig {
    /// Refuses to continue `self` (the checkpoint's run) as `run`, naming the first field that
    /// differs and both values. The epoch count and the seed (which only chose the initial
    /// weights and the shuffling stream, both in the state) may differ.
    pub fn check(&self, run: &RunConfig, path: &Path) -> Result<(), CheckpointError> {
        let differ = |field: &'static str, saved: String, asked: String| {
            Err(CheckpointError::Mismatch {
                path: path.to_path_buf(),
                field,
                saved,
                asked,
            })
        };
        if self.precision != run.precision {
            return differ("precision", self.precision.clone(), run.precision.clone());
        }
        if !self.recipe.is_empty() && self.recipe != run.recipe {
            return differ("recipe", self.recipe.clone(), run.recipe.clone());
        }
        if self.scaler_policy != run.scaler_policy || self.scaler != run.scaler {
            // The policy names say it unless only the parameters differ.
            let same_name = self.scaler_policy == run.scaler_policy;
            let show = |name: &str, c: &ScalerConfig| {
                if same_name {
                    format!(
                        "{name} ({})",
                        serde_json::to_string(c).unwrap_or_else(|_| "?".into())
                    )
                } else {
                    name.to_string()
                }
            };
            return differ(
                "scaler",
                show(&self.scaler_policy, &self.scaler),
                show(&run.scaler_policy, &run.scaler),
            );
        }
        if self.batch_size != run.batch_size {
            return differ(
                "batch size",
                self.batch_size.to_string(),
                run.batch_size.to_string(),
            );
        }
        if self.max_batches != run.max_batches {
            let show = |m: Option<usize>| m.map_or("all".into(), |m| m.to_string());
            return differ(
                "batches per epoch (--max-batches)",
                show(self.max_batches),
                show(run.max_batches),
            );
        }
        if self.dataset != run.dataset {
            return differ("dataset", self.dataset.to_string(), run.dataset.to_string());
        }
        Ok(())
    }
}

/// Everything that can be wrong with a checkpoint file; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The weights inside are not the model's (shape, dtype, non-finite, missing tensor).
    #[error(transparent)]
    Weights(#[from] weights::WeightsError),
    /// Not a halfscale checkpoint, or a damaged one.
    #[error("{}: not a halfscale checkpoint: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    /// The run asked for is not the checkpoint's.
    #[error("{}: the checkpoint's {field} is {saved}, but this run's is {asked}; resume with the checkpoint's settings", path.display())]
    Mismatch {
        path: PathBuf,
        field: &'static str,
        saved: String,
        asked: String,
    },
}

/// The non-tensor part of a [`TrainState`], as stored in the metadata.
#[derive(serde::Serialize, serde::Deserialize)]
struct StateMeta {
    step: u64,
    cursor: DataCursor,
    adam_step: u64,
    scaler: Option<ScalerState>,
    recipe: RecipeState,
}

/// The bytes of a checkpoint of `state` from the run `run`.
pub fn to_bytes(state: &TrainState, run: &RunConfig) -> Vec<u8> {
    let layout = weights::tensor_layout();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(24);
    let le = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    for (name, shape, range) in &layout {
        tensors.push((
            name.clone(),
            shape.clone(),
            le(&state.params.data[range.clone()]),
        ));
        tensors.push((
            format!("optimizer.exp_avg.{name}"),
            shape.clone(),
            le(&state.adam.exp_avg[range.clone()]),
        ));
        tensors.push((
            format!("optimizer.exp_avg_sq.{name}"),
            shape.clone(),
            le(&state.adam.exp_avg_sq[range.clone()]),
        ));
    }
    let meta = StateMeta {
        step: state.step,
        cursor: state.cursor,
        adam_step: state.adam.step,
        scaler: state.scaler,
        recipe: state.recipe.clone(),
    };
    let metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("halfscale.checkpoint".to_string(), VERSION.to_string()),
        (
            "halfscale.state".to_string(),
            serde_json::to_string(&meta).expect("the state serialises"),
        ),
        (
            "halfscale.run".to_string(),
            serde_json::to_string(run).expect("the run configuration serialises"),
        ),
    ]);
    let views = tensors.iter().map(|(name, shape, bytes)| {
        let view = safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), bytes)
            .expect("shapes match the parameter ranges");
        (name.as_str(), view)
    });
    safetensors::serialize(views, Some(metadata)).expect("checkpoint tensors serialise")
}

/// Writes a checkpoint through a temporary file in the same directory, fsync and rename, so that
/// `path` always holds a complete checkpoint (see [`weights::write_atomically`]).
pub fn save(path: &Path, state: &TrainState, run: &RunConfig) -> Result<(), CheckpointError> {
    weights::write_atomically(path, &to_bytes(state, run)).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a checkpoint: the state and the configuration of its run.
pub fn load(path: &Path) -> Result<(TrainState, RunConfig), CheckpointError> {
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_bytes(&bytes, path)
}

/// Parses the bytes of a checkpoint; `path` only names the file in errors.
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<(TrainState, RunConfig), CheckpointError> {
    let invalid = |message: String| CheckpointError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| invalid(format!("{e} (truncated or corrupt)")))?;
    let meta = header.metadata().clone().unwrap_or_default();
    match meta.get("halfscale.checkpoint").map(String::as_str) {
        Some(VERSION) => {}
        Some(other) => {
            return Err(invalid(format!(
                "layout version {other}, expected {VERSION}"
            )))
        }
        None => {
            return Err(invalid(
                "no halfscale.checkpoint metadata (a weights file? use --init-from)".into(),
            ))
        }
    }
    let field = |key: &str| {
        meta.get(key)
            .ok_or_else(|| invalid(format!("no {key} metadata")))
    };
    let state_meta: StateMeta = serde_json::from_str(field("halfscale.state")?)
        .map_err(|e| invalid(format!("halfscale.state: {e}")))?;
    let run: RunConfig = serde_json::from_str(field("halfscale.run")?)
        .map_err(|e| invalid(format!("halfscale.run: {e}")))?;
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| invalid(format!("{e} (truncated or corrupt)")))?;
    let params = weights::params_from(&file, path, |name| {
        !name.starts_with("optimizer.exp_avg.") && !name.starts_with("optimizer.exp_avg_sq.")
    })?;
    let mut adam = AdamState::new(PARAM_COUNT);
    adam.step = state_meta.adam_step;
    for (prefix, out) in [
        ("optimizer.exp_avg.", &mut adam.exp_avg),
        ("optimizer.exp_avg_sq.", &mut adam.exp_avg_sq),
    ] {
        for (name, shape, range) in weights::tensor_layout() {
            let key = format!("{prefix}{name}");
            let view = file
                .tensor(&key)
                .map_err(|_| invalid(format!("tensor `{key}` is missing")))?;
            if view.dtype() != Dtype::F32 || view.shape() != shape.as_slice() {
                return Err(invalid(format!(
                    "tensor `{key}` is {:?} {:?}, expected F32 {shape:?}",
                    view.dtype(),
                    view.shape()
                )));
            }
            for (o, c) in out[range].iter_mut().zip(view.data().chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
    }
    let state = TrainState {
        step: state_meta.step,
        cursor: state_meta.cursor,
        params: Params { data: params.data },
        adam,
        scaler: state_meta.scaler,
        recipe: state_meta.recipe,
    };
    Ok((state, run))
}
