//! `halfscale f16` as a user runs it: the person-facing lines and the batch protocol.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn halfscale(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_halfscale"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn person_lines_show_value_bits_flags_and_fate() {
    let out = halfscale(&["f16", "mul", "32000", "3"], "");
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("inf (0x7C00)"), "{text}");
    assert!(
        text.contains("overflow") && text.contains("inexact"),
        "{text}"
    );

    let out = halfscale(&["f16", "add", "0x3c00", "1e-4", "--round", "up"], "");
    let text = stdout(&out);
    assert!(
        text.contains("(0x3C01)") && text.contains("fate: rounded"),
        "{text}"
    );

    let out = halfscale(&["f16", "classify", "1.2e-5"], "");
    let text = stdout(&out);
    assert!(
        text.contains("1.1981e-5 (0x00C9)") && text.contains("subnormal"),
        "{text}"
    );
    let out = halfscale(&["f16", "classify", "1.2e-5", "--scale", "65536"], "");
    assert!(
        stdout(&out).contains("rounded (normal)"),
        "{}",
        stdout(&out)
    );

    let out = halfscale(&["f16", "mul", "3", "1", "--format", "bf16"], "");
    assert!(
        stdout(&out).starts_with("bf16 = 3 (0x4040)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn bad_operand_is_one_line_error() {
    let out = halfscale(&["f16", "mul", "banana", "3"], "");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("banana"), "{err}");
}

#[test]
fn batch_answers_in_order_and_reports_bad_lines() {
    let input = "f16_mul near_even 77D0 4200\n\
                 f16_frob near_even 0000\n\
                 f16_sqrt near_even BC00\n\
                 f16_to_i32 max 3E01\n\
                 bf16_add min 3F80 BF80\n\
                 f16_div near_maxMag 3C00 0000 0000\n\
                 f64_to_f16 near_even 3EE92A737110E454\n";
    let out = halfscale(&["f16", "batch"], input);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stdout(&out),
        "7C00 05\nFE00 10\n00000002 00\n8000 00\n00C9 03\n"
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("line 2") && err.contains("f16_frob"), "{err}");
    assert!(err.contains("line 6"), "{err}");
}

#[test]
fn batch_with_only_good_lines_exits_zero() {
    let out = halfscale(
        &["f16", "batch"],
        "f16_eq near_even 0000 8000\nf16_lt near_even 7E00 0000\n",
    );
    assert!(out.status.success());
    assert_eq!(stdout(&out), "1 00\n0 10\n");
}
