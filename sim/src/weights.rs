//! The model's weights as a safetensors file in PyTorch's layout: exactly what
//! `safetensors.torch.save_file(model.state_dict(), path)` writes for the seed's `SimpleCNN`, so
//! a PyTorch model trains or evaluates here and goes back with a strict `load_state_dict`.
//!
//! The file holds eight tensors, named and shaped as `state_dict()` names and shapes them:
//! `conv1.weight` [32,1,5,5], `conv1.bias` [32], `conv2.weight` [64,32,5,5], `conv2.bias` [64],
//! `fc1.weight` [128,1024], `fc1.bias` [128], `fc2.weight` [10,128], `fc2.bias` [10]. Their
//! row-major data is the flat [`Params`] vector's per-layer ranges as they stand (the flat order
//! is `named_parameters()`'s, and a `[out, in, k, k]` weight is stored `[out][in][i][j]` in both).
//!
//! Reading accepts F32, F16 and BF16 (both widen to f32 exactly) and refuses, naming the file and
//! the tensor: a missing or extra tensor, another shape, another dtype, a NaN or infinite weight,
//! and a header that does not parse (truncated, corrupt). Writing is always F32, with the
//! metadata `{"format": "pt"}` that PyTorch's `save_file` puts there.

use crate::model::{Layer, Params, PARAM_COUNT};
use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What can be wrong with a weights file; every variant names the file (and the tensor).
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a safetensors file (a truncated or corrupt header, offsets outside the
    /// file).
    #[error("{}: not a valid safetensors file (truncated or corrupt): {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    /// A tensor of the model is not in the file.
    #[error("{}: tensor `{name}` is missing (a SimpleCNN state_dict has {})", path.display(), expected_names())]
    Missing { path: PathBuf, name: String },
    /// The file has a tensor the model does not.
    #[error("{}: unexpected tensor `{name}` (a SimpleCNN state_dict has {})", path.display(), expected_names())]
    Unexpected { path: PathBuf, name: String },
    /// A tensor of another shape.
    #[error("{}: tensor `{name}` has shape {found:?}, but the model's is {expected:?}", path.display())]
    Shape {
        path: PathBuf,
        name: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    /// A dtype other than F32, F16 or BF16.
    #[error("{}: tensor `{name}` is {dtype}; weights must be F32, F16 or BF16", path.display())]
    Dtype {
        path: PathBuf,
        name: String,
        dtype: String,
    },
    /// A NaN or an infinity among the weights: nothing could be trained or evaluated from it.
    #[error("{}: tensor `{name}` holds {value} at element {index}; weights must be finite", path.display())]
    NonFinite {
        path: PathBuf,
        name: String,
        index: usize,
        value: f32,
    },
}

/// The weights' tensor names, shapes and ranges of the flat vector, in `state_dict()` order.
pub fn tensor_layout() -> [(String, Vec<usize>, std::ops::Range<usize>); 8] {
    use crate::model::{CONV1, CONV2, FC1, FC2};
    let weight_shapes = [
        vec![
            CONV1.out_channels,
            CONV1.in_channels,
            CONV1.kernel,
            CONV1.kernel,
        ],
        vec![
            CONV2.out_channels,
            CONV2.in_channels,
            CONV2.kernel,
            CONV2.kernel,
        ],
        vec![FC1.out_features, FC1.in_features],
        vec![FC2.out_features, FC2.in_features],
    ];
    let mut out: [(String, Vec<usize>, std::ops::Range<usize>); 8] = Default::default();
    for (k, (layer, weight_shape)) in Layer::ALL.into_iter().zip(weight_shapes).enumerate() {
        let (weight_len, bias_len, _) = layer.sizes();
        let start = layer.offset();
        out[2 * k] = (
            format!("{}.weight", layer.name()),
            weight_shape,
            start..start + weight_len,
        );
        out[2 * k + 1] = (
            format!("{}.bias", layer.name()),
            vec![bias_len],
            start + weight_len..start + weight_len + bias_len,
        );
    }
    out
}

fn expected_names() -> String {
    tensor_layout()
        .iter()
        .map(|(n, s, _)| format!("{n} {s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads a weights file (see the module doc for what is accepted).
pub fn load(path: &Path) -> Result<Params, WeightsError> {
    let bytes = std::fs::read(path).map_err(|source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_bytes(&bytes, path)
}

/// Parses the bytes of a weights file; `path` only names the file in errors. A halfscale
/// checkpoint (`crate::checkpoint`) is a weights file too: its optimizer tensors are passed over.
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Params, WeightsError> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| WeightsError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let checkpoint = SafeTensors::read_metadata(bytes)
        .ok()
        .and_then(|(_, m)| m.metadata().clone())
        .is_some_and(|m| m.contains_key("halfscale.checkpoint"));
    params_from(&file, path, |name| {
        !(checkpoint && name.starts_with("optimizer."))
    })
}

/// The model's weights out of a parsed file; a tensor that is not the model's is an error when
/// `is_weight(name)` says it should be one (it is passed over otherwise).
pub(crate) fn params_from(
    file: &SafeTensors<'_>,
    path: &Path,
    is_weight: impl Fn(&str) -> bool,
) -> Result<Params, WeightsError> {
    let layout = tensor_layout();
    let mut names = file.names();
    names.sort_unstable();
    if let Some(extra) = names
        .iter()
        .find(|n| is_weight(n) && !layout.iter().any(|(name, ..)| name == *n))
    {
        return Err(WeightsError::Unexpected {
            path: path.to_path_buf(),
            name: extra.to_string(),
        });
    }
    let mut params = Params::zeros();
    for (name, shape, range) in &layout {
        let view = file.tensor(name).map_err(|_| WeightsError::Missing {
            path: path.to_path_buf(),
            name: name.clone(),
        })?;
        if view.shape() != shape.as_slice() {
            return Err(WeightsError::Shape {
                path: path.to_path_buf(),
                name: name.clone(),
                found: view.shape().to_vec(),
                expected: shape.clone(),
            });
        }
        let out = &mut params.data[range.clone()];
        let data = view.data();
        // safetensors stores little-endian; the library has checked that data has
        // shape-product * dtype-size bytes.
        match view.dtype() {
            Dtype::F32 => {
                for (o, c) in out.iter_mut().zip(data.chunks_exact(4)) {
                    *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
            Dtype::F16 => {
                for (o, c) in out.iter_mut().zip(data.chunks_exact(2)) {
                    *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
            Dtype::BF16 => {
                for (o, c) in out.iter_mut().zip(data.chunks_exact(2)) {
                    *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
            other => {
                return Err(WeightsError::Dtype {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    dtype: format!("{other:?}"),
                })
            }
        }
        if let Some((index, &value)) = out.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(WeightsError::NonFinite {
                path: path.to_path_buf(),
                name: name.clone(),
                index,
                value,
            });
        }
    }
    Ok(params)
}

/// The bytes of a weights file holding `params` (F32, PyTorch's names and shapes).
pub fn to_bytes(params: &Params) -> Vec<u8> {
    debug_assert_eq!(params.data.len(), PARAM_COUNT);
    let layout = tensor_layout();
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = layout
        .iter()
        .map(|(name, shape, range)| {
            let bytes = params.data[range.clone()]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            (name.clone(), shape.clone(), bytes)
        })
        .collect();
    let views = data.iter().map(|(name, shape, bytes)| {
        let view = safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), bytes)
            .expect("the layout's shapes match the parameter ranges");
        (name.as_str(), view)
    });
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(metadata)).expect("eight small F32 tensors always serialise")
}

/// Writes `params` to `path` so that a crash at any instant leaves either the old file or the
/// new one: the bytes go to a temporary file in the same directory, are flushed to disk
/// (`fsync`), and the temporary file is renamed over `path` (an atomic replace on POSIX).
pub fn save(params: &Params, path: &Path) -> Result<(), WeightsError> {
    write_atomically(path, &to_bytes(params)).map_err(|source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename (see [`save`]).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable once the directory is synced.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
