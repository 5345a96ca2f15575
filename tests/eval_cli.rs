//! `halfscale eval` end to end: PyTorch's weights file (tests/fixtures, recorded with torch 2.15)
//! evaluated on the MNIST test set gives PyTorch's line; bad files give one line naming the file
//! and the tensor; the data is found from any working directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn halfscale(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_halfscale"))
        .args(args)
        .current_dir(cwd)
        .env_remove("HALFSCALE_DATA")
        .output()
        .unwrap()
}

fn fixture() -> String {
    root()
        .join("tests/fixtures/pytorch_simplecnn.safetensors")
        .display()
        .to_string()
}

#[test]
fn eval_of_pytorchs_weights_prints_pytorchs_test_line_from_any_directory() {
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/pytorch_simplecnn.json")).unwrap(),
    )
    .unwrap();
    // Run from outside the repository: the data is found through the built-in repository copy.
    let out = halfscale(
        &["eval", "--weights", &fixture(), "--precision", "fp32"],
        &std::env::temp_dir(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.trim_end(), record["test_line"].as_str().unwrap());
}

#[test]
fn a_bad_weights_file_is_one_line_naming_it() {
    let dir = std::env::temp_dir().join(format!("hs-eval-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let truncated = dir.join("truncated.safetensors");
    let bytes = std::fs::read(fixture()).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let missing = dir.join("absent.safetensors");
    for (path, needle) in [
        (&truncated, "not a valid safetensors file"),
        (&missing, "No such file"),
    ] {
        let out = halfscale(&["eval", "--weights", path.to_str().unwrap()], &root());
        assert!(!out.status.success());
        assert!(out.stdout.is_empty());
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("error: {}: ", path.display())),
            "{stderr}"
        );
        assert!(stderr.contains(needle), "{stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_data_directory_without_the_files_is_named_once() {
    let dir = std::env::temp_dir();
    let out = halfscale(
        &[
            "eval",
            "--weights",
            &fixture(),
            "--data",
            dir.to_str().unwrap(),
        ],
        &root(),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(
        stderr.matches("train-images-idx3-ubyte").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn train_starts_from_pytorchs_weights_and_a_bad_file_trains_and_writes_nothing() {
    let dir = std::env::temp_dir().join(format!("hs-init-from-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let saved = dir.join("after.safetensors");
    let metrics = dir.join("m.jsonl");
    let run = |weights: &str| {
        halfscale(
            &[
                "train",
                "--precision",
                "fp32",
                "--stop-after",
                "1",
                "--init-from",
                weights,
                "--save",
                saved.to_str().unwrap(),
                "--metrics",
                metrics.to_str().unwrap(),
            ],
            &root(),
        )
    };
    let out = run(&fixture());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    // The first batch's loss is the trained model's (about 0.2), not the seeded one's (2.30).
    let loss: f64 = stdout
        .lines()
        .find(|l| l.starts_with("Train Epoch: 0 [0/60000"))
        .and_then(|l| l.rsplit("Loss: ").next())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(loss < 1.0, "{stdout}");
    assert!(saved.exists());
    std::fs::remove_file(&saved).unwrap();
    std::fs::remove_file(&metrics).unwrap();
    // A torn weights file: one line, nothing written.
    let torn = dir.join("torn.safetensors");
    let bytes = std::fs::read(fixture()).unwrap();
    std::fs::write(&torn, &bytes[..100]).unwrap();
    let out = run(torn.to_str().unwrap());
    assert!(!out.status.success());
    assert_eq!(String::from_utf8(out.stderr).unwrap().lines().count(), 1);
    assert!(!saved.exists() && !metrics.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
