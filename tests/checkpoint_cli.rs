//! Whole-run checkpoints end to end through the real binary on a tiny synthetic dataset: a run
//! stopped at any step and resumed gives the uninterrupted run's lines, metrics and final weights
//! bit for bit, in fp32, mixed and bf16, with and without the cross-check; `kill -9` at random
//! instants always leaves a checkpoint that parses and resumes to the same weights; a resume of
//! another run is refused naming the field, and nothing is overwritten.

mod common;

use common::{temp_dir, write_dataset};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn halfscale(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_halfscale"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The seed's progress lines and the test line (the summary's timings differ between runs).
fn seed_lines(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| l.starts_with("Train Epoch") || l.starts_with("Test set"))
        .collect()
}

/// Metrics lines without their wall-clock fields.
fn without_times(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if let Some(o) = v.as_object_mut() {
                o.retain(|k, _| !k.contains("second") && !k.contains("time"));
            }
            v.to_string()
        })
        .collect()
}

/// A directory with the synthetic dataset in `data/` (320 training images: 10 steps of 32 an
/// epoch).
fn workdir(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    write_dataset(&dir.join("data"));
    dir
}

const COMMON: [&str; 9] = [
    "train",
    "--data",
    "data",
    "--batch-size",
    "32",
    "--log-interval",
    "2",
    "--threads",
    "1",
];

#[test]
fn a_run_stopped_at_any_step_resumes_bit_for_bit_in_every_precision() {
    let dir = workdir("split");
    for (precision, check) in [
        ("fp32", "--no-check"),
        ("mixed", "--check"),
        ("mixed", "--no-check"),
        ("bf16", "--check"),
    ] {
        let setup = [&COMMON[..], &["--precision", precision, check]].concat();
        let full = ok(halfscale(
            &dir,
            &[
                &setup[..],
                &[
                    "--epochs",
                    "2",
                    "--save",
                    "full.st",
                    "--metrics",
                    "full.jsonl",
                ],
            ]
            .concat(),
        ));
        let full_metrics = std::fs::read_to_string(dir.join("full.jsonl")).unwrap();
        for stop in [1usize, 4, 10, 17] {
            let _ = std::fs::remove_file(dir.join("ck.st"));
            let first = ok(halfscale(
                &dir,
                &[
                    &setup[..],
                    &[
                        "--epochs",
                        "2",
                        "--checkpoint",
                        "ck.st",
                        "--checkpoint-every",
                        "3",
                    ],
                    &[
                        "--stop-after",
                        &stop.to_string(),
                        "--metrics",
                        "first.jsonl",
                    ],
                ]
                .concat(),
            ));
            // The resume takes precision and scaler from the checkpoint.
            let rest = ok(halfscale(
                &dir,
                &[
                    &COMMON[..],
                    &[check, "--resume", "ck.st", "--save", "resumed.st"],
                    &["--metrics", "resumed.jsonl"],
                ]
                .concat(),
            ));
            let what = format!("{precision} {check} stopped after {stop}");
            let mut lines = seed_lines(&first);
            lines.extend(seed_lines(&rest));
            assert_eq!(lines, seed_lines(&full), "{what}: lines");
            assert!(
                std::fs::read(dir.join("resumed.st")).unwrap()
                    == std::fs::read(dir.join("full.st")).unwrap(),
                "{what}: final weights"
            );
            let first_metrics = std::fs::read_to_string(dir.join("first.jsonl")).unwrap();
            let resumed = std::fs::read_to_string(dir.join("resumed.jsonl")).unwrap();
            let joined = format!("{first_metrics}{resumed}");
            assert_eq!(
                without_times(&joined),
                without_times(&full_metrics),
                "{what}: metrics"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn kill_9_at_random_instants_leaves_a_checkpoint_that_resumes_to_the_same_weights() {
    let dir = workdir("kill");
    // fp32 without the cross-check: the quickest steps, a checkpoint after every one of them,
    // so the kills land inside writes too. 12 epochs of 10 steps: long enough (about 1 s)
    // that at least three of the 20-200 ms kills land before a resumed run finishes.
    let setup = [
        &COMMON[..],
        &["--precision", "fp32", "--no-check", "--no-test"],
    ]
    .concat();
    ok(halfscale(
        &dir,
        &[&setup[..], &["--epochs", "12", "--save", "full.st"]].concat(),
    ));
    // A deterministic spread of kill delays (ms); each run is killed and the next resumes.
    let mut delays = (0..40u64).map(|k| 20 + (k * 7919) % 180);
    let mut kills = 0;
    let mut args = [
        &setup[..],
        &[
            "--epochs",
            "12",
            "--checkpoint",
            "ck.st",
            "--checkpoint-every",
            "1",
        ],
        &["--save", "resumed.st"],
    ]
    .concat();
    loop {
        let mut child = Command::new(env!("CARGO_BIN_EXE_halfscale"))
            .args(&args)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let delay = delays.next();
        if let Some(ms) = delay {
            std::thread::sleep(Duration::from_millis(ms));
        }
        let finished = match child.try_wait().unwrap() {
            Some(status) => {
                assert!(status.success(), "a run failed");
                true
            }
            None if delay.is_some() => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                false
            }
            None => {
                let out = child.wait_with_output().unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                true
            }
        };
        if finished {
            break;
        }
        // Whatever instant the kill hit, the checkpoint (once one was written) is whole.
        let ck = dir.join("ck.st");
        if ck.exists() {
            halfscale::sim::checkpoint::load(&ck).expect("a killed run left a valid checkpoint");
            args = [
                &COMMON[..],
                &[
                    "--no-check",
                    "--no-test",
                    "--resume",
                    "ck.st",
                    "--save",
                    "resumed.st",
                ],
            ]
            .concat();
        }
        // No temporary file survives a finished write; one being written may.
    }
    assert!(
        kills >= 3,
        "only {kills} kills landed; the runs are too quick"
    );
    assert!(
        std::fs::read(dir.join("resumed.st")).unwrap()
            == std::fs::read(dir.join("full.st")).unwrap(),
        "final weights after {kills} kills"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_resume_of_another_run_is_refused_naming_the_field_and_nothing_is_written() {
    let dir = workdir("mismatch");
    ok(halfscale(
        &dir,
        &[
            &COMMON[..],
            &["--no-check", "--checkpoint", "ck.st", "--stop-after", "3"],
        ]
        .concat(),
    ));
    let before = std::fs::read(dir.join("ck.st")).unwrap();
    let other = temp_dir("mismatch-other-data");
    write_dataset(&other);
    // Another dataset: the same files with one label changed.
    let labels = other.join("t10k-labels-idx1-ubyte");
    let mut bytes = std::fs::read(&labels).unwrap();
    let last = bytes.len() - 1;
    bytes[last] = (bytes[last] + 1) % 10;
    std::fs::write(&labels, bytes).unwrap();
    let other_data = other.to_str().unwrap().to_string();
    let cases: [(&[&str], &str); 5] = [
        (
            &["--precision", "bf16"],
            "the checkpoint's precision is mixed, but this run's is bf16",
        ),
        (
            &["--scaler", "deepspeed"],
            "the checkpoint's scaler is pytorch, but this run's is deepspeed",
        ),
        (
            &["--no-scaler"],
            "the checkpoint's scaler is pytorch, but this run's is none",
        ),
        (
            &["--batch-size", "16"],
            "the checkpoint's batch size is 32, but this run's is 16",
        ),
        (
            &["--data", &other_data],
            "the checkpoint's dataset is 320 train / 40 test images",
        ),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["train", "--threads", "1", "--no-check", "--resume", "ck.st"];
        args.extend(["--save", "w.st"]);
        if !extra.contains(&"--data") {
            args.extend(["--data", "data"]);
        }
        if !extra.contains(&"--batch-size") {
            args.extend(["--batch-size", "32"]);
        }
        args.extend_from_slice(extra);
        let out = halfscale(&dir, &args);
        assert!(!out.status.success(), "{extra:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("error: ck.st: "), "{stderr}");
        assert!(stderr.contains(needle), "{extra:?}: {stderr}");
        assert_eq!(std::fs::read(dir.join("ck.st")).unwrap(), before);
        assert!(!dir.join("w.st").exists());
    }
    // A weights file is not a checkpoint; a truncated checkpoint is refused.
    ok(halfscale(
        &dir,
        &[
            &COMMON[..],
            &["--no-check", "--max-batches", "1", "--save", "w0.st"],
        ]
        .concat(),
    ));
    std::fs::write(dir.join("cut.st"), &before[..before.len() / 3]).unwrap();
    for (file, needle) in [
        ("w0.st", "not a halfscale checkpoint"),
        ("cut.st", "not a halfscale checkpoint"),
    ] {
        let out = halfscale(&dir, &[&COMMON[..], &["--resume", file]].concat());
        assert!(!out.status.success());
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(needle), "{file}: {stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&other).unwrap();
}
