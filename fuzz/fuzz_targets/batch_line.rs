//! The `halfscale f16 batch` line parser (`halfscale::cli::f16_batch::answer_line`).
//!
//! Input, first byte even: the rest is text, line by line; every line must give an answer or a
//! `LineError`, never a panic, and an answer must read `RESULT FLAGS` in upper-case hex of the
//! protocol's widths.
//! First byte odd: a well-formed line is built from `op mode style a b c` (bytes, then three
//! little-endian u64 operands) with the mode's aliases, varied padding and case, and its answer
//! must be SoftFloat's result and flags, formatted.
#![no_main]

use halfscale::cli::f16_batch::answer_line;
use halfscale_core::half::{bf16, f16};
use halfscale_core::{FpEnv, RoundingMode, Tininess};
use halfscale_fuzz::narrow::{Bin, Cmp, Int, Narrow};
use halfscale_fuzz::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let selector = input.u8();
    if selector & 1 == 0 {
        free_text(input.rest());
    } else if selector & 2 == 0 {
        well_formed::<f16>(&mut input, "f16");
    } else {
        well_formed::<bf16>(&mut input, "bf16");
    }
});

fn free_text(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for line in text.lines() {
        for tininess in [Tininess::AfterRounding, Tininess::BeforeRounding] {
            let base = FpEnv {
                tininess,
                ..FpEnv::default()
            };
            if let Ok(answer) = answer_line(line, base) {
                let (result, flags) = answer
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("{line:?} -> {answer:?}"));
                let hex = |s: &str| {
                    s.bytes()
                        .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
                };
                assert!(
                    [1, 4, 8, 16].contains(&result.len())
                        && hex(result)
                        && flags.len() == 2
                        && hex(flags),
                    "{line:?} -> {answer:?}"
                );
            }
        }
    }
}

/// Operand and result kinds, with their hex widths.
#[derive(Clone, Copy)]
enum Ty {
    Narrow,
    F32,
    F64,
    Int(Int),
    Bool,
}

impl Ty {
    fn width(self) -> usize {
        match self {
            Ty::Narrow => 4,
            Ty::F32 | Ty::Int(Int::I32 | Int::U32) => 8,
            Ty::F64 | Ty::Int(Int::I64 | Int::U64) => 16,
            Ty::Bool => 1,
        }
    }
    fn mask(self) -> u64 {
        match self.width() {
            16 => u64::MAX,
            w => (1u64 << (4 * w)) - 1,
        }
    }
}

const MODES: [(RoundingMode, &[&str]); 5] = [
    (
        RoundingMode::NearestEven,
        &["near_even", "nearest", "even", "rne"],
    ),
    (
        RoundingMode::TowardZero,
        &["minMag", "zero", "trunc", "rtz"],
    ),
    (
        RoundingMode::TowardNegative,
        &["min", "down", "floor", "rtn"],
    ),
    (RoundingMode::TowardPositive, &["max", "up", "ceil", "rtp"]),
    (RoundingMode::NearestAway, &["near_maxMag", "away", "rna"]),
];

fn int_name(kind: Int) -> &'static str {
    match kind {
        Int::I32 => "i32",
        Int::I64 => "i64",
        Int::U32 => "ui32",
        Int::U64 => "ui64",
    }
}

fn well_formed<F: Narrow>(input: &mut Bytes, prefix: &str) {
    let op = input.u8();
    let mode_byte = input.u8();
    let style = input.u8();
    let raw = [input.u64(), input.u64(), input.u64()];
    let (rounding, aliases) = MODES[usize::from(mode_byte % 5)];
    let mode_name = aliases[usize::from(mode_byte / 5) % aliases.len()];
    let tininess = if style & 0x80 != 0 {
        Tininess::BeforeRounding
    } else {
        Tininess::AfterRounding
    };
    let e = FpEnv {
        rounding,
        tininess,
        ..FpEnv::default()
    };
    let n = |i: usize| raw[i] as u16;

    // (name, operand types, result type, SoftFloat's bits and flags)
    let (name, inputs, out, (bits, flags)): (String, Vec<Ty>, Ty, (u64, _)) = match op % 22 {
        k @ 0..=3 => {
            let bin = Bin::ALL[usize::from(k)];
            let (r, f) = F::sf_binary(bin, &e, n(0), n(1));
            let name = ["add", "sub", "mul", "div"][usize::from(k)];
            (
                format!("{prefix}_{name}"),
                vec![Ty::Narrow; 2],
                Ty::Narrow,
                (r.into(), f),
            )
        }
        4 => {
            let (r, f) = F::sf_fma(&e, n(0), n(1), n(2));
            (
                format!("{prefix}_mulAdd"),
                vec![Ty::Narrow; 3],
                Ty::Narrow,
                (r.into(), f),
            )
        }
        5 => {
            let (r, f) = F::sf_sqrt(&e, n(0));
            (
                format!("{prefix}_sqrt"),
                vec![Ty::Narrow],
                Ty::Narrow,
                (r.into(), f),
            )
        }
        k @ 6..=7 => {
            let exact = k == 7;
            let (r, f) = F::sf_round_to_int(&e, n(0), exact);
            let name = if exact {
                "roundToInt_exact"
            } else {
                "roundToInt"
            };
            (
                format!("{prefix}_{name}"),
                vec![Ty::Narrow],
                Ty::Narrow,
                (r.into(), f),
            )
        }
        k @ 8..=13 => {
            let cmp = Cmp::ALL[usize::from(k - 8)];
            let (r, f) = F::sf_compare(cmp, n(0), n(1));
            let name =
                ["eq", "lt", "le", "eq_signaling", "lt_quiet", "le_quiet"][usize::from(k - 8)];
            (
                format!("{prefix}_{name}"),
                vec![Ty::Narrow; 2],
                Ty::Bool,
                (r.into(), f),
            )
        }
        14 => {
            let (r, f) = F::sf_to_f32(&e, n(0));
            (
                format!("{prefix}_to_f32"),
                vec![Ty::Narrow],
                Ty::F32,
                (r.into(), f),
            )
        }
        15 => (
            format!("{prefix}_to_f64"),
            vec![Ty::Narrow],
            Ty::F64,
            F::sf_to_f64(&e, n(0)),
        ),
        16 | 17 => {
            // The protocol's conversions to integers are convertToInteger, never inexact.
            let kind = Int::ALL[usize::from(style) % 4];
            let name = format!("{prefix}_to_{}", int_name(kind));
            (
                name,
                vec![Ty::Narrow],
                Ty::Int(kind),
                F::sf_to_int(kind, &e, n(0), false),
            )
        }
        18 => {
            let (r, f) = F::sf_from_f32(&e, raw[0] as u32);
            (
                format!("f32_to_{prefix}"),
                vec![Ty::F32],
                Ty::Narrow,
                (r.into(), f),
            )
        }
        19 => {
            let (r, f) = F::sf_from_f64(&e, raw[0]);
            (
                format!("f64_to_{prefix}"),
                vec![Ty::F64],
                Ty::Narrow,
                (r.into(), f),
            )
        }
        _ => {
            let kind = Int::ALL[usize::from(style) % 4];
            let (r, f) = F::sf_from_int(kind, &e, raw[0]);
            let name = format!("{}_to_{prefix}", int_name(kind));
            (name, vec![Ty::Int(kind)], Ty::Narrow, (r.into(), f))
        }
    };

    let mut line = format!(
        "{name}{}{mode_name}",
        if style & 1 != 0 { "\t" } else { " " }
    );
    for (i, ty) in inputs.iter().enumerate() {
        let v = raw[i] & ty.mask();
        let text = match style >> 1 & 3 {
            0 => format!("{v:0w$X}", w = ty.width()),
            1 => format!("{v:x}"),
            2 => format!("{v:X}"),
            _ => format!("{v:0w$x}", w = ty.width()),
        };
        line.push_str(if style & 8 != 0 { "  " } else { " " });
        line.push_str(&text);
    }
    if style & 16 != 0 {
        line.push_str(" \t");
    }
    let want = format!(
        "{:0w$X} {:02X}",
        bits & out.mask(),
        flags.bits(),
        w = out.width()
    );
    let base = FpEnv {
        tininess,
        ..FpEnv::default()
    };
    assert_eq!(answer_line(&line, base), Ok(want), "{line:?}");
}
