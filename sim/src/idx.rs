//! IDX files (LeCun's MNIST format): a 4-byte magic `00 00 <type> <ndims>`, `ndims` big-endian u32
//! dimensions, then the data row-major. Only type 0x08 (unsigned byte) is used by MNIST-style
//! datasets. Files may be gzip-compressed (recognised by the gzip magic `1f 8b`, not by the name).
//!
//! Every failure is a [`SimError`] naming the file and the problem: a short header or payload is
//! `Truncated` (sizes counted in decompressed bytes), a wrong type/rank is `BadMagic`, unexpected
//! shape is `WrongDims`, extra bytes are `TrailingData`, a broken gzip stream is `Gzip`.

use crate::error::{Result, SimError};
use std::io::Read;
use std::path::{Path, PathBuf};

/// IDX element type code for unsigned bytes.
pub const TYPE_U8: u8 = 0x08;

/// A parsed IDX array of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions as stored in the header.
    pub dims: Vec<u32>,
    /// Row-major payload, `dims.iter().product()` bytes.
    pub data: Vec<u8>,
}

/// Reads a file whole, decompressing it when it starts with the gzip magic.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|source| SimError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|source| SimError::Gzip {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses IDX bytes of unsigned-byte type with `ndims` dimensions; `path` is only for errors.
pub fn parse_u8(path: &Path, bytes: &[u8], ndims: u8) -> Result<IdxArray> {
    let p = || path.to_path_buf();
    let header_len = 4 + 4 * usize::from(ndims);
    if bytes.len() < 4 {
        return Err(SimError::Truncated {
            path: p(),
            expected: header_len as u64,
            found: bytes.len() as u64,
        });
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let expected_magic = (u32::from(TYPE_U8) << 8) | u32::from(ndims);
    if magic != expected_magic {
        return Err(SimError::BadMagic {
            path: p(),
            found: magic,
            expected: expected_magic,
            dims: ndims,
        });
    }
    if bytes.len() < header_len {
        return Err(SimError::Truncated {
            path: p(),
            expected: header_len as u64,
            found: bytes.len() as u64,
        });
    }
    let dims: Vec<u32> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    // Checked: a corrupt header's dims can multiply past u64 (found by the idx_parse fuzz target).
    let expected = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
        .and_then(|payload| payload.checked_add(header_len as u64));
    let Some(expected) = expected else {
        return Err(SimError::DimsOverflow { path: p(), dims });
    };
    let found = bytes.len() as u64;
    if found < expected {
        return Err(SimError::Truncated {
            path: p(),
            expected,
            found,
        });
    }
    if found > expected {
        return Err(SimError::TrailingData {
            path: p(),
            expected,
            found,
        });
    }
    Ok(IdxArray {
        dims,
        data: bytes[header_len..].to_vec(),
    })
}

/// Loads an IDX image file: three dimensions `[n, 28, 28]`.
pub fn load_images(path: &Path) -> Result<IdxArray> {
    let arr = parse_u8(path, &read_maybe_gz(path)?, 3)?;
    if arr.dims[1] != 28 || arr.dims[2] != 28 {
        return Err(SimError::WrongDims {
            path: path.to_path_buf(),
            found: arr.dims,
            expected: "[n, 28, 28]",
        });
    }
    Ok(arr)
}

/// Loads an IDX label file: one dimension `[n]`, every label in `0..=9`.
pub fn load_labels(path: &Path) -> Result<IdxArray> {
    let arr = parse_u8(path, &read_maybe_gz(path)?, 1)?;
    if let Some((index, &label)) = arr.data.iter().enumerate().find(|(_, &l)| l > 9) {
        return Err(SimError::BadLabel {
            path: path.to_path_buf(),
            index,
            label,
        });
    }
    Ok(arr)
}

/// Encodes an unsigned-byte IDX file (for tests and tools that write synthetic datasets).
pub fn encode_u8(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend_from_slice(&[0, 0, TYPE_U8, dims.len() as u8]);
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// `path` with `.gz` appended.
pub(crate) fn with_gz(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".gz");
    PathBuf::from(s)
}
