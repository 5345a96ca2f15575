//! The IDX loader against well-formed, truncated and corrupt files, gzip and raw.

use halfscale_sim::dataset::{self, Batches, Dataset, FILE_NAMES};
use halfscale_sim::idx;
use halfscale_sim::SimError;
use std::io::Write;
use std::path::{Path, PathBuf};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("halfscale-sim-idx-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn images(n: u32) -> Vec<u8> {
    let data: Vec<u8> = (0..n * 784).map(|i| (i % 251) as u8).collect();
    idx::encode_u8(&[n, 28, 28], &data)
}

fn labels(n: u32) -> Vec<u8> {
    let data: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    idx::encode_u8(&[n], &data)
}

/// Writes a dataset of `n_train`/`n_test` examples; `gz` picks compressed files.
fn write_set(dir: &Path, n_train: u32, n_test: u32, gz: bool) {
    let files = [
        images(n_train),
        labels(n_train),
        images(n_test),
        labels(n_test),
    ];
    for (name, bytes) in FILE_NAMES.iter().zip(files) {
        if gz {
            std::fs::write(dir.join(format!("{name}.gz")), gzip(&bytes)).unwrap();
        } else {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}

#[test]
fn well_formed_raw_and_gz_load_identically() {
    let (raw, gz) = (temp_dir("raw"), temp_dir("gz"));
    write_set(&raw, 30, 7, false);
    write_set(&gz, 30, 7, true);
    let a = Dataset::load(&raw).unwrap();
    let b = Dataset::load(&gz).unwrap();
    assert_eq!(a.train.len(), 30);
    assert_eq!(a.test.len(), 7);
    assert_eq!(a.train.images, b.train.images);
    assert_eq!(a.test.labels, b.test.labels);
    // ToTensor scaling: byte / 255.
    assert_eq!(a.train.images[250], 250.0 / 255.0);
    assert_eq!(a.train.images[251], 0.0);
    assert_eq!(a.train.labels[13], 3);
}

#[test]
fn parse_reports_each_problem() {
    let p = Path::new("x-idx3-ubyte");
    let good = images(2);
    assert!(idx::parse_u8(p, &good, 3).is_ok());
    // Short header.
    match idx::parse_u8(p, &good[..10], 3) {
        Err(SimError::Truncated {
            expected: 16,
            found: 10,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    match idx::parse_u8(p, &good[..2], 3) {
        Err(SimError::Truncated { found: 2, .. }) => {}
        other => panic!("{other:?}"),
    }
    // Short payload.
    let e = idx::parse_u8(p, &good[..1000], 3).unwrap_err();
    assert_eq!(
        e.to_string(),
        "x-idx3-ubyte: truncated: expected 1584 bytes, found 1000"
    );
    // Bad magic: a label file where images are expected, and garbage.
    assert!(matches!(
        idx::parse_u8(p, &labels(3), 3),
        Err(SimError::BadMagic { found: 0x0801, .. })
    ));
    let mut bad = good.clone();
    bad[2] = 0x0d; // float type
    assert!(matches!(
        idx::parse_u8(p, &bad, 3),
        Err(SimError::BadMagic { .. })
    ));
    // Trailing data.
    let mut long = good.clone();
    long.push(0);
    assert!(matches!(
        idx::parse_u8(p, &long, 3),
        Err(SimError::TrailingData { .. })
    ));
}

#[test]
fn files_report_wrong_dims_bad_labels_gzip_errors_and_mismatches() {
    let d = temp_dir("corrupt");
    let f = d.join("img");
    std::fs::write(&f, idx::encode_u8(&[1, 32, 32], &[0; 1024])).unwrap();
    let e = idx::load_images(&f).unwrap_err();
    assert!(matches!(e, SimError::WrongDims { .. }), "{e}");
    assert!(e.to_string().contains("wrong dimensions"), "{e}");

    std::fs::write(&f, idx::encode_u8(&[3], &[1, 10, 2])).unwrap();
    assert!(matches!(
        idx::load_labels(&f),
        Err(SimError::BadLabel {
            index: 1,
            label: 10,
            ..
        })
    ));

    // Valid gzip magic, corrupt stream.
    let mut gz = gzip(&images(2));
    let mid = gz.len() / 2;
    for b in &mut gz[mid..mid + 8] {
        *b ^= 0x5a;
    }
    std::fs::write(&f, &gz).unwrap();
    let e = idx::load_images(&f).unwrap_err();
    assert!(matches!(e, SimError::Gzip { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("{}: gzip error", f.display())),
        "{e}"
    );

    // A gzip file cut short.
    let gz = gzip(&images(2));
    std::fs::write(&f, &gz[..gz.len() - 20]).unwrap();
    assert!(matches!(idx::load_images(&f), Err(SimError::Gzip { .. })));

    // Counts disagree between images and labels.
    let m = temp_dir("mismatch");
    write_set(&m, 5, 5, false);
    std::fs::write(m.join(FILE_NAMES[1]), labels(4)).unwrap();
    assert!(matches!(
        Dataset::load(&m),
        Err(SimError::CountMismatch {
            images: 5,
            labels: 4,
            ..
        })
    ));
}

#[test]
fn missing_files_say_what_and_where() {
    let d = temp_dir("missing");
    let e = Dataset::load(&d).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("train-images-idx3-ubyte"), "{msg}");
    assert!(msg.contains("--data"), "{msg}");
    assert!(msg.contains(&d.display().to_string()), "{msg}");
    let nowhere = d.join("nope");
    assert!(matches!(
        Dataset::load(&nowhere),
        Err(SimError::MissingFiles { .. })
    ));
    // A truncated member of an otherwise complete set is named.
    write_set(&d, 3, 3, true);
    std::fs::write(d.join("t10k-images-idx3-ubyte.gz"), gzip(&images(3)[..100])).unwrap();
    let msg = Dataset::load(&d).unwrap_err().to_string();
    assert!(
        msg.contains("t10k-images-idx3-ubyte.gz: truncated: expected 2368 bytes, found 100"),
        "{msg}"
    );
    assert_eq!(
        dataset::locate(&d).unwrap()[0],
        d.join("train-images-idx3-ubyte.gz")
    );
}

#[test]
fn batches_cover_every_example_once_keep_the_last_partial_batch_and_reshuffle() {
    let mut b = Batches::new(60_000, 64, 7);
    assert_eq!(b.batches_per_epoch(), 938);
    let first: Vec<Vec<u32>> = b.next_epoch().map(|c| c.to_vec()).collect();
    assert_eq!(first.len(), 938);
    assert_eq!(first.last().unwrap().len(), 32);
    let mut all: Vec<u32> = first.concat();
    all.sort_unstable();
    assert!(all.iter().enumerate().all(|(i, &v)| v == i as u32));
    let second: Vec<u32> = b.next_epoch().flatten().copied().collect();
    assert_ne!(first.concat(), second);
    // Same seed, same order.
    let again: Vec<u32> = Batches::new(60_000, 64, 7)
        .next_epoch()
        .flatten()
        .copied()
        .collect();
    assert_eq!(first.concat(), again);
}
