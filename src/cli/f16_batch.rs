//! The line protocol of `halfscale f16 batch`, for tools and fuzzers: `OP MODE OPERAND...` in,
//! `RESULT FLAGS` out, in Berkeley SoftFloat / TestFloat conventions.
//!
//! OP is a SoftFloat function name (`f16_add`, `f32_to_f16`, `bf16_mulAdd`, ...), MODE a TestFloat
//! rounding-mode name (`near_even minMag min max near_maxMag`), operands and results hexadecimal
//! bit patterns zero-padded to the type's width (4 digits for 16-bit formats, 8 for f32 and i32,
//! 16 for f64 and i64); comparisons answer `0` or `1`. FLAGS is two hex digits in SoftFloat's bit
//! layout: inexact 01, underflow 02, overflow 04, infinite 08, invalid 10.

use halfscale_core::half::{bf16, f16};
use halfscale_core::{self as hc, Format, FpEnv, RoundingMode};
use std::fmt;
use std::process::ExitCode;

/// Why a batch line could not be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    Empty,
    UnknownOp(String),
    UnknownMode(String),
    Arity {
        op: String,
        expected: usize,
        found: usize,
    },
    BadOperand {
        operand: String,
        width: usize,
    },
    /// A code with bits set above its format's width (`halfscale fp8 batch`: `FF` for FP4).
    CodeTooWide {
        operand: String,
        bits: u32,
    },
    /// The operation exists, but not in the chosen implementation profile.
    Unsupported(String),
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::Empty => write!(f, "expected `OP MODE OPERAND...`"),
            LineError::UnknownOp(op) => write!(f, "unknown operation `{op}`"),
            LineError::UnknownMode(m) => write!(
                f,
                "unknown rounding mode `{m}` (expected near_even, minMag, min, max or near_maxMag)"
            ),
            LineError::Arity {
                op,
                expected,
                found,
            } => {
                write!(f, "`{op}` takes {expected} operand(s), found {found}")
            }
            LineError::BadOperand { operand, width } => write!(
                f,
                "operand `{operand}` is not a hexadecimal bit pattern of at most {width} digits"
            ),
            LineError::CodeTooWide { operand, bits } => write!(
                f,
                "operand `{operand}` has bits above the format's {bits}-bit code"
            ),
            LineError::Unsupported(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for LineError {}

/// Operand and result kinds of the protocol, with their hex widths.
#[derive(Clone, Copy)]
enum Ty {
    Narrow,
    F32,
    F64,
    I32,
    I64,
    U32,
    U64,
    Bool,
}

impl Ty {
    fn width(self) -> usize {
        match self {
            Ty::Narrow => 4,
            Ty::F32 | Ty::I32 | Ty::U32 => 8,
            Ty::F64 | Ty::I64 | Ty::U64 => 16,
            Ty::Bool => 1,
        }
    }
}

fn parse_operand(text: &str, ty: Ty) -> Result<u64, LineError> {
    let bad = || LineError::BadOperand {
        operand: text.to_string(),
        width: ty.width(),
    };
    if text.is_empty() || text.len() > ty.width() || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    u64::from_str_radix(text, 16).map_err(|_| bad())
}

fn format_result(bits: u64, ty: Ty) -> String {
    format!("{bits:0width$X}", width = ty.width())
}

/// Answers one line, in the given environment (its rounding mode is replaced by the line's).
/// Returns the `RESULT FLAGS` text without a newline.
pub fn answer_line(line: &str, base: FpEnv) -> Result<String, LineError> {
    let mut words = line.split_whitespace();
    let op = words.next().ok_or(LineError::Empty)?;
    let mode_name = words.next().ok_or(LineError::Empty)?;
    let rounding =
        RoundingMode::parse(mode_name).ok_or_else(|| LineError::UnknownMode(mode_name.into()))?;
    let operands: Vec<&str> = words.collect();
    let mut env = FpEnv {
        rounding,
        flags: hc::Flags::NONE,
        ..base
    };
    let (format, name) = if let Some(rest) = op.strip_prefix("bf16_") {
        ("bf16", rest.to_string())
    } else if let Some(rest) = op.strip_prefix("f16_") {
        ("f16", rest.to_string())
    } else if let Some(src) = op.strip_suffix("_to_bf16") {
        ("bf16", format!("from_{src}"))
    } else if let Some(src) = op.strip_suffix("_to_f16") {
        ("f16", format!("from_{src}"))
    } else {
        return Err(LineError::UnknownOp(op.into()));
    };
    let (bits, ty) = match format {
        "f16" => eval::<f16>(op, &name, &operands, &mut env)?,
        _ => eval::<bf16>(op, &name, &operands, &mut env)?,
    };
    Ok(format!(
        "{} {:02X}",
        format_result(bits, ty),
        env.flags.bits()
    ))
}

fn eval<F: Format>(
    op: &str,
    name: &str,
    operands: &[&str],
    env: &mut FpEnv,
) -> Result<(u64, Ty), LineError> {
    use Ty::*;
    let signature: (&[Ty], Ty) = match name {
        "add" | "sub" | "mul" | "div" => (&[Narrow, Narrow], Narrow),
        "mulAdd" => (&[Narrow, Narrow, Narrow], Narrow),
        "sqrt" | "roundToInt" | "roundToInt_exact" => (&[Narrow], Narrow),
        "eq" | "lt" | "le" | "eq_signaling" | "lt_quiet" | "le_quiet" => (&[Narrow, Narrow], Bool),
        "to_f32" => (&[Narrow], F32),
        "to_f64" => (&[Narrow], F64),
        "to_i32" => (&[Narrow], I32),
        "to_i64" => (&[Narrow], I64),
        "to_ui32" => (&[Narrow], U32),
        "to_ui64" => (&[Narrow], U64),
        "from_f32" => (&[F32], Narrow),
        "from_f64" => (&[F64], Narrow),
        "from_i32" => (&[I32], Narrow),
        "from_i64" => (&[I64], Narrow),
        "from_ui32" => (&[U32], Narrow),
        "from_ui64" => (&[U64], Narrow),
        _ => return Err(LineError::UnknownOp(op.into())),
    };
    let (inputs, out) = signature;
    if operands.len() != inputs.len() {
        return Err(LineError::Arity {
            op: op.into(),
            expected: inputs.len(),
            found: operands.len(),
        });
    }
    let mut v = [0u64; 3];
    for (slot, (text, &ty)) in v.iter_mut().zip(operands.iter().zip(inputs)) {
        *slot = parse_operand(text, ty)?;
    }
    let x = |i: usize| F::from_bits(v[i]);
    let narrow = |r: F| r.to_bits();
    let result = match name {
        "add" => narrow(hc::add(x(0), x(1), env)),
        "sub" => narrow(hc::sub(x(0), x(1), env)),
        "mul" => narrow(hc::mul(x(0), x(1), env)),
        "div" => narrow(hc::div(x(0), x(1), env)),
        "mulAdd" => narrow(hc::fma(x(0), x(1), x(2), env)),
        "sqrt" => narrow(hc::sqrt(x(0), env)),
        "roundToInt" => narrow(hc::round_to_int(x(0), false, env)),
        "roundToInt_exact" => narrow(hc::round_to_int(x(0), true, env)),
        "eq" => u64::from(hc::eq(x(0), x(1), env)),
        "lt" => u64::from(hc::lt(x(0), x(1), env)),
        "le" => u64::from(hc::le(x(0), x(1), env)),
        "eq_signaling" => u64::from(hc::eq_signaling(x(0), x(1), env)),
        "lt_quiet" => u64::from(hc::lt_quiet(x(0), x(1), env)),
        "le_quiet" => u64::from(hc::le_quiet(x(0), x(1), env)),
        "to_f32" => u64::from(hc::to_f32(x(0), env).to_bits()),
        "to_f64" => hc::to_f64(x(0), env).to_bits(),
        // convertToInteger: never inexact (SoftFloat's `exact == false`).
        "to_i32" => u64::from(hc::to_i32(x(0), false, env) as u32),
        "to_i64" => hc::to_i64(x(0), false, env) as u64,
        "to_ui32" => u64::from(hc::to_u32(x(0), false, env)),
        "to_ui64" => hc::to_u64(x(0), false, env),
        "from_f32" => narrow(hc::from_f32::<F>(f32::from_bits(v[0] as u32), env)),
        "from_f64" => narrow(hc::from_f64::<F>(f64::from_bits(v[0]), env)),
        "from_i32" => narrow(hc::from_i32::<F>(v[0] as u32 as i32, env)),
        "from_i64" => narrow(hc::from_i64::<F>(v[0] as i64, env)),
        "from_ui32" => narrow(hc::from_u32::<F>(v[0] as u32, env)),
        "from_ui64" => narrow(hc::from_u64::<F>(v[0], env)),
        _ => unreachable!("the signature table lists every name"),
    };
    Ok((result, out))
}

/// The batch loop of `halfscale f16 batch`, `fp8 batch` and `mx`: answers every non-blank stdin
/// line on stdout, reports a bad one on stderr with its line number and goes on; exits 2 when a
/// line was bad, 1 when stdout fails.
pub fn answer_lines<E: fmt::Display>(answer: impl Fn(&str) -> Result<String, E>) -> ExitCode {
    use std::io::{BufRead, Write};
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = false;
    for (index, line) in stdin.lock().lines().enumerate() {
        let line_no = index + 1;
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                eprintln!("error: stdin line {line_no}: {e}");
                failed = true;
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match answer(&line) {
            Ok(text) => {
                if writeln!(out, "{text}").is_err() {
                    return ExitCode::FAILURE;
                }
            }
            Err(e) => {
                eprintln!("error: stdin line {line_no}: {e}");
                failed = true;
            }
        }
    }
    if out.flush().is_err() {
        return ExitCode::FAILURE;
    }
    if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(line: &str) -> Result<String, LineError> {
        answer_line(line, FpEnv::default())
    }

    #[test]
    fn the_issue_example() {
        assert_eq!(answer("f16_mul near_even 77D0 4200").unwrap(), "7C00 05");
    }

    #[test]
    fn widths_follow_the_result_type() {
        assert_eq!(answer("f16_to_f32 near_even 3C00").unwrap(), "3F800000 00");
        assert_eq!(
            answer("f16_to_f64 near_even 3C00").unwrap(),
            "3FF0000000000000 00"
        );
        assert_eq!(answer("f16_to_i32 near_even BC00").unwrap(), "FFFFFFFF 00");
        assert_eq!(answer("f16_lt near_even 3C00 4000").unwrap(), "1 00");
        assert_eq!(answer("i32_to_f16 near_even FFFFFFFF").unwrap(), "BC00 00");
        assert_eq!(answer("f32_to_bf16 near_even 3F808000").unwrap(), "3F80 01");
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert_eq!(answer(""), Err(LineError::Empty));
        assert!(matches!(
            answer("f16_frob near_even 0000"),
            Err(LineError::UnknownOp(_))
        ));
        assert!(matches!(
            answer("f16_add nearest_odd 0000 0000"),
            Err(LineError::UnknownMode(_))
        ));
        assert!(matches!(
            answer("f16_add near_even 0000"),
            Err(LineError::Arity { .. })
        ));
        assert!(matches!(
            answer("f16_add near_even 00000 0000"),
            Err(LineError::BadOperand { .. })
        ));
        assert!(matches!(
            answer("f16_add near_even xyz 0000"),
            Err(LineError::BadOperand { .. })
        ));
        assert!(matches!(
            answer("f16_add near_even +1 0000"),
            Err(LineError::BadOperand { .. })
        ));
    }
}
