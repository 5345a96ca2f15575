//! `halfscale fp8` as a user (and the external checker) runs it: the batch protocol answering the
//! recorded ml_dtypes / torch vectors of tests/fixtures/fp8_profiles.json.gz through the binary,
//! malformed lines, and the person-facing verbs.

use flate2::read::GzDecoder;
use serde_json::Value;
use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};

fn halfscale(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_halfscale"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut input = child.stdin.take().unwrap();
    let text = stdin.to_string();
    let writer = std::thread::spawn(move || input.write_all(text.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/fp8_profiles.json.gz"
    );
    let mut text = String::new();
    GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn chunks(text: &str, digits: usize) -> Vec<&str> {
    (0..text.len() / digits)
        .map(|i| &text[i * digits..(i + 1) * digits])
        .collect()
}

/// Runs `lines` through `halfscale fp8 batch --profile P` and compares each RESULT.
fn replay(profile: &str, lines: &[String], expected: &[&str]) {
    let out = halfscale(&["fp8", "batch", "--profile", profile], &lines.join("\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    let answers: Vec<&str> = text.lines().collect();
    assert_eq!(answers.len(), lines.len());
    let mut mismatches = 0;
    for ((line, answer), want) in lines.iter().zip(&answers).zip(expected) {
        let (result, flags) = answer.split_once(' ').expect("RESULT FLAGS");
        assert_eq!(flags.len(), 2, "{answer}");
        if !result.eq_ignore_ascii_case(want) {
            mismatches += 1;
            assert!(
                mismatches < 5,
                "{profile}: `{line}` -> {answer}, recorded {want}"
            );
        }
    }
    assert_eq!(mismatches, 0);
}

#[test]
fn batch_answers_the_recorded_conversions() {
    let fx = fixture();
    let f32_inputs = chunks(fx["f32"].as_str().unwrap(), 8);
    for case in fx["narrow"].as_array().unwrap() {
        let (profile, fmt, src) = (
            case["profile"].as_str().unwrap(),
            case["fmt"].as_str().unwrap(),
            case["src"].as_str().unwrap(),
        );
        let expected = chunks(case["out"].as_str().unwrap(), 2);
        let lines: Vec<String> = match src {
            "f32" => f32_inputs
                .iter()
                .map(|x| format!("f32_to_{fmt} near_even {x}"))
                .collect(),
            // Every 7th pattern of the 65,536 keeps the process quick; the library test has all.
            _ => (0..=0xFFFFu32)
                .map(|x| format!("{src}_to_{fmt} near_even {x:04X}"))
                .collect(),
        };
        let picked: Vec<usize> = (0..lines.len())
            .filter(|i| src == "f32" || i % 7 == 0)
            .collect();
        let lines: Vec<String> = picked.iter().map(|&i| lines[i].clone()).collect();
        let expected: Vec<&str> = picked.iter().map(|&i| expected[i]).collect();
        replay(profile, &lines, &expected);
    }
    for case in fx["decode"].as_array().unwrap() {
        let (profile, fmt) = (
            case["profile"].as_str().unwrap(),
            case["fmt"].as_str().unwrap(),
        );
        let expected = chunks(case["out"].as_str().unwrap(), 8);
        let lines: Vec<String> = (0..expected.len())
            .map(|c| format!("{fmt}_to_f32 near_even {c:02X}"))
            .collect();
        replay(profile, &lines, &expected);
    }
}

#[test]
fn batch_answers_the_recorded_arithmetic() {
    let fx = fixture();
    for case in fx["arith"].as_array().unwrap() {
        let (profile, fmt, op) = (
            case["profile"].as_str().unwrap(),
            case["fmt"].as_str().unwrap(),
            case["op"].as_str().unwrap(),
        );
        let expected = chunks(case["out"].as_str().unwrap(), 2);
        let lines: Vec<String> = (0..expected.len())
            .map(|k| match op {
                "sqrt" => format!("{fmt}_sqrt near_even {k:02X}"),
                _ => format!("{fmt}_{op} near_even {:02X} {:02X}", k / 256, k % 256),
            })
            .collect();
        replay(profile, &lines, &expected);
    }
}

#[test]
fn batch_without_profile_is_ieee_and_saturate_clamps() {
    let lines = "f32_to_e4m3 near_even 43F00000\nf32_to_e4m3 minMag 43F00000\nf32_to_e5m2 near_even 7F800000\ne4m3_mul near_even 7E 40\ne4m3_mulAdd near_even 38 38 38\ne5m2_lt near_even 3C 40\n";
    let out = halfscale(&["fp8", "batch"], lines);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "7F 05\n7E 05\n7C 00\n7F 05\n40 00\n1 00\n");
    let out = halfscale(&["fp8", "batch", "--saturate"], lines);
    assert_eq!(stdout(&out), "7E 05\n7E 05\n7B 01\n7E 05\n40 00\n1 00\n");
}

#[test]
fn malformed_lines_name_their_line_and_the_rest_are_answered() {
    let out = halfscale(
        &["fp8", "batch", "--profile", "torch"],
        "f32_to_e4m3 near_even 3F800000\ne2m1_to_f32 near_even 1F\nf32_to_e2m1 near_even 3F800000\nf32_to_e4m3 sideways 0\ne4m3_to_f32 near_even 38\n",
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "38 00\n3F800000 00\n");
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "line 2:", "4-bit", "line 3:", "no e2m1", "line 4:", "sideways",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    let out = halfscale(&["fp8", "batch", "--profile", "numpy"], "");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn person_verbs_show_value_code_flags_and_fate() {
    let out = halfscale(
        &[
            "fp8", "classify", "1000", "--format", "e4m3", "--scale", "0.25",
        ],
        "",
    );
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("256 (0x78)") && text.contains("rounded (normal)"),
        "{text}"
    );
    let text = stdout(&halfscale(&["fp8", "classify", "1000"], ""));
    assert!(text.contains("overflow to NaN"), "{text}");
    let text = stdout(&halfscale(
        &["fp8", "classify", "1000", "--profile", "torch"],
        "",
    ));
    assert!(
        text.contains("448 (0x7E)") && text.contains("saturated"),
        "{text}"
    );
    let text = stdout(&halfscale(
        &["fp8", "classify", "1e-3", "--format", "e2m1"],
        "",
    ));
    assert!(text.contains("flushed to zero"), "{text}");
    let text = stdout(&halfscale(
        &["fp8", "mul", "224", "2", "--format", "e5m2"],
        "",
    ));
    assert!(text.starts_with("e5m2 = 448 (0x5F)"), "{text}");
    let out = halfscale(&["fp8", "add", "1", "1", "--format", "e2m1"], "");
    assert_eq!(out.status.code(), Some(2));
}
