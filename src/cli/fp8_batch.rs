//! The line protocol of `halfscale fp8 batch`, in the conventions of `halfscale f16 batch`:
//! `OP MODE OPERAND...` in, `RESULT FLAGS` out.
//!
//! Formats: `e4m3 e5m2 e3m2 e2m3 e2m1 e8m0`. Operations: `f32_to_FMT`, `f64_to_FMT`, `f16_to_FMT`,
//! `bf16_to_FMT`, `FMT_to_f32`, and for `e4m3` and `e5m2` also `FMT_add FMT_sub FMT_mul FMT_div
//! FMT_mulAdd FMT_sqrt FMT_eq FMT_lt FMT_le`. MODE is a TestFloat rounding-mode name. Operands
//! and results are hex bit patterns zero-padded to their width: 2 digits for an 8-, 6- or 4-bit
//! code (right-aligned in the byte), 4 for binary16/bfloat16, 8 for f32, 16 for f64; comparisons
//! answer `0` or `1`. FLAGS is two hex digits in SoftFloat's layout (inexact 01, underflow 02,
//! overflow 04, infinite 08, invalid 10).
//!
//! Without a profile the conversions and arithmetic are IEEE 754's, correctly rounded, with the
//! overflow policy of the environment (`--saturate` sets `FpEnv::overflow` to saturation) and x86
//! NaN propagation. With a profile (`--profile ml-dtypes|torch|cuda-satfinite|cuda-nosat`) every
//! operation is the profile's (see `halfscale_core::profile`); flags are those of the core
//! operations it is built from.

use super::f16_batch::LineError;
use halfscale_core::half::{bf16, f16};
use halfscale_core::{
    self as hc, Format, FpEnv, Profile, ProfileError, RoundingMode, E2M1, E2M3, E3M2, E4M3, E5M2,
    E8M0,
};

/// The operand and result kinds of the protocol.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ty {
    /// An 8-, 6- or 4-bit code (E8M0 too).
    Code,
    Half,
    F32,
    F64,
    Bool,
}

impl Ty {
    fn width(self) -> usize {
        match self {
            Ty::Code => 2,
            Ty::Half => 4,
            Ty::F32 => 8,
            Ty::F64 => 16,
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

/// What an operation does, once its format is known.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// From f32, f64, binary16 (`Half` + false) or bfloat16 (`Half` + true) to the format.
    Narrow {
        from: Ty,
        bf16: bool,
    },
    /// To f32.
    Widen,
    Add,
    Sub,
    Mul,
    Div,
    MulAdd,
    Sqrt,
    Eq,
    Lt,
    Le,
}

impl Kind {
    fn signature(self) -> (&'static [Ty], Ty) {
        use Ty::*;
        match self {
            Kind::Narrow { from: F32, .. } => (&[F32], Code),
            Kind::Narrow { from: F64, .. } => (&[F64], Code),
            Kind::Narrow { .. } => (&[Half], Code),
            Kind::Widen => (&[Code], F32),
            Kind::Add | Kind::Sub | Kind::Mul | Kind::Div => (&[Code, Code], Code),
            Kind::MulAdd => (&[Code, Code, Code], Code),
            Kind::Sqrt => (&[Code], Code),
            Kind::Eq | Kind::Lt | Kind::Le => (&[Code, Code], Bool),
        }
    }

    fn is_arithmetic(self) -> bool {
        !matches!(self, Kind::Narrow { .. } | Kind::Widen)
    }
}

const FORMATS: [&str; 6] = ["e4m3", "e5m2", "e3m2", "e2m3", "e2m1", "e8m0"];

/// Splits an operation name into its format and kind.
fn parse_op(op: &str) -> Option<(&'static str, Kind)> {
    let format = |name: &str| FORMATS.into_iter().find(|f| *f == name);
    if let Some((src, dst)) = op.split_once("_to_") {
        if let Some(fmt) = format(dst) {
            let (from, bf16) = match src {
                "f32" => (Ty::F32, false),
                "f64" => (Ty::F64, false),
                "f16" => (Ty::Half, false),
                "bf16" => (Ty::Half, true),
                _ => return None,
            };
            return Some((fmt, Kind::Narrow { from, bf16 }));
        }
        return (dst == "f32")
            .then_some(())
            .and(format(src))
            .map(|f| (f, Kind::Widen));
    }
    let (fmt, name) = op.split_once('_')?;
    let fmt = format(fmt)?;
    let kind = match name {
        "add" => Kind::Add,
        "sub" => Kind::Sub,
        "mul" => Kind::Mul,
        "div" => Kind::Div,
        "mulAdd" => Kind::MulAdd,
        "sqrt" => Kind::Sqrt,
        "eq" => Kind::Eq,
        "lt" => Kind::Lt,
        "le" => Kind::Le,
        _ => return None,
    };
    (fmt == "e4m3" || fmt == "e5m2").then_some((fmt, kind))
}

/// Answers one line in the given environment (its rounding mode is replaced by the line's), under
/// `profile` when given. Returns the `RESULT FLAGS` text without a newline.
pub fn answer_line(line: &str, base: FpEnv, profile: Option<Profile>) -> Result<String, LineError> {
    let mut words = line.split_whitespace();
    let op = words.next().ok_or(LineError::Empty)?;
    let mode_name = words.next().ok_or(LineError::Empty)?;
    let rounding =
        RoundingMode::parse(mode_name).ok_or_else(|| LineError::UnknownMode(mode_name.into()))?;
    let operands: Vec<&str> = words.collect();
    let (fmt, kind) = parse_op(op).ok_or_else(|| LineError::UnknownOp(op.into()))?;
    let (inputs, out) = kind.signature();
    if operands.len() != inputs.len() {
        return Err(LineError::Arity {
            op: op.into(),
            expected: inputs.len(),
            found: operands.len(),
        });
    }
    let code_bits = match fmt {
        "e3m2" | "e2m3" => 6,
        "e2m1" => 4,
        _ => 8,
    };
    let mut v = [0u64; 3];
    for (slot, (text, &ty)) in v.iter_mut().zip(operands.iter().zip(inputs)) {
        *slot = parse_operand(text, ty)?;
        if ty == Ty::Code && *slot >> code_bits != 0 {
            return Err(LineError::CodeTooWide {
                operand: text.to_string(),
                bits: code_bits,
            });
        }
    }
    let mut env = FpEnv {
        rounding,
        flags: hc::Flags::NONE,
        ..base
    };
    let unsupported = |e: ProfileError| LineError::Unsupported(e.to_string());
    let bits = match fmt {
        "e4m3" => eval::<E4M3>(kind, &v, profile, &mut env),
        "e5m2" => eval::<E5M2>(kind, &v, profile, &mut env),
        "e3m2" => eval::<E3M2>(kind, &v, profile, &mut env),
        "e2m3" => eval::<E2M3>(kind, &v, profile, &mut env),
        "e2m1" => eval::<E2M1>(kind, &v, profile, &mut env),
        _ => eval_e8m0(kind, &v, profile, &mut env),
    }
    .map_err(unsupported)?;
    Ok(format!(
        "{bits:0width$X} {:02X}",
        env.flags.bits(),
        width = out.width()
    ))
}

/// A narrowing from the operand's source format, generic or per profile.
fn narrow<D: Format>(
    from: Ty,
    bf16: bool,
    x: u64,
    profile: Option<Profile>,
    env: &mut FpEnv,
) -> Result<D, ProfileError> {
    fn one<S: Format, D: Format>(
        x: u64,
        profile: Option<Profile>,
        env: &mut FpEnv,
    ) -> Result<D, ProfileError> {
        let x = S::from_bits(x);
        match profile {
            Some(p) => p.narrow::<S, D>(x, env),
            None => Ok(hc::convert::<S, D>(x, env)),
        }
    }
    match (from, bf16) {
        (Ty::F32, _) => one::<f32, D>(x, profile, env),
        (Ty::F64, _) => one::<f64, D>(x, profile, env),
        (_, false) => one::<f16, D>(x, profile, env),
        (_, true) => one::<bf16, D>(x, profile, env),
    }
}

fn eval<F: Format>(
    kind: Kind,
    v: &[u64; 3],
    profile: Option<Profile>,
    env: &mut FpEnv,
) -> Result<u64, ProfileError> {
    let x = |i: usize| F::from_bits(v[i]);
    let code = |r: F| r.to_bits();
    if let (Some(p), true) = (profile, kind.is_arithmetic()) {
        return Ok(match kind {
            Kind::Add => code(p.add(x(0), x(1), env)?),
            Kind::Sub => code(p.sub(x(0), x(1), env)?),
            Kind::Mul => code(p.mul(x(0), x(1), env)?),
            Kind::Div => code(p.div(x(0), x(1), env)?),
            Kind::MulAdd => code(p.mul_add(x(0), x(1), x(2), env)?),
            Kind::Sqrt => code(p.sqrt(x(0), env)?),
            Kind::Eq => u64::from(p.eq(x(0), x(1), env)?),
            Kind::Lt => u64::from(p.lt(x(0), x(1), env)?),
            Kind::Le => u64::from(p.le(x(0), x(1), env)?),
            Kind::Narrow { .. } | Kind::Widen => unreachable!("not arithmetic"),
        });
    }
    Ok(match kind {
        Kind::Narrow { from, bf16 } => code(narrow::<F>(from, bf16, v[0], profile, env)?),
        Kind::Widen => u64::from(
            match profile {
                Some(p) => p.widen(x(0), env)?,
                None => hc::to_f32(x(0), env),
            }
            .to_bits(),
        ),
        Kind::Add => code(hc::add(x(0), x(1), env)),
        Kind::Sub => code(hc::sub(x(0), x(1), env)),
        Kind::Mul => code(hc::mul(x(0), x(1), env)),
        Kind::Div => code(hc::div(x(0), x(1), env)),
        Kind::MulAdd => code(hc::fma(x(0), x(1), x(2), env)),
        Kind::Sqrt => code(hc::sqrt(x(0), env)),
        Kind::Eq => u64::from(hc::eq(x(0), x(1), env)),
        Kind::Lt => u64::from(hc::lt(x(0), x(1), env)),
        Kind::Le => u64::from(hc::le(x(0), x(1), env)),
    })
}

fn eval_e8m0(
    kind: Kind,
    v: &[u64; 3],
    profile: Option<Profile>,
    env: &mut FpEnv,
) -> Result<u64, ProfileError> {
    fn one<S: Format>(
        x: u64,
        profile: Option<Profile>,
        env: &mut FpEnv,
    ) -> Result<E8M0, ProfileError> {
        let x = S::from_bits(x);
        match profile {
            Some(p) => p.narrow_e8m0(x, env),
            None => Ok(E8M0::from_format(x, env)),
        }
    }
    let scale = match kind {
        Kind::Narrow { from: Ty::F32, .. } => one::<f32>(v[0], profile, env)?,
        Kind::Narrow { from: Ty::F64, .. } => one::<f64>(v[0], profile, env)?,
        Kind::Narrow { bf16: false, .. } => one::<f16>(v[0], profile, env)?,
        Kind::Narrow { bf16: true, .. } => one::<bf16>(v[0], profile, env)?,
        Kind::Widen => {
            let x = E8M0::from_code(v[0] as u8);
            let wide = match profile {
                Some(p) => p.widen_e8m0(x)?,
                None => x.to_f32(),
            };
            return Ok(u64::from(wide.to_bits()));
        }
        _ => unreachable!("parse_op gives e8m0 only conversions"),
    };
    Ok(u64::from(scale.code()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(line: &str, profile: Option<Profile>) -> Result<String, LineError> {
        answer_line(line, FpEnv::default(), profile)
    }

    #[test]
    fn the_issue_examples_per_profile() {
        // An f32 NaN to E5M2: 0x7E in ml_dtypes, 0x7F in PyTorch.
        let ml = Some(Profile::MlDtypes);
        let torch = Some(Profile::Torch);
        assert_eq!(
            answer("f32_to_e5m2 near_even 7FC00000", ml).unwrap(),
            "7E 00"
        );
        assert_eq!(
            answer("f32_to_e5m2 near_even 7FC00000", torch).unwrap(),
            "7F 00"
        );
        // 480 to E4M3: NaN in ml_dtypes and __NV_NOSAT, 448 in torch.
        assert_eq!(
            answer("f32_to_e4m3 near_even 43F00000", ml).unwrap(),
            "7F 05"
        );
        assert_eq!(
            answer("f32_to_e4m3 near_even 43F00000", torch).unwrap(),
            "7E 05"
        );
        let nosat = Some(Profile::CudaNosat);
        assert_eq!(
            answer("f32_to_e4m3 near_even 43F00000", nosat).unwrap(),
            "7F 05"
        );
    }

    #[test]
    fn mul_add_rounds_twice_in_ml_dtypes_once_elsewhere() {
        // 1.125 * 1.125 + 0.0625: 1.265625 rounds to 1.25, and 1.3125 ties to 1.25 (ml_dtypes'
        // `a * b + c`); rounded once, 1.328125 goes to 1.375.
        let line = "e4m3_mulAdd near_even 39 39 18";
        assert_eq!(answer(line, Some(Profile::MlDtypes)).unwrap(), "3A 01");
        assert_eq!(answer(line, Some(Profile::Torch)).unwrap(), "3B 01");
        assert_eq!(answer(line, None).unwrap(), "3B 01");
    }

    #[test]
    fn widths_follow_the_types() {
        assert_eq!(
            answer("e4m3_to_f32 near_even 38", None).unwrap(),
            "3F800000 00"
        );
        assert_eq!(
            answer("e2m1_to_f32 near_even 7", None).unwrap(),
            "40C00000 00"
        );
        assert_eq!(answer("f16_to_e2m1 near_even 3C00", None).unwrap(), "02 00");
        assert_eq!(answer("e4m3_lt near_even 38 40", None).unwrap(), "1 00");
        assert_eq!(
            answer("e8m0_to_f32 near_even 7F", None).unwrap(),
            "3F800000 00"
        );
        assert_eq!(
            answer("f64_to_e8m0 near_even 3FF8000000000000", None).unwrap(),
            "80 01"
        );
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert_eq!(answer("", None), Err(LineError::Empty));
        for line in [
            "e2m1_add near_even 1 1",
            "e8m0_mul near_even 7F 7F",
            "f32_to_e9m9 near_even 0",
            "e4m3_to_f16 near_even 00",
        ] {
            assert!(
                matches!(answer(line, None), Err(LineError::UnknownOp(_))),
                "{line}"
            );
        }
        assert!(matches!(
            answer("e4m3_add near_even 100 00", None),
            Err(LineError::BadOperand { .. })
        ));
        assert!(matches!(
            answer("e2m1_to_f32 near_even 10", None),
            Err(LineError::CodeTooWide { bits: 4, .. })
        ));
        assert!(matches!(
            answer("e4m3_add near_even 00", None),
            Err(LineError::Arity { .. })
        ));
        assert!(matches!(
            answer("f32_to_e2m1 near_even 00000000", Some(Profile::Torch)),
            Err(LineError::Unsupported(_))
        ));
    }
}
