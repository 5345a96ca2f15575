//! `halfscale fp8`: the 8-, 6- and 4-bit formats for a person (arithmetic verbs for E4M3 and E5M2,
//! `classify` for every element format), and `batch` for tools (see `fp8_batch`).
//!
//! Operands are decimal (`448`, `-0`, `inf`, `nan`), read as f64 and rounded once to the format in
//! the chosen mode (a decimal with more than 15 significant digits lying within 2^-53 of a tie
//! could round differently from one correct rounding), or codes (`0x7e`), taken as they are.

use super::fp8_batch::answer_line;
use clap::{Subcommand, ValueEnum};
use halfscale_core::{
    self as hc, Fate, Flags, Format, FpEnv, Overflow, Profile, RoundingMode, E2M1, E2M3, E3M2,
    E4M3, E5M2,
};
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  halfscale fp8 mul 240 2\n  halfscale fp8 add 0x7e 16 --format e4m3 --profile torch\n  halfscale fp8 classify 1000 --format e4m3 --scale 0.25\n  echo 'f32_to_e4m3 near_even 43F00000' | halfscale fp8 batch --profile torch"
)]
pub struct Args {
    #[command(subcommand)]
    op: Op,
    /// Rounding mode: nearest (ties to even), zero, down, up, away (ties away), or SoftFloat's
    /// names near_even, minMag, min, max, near_maxMag.
    #[arg(long, global = true, default_value = "nearest", value_parser = parse_mode)]
    round: RoundingMode,
    /// The element format (arithmetic: e4m3 or e5m2).
    #[arg(long, global = true, value_enum, default_value_t = FormatArg::E4m3)]
    format: FormatArg,
    /// Reproduce a library's conversions bit for bit instead of IEEE 754's.
    #[arg(long, global = true, value_parser = parse_profile)]
    profile: Option<Profile>,
    /// Without a profile: saturate overflows (and infinite operands) to the largest finite value.
    #[arg(long, global = true)]
    saturate: bool,
}

#[derive(Subcommand)]
enum Op {
    /// a + b
    Add { a: String, b: String },
    /// a - b
    Sub { a: String, b: String },
    /// a * b
    Mul { a: String, b: String },
    /// a / b
    Div { a: String, b: String },
    /// a * b + c, rounded once (twice under --profile: the library has no fused multiply-add)
    Fma { a: String, b: String, c: String },
    /// square root
    Sqrt { a: String },
    /// What storing a value (times --scale) in the format does: exact, rounded, subnormal, flushed, saturated, overflow
    Classify {
        value: String,
        #[arg(long, default_value = "1")]
        scale: String,
    },
    /// Read `OP MODE OPERAND...` lines (hex operands) on stdin, answer `RESULT FLAGS` each
    #[command(
        long_about = "Reads lines `OP MODE OPERAND...` from standard input and answers each with `RESULT FLAGS`, in order.\n\nFormats FMT: e4m3 e5m2 e3m2 e2m3 e2m1 e8m0.\nOP: f32_to_FMT f64_to_FMT f16_to_FMT bf16_to_FMT FMT_to_f32, and for e4m3 and e5m2 FMT_add FMT_sub FMT_mul FMT_div FMT_mulAdd FMT_sqrt FMT_eq FMT_lt FMT_le.\nMODE: near_even minMag min max near_maxMag.\nOperands and results: hex bit patterns zero-padded to the type's width: 2 digits for a code (right-aligned in the byte), 4 for f16/bf16, 8 for f32, 16 for f64; comparisons answer 0 or 1.\nFLAGS: two hex digits, inexact 01, underflow 02, overflow 04, infinite 08, invalid 10.\n--profile ml-dtypes|torch|cuda-satfinite|cuda-nosat answers as that library does; --saturate (without a profile) saturates overflow.\nA malformed line gets a message on stderr with its line number; the others are still answered; the exit status is then 2."
    )]
    Batch,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    E4m3,
    E5m2,
    E3m2,
    E2m3,
    E2m1,
}

fn parse_mode(s: &str) -> Result<RoundingMode, String> {
    RoundingMode::parse(s)
        .ok_or_else(|| format!("unknown rounding mode `{s}`: use nearest, zero, down, up or away"))
}

fn parse_profile(s: &str) -> Result<Profile, String> {
    Profile::parse(s).ok_or_else(|| {
        format!("unknown profile `{s}`: use ml-dtypes, torch, cuda-satfinite or cuda-nosat")
    })
}

pub fn run(args: Args) -> ExitCode {
    let overflow = if args.saturate {
        Overflow::Saturate
    } else {
        Overflow::Ieee
    };
    let env = FpEnv::new(args.round).with_overflow(overflow);
    if let Op::Batch = args.op {
        return batch(env, args.profile);
    }
    let result = match args.format {
        FormatArg::E4m3 => person::<E4M3>(&args.op, env, args.profile),
        FormatArg::E5m2 => person::<E5M2>(&args.op, env, args.profile),
        other => match &args.op {
            Op::Classify { value, scale } => match other {
                FormatArg::E3m2 => classify::<E3M2>(value, scale, env, args.profile),
                FormatArg::E2m3 => classify::<E2M3>(value, scale, env, args.profile),
                _ => classify::<E2M1>(value, scale, env, args.profile),
            },
            _ => Err("arithmetic is for --format e4m3 or e5m2; FP6/FP4 have classify".into()),
        },
    };
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn batch(env: FpEnv, profile: Option<Profile>) -> ExitCode {
    super::f16_batch::answer_lines(|line| answer_line(line, env, profile))
}

/// A `0x..` operand's code, `None` for a decimal.
fn parse_code<F: Format>(text: &str) -> Result<Option<u64>, String> {
    let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) else {
        return Ok(None);
    };
    u64::from_str_radix(hex, 16)
        .ok()
        .filter(|&b| b >> F::WIDTH == 0)
        .map(Some)
        .ok_or_else(|| format!("`{text}` is not a {}-bit {} code", F::WIDTH, F::NAME))
}

/// A decimal or `0x..` operand as f64 (codes are decoded exactly).
fn parse_wide<F: Format>(text: &str) -> Result<f64, String> {
    if let Some(bits) = parse_code::<F>(text)? {
        return Ok(hc::to_f64(F::from_bits(bits), &mut FpEnv::default()));
    }
    let lower = text.to_ascii_lowercase();
    let trimmed = lower.trim_start_matches('+');
    trimmed.parse::<f64>().map_err(|_| {
        format!("`{text}` is not a number (decimal like 1.5e-3, inf, nan, or a code like 0x7e)")
    })
}

/// An operand: a code as it is, or a decimal rounded once to `F` in the environment's mode
/// (through the profile's conversion when there is one); notes when it rounded.
fn operand<F: Format>(
    text: &str,
    env: &FpEnv,
    profile: Option<Profile>,
    notes: &mut Vec<String>,
) -> Result<F, String> {
    if let Some(bits) = parse_code::<F>(text)? {
        return Ok(F::from_bits(bits));
    }
    let wide = parse_wide::<F>(text)?;
    let mut e = FpEnv {
        flags: Flags::NONE,
        ..*env
    };
    let value = narrow::<F>(wide, &mut e, profile)?;
    if e.flags.contains(Flags::INEXACT) {
        notes.push(format!("operand {text} rounded to {}", describe(value)));
    }
    Ok(value)
}

fn narrow<F: Format>(x: f64, env: &mut FpEnv, profile: Option<Profile>) -> Result<F, String> {
    match profile {
        Some(p) => p.narrow::<f64, F>(x, env).map_err(|e| e.to_string()),
        None => Ok(hc::from_f64(x, env)),
    }
}

/// `448 (0x7E)`: the value (exact: these formats have at most 4 significant bits) and its code.
fn describe<F: Format>(x: F) -> String {
    let wide = hc::to_f64(x, &mut FpEnv::default());
    let decimal = if wide.is_nan() {
        "NaN".to_string()
    } else if wide.is_infinite() {
        if wide > 0.0 { "inf" } else { "-inf" }.to_string()
    } else {
        format!("{wide}")
    };
    format!("{decimal} (0x{:02X})", x.to_bits())
}

fn flags_text(flags: Flags) -> String {
    if flags.is_empty() {
        "none".into()
    } else {
        flags.names().collect::<Vec<_>>().join(" ")
    }
}

fn person<F: Format>(op: &Op, mut env: FpEnv, profile: Option<Profile>) -> Result<String, String> {
    let mut notes = Vec::new();
    let base = env;
    let mut arg = |t: &String| operand::<F>(t, &base, profile, &mut notes);
    let e = &mut env;
    let result: F = match (op, profile) {
        (Op::Classify { value, scale }, _) => return classify::<F>(value, scale, base, profile),
        (Op::Batch, _) => unreachable!("batch is answered before"),
        (Op::Add { a, b }, None) => hc::add(arg(a)?, arg(b)?, e),
        (Op::Sub { a, b }, None) => hc::sub(arg(a)?, arg(b)?, e),
        (Op::Mul { a, b }, None) => hc::mul(arg(a)?, arg(b)?, e),
        (Op::Div { a, b }, None) => hc::div(arg(a)?, arg(b)?, e),
        (Op::Fma { a, b, c }, None) => hc::fma(arg(a)?, arg(b)?, arg(c)?, e),
        (Op::Sqrt { a }, None) => hc::sqrt(arg(a)?, e),
        (op, Some(p)) => {
            let r = match op {
                Op::Add { a, b } => p.add(arg(a)?, arg(b)?, e),
                Op::Sub { a, b } => p.sub(arg(a)?, arg(b)?, e),
                Op::Mul { a, b } => p.mul(arg(a)?, arg(b)?, e),
                Op::Div { a, b } => p.div(arg(a)?, arg(b)?, e),
                Op::Fma { a, b, c } => p.mul_add(arg(a)?, arg(b)?, arg(c)?, e),
                Op::Sqrt { a } => p.sqrt(arg(a)?, e),
                Op::Classify { .. } | Op::Batch => unreachable!("matched above"),
            };
            r.map_err(|e| e.to_string())?
        }
    };
    let mut text = format!(
        "{} = {}  flags: {}",
        F::NAME,
        describe(result),
        flags_text(env.flags)
    );
    for note in notes {
        text.push_str(&format!("\n  ({note})"));
    }
    Ok(text)
}

fn fate_name(fate: Fate) -> String {
    match fate {
        Fate::Zero => "zero".into(),
        Fate::Exact => "exact (normal)".into(),
        Fate::Rounded => "rounded (normal)".into(),
        Fate::Subnormal { bits_lost, exact } => format!(
            "subnormal, {}, {bits_lost} significand bits lost",
            if exact { "exact" } else { "rounded" }
        ),
        Fate::FlushedToZero => "flushed to zero (underflow)".into(),
        Fate::Overflow => "overflow to infinity".into(),
        Fate::OverflowToNan => "overflow to NaN".into(),
        Fate::Saturated => "overflow, saturated to the largest finite value".into(),
        Fate::Nan => "NaN".into(),
        Fate::Inf => "infinite already".into(),
    }
}

/// Storing `value * scale` (nearest-even, or the environment's mode for the stored value): the
/// fate under the overflow policy in force (the profile's, or `--saturate`) and the stored value.
fn classify<F: Format>(
    value: &str,
    scale: &str,
    env: FpEnv,
    profile: Option<Profile>,
) -> Result<String, String> {
    let parse = |t: &str| {
        t.parse::<f64>()
            .map_err(|_| format!("`{t}` is not a decimal number"))
    };
    let (x, s) = (parse(value)?, parse(scale)?);
    let policy = match profile {
        Some(p) => p.overflow_policy::<F>(),
        None => env.overflow,
    };
    let fate = hc::fate_with::<F>(x, s, policy);
    let mut e = FpEnv {
        rounding: RoundingMode::NearestEven,
        flags: Flags::NONE,
        ..env
    };
    let stored: F = narrow::<F>(x * s, &mut e, profile)?;
    let scaled = if s == 1.0 {
        format!("{x:e}")
    } else {
        format!("{x:e} * {s} = {:e}", x * s)
    };
    Ok(format!(
        "{scaled} -> {} {}  fate: {}  flags: {}",
        F::NAME,
        describe(stored),
        fate_name(fate),
        flags_text(e.flags)
    ))
}
