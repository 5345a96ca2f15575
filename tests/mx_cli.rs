//! `halfscale mx quantize` and `mx dequantize` run as processes: every (element, scale mode) of the
//! torchao 0.18 fixture replayed through the line protocol, and malformed lines.

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};

fn halfscale(args: &[&str], stdin: String) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_halfscale"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut pipe = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(stdin.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn fixture() -> String {
    let gz = include_bytes!("../core/tests/fixtures/mx_torchao.txt.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// `SSE0E1...` as the fixture packs it -> `SS E0 E1 ...` as the CLI writes it.
fn spaced(packed: &str) -> String {
    packed
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn quantize_and_dequantize_replay_torchao_through_the_cli() {
    let text = fixture();
    let blocks: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("B ")).collect();
    let input = blocks.join("\n") + "\n";
    let mut combinations = 0;
    for elem in ["e4m3", "e5m2", "e3m2", "e2m3", "e2m1"] {
        for mode in ["floor", "rceil", "ceil", "even"] {
            let expected: Vec<String> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("Q {elem} {mode} ")))
                .map(|rest| spaced(rest.split(' ').nth(1).unwrap()))
                .collect();
            assert_eq!(expected.len(), blocks.len());
            let out = halfscale(
                &["mx", "quantize", "--elem", elem, "--scale-mode", mode],
                input.clone(),
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let got = String::from_utf8(out.stdout).unwrap();
            for (i, (g, e)) in got.lines().zip(&expected).enumerate() {
                assert_eq!(g, e, "{elem} {mode} block {i}");
            }
            assert_eq!(got.lines().count(), expected.len());
            combinations += 1;
        }
        let records: Vec<(&str, &str)> = text
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("D {elem} ")))
            .map(|rest| rest.split_once(' ').unwrap())
            .collect();
        let input: String = records.iter().map(|(q, _)| spaced(q) + "\n").collect();
        let out = halfscale(&["mx", "dequantize", "--elem", elem], input);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = String::from_utf8(out.stdout).unwrap();
        assert_eq!(got.lines().count(), records.len());
        for (g, (q, e)) in got.lines().zip(&records) {
            assert_eq!(g, *e, "dequantize {elem} {q}");
        }
    }
    assert_eq!(combinations, 20);
}

#[test]
fn malformed_lines_are_reported_and_the_rest_answered() {
    let good = vec!["3F800000"; 32].join(" ");
    let input = format!(
        "{good}\n{}\n\nzz {}\n{good}\n",
        vec!["0"; 31].join(" "),
        vec!["0"; 31].join(" ")
    );
    let out = halfscale(
        &["mx", "quantize", "--elem", "e4m3", "--scale-mode", "floor"],
        input,
    );
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let answer = format!("77{}", " 78".repeat(32));
    assert_eq!(stdout, format!("{answer}\n{answer}\n"));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("stdin line 2: expected 32 hexadecimal fields, found 31"),
        "{stderr}"
    );
    assert!(stderr.contains("stdin line 4: field 0 `zz`"), "{stderr}");

    let out = halfscale(
        &["mx", "dequantize", "--elem", "e2m1"],
        format!("7F{}\n", " 10".repeat(32)),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("does not fit the 4 bits of e2m1"));

    let out = halfscale(
        &["mx", "quantize", "--elem", "e9m9", "--scale-mode", "floor"],
        String::new(),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("unknown element format `e9m9`"));
}
