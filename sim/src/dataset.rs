//! An MNIST-style dataset: the four IDX files of torchvision's layout in one directory, gzip or
//! not, so Fashion-MNIST, KMNIST and any other 28x28 IDX set work unchanged. Pixels are scaled to
//! `[0, 1]` as `ToTensor` does (`byte as f32 / 255`, no normalisation).
//!
//! Batching follows `DataLoader(batch_size=64, shuffle=True)`: a fresh permutation per epoch
//! (from [`SeededRng`]), the last partial batch kept (`drop_last=False`): 60,000 images make
//! 938 batches, the last of 32.

use crate::error::{Result, SimError};
use crate::idx;
use crate::rng::SeededRng;
use std::path::{Path, PathBuf};

/// Pixels per image (28 x 28).
pub const IMAGE_PIXELS: usize = 28 * 28;
/// Image side.
pub const IMAGE_SIDE: usize = 28;
/// Number of classes.
pub const CLASSES: usize = 10;

/// The four files, by torchvision's names (each may also carry `.gz`).
pub const FILE_NAMES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// One split: images as f32 in `[0, 1]`, row-major `[n, 28*28]`, and labels.
#[derive(Clone, Debug, Default)]
pub struct Split {
    pub images: Vec<f32>,
    pub labels: Vec<u8>,
}

impl Split {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the split has no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Builds a split from raw bytes (`images.len() == 784 * labels.len()`), scaling as `ToTensor`.
    pub fn from_bytes(images: &[u8], labels: &[u8]) -> Result<Self> {
        if images.len() != labels.len() * IMAGE_PIXELS {
            return Err(SimError::InvalidBatch(format!(
                "{} image bytes for {} labels",
                images.len(),
                labels.len()
            )));
        }
        Ok(Self {
            images: images.iter().map(|&b| f32::from(b) / 255.0).collect(),
            labels: labels.to_vec(),
        })
    }

    /// Copies the examples at `indices` into `images`/`labels` (cleared first): one batch.
    pub fn gather(&self, indices: &[u32], images: &mut Vec<f32>, labels: &mut Vec<u8>) {
        images.clear();
        labels.clear();
        for &i in indices {
            let i = i as usize;
            images.extend_from_slice(&self.images[i * IMAGE_PIXELS..(i + 1) * IMAGE_PIXELS]);
            labels.push(self.labels[i]);
        }
    }

    /// A contiguous range of examples, as a batch view.
    pub fn slice(&self, start: usize, end: usize) -> (&[f32], &[u8]) {
        (
            &self.images[start * IMAGE_PIXELS..end * IMAGE_PIXELS],
            &self.labels[start..end],
        )
    }
}

/// The train and test splits of one directory.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    pub train: Split,
    pub test: Split,
}

/// The paths of the four files found in `dir`, in [`FILE_NAMES`] order. The uncompressed file
/// wins when both exist (it is what torchvision extracts, and reads faster).
pub fn locate(dir: &Path) -> Result<[PathBuf; 4]> {
    let mut found: Vec<PathBuf> = Vec::with_capacity(4);
    let mut missing = Vec::new();
    for name in FILE_NAMES {
        let raw = dir.join(name);
        let gz = idx::with_gz(&raw);
        if raw.is_file() {
            found.push(raw);
        } else if gz.is_file() {
            found.push(gz);
        } else {
            missing.push(name.to_string());
        }
    }
    if !missing.is_empty() {
        return Err(SimError::MissingFiles {
            dir: dir.to_path_buf(),
            missing,
            looked_for: FILE_NAMES.iter().map(|s| s.to_string()).collect(),
        });
    }
    let mut it = found.into_iter();
    Ok(std::array::from_fn(|_| it.next().unwrap_or_default()))
}

fn load_split(images_path: &Path, labels_path: &Path) -> Result<Split> {
    let images = idx::load_images(images_path)?;
    let labels = idx::load_labels(labels_path)?;
    let n_images = images.dims[0] as usize;
    if n_images != labels.data.len() {
        return Err(SimError::CountMismatch {
            images_path: images_path.to_path_buf(),
            images: n_images,
            labels_path: labels_path.to_path_buf(),
            labels: labels.data.len(),
        });
    }
    Split::from_bytes(&images.data, &labels.data)
}

impl Dataset {
    /// Loads the four files of `dir` (see [`locate`]); any problem is an error naming the file.
    pub fn load(dir: &Path) -> Result<Self> {
        let [tri, trl, tei, tel] = locate(dir)?;
        Ok(Self {
            train: load_split(&tri, &trl)?,
            test: load_split(&tei, &tel)?,
        })
    }
}

/// The epoch order: a seeded permutation per epoch, cut into batches of `batch_size`, the last
/// partial batch kept.
#[derive(Clone, Debug)]
pub struct Batches {
    order: Vec<u32>,
    batch_size: usize,
    rng: SeededRng,
}

impl Batches {
    /// A batcher over `len` examples drawing its permutations from `seed`.
    pub fn new(len: usize, batch_size: usize, seed: u64) -> Self {
        Self {
            order: (0..len as u32).collect(),
            batch_size: batch_size.max(1),
            rng: SeededRng::new(seed),
        }
    }

    /// A batcher whose stream for `seed` stands `word_pos` words in (see [`Self::word_pos`]):
    /// its next permutation is the one the batcher that reported that position would draw.
    pub fn at(len: usize, batch_size: usize, seed: u64, word_pos: u64) -> Self {
        Self {
            order: (0..len as u32).collect(),
            batch_size: batch_size.max(1),
            rng: SeededRng::at(seed, word_pos),
        }
    }

    /// The position of the permutation stream: where the next epoch's order is drawn from.
    pub fn word_pos(&self) -> u64 {
        self.rng.word_pos()
    }

    /// Number of batches per epoch (`ceil(len / batch_size)`).
    pub fn batches_per_epoch(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }

    /// The permutation drawn last (the identity before the first draw).
    pub fn order(&self) -> &[u32] {
        &self.order
    }

    /// Draws the next epoch's permutation (from the identity, so each epoch's order depends only
    /// on the stream position) and returns its batches of indices.
    pub fn next_epoch(&mut self) -> std::slice::Chunks<'_, u32> {
        let batch_size = self.batch_size;
        self.next_order().chunks(batch_size)
    }

    /// Draws the next epoch's permutation and returns it whole (batch `k` is
    /// `order[k * batch_size..]`), for a backend that gathers its batches itself.
    pub fn next_order(&mut self) -> &[u32] {
        for (i, o) in self.order.iter_mut().enumerate() {
            *o = i as u32;
        }
        self.rng.shuffle(&mut self.order);
        &self.order
    }
}
