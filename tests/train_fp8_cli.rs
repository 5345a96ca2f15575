//! `halfscale train --precision fp8|mxfp8` end to end on the tiny synthetic dataset: the FP8
//! summary lines, the per-tensor records in the metrics file, the FP8 plot panels, a
//! checkpointed and resumed run, and one-line errors for bad FP8 settings.

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

const TENSORS: [&str; 12] = [
    "conv1.input",
    "conv1.weight",
    "conv1.output_grad",
    "conv2.input",
    "conv2.weight",
    "conv2.output_grad",
    "fc1.input",
    "fc1.weight",
    "fc1.output_grad",
    "fc2.input",
    "fc2.weight",
    "fc2.output_grad",
];

#[test]
fn fp8_writes_each_tensors_amax_scale_and_casts_per_step() {
    let dir = temp_dir("fp8");
    write_dataset(&dir);
    let metrics = dir.join("m.jsonl");
    let png = dir.join("p.png");
    let out = halfscale(&[
        "train",
        "--data",
        dir.to_str().unwrap(),
        "--precision",
        "fp8",
        "--fp8-history",
        "2",
        "--metrics",
        metrics.to_str().unwrap(),
        "--plot",
        png.to_str().unwrap(),
        "--strict",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("fp8 (HYBRID, delayed scaling: history 2, margin 0, max)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FP8 casts (saturated/flushed to zero"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FP8 tensor that lost the most: "),
        "{stdout}"
    );
    assert!(
        stdout.contains("Cross-check: worst gradient divergence"),
        "{stdout}"
    );
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&metrics)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 5);
    for (step, r) in records.iter().enumerate() {
        let tensors = r["tensors"].as_array().unwrap();
        let names: Vec<&str> = tensors
            .iter()
            .map(|t| t["tensor"].as_str().unwrap())
            .collect();
        assert_eq!(names, TENSORS);
        for t in tensors {
            let format = t["format"].as_str().unwrap();
            let grad = t["tensor"].as_str().unwrap().ends_with("output_grad");
            assert_eq!(format, if grad { "e5m2" } else { "e4m3" });
            assert!(t["amax"].as_f64().unwrap() > 0.0, "{t}");
            assert!(t["total"].as_u64().unwrap() > 0, "{t}");
            let scale = t["scale"].as_f64().unwrap();
            // Delayed scaling: the first step casts with TE's initial scale 1, later steps with
            // the scale from earlier amaxes.
            if step == 0 {
                assert_eq!(scale, 1.0, "{t}");
            } else {
                assert!(scale != 1.0, "{t}");
            }
        }
        assert!(r["check"].is_object());
    }
    assert!(std::fs::metadata(&png).unwrap().len() > 10_000);
}

#[test]
fn mxfp8_and_current_scaling_train_and_resume() {
    let dir = temp_dir("mxfp8");
    write_dataset(&dir);
    let ckpt = dir.join("run.ckpt");
    let base = ["train", "--data", dir.to_str().unwrap(), "--no-check"];
    for extra in [
        &["--precision", "mxfp8", "--mx-scale-mode", "rceil"][..],
        &["--precision", "fp8", "--fp8-scaling", "current"][..],
        &["--precision", "fp8", "--fp8-scaling", "none"][..],
    ] {
        let out = halfscale(&[&base[..], extra].concat());
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{extra:?}: {stdout}\n{}",
            text(&out.stderr)
        );
        assert!(stdout.contains("Test set: "), "{stdout}");
        assert!(stdout.contains("FP8 casts"), "{stdout}");
    }
    // A checkpointed fp8 run stopped after 2 steps and resumed gives the whole run's weights.
    let whole = dir.join("whole.safetensors");
    let split = dir.join("split.safetensors");
    let fp8 = ["--precision", "fp8", "--fp8-history", "3", "--no-test"];
    let out = halfscale(&[&base[..], &fp8, &["--save", whole.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = halfscale(
        &[
            &base[..],
            &fp8,
            &["--checkpoint", ckpt.to_str().unwrap(), "--stop-after", "2"],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = halfscale(
        &[
            &base[..],
            &fp8,
            &[
                "--resume",
                ckpt.to_str().unwrap(),
                "--save",
                split.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read(&whole).unwrap(),
        std::fs::read(&split).unwrap()
    );
    // Resuming with other scaling settings is refused, naming the recipe.
    let out = halfscale(
        &[
            &base[..],
            &["--precision", "fp8", "--fp8-history", "4"],
            &["--resume", ckpt.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("recipe"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn bad_fp8_settings_are_one_line_errors() {
    let dir = temp_dir("fp8-bad");
    write_dataset(&dir);
    for (args, says) in [
        (&["--fp8-history", "0"][..], "--fp8-history"),
        (&["--mx-scale-mode", "round"][..], "--mx-scale-mode"),
        (&["--fp8-amax", "mean"][..], "--fp8-amax"),
    ] {
        let out = halfscale(&[&["train", "--data", dir.to_str().unwrap()][..], args].concat());
        assert!(!out.status.success(), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
