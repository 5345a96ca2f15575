//! Replays tests/fixtures/fp8_profiles.json.gz, recorded from ml_dtypes 0.6.0 and torch 2.15 by
//! scripts/fixtures/record_fp8.py, through halfscale-core's implementation profiles: every
//! narrowing of f32 (specials, every tie and its neighbours, random patterns), of every binary16
//! and every bfloat16 pattern, every decoding, and ml_dtypes' E4M3/E5M2 arithmetic on every
//! operand pair (torch's float8 multiplication too). Every code must match.

use flate2::read::GzDecoder;
use halfscale::core::half::{bf16, f16};
use halfscale::core::{Format, FpEnv, Profile, RoundingMode, E2M1, E2M3, E3M2, E4M3, E5M2, E8M0};
use serde_json::Value;
use std::io::Read;

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/fp8_profiles.json.gz"
    );
    let file = std::fs::File::open(path).expect("the fixture is committed");
    let mut text = String::new();
    GzDecoder::new(file).read_to_string(&mut text).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn hex_list(text: &str, digits: usize) -> Vec<u32> {
    (0..text.len() / digits)
        .map(|i| u32::from_str_radix(&text[i * digits..(i + 1) * digits], 16).unwrap())
        .collect()
}

fn rne() -> FpEnv {
    FpEnv::new(RoundingMode::NearestEven)
}

/// A profile's narrowing of the source pattern `bits` (of format `S`) to the format named `fmt`.
fn narrow_from<S: Format>(profile: Profile, bits: u32, fmt: &str) -> u8 {
    let x = S::from_bits(u64::from(bits));
    let e = &mut rne();
    let code = match fmt {
        "e4m3" => profile.narrow::<S, E4M3>(x, e).map(|v| v.code()),
        "e5m2" => profile.narrow::<S, E5M2>(x, e).map(|v| v.code()),
        "e3m2" => profile.narrow::<S, E3M2>(x, e).map(|v| v.code()),
        "e2m3" => profile.narrow::<S, E2M3>(x, e).map(|v| v.code()),
        "e2m1" => profile.narrow::<S, E2M1>(x, e).map(|v| v.code()),
        "e8m0" => profile.narrow_e8m0::<S>(x, e).map(|v| v.code()),
        other => panic!("unknown format {other}"),
    };
    code.expect("the recorded profile supports the format")
}

fn profile(case: &Value) -> Profile {
    Profile::parse(case["profile"].as_str().unwrap()).unwrap()
}

#[test]
fn narrowing_matches_the_recorded_libraries() {
    let fx = fixture();
    let f32_inputs = hex_list(fx["f32"].as_str().unwrap(), 8);
    let all16: Vec<u32> = (0..=0xFFFF).collect();
    let mut checked = 0usize;
    let mut seen_torch = false;
    for case in fx["narrow"].as_array().unwrap() {
        let p = profile(case);
        seen_torch |= p == Profile::Torch;
        let fmt = case["fmt"].as_str().unwrap();
        let src = case["src"].as_str().unwrap();
        let expected = hex_list(case["out"].as_str().unwrap(), 2);
        let inputs = if src == "f32" { &f32_inputs } else { &all16 };
        assert_eq!(inputs.len(), expected.len());
        let mut mismatches = Vec::new();
        for (&x, &want) in inputs.iter().zip(&expected) {
            let got = match src {
                "f32" => narrow_from::<f32>(p, x, fmt),
                "f16" => narrow_from::<f16>(p, x, fmt),
                "bf16" => narrow_from::<bf16>(p, x, fmt),
                other => panic!("unknown source {other}"),
            };
            if u32::from(got) != want {
                mismatches.push(format!("{x:08X} -> {got:02X}, recorded {want:02X}"));
            }
            checked += 1;
        }
        assert!(
            mismatches.is_empty(),
            "{} {src} -> {fmt}: {} mismatches, first: {:?}",
            p.name(),
            mismatches.len(),
            &mismatches[..mismatches.len().min(8)]
        );
    }
    assert!(seen_torch, "the fixture holds torch's vectors");
    assert!(checked > 1_000_000, "{checked}");
}

fn widen_code(p: Profile, fmt: &str, code: u8) -> u32 {
    let e = &mut rne();
    let wide = match fmt {
        "e4m3" => p.widen(E4M3::from_code(code), e),
        "e5m2" => p.widen(E5M2::from_code(code), e),
        "e3m2" => p.widen(E3M2::from_code(code), e),
        "e2m3" => p.widen(E2M3::from_code(code), e),
        "e2m1" => p.widen(E2M1::from_code(code), e),
        "e8m0" => p.widen_e8m0(E8M0::from_code(code)),
        other => panic!("unknown format {other}"),
    };
    wide.unwrap().to_bits()
}

#[test]
fn widening_matches_the_recorded_libraries() {
    let fx = fixture();
    for case in fx["decode"].as_array().unwrap() {
        let p = profile(case);
        let fmt = case["fmt"].as_str().unwrap();
        let expected = hex_list(case["out"].as_str().unwrap(), 8);
        for (code, &want) in expected.iter().enumerate() {
            let got = widen_code(p, fmt, code as u8);
            assert_eq!(got, want, "{} {fmt} {code:02X} -> f32", p.name());
        }
    }
}

fn binary<F: Format>(p: Profile, op: &str, a: u8, b: u8) -> u8 {
    let (x, y) = (F::from_bits(a.into()), F::from_bits(b.into()));
    let e = &mut rne();
    let r = match op {
        "add" => p.add(x, y, e),
        "sub" => p.sub(x, y, e),
        "mul" => p.mul(x, y, e),
        "div" => p.div(x, y, e),
        "sqrt" => p.sqrt(x, e),
        other => panic!("unknown op {other}"),
    };
    r.unwrap().to_bits() as u8
}

#[test]
fn arithmetic_matches_the_recorded_libraries() {
    let fx = fixture();
    for case in fx["arith"].as_array().unwrap() {
        let p = profile(case);
        let fmt = case["fmt"].as_str().unwrap();
        let op = case["op"].as_str().unwrap();
        let expected = hex_list(case["out"].as_str().unwrap(), 2);
        let mut mismatches = Vec::new();
        for (k, &want) in expected.iter().enumerate() {
            // Pair k is (k / 256, k % 256); sqrt has one operand per entry.
            let (a, b) = if op == "sqrt" {
                (k as u8, 0)
            } else {
                ((k / 256) as u8, (k % 256) as u8)
            };
            let got = match fmt {
                "e4m3" => binary::<E4M3>(p, op, a, b),
                "e5m2" => binary::<E5M2>(p, op, a, b),
                other => panic!("unknown format {other}"),
            };
            if u32::from(got) != want {
                mismatches.push(format!(
                    "{a:02X} {op} {b:02X} -> {got:02X}, recorded {want:02X}"
                ));
            }
        }
        assert!(
            mismatches.is_empty(),
            "{} {fmt} {op}: {} mismatches, first: {:?}",
            p.name(),
            mismatches.len(),
            &mismatches[..mismatches.len().min(8)]
        );
    }
}

#[test]
fn mul_add_matches_the_recorded_libraries() {
    let fx = fixture();
    let cases = fx["mul_add"].as_array().unwrap();
    assert!(cases.len() >= 2);
    for case in cases {
        let p = profile(case);
        let fmt = case["fmt"].as_str().unwrap();
        let expected = hex_list(case["out"].as_str().unwrap(), 2);
        assert_eq!(expected.len(), 8192);
        for (k, &want) in expected.iter().enumerate() {
            // The generator's triple k (scripts/fixtures/record_fp8.py).
            let k = k as u64;
            let (a, b, c) = (
                k as u8,
                (k * 97 + 13) as u8,
                ((k * 2_654_435_761) >> 11) as u8,
            );
            let e = &mut rne();
            let got = match fmt {
                "e4m3" => p
                    .mul_add(
                        E4M3::from_code(a),
                        E4M3::from_code(b),
                        E4M3::from_code(c),
                        e,
                    )
                    .map(|v| v.code()),
                _ => p
                    .mul_add(
                        E5M2::from_code(a),
                        E5M2::from_code(b),
                        E5M2::from_code(c),
                        e,
                    )
                    .map(|v| v.code()),
            }
            .unwrap();
            assert_eq!(
                u32::from(got),
                want,
                "{} {fmt} {a:02X} * {b:02X} + {c:02X}",
                p.name()
            );
        }
    }
}
