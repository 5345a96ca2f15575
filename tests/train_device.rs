//! `halfscale train --device`: without the `cuda` feature, `cuda` is a one-line error that says how
//! to rebuild (the CPU fallback of `auto` is shown in the README).
#![cfg(not(feature = "cuda"))]

use std::process::Command;

#[test]
fn cuda_without_the_feature_says_how_to_rebuild() {
    let out = Command::new(env!("CARGO_BIN_EXE_halfscale"))
        .args([
            "train",
            "--device",
            "cuda",
            "--max-batches",
            "1",
            "--no-test",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("built without CUDA") && err.contains("--features cuda"),
        "{err}"
    );
}
