//! `halfscale scaler replay`, run as a process: the output format, the errors and exit statuses,
//! and trajectories against transcriptions of PyTorch's kernel and DeepSpeed's update rule.

use std::io::Write;
use std::process::{Command, Stdio};

use halfscale::cli::scaler::python_float_repr;

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

fn replay(args: &[&str], input: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_halfscale"))
        .args(["scaler", "replay"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run halfscale");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_owned();
    let writer = std::thread::spawn(move || {
        // The process may exit early on an error; a broken pipe here is expected then.
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// The value of a field of one output line, as written.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let key = format!("\"{name}\":");
    let start = line
        .find(&key)
        .unwrap_or_else(|| panic!("{name} in {line}"))
        + key.len();
    let rest = &line[start..];
    let end = rest.find([',', '}']).unwrap();
    rest[..end].trim_matches('"')
}

#[test]
fn the_issue_example_line_exactly() {
    let r = replay(&[], "finite\n");
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "{\"step\":1,\"event\":\"finite\",\"outcome\":\"stepped\",\"scale\":65536.0,\"scale_bits\":\"0x47800000\",\"growth_tracker\":1}\n"
    );
}

/// PyTorch's test_grad_scaling_update_scale through the command.
#[test]
fn pytorch_update_scale_case() {
    let r = replay(
        &[
            "--init-scale",
            "4",
            "--growth-factor",
            "2",
            "--backoff-factor",
            "0.25",
            "--growth-interval",
            "2",
        ],
        "finite\nfinite\ninf\nnan\n",
    );
    assert_eq!(r.status, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            r#"{"step":1,"event":"finite","outcome":"stepped","scale":4.0,"scale_bits":"0x40800000","growth_tracker":1}"#,
            r#"{"step":2,"event":"finite","outcome":"stepped","scale":8.0,"scale_bits":"0x41000000","growth_tracker":0}"#,
            r#"{"step":3,"event":"inf","outcome":"skipped_inf","scale":2.0,"scale_bits":"0x40000000","growth_tracker":0}"#,
            r#"{"step":4,"event":"nan","outcome":"skipped_nan","scale":0.5,"scale_bits":"0x3f000000","growth_tracker":0}"#,
        ]
    );
}

#[test]
fn every_line_is_valid_json_with_the_keys_in_order() {
    let r = replay(&["--growth-interval", "3"], "finite\ninf\nnan\nfinite\n");
    for line in r.stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 6);
        assert!(line.starts_with("{\"step\":"));
        let order = [
            "step",
            "event",
            "outcome",
            "scale",
            "scale_bits",
            "growth_tracker",
        ];
        let positions: Vec<usize> = order
            .iter()
            .map(|k| line.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{line}");
    }
}

#[test]
fn blank_lines_comments_case_and_crlf_are_accepted() {
    let r = replay(&[], "# a run\n\n  finite  \r\nINF\r\n# more\nNaN\n");
    assert_eq!(r.status, 0, "{}", r.stderr);
    let steps: Vec<&str> = r.stdout.lines().map(|l| field(l, "step")).collect();
    assert_eq!(steps, ["1", "2", "3"]);
    let events: Vec<&str> = r.stdout.lines().map(|l| field(l, "event")).collect();
    assert_eq!(events, ["finite", "inf", "nan"]);
}

#[test]
fn a_bad_line_is_an_error_naming_the_line() {
    let r = replay(&[], "finite\n\n# ok\noverflow\nfinite\n");
    assert_eq!(r.status, 2);
    assert!(r.stderr.contains("line 4"), "{}", r.stderr);
    assert!(r.stderr.contains("overflow"), "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 1);
}

#[test]
fn nan_policy_error_stops_at_the_step() {
    let r = replay(&["--nan-policy", "error"], "finite\ninf\n\nnan\nfinite\n");
    assert_eq!(r.status, 1);
    assert!(r.stderr.contains("step 3"), "{}", r.stderr);
    assert!(r.stderr.contains("line 4"), "{}", r.stderr);
    assert!(r.stderr.contains("NaN"), "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 2);
}

#[test]
fn floor_hold_and_floor_error() {
    let input = "inf\n".repeat(5);
    let held = replay(&["--init-scale", "8", "--min-scale", "2"], &input);
    assert_eq!(held.status, 0);
    let scales: Vec<&str> = held.stdout.lines().map(|l| field(l, "scale")).collect();
    assert_eq!(scales, ["4.0", "2.0", "2.0", "2.0", "2.0"]);
    let err = replay(
        &[
            "--init-scale",
            "8",
            "--min-scale",
            "2",
            "--at-floor",
            "error",
        ],
        &input,
    );
    assert_eq!(err.status, 1);
    assert!(err.stderr.contains("step 3"), "{}", err.stderr);
    assert_eq!(err.stdout.lines().count(), 2);
}

#[test]
fn bad_flags_are_exit_2() {
    for args in [
        &["--backoff-factor", "1.5"][..],
        &["--growth-factor", "1"],
        &["--growth-interval", "0"],
        &["--init-scale", "-1"],
        &["--min-scale", "4", "--max-scale", "2"],
        &["--growth-timing", "tensorflow"],
        &["--init-scale", "abc"],
    ] {
        let r = replay(args, "finite\n");
        assert_eq!(r.status, 2, "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty());
        assert!(!r.stderr.is_empty());
    }
}

#[test]
fn help_explains_the_format() {
    let out = Command::new(env!("CARGO_BIN_EXE_halfscale"))
        .args(["scaler", "replay", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "finite",
        "scale_bits",
        "growth_tracker",
        "skipped_nan",
        "--growth-timing",
        "stable_interval",
        "EXIT STATUS",
    ] {
        assert!(help.contains(needle), "{needle}");
    }
}

fn xorshift_events(seed: u64, n: usize, one_in: u64) -> Vec<&'static str> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % (2 * one_in) {
                0 => "nan",
                1 => "inf",
                _ => "finite",
            }
        })
        .collect()
}

/// Growth 3, backoff 0.3 over a long random run: every line equals the C++ kernel transcribed
/// (`float * double` rounded to float), not an f32 multiply.
#[test]
fn pytorch_trajectory_matches_the_kernel_bit_for_bit() {
    let events = xorshift_events(7, 3000, 3);
    let r = replay(
        &[
            "--growth-factor",
            "3",
            "--backoff-factor",
            "0.3",
            "--growth-interval",
            "2",
        ],
        &events.join("\n"),
    );
    assert_eq!(r.status, 0, "{}", r.stderr);
    let mut scale: f32 = 65536.0;
    let mut plain: f32 = 65536.0;
    let mut tracker = 0;
    let mut differs_from_plain = false;
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), events.len());
    for (line, event) in lines.iter().zip(&events) {
        if *event == "finite" {
            let successful = tracker + 1;
            if successful == 2 {
                let grown = (f64::from(scale) * 3.0) as f32;
                if grown.is_finite() {
                    scale = grown;
                }
                if (plain * 3.0).is_finite() {
                    plain *= 3.0;
                }
                tracker = 0;
            } else {
                tracker = successful;
            }
        } else {
            scale = (f64::from(scale) * 0.3) as f32;
            plain *= 0.3;
            tracker = 0;
        }
        differs_from_plain |= scale != plain;
        assert_eq!(
            field(line, "scale_bits"),
            format!("{:#010x}", scale.to_bits())
        );
        assert_eq!(field(line, "scale"), python_float_repr(f64::from(scale)));
        assert_eq!(
            field(line, "scale").parse::<f64>().unwrap(),
            f64::from(scale)
        );
        assert_eq!(field(line, "growth_tracker"), tracker.to_string());
        let outcome = match *event {
            "finite" => "stepped",
            "inf" => "skipped_inf",
            _ => "skipped_nan",
        };
        assert_eq!(field(line, "outcome"), outcome);
    }
    assert!(differs_from_plain);
}

/// DeepSpeed's fp16 defaults (hysteresis 2, min_scale 1) with window 4 over a long run, against
/// a transcription of `DynamicLossScaler.update_scale` in Python floats (f64).
#[test]
fn deepspeed_trajectory_matches_dynamic_loss_scaler() {
    for (seed, consecutive) in [(11u64, false), (12, true), (13, false)] {
        let events = xorshift_events(seed, 4000, 4);
        let mut args = vec![
            "--growth-timing",
            "deepspeed",
            "--growth-interval",
            "4",
            "--hysteresis",
            "2",
            "--min-scale",
            "1",
            "--init-scale",
            "4294967296",
        ];
        if consecutive {
            args.push("--consecutive-hysteresis");
        }
        let r = replay(&args, &events.join("\n"));
        assert_eq!(r.status, 0, "{}", r.stderr);
        let (mut cur_scale, mut cur_iter, mut last_overflow_iter) = (4294967296.0f64, 0i64, -1i64);
        let (delayed_shift, mut cur_hysteresis) = (2, 2);
        for (line, event) in r.stdout.lines().zip(&events) {
            if *event != "finite" {
                if delayed_shift == 1 || cur_hysteresis == 1 {
                    let next = cur_scale / 2.0;
                    cur_scale = if 1.0 > next { 1.0 } else { next };
                } else {
                    cur_hysteresis -= 1;
                }
                last_overflow_iter = cur_iter;
            } else {
                if consecutive {
                    cur_hysteresis = delayed_shift;
                }
                let stable_interval = (cur_iter - last_overflow_iter) - 1;
                if stable_interval > 0 && stable_interval % 4 == 0 {
                    if !consecutive {
                        cur_hysteresis = delayed_shift;
                    }
                    cur_scale *= 2.0;
                }
            }
            cur_iter += 1;
            let written = field(line, "scale");
            assert_eq!(
                written.parse::<f64>().unwrap().to_bits(),
                cur_scale.to_bits()
            );
            assert_eq!(written, python_float_repr(cur_scale));
            assert_eq!(
                field(line, "scale_bits"),
                format!("{:#010x}", (cur_scale as f32).to_bits())
            );
            let s = cur_iter - last_overflow_iter - 1;
            let tracker = if s == 0 { 0 } else { (s - 1) % 4 + 1 };
            assert_eq!(field(line, "growth_tracker"), tracker.to_string());
        }
    }
}

/// `scale` is written as Python's repr writes the float (strings from CPython 3).
#[test]
fn floats_are_written_as_python_repr() {
    let cases: [(u64, &str); 30] = [
        (0x40f0000000000000, "65536.0"),
        (0x3fb999999999999a, "0.1"),
        (0x3fd3333340000000, "0.30000001192092896"),
        (0x3eb0000000000000, "9.5367431640625e-07"),
        (0x4450000000000000, "1.1805916207174113e+21"),
        (0x0000000000000001, "5e-324"),
        (0x7fefffffffffffff, "1.7976931348623157e+308"),
        (0x437b69b4ba630f35, "1.2345678901234568e+17"),
        (0x4341c37937e08000, "1e+16"),
        (0x430c6bf526340000, "1000000000000000.0"),
        (0x43118b54f22aeb00, "1234567890123456.0"),
        (0x3f50624dd2f1a9fc, "0.001"),
        (0x3f1a36e2eb1c432d, "0.0001"),
        (0x3f1f75104d551d69, "0.00012"),
        (0x3eef75104d551d69, "1.5e-05"),
        (0x36a0000000000000, "1.401298464324817e-45"),
        (0x47e0000000000000, "1.7014118346046923e+38"),
        (0x47efffffe0000000, "3.4028234663852886e+38"),
        (0x4480f0cf064dd592, "1e+22"),
        (0x0000000000000000, "0.0"),
        (0x8000000000000000, "-0.0"),
        (0x3ff0000000000000, "1.0"),
        (0x40d3333340000000, "19660.80078125"),
        (0x41f0000000000000, "4294967296.0"),
        (0x43f0000000000000, "1.8446744073709552e+19"),
        (0x3f202e4b6ce5dc68, "0.00012345"),
        (0x405edd2f1a9fbe77, "123.456"),
        (0xc004000000000000, "-2.5"),
        (0x3e7ad7f29abcaf48, "1e-07"),
        (0x3fe0000000000000, "0.5"),
    ];
    for (bits, python) in cases {
        assert_eq!(python_float_repr(f64::from_bits(bits)), python, "{bits:#x}");
    }
    assert_eq!(python_float_repr(f64::INFINITY), "Infinity");
    assert_eq!(python_float_repr(f64::NAN), "NaN");
}

/// The collapse to 0 is visible in a PyTorch replay: 166 overflows from 2^16.
#[test]
fn pytorch_collapse_is_visible() {
    let r = replay(&[], &"inf\n".repeat(166));
    let last = r.stdout.lines().last().unwrap();
    assert_eq!(field(last, "scale"), "0.0");
    assert_eq!(field(last, "scale_bits"), "0x00000000");
    let before = r.stdout.lines().nth(164).unwrap();
    assert_eq!(field(before, "scale"), "1.401298464324817e-45");
    assert_eq!(field(before, "scale_bits"), "0x00000001");
}
