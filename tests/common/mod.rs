//! Shared by the CLI tests: a tiny synthetic IDX dataset in a temporary directory (not MNIST:
//! the suite stays fast).
#![allow(dead_code)]

use halfscale::sim::idx;
use std::io::Write;
use std::path::{Path, PathBuf};

pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("halfscale-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `n` images whose class is drawn by a bright square's position; deterministic.
pub fn set(n: u32, salt: u32) -> (Vec<u8>, Vec<u8>) {
    let mut images = vec![0u8; n as usize * 784];
    let mut labels = vec![0u8; n as usize];
    for i in 0..n as usize {
        let c = (i * 7 + salt as usize) % 10;
        labels[i] = c as u8;
        let (y0, x0) = (4 + (c / 5) * 10, 2 + (c % 5) * 5);
        for y in y0..y0 + 4 {
            for x in x0..x0 + 4 {
                images[i * 784 + y * 28 + x] = 200 + (i % 50) as u8;
            }
        }
    }
    (
        idx::encode_u8(&[n, 28, 28], &images),
        idx::encode_u8(&[n], &labels),
    )
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Train files gzipped, test files raw: both must be found.
pub fn write_dataset(dir: &Path) {
    let (ti, tl) = set(320, 0);
    let (vi, vl) = set(40, 3);
    std::fs::write(dir.join("train-images-idx3-ubyte.gz"), gzip(&ti)).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte.gz"), gzip(&tl)).unwrap();
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), vi).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), vl).unwrap();
}
