//! `halfscale train` end to end on a tiny synthetic IDX dataset written to a temporary directory
//! (not MNIST: the suite stays fast), and its one-line errors.

mod common;

use common::{temp_dir, write_dataset};
use std::process::{Command, Output};

fn halfscale(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_halfscale"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn trains_in_mixed_precision_and_writes_metrics_and_plots() {
    let dir = temp_dir("mixed");
    write_dataset(&dir);
    let metrics = dir.join("m.jsonl");
    let svg = dir.join("p.svg");
    let out = halfscale(&[
        "train",
        "--data",
        dir.to_str().unwrap(),
        "--log-interval",
        "2",
        "--metrics",
        metrics.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
        "--strict",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    // 320 images: 5 batches, lines at batch 0, 2, 4 (the last a full batch of 64).
    assert!(
        lines[0].starts_with("Train Epoch: 0 [0/320 (0%)]\tLoss: 2."),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("Train Epoch: 0 [128/320 (40%)]\tLoss: "),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("Train Epoch: 0 [256/320 (80%)]\tLoss: "),
        "{stdout}"
    );
    assert!(lines[3].starts_with("Test set: Average loss: "), "{stdout}");
    assert!(lines[3].contains("/40 ("), "{stdout}");
    assert!(stdout.contains("images/s"), "{stdout}");
    assert!(
        stdout.contains("Cross-check: worst gradient divergence"),
        "{stdout}"
    );
    assert!(
        stdout.contains("0 step(s) beyond the bound, 0 wrong skip decision(s)"),
        "{stdout}"
    );
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&metrics)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 5);
    assert_eq!(records[0]["scale"], 65536.0);
    assert_eq!(records[4]["step"], 4);
    assert!(records[0]["check"]["layers"][3]["census"]["total"].as_u64() == Some(1290));
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.starts_with("<svg") && svg_text.contains("loss scale"));
}

#[test]
fn fp32_bf16_and_no_scaler_runs_and_png_plot() {
    let dir = temp_dir("modes");
    write_dataset(&dir);
    let png = dir.join("p.png");
    let d = dir.to_str().unwrap();
    let out = halfscale(&[
        "train",
        "--data",
        d,
        "--precision",
        "fp32",
        "--max-batches",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Cross-check: off"));
    let out = halfscale(&[
        "train",
        "--data",
        d,
        "--precision",
        "bf16",
        "--max-batches",
        "2",
        "--plot",
        png.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(&std::fs::read(&png).unwrap()[1..4], b"PNG");
    let out = halfscale(&[
        "train",
        "--data",
        d,
        "--no-scaler",
        "--max-batches",
        "2",
        "--check-every",
        "2",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("Loss scaling: off"), "{stdout}");
    assert!(stdout.contains("1 checked steps"), "{stdout}");
}

#[test]
fn errors_are_one_line_naming_the_file() {
    let dir = temp_dir("errors");
    let out = halfscale(&["train", "--data", dir.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains("train-images-idx3-ubyte") && err.contains("--data"),
        "{err}"
    );

    write_dataset(&dir);
    let bytes = std::fs::read(dir.join("t10k-images-idx3-ubyte")).unwrap();
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), &bytes[..1000]).unwrap();
    let out = halfscale(&["train", "--data", dir.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(
        err.trim_end(),
        format!(
            "error: {}: truncated: expected 31376 bytes, found 1000",
            dir.join("t10k-images-idx3-ubyte").display()
        )
    );
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), b"\x00\x00\x08\x01rest").unwrap();
    let err = text(&halfscale(&["train", "--data", dir.to_str().unwrap()]).stderr);
    assert!(err.contains("bad magic"), "{err}");
}
