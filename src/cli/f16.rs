//! `halfscale f16`: binary16 (or bfloat16) arithmetic for a person, and `batch` for tools.
//!
//! Operands are decimal (`1.2e-5`, `-0`, `inf`, `nan`), rounded once to the format in the chosen
//! mode, or bit patterns (`0x3c00`), taken as they are.

use super::f16_batch::answer_line;
use clap::{Subcommand, ValueEnum};
use halfscale_core::half::{bf16, f16};
use halfscale_core::{self as hc, Fate, Flags, Format, FpEnv, NanStyle, RoundingMode, Tininess};
use rustc_apfloat::Round;
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  halfscale f16 mul 32000 3\n  halfscale f16 add 0x3c00 1e-4 --round up\n  halfscale f16 classify 1.2e-5 --scale 65536\n  echo 'f16_mul near_even 77D0 4200' | halfscale f16 batch"
)]
pub struct Args {
    #[command(subcommand)]
    op: Op,
    /// Rounding mode: nearest (ties to even), zero, down, up, away (ties away), or SoftFloat's
    /// names near_even, minMag, min, max, near_maxMag.
    #[arg(long, global = true, default_value = "nearest", value_parser = parse_mode)]
    round: RoundingMode,
    /// The 16-bit format.
    #[arg(long, global = true, value_enum, default_value_t = FormatArg::F16)]
    format: FormatArg,
    /// When a result is tiny for the underflow flag.
    #[arg(long, global = true, value_enum, default_value_t = TininessArg::After)]
    tininess: TininessArg,
    /// Which NaN a NaN result is: x86 (SoftFloat 8086-SSE, propagates payloads), cuda (0x7FFF), canonical (0x7E00).
    #[arg(long, global = true, value_enum, default_value_t = NanArg::X86)]
    nan: NanArg,
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
    /// a * b + c, rounded once
    Fma { a: String, b: String, c: String },
    /// square root
    Sqrt { a: String },
    /// round to an integral value (--exact raises inexact when it rounds)
    Round {
        a: String,
        #[arg(long)]
        exact: bool,
    },
    /// What storing a value (times --scale) in the format does: exact, rounded, subnormal, flushed, overflow
    Classify {
        value: String,
        #[arg(long, default_value = "1")]
        scale: String,
    },
    /// Read `OP MODE OPERAND...` lines (SoftFloat names, hex operands) on stdin, answer `RESULT FLAGS` each
    #[command(
        long_about = "Reads lines `OP MODE OPERAND...` from standard input and answers each with `RESULT FLAGS`, in order.\n\nOP: f16_add f16_sub f16_mul f16_div f16_sqrt f16_mulAdd f16_roundToInt f16_roundToInt_exact f16_eq f16_lt f16_le f16_eq_signaling f16_lt_quiet f16_le_quiet f16_to_f32 f16_to_f64 f16_to_i32 f16_to_i64 f16_to_ui32 f16_to_ui64 f32_to_f16 f64_to_f16 i32_to_f16 i64_to_f16 ui32_to_f16 ui64_to_f16, and the same with bf16.\nMODE: near_even minMag min max near_maxMag.\nOperands and results: hex bit patterns, zero-padded to the type's width (4, 8 or 16 digits); comparisons answer 0 or 1.\nFLAGS: two hex digits, inexact 01, underflow 02, overflow 04, infinite 08, invalid 10.\nA malformed line gets a message on stderr with its line number; the others are still answered; the exit status is then 2."
    )]
    Batch,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    F16,
    Bf16,
}

#[derive(Clone, Copy, ValueEnum)]
enum TininessArg {
    After,
    Before,
}

#[derive(Clone, Copy, ValueEnum)]
enum NanArg {
    X86,
    Cuda,
    Canonical,
}

fn parse_mode(s: &str) -> Result<RoundingMode, String> {
    RoundingMode::parse(s)
        .ok_or_else(|| format!("unknown rounding mode `{s}`: use nearest, zero, down, up or away"))
}

pub fn run(args: Args) -> ExitCode {
    let env = FpEnv {
        rounding: args.round,
        tininess: match args.tininess {
            TininessArg::After => Tininess::AfterRounding,
            TininessArg::Before => Tininess::BeforeRounding,
        },
        nan: match args.nan {
            NanArg::X86 => NanStyle::X86Sse,
            NanArg::Cuda => NanStyle::Cuda,
            NanArg::Canonical => NanStyle::Canonical,
        },
        ..FpEnv::default()
    };
    if let Op::Batch = args.op {
        return batch(env);
    }
    let result = match args.format {
        FormatArg::F16 => person::<f16>(&args.op, env),
        FormatArg::Bf16 => person::<bf16>(&args.op, env),
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

fn batch(env: FpEnv) -> ExitCode {
    super::f16_batch::answer_lines(|line| answer_line(line, env))
}

/// The narrow formats this command knows, with their correctly rounded decimal parser.
trait Narrow: Format {
    fn parse_decimal(text: &str, mode: RoundingMode) -> Option<(u64, bool)>;
}

fn apfloat_round(mode: RoundingMode) -> Round {
    match mode {
        RoundingMode::NearestEven => Round::NearestTiesToEven,
        RoundingMode::TowardZero => Round::TowardZero,
        RoundingMode::TowardNegative => Round::TowardNegative,
        RoundingMode::TowardPositive => Round::TowardPositive,
        RoundingMode::NearestAway => Round::NearestTiesToAway,
    }
}

fn parse_with<T: rustc_apfloat::Float>(text: &str, mode: RoundingMode) -> Option<(u64, bool)> {
    let parsed = T::from_str_r(text, apfloat_round(mode)).ok()?;
    Some((
        parsed.value.to_bits() as u64,
        parsed.status != rustc_apfloat::Status::OK,
    ))
}

impl Narrow for f16 {
    fn parse_decimal(text: &str, mode: RoundingMode) -> Option<(u64, bool)> {
        parse_with::<rustc_apfloat::ieee::Half>(text, mode)
    }
}

impl Narrow for bf16 {
    fn parse_decimal(text: &str, mode: RoundingMode) -> Option<(u64, bool)> {
        parse_with::<rustc_apfloat::ieee::BFloat>(text, mode)
    }
}

/// An operand: `0x...` bits, or a decimal rounded once to the format (noting when it rounded).
fn operand<F: Narrow>(
    text: &str,
    mode: RoundingMode,
    notes: &mut Vec<String>,
) -> Result<F, String> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        let bits = u64::from_str_radix(hex, 16)
            .ok()
            .filter(|&b| b >> F::WIDTH == 0)
            .ok_or_else(|| format!("`{text}` is not a {}-bit pattern", F::WIDTH))?;
        return Ok(F::from_bits(bits));
    }
    let lower = text.to_ascii_lowercase();
    let normalized = match lower.as_str() {
        "infinity" | "+inf" | "+infinity" => "inf".to_string(),
        "-infinity" => "-inf".to_string(),
        _ => lower,
    };
    let (bits, rounded) = F::parse_decimal(&normalized, mode).ok_or_else(|| {
        format!("`{text}` is not a number (decimal like 1.2e-5, inf, nan, or bits like 0x3c00)")
    })?;
    let value = F::from_bits(bits);
    if rounded {
        notes.push(format!("operand {text} rounded to {}", describe(value)));
    }
    Ok(value)
}

/// `1.1981e-5 (0x00C9)`: the value with five significant digits, and its bits.
fn describe<F: Format>(x: F) -> String {
    let mut env = FpEnv::default();
    let wide = hc::to_f64(x, &mut env);
    let digits = (F::WIDTH as usize) / 4;
    let decimal = if wide.is_nan() {
        "NaN".to_string()
    } else if wide.is_infinite() {
        if wide > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else if wide == 0.0 || (1e-4..1e5).contains(&wide.abs()) {
        format!("{}", round_sig(wide, 5))
    } else {
        format!("{:.4e}", wide)
    };
    format!("{decimal} (0x{:0digits$X})", x.to_bits())
}

/// `x` rounded to `sig` significant decimal digits, printed without trailing zeros.
fn round_sig(x: f64, sig: i32) -> f64 {
    if x == 0.0 {
        return x;
    }
    let scale = 10f64.powi(sig - 1 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

fn fate_text<F: Format>(result: F, flags: Flags) -> String {
    let bits = result.to_bits();
    let magnitude = bits & !F::SIGN_MASK;
    if magnitude > F::INFINITY_BITS {
        return "nan".into();
    }
    if flags.contains(Flags::OVERFLOW) {
        return "overflow".into();
    }
    if magnitude == F::INFINITY_BITS {
        return "inf".into();
    }
    let inexact = flags.contains(Flags::INEXACT);
    if magnitude == 0 {
        return if inexact { "flushed to zero" } else { "zero" }.into();
    }
    if magnitude & F::EXP_MASK == 0 {
        let lost = F::PRECISION - (64 - magnitude.leading_zeros());
        let how = if inexact { "rounded" } else { "exact" };
        return format!("subnormal, {how}, {lost} significand bits lost");
    }
    if inexact { "rounded" } else { "exact" }.into()
}

fn flags_text(flags: Flags) -> String {
    if flags.is_empty() {
        "none".into()
    } else {
        flags.names().collect::<Vec<_>>().join(" ")
    }
}

fn person<F: Narrow>(op: &Op, mut env: FpEnv) -> Result<String, String> {
    let mut notes = Vec::new();
    let mode = env.rounding;
    let mut arg = |t: &String| operand::<F>(t, mode, &mut notes);
    let result: F = match op {
        Op::Add { a, b } => hc::add(arg(a)?, arg(b)?, &mut env),
        Op::Sub { a, b } => hc::sub(arg(a)?, arg(b)?, &mut env),
        Op::Mul { a, b } => hc::mul(arg(a)?, arg(b)?, &mut env),
        Op::Div { a, b } => hc::div(arg(a)?, arg(b)?, &mut env),
        Op::Fma { a, b, c } => hc::fma(arg(a)?, arg(b)?, arg(c)?, &mut env),
        Op::Sqrt { a } => hc::sqrt(arg(a)?, &mut env),
        Op::Round { a, exact } => hc::round_to_int(arg(a)?, *exact, &mut env),
        Op::Classify { value, scale } => return classify::<F>(value, scale),
        Op::Batch => unreachable!("batch is answered before"),
    };
    let mut text = format!(
        "{} = {}  flags: {}  fate: {}",
        F::NAME,
        describe(result),
        flags_text(env.flags),
        fate_text(result, env.flags)
    );
    for note in notes {
        text.push_str(&format!("\n  ({note})"));
    }
    Ok(text)
}

fn parse_wide(text: &str) -> Result<f64, String> {
    if let Some(hex) = text.strip_prefix("0x") {
        return u32::from_str_radix(hex, 16)
            .map(|b| f64::from(f32::from_bits(b)))
            .map_err(|_| format!("`{text}` is not a 32-bit pattern"));
    }
    text.parse::<f64>()
        .map_err(|_| format!("`{text}` is not a number"))
}

/// Storing `value * scale` (nearest-even): the fate and the stored value.
fn classify<F: Narrow>(value: &str, scale: &str) -> Result<String, String> {
    let x = parse_wide(value)?;
    let s = parse_wide(scale)?;
    let fate = hc::fate::<F>(x, s);
    let mut env = FpEnv::default();
    let stored: F = hc::from_f64(x * s, &mut env);
    let fate_name = match fate {
        Fate::Zero => "zero".to_string(),
        Fate::Exact => "exact (normal)".to_string(),
        Fate::Rounded => "rounded (normal)".to_string(),
        Fate::Subnormal { bits_lost, exact } => format!(
            "subnormal, {}, {bits_lost} significand bits lost",
            if exact { "exact" } else { "rounded" }
        ),
        Fate::FlushedToZero => "flushed to zero (underflow)".to_string(),
        Fate::Overflow => "overflow to infinity".to_string(),
        Fate::OverflowToNan => "overflow to NaN".to_string(),
        Fate::Saturated => "overflow, saturated to the largest finite value".to_string(),
        Fate::Nan => "NaN".to_string(),
        Fate::Inf => "infinite already".to_string(),
    };
    let scaled = if s == 1.0 {
        format!("{x:e}")
    } else {
        format!("{x:e} * {s} = {:e}", x * s)
    };
    Ok(format!(
        "{scaled} -> {} {}  fate: {fate_name}  flags: {}",
        F::NAME,
        describe(stored),
        flags_text(env.flags)
    ))
}
