//! The checks of every binary16 and bfloat16 operation, written once over a [`Narrow`] format:
//! result bits and all five flags against Berkeley SoftFloat in every rounding mode and both
//! tininess rules, values against rustc_apfloat, and the two canonicalising NaN styles against
//! the x86 one.
//!
//! SoftFloat has binary16 arithmetic but only bfloat16 conversions; bfloat16 arithmetic goes
//! through the round-to-odd composition of the core's test oracle (`oracle::bf16_via_odd`), and
//! bfloat16 NaN conversions follow that module's note on softfloat-sys's payload shift.
//!
//! Every `unsafe` block below calls a pure SoftFloat function on plain values (SoftFloat's only
//! state, the thread-local mode and flags, is set and read by `oracle::run`).

use crate::oracle::{self, bf16_to_sf64, bf16_via_odd, d, h, run, s, sf_mode};
use halfscale_core::half::{bf16, f16};
use halfscale_core::{self as hc, Flags, Format, FpEnv, NanStyle, RoundingMode};
use rustc_apfloat::ieee::{BFloat, Double, Half, Single};
use rustc_apfloat::{Float, FloatConvert, Round};
use softfloat_sys as sf;

/// The four two-operand arithmetic operations.
#[derive(Clone, Copy, Debug)]
pub enum Bin {
    Add,
    Sub,
    Mul,
    Div,
}

impl Bin {
    pub const ALL: [Bin; 4] = [Bin::Add, Bin::Sub, Bin::Mul, Bin::Div];
}

/// The six SoftFloat comparison predicates.
#[derive(Clone, Copy, Debug)]
pub enum Cmp {
    Eq,
    Lt,
    Le,
    EqSignaling,
    LtQuiet,
    LeQuiet,
}

impl Cmp {
    pub const ALL: [Cmp; 6] = [
        Cmp::Eq,
        Cmp::Lt,
        Cmp::Le,
        Cmp::EqSignaling,
        Cmp::LtQuiet,
        Cmp::LeQuiet,
    ];
}

/// Integer conversion targets.
#[derive(Clone, Copy, Debug)]
pub enum Int {
    I32,
    I64,
    U32,
    U64,
}

impl Int {
    pub const ALL: [Int; 4] = [Int::I32, Int::I64, Int::U32, Int::U64];
}

/// A 16-bit format with its SoftFloat and APFloat oracles.
pub trait Narrow: Format {
    /// The same format in rustc_apfloat.
    type Ap: Float;
    /// APFloat's f32 -> this format conversion.
    fn ap_from_f32(x: u32, round: Round) -> Self::Ap;
    /// APFloat's f64 -> this format conversion.
    fn ap_from_f64(x: u64, round: Round) -> Self::Ap;

    fn sf_binary(op: Bin, e: &FpEnv, a: u16, b: u16) -> (u16, Flags);
    fn sf_fma(e: &FpEnv, a: u16, b: u16, c: u16) -> (u16, Flags);
    fn sf_sqrt(e: &FpEnv, a: u16) -> (u16, Flags);
    fn sf_round_to_int(e: &FpEnv, a: u16, exact: bool) -> (u16, Flags);
    fn sf_compare(op: Cmp, a: u16, b: u16) -> (bool, Flags);
    /// `a + smallest subnormal` rounded toward +inf: nextUp for every finite `a` but `-inf` and
    /// the negative smallest subnormal, which [`check_ordering`] fixes up.
    fn sf_add_min_subnormal_up(a: u16) -> (u16, Flags);
    /// Exact value, through `half` (not the core).
    fn value(a: u16) -> f64;

    fn sf_to_f32(e: &FpEnv, a: u16) -> (u32, Flags);
    fn sf_to_f64(e: &FpEnv, a: u16) -> (u64, Flags);
    /// The integer's two's-complement bits, zero-extended.
    fn sf_to_int(kind: Int, e: &FpEnv, a: u16, exact: bool) -> (u64, Flags);
    fn sf_from_f32(e: &FpEnv, x: u32) -> (u16, Flags);
    fn sf_from_f64(e: &FpEnv, x: u64) -> (u16, Flags);
    /// From the integer whose two's-complement bits (of the kind's width) are the low bits of `x`.
    fn sf_from_int(kind: Int, e: &FpEnv, x: u64) -> (u16, Flags);
}

impl Narrow for f16 {
    type Ap = Half;
    fn ap_from_f32(x: u32, round: Round) -> Half {
        Single::from_bits(x.into())
            .convert_r(round, &mut false)
            .value
    }
    fn ap_from_f64(x: u64, round: Round) -> Half {
        Double::from_bits(x.into())
            .convert_r(round, &mut false)
            .value
    }

    fn sf_binary(op: Bin, e: &FpEnv, a: u16, b: u16) -> (u16, Flags) {
        let f = match op {
            Bin::Add => sf::f16_add,
            Bin::Sub => sf::f16_sub,
            Bin::Mul => sf::f16_mul,
            Bin::Div => sf::f16_div,
        };
        run(e, || unsafe { f(h(a), h(b)) }.v)
    }
    fn sf_fma(e: &FpEnv, a: u16, b: u16, c: u16) -> (u16, Flags) {
        run(e, || unsafe { sf::f16_mulAdd(h(a), h(b), h(c)) }.v)
    }
    fn sf_sqrt(e: &FpEnv, a: u16) -> (u16, Flags) {
        run(e, || unsafe { sf::f16_sqrt(h(a)) }.v)
    }
    fn sf_round_to_int(e: &FpEnv, a: u16, exact: bool) -> (u16, Flags) {
        let m = sf_mode(e.rounding);
        run(e, || unsafe { sf::f16_roundToInt(h(a), m, exact) }.v)
    }
    fn sf_compare(op: Cmp, a: u16, b: u16) -> (bool, Flags) {
        let f = match op {
            Cmp::Eq => sf::f16_eq,
            Cmp::Lt => sf::f16_lt,
            Cmp::Le => sf::f16_le,
            Cmp::EqSignaling => sf::f16_eq_signaling,
            Cmp::LtQuiet => sf::f16_lt_quiet,
            Cmp::LeQuiet => sf::f16_le_quiet,
        };
        run(&FpEnv::default(), || unsafe { f(h(a), h(b)) })
    }
    fn sf_add_min_subnormal_up(a: u16) -> (u16, Flags) {
        let up = FpEnv::new(RoundingMode::TowardPositive);
        run(&up, || unsafe { sf::f16_add(h(a), h(1)) }.v)
    }
    fn value(a: u16) -> f64 {
        f16::from_bits(a).to_f64()
    }

    fn sf_to_f32(e: &FpEnv, a: u16) -> (u32, Flags) {
        run(e, || unsafe { sf::f16_to_f32(h(a)) }.v)
    }
    fn sf_to_f64(e: &FpEnv, a: u16) -> (u64, Flags) {
        run(e, || unsafe { sf::f16_to_f64(h(a)) }.v)
    }
    fn sf_to_int(kind: Int, e: &FpEnv, a: u16, exact: bool) -> (u64, Flags) {
        let m = sf_mode(e.rounding);
        run(e, || unsafe {
            match kind {
                Int::I32 => u64::from(sf::f16_to_i32(h(a), m, exact) as i32 as u32),
                Int::I64 => sf::f16_to_i64(h(a), m, exact) as u64,
                Int::U32 => u64::from(sf::f16_to_ui32(h(a), m, exact) as u32),
                Int::U64 => sf::f16_to_ui64(h(a), m, exact),
            }
        })
    }
    fn sf_from_f32(e: &FpEnv, x: u32) -> (u16, Flags) {
        run(e, || unsafe { sf::f32_to_f16(s(x)) }.v)
    }
    fn sf_from_f64(e: &FpEnv, x: u64) -> (u16, Flags) {
        run(e, || unsafe { sf::f64_to_f16(d(x)) }.v)
    }
    fn sf_from_int(kind: Int, e: &FpEnv, x: u64) -> (u16, Flags) {
        run(e, || unsafe {
            match kind {
                Int::I32 => sf::i32_to_f16(x as u32 as i32),
                Int::I64 => sf::i64_to_f16(x as i64),
                Int::U32 => sf::ui32_to_f16(x as u32),
                Int::U64 => sf::ui64_to_f16(x),
            }
            .v
        })
    }
}

impl Narrow for bf16 {
    type Ap = BFloat;
    fn ap_from_f32(x: u32, round: Round) -> BFloat {
        Single::from_bits(x.into())
            .convert_r(round, &mut false)
            .value
    }
    fn ap_from_f64(x: u64, round: Round) -> BFloat {
        Double::from_bits(x.into())
            .convert_r(round, &mut false)
            .value
    }

    fn sf_binary(op: Bin, e: &FpEnv, a: u16, b: u16) -> (u16, Flags) {
        let f = match op {
            Bin::Add => sf::f64_add,
            Bin::Sub => sf::f64_sub,
            Bin::Mul => sf::f64_mul,
            Bin::Div => sf::f64_div,
        };
        bf16_via_odd(e, || unsafe { f(bf16_to_sf64(a), bf16_to_sf64(b)) })
    }
    fn sf_fma(e: &FpEnv, a: u16, b: u16, c: u16) -> (u16, Flags) {
        bf16_via_odd(e, || unsafe {
            sf::f64_mulAdd(bf16_to_sf64(a), bf16_to_sf64(b), bf16_to_sf64(c))
        })
    }
    fn sf_sqrt(e: &FpEnv, a: u16) -> (u16, Flags) {
        bf16_via_odd(e, || unsafe { sf::f64_sqrt(bf16_to_sf64(a)) })
    }
    fn sf_round_to_int(e: &FpEnv, a: u16, exact: bool) -> (u16, Flags) {
        let m = sf_mode(e.rounding);
        let (r, flags) = run(e, || unsafe {
            sf::f32_roundToInt(s(u32::from(a) << 16), m, exact)
        });
        ((r.v >> 16) as u16, flags)
    }
    fn sf_compare(op: Cmp, a: u16, b: u16) -> (bool, Flags) {
        let f = match op {
            Cmp::Eq => sf::f32_eq,
            Cmp::Lt => sf::f32_lt,
            Cmp::Le => sf::f32_le,
            Cmp::EqSignaling => sf::f32_eq_signaling,
            Cmp::LtQuiet => sf::f32_lt_quiet,
            Cmp::LeQuiet => sf::f32_le_quiet,
        };
        let (x, y) = (s(u32::from(a) << 16), s(u32::from(b) << 16));
        run(&FpEnv::default(), || unsafe { f(x, y) })
    }
    fn sf_add_min_subnormal_up(a: u16) -> (u16, Flags) {
        // In f32, toward +inf: a result above `a` and at most bfloat16's nextUp(a) (an f32 value),
        // which the rounding up to bfloat16 then reaches.
        let up = FpEnv::new(RoundingMode::TowardPositive);
        let (wide, f1) = run(&up, || unsafe {
            sf::f32_add(s(u32::from(a) << 16), s(0x0001_0000))
        });
        let (out, f2) = oracle::bf16_from_f32(&up, wide.v);
        (out, f1 | f2)
    }
    fn value(a: u16) -> f64 {
        bf16::from_bits(a).to_f64()
    }

    fn sf_to_f32(e: &FpEnv, a: u16) -> (u32, Flags) {
        oracle::bf16_to_f32(e, a)
    }
    fn sf_to_f64(e: &FpEnv, a: u16) -> (u64, Flags) {
        let (wide, flags) = oracle::bf16_to_f32(e, a);
        let (wider, _) = run(e, || unsafe { sf::f32_to_f64(s(wide)) }.v);
        (wider, flags)
    }
    fn sf_to_int(kind: Int, e: &FpEnv, a: u16, exact: bool) -> (u64, Flags) {
        let m = sf_mode(e.rounding);
        let x = s(u32::from(a) << 16);
        run(e, || unsafe {
            match kind {
                Int::I32 => u64::from(sf::f32_to_i32(x, m, exact) as i32 as u32),
                Int::I64 => sf::f32_to_i64(x, m, exact) as u64,
                Int::U32 => u64::from(sf::f32_to_ui32(x, m, exact) as u32),
                Int::U64 => sf::f32_to_ui64(x, m, exact),
            }
        })
    }
    fn sf_from_f32(e: &FpEnv, x: u32) -> (u16, Flags) {
        oracle::bf16_from_f32(e, x)
    }
    fn sf_from_f64(e: &FpEnv, x: u64) -> (u16, Flags) {
        bf16_via_odd(e, || d(x))
    }
    fn sf_from_int(kind: Int, e: &FpEnv, x: u64) -> (u16, Flags) {
        // i64 and u64 round to f64 here, inside the round-to-odd step: still one correct
        // rounding in the end (53 >= 8 + 2 bits), and the odd bit keeps the inexactness.
        bf16_via_odd(e, || unsafe {
            match kind {
                Int::I32 => sf::i32_to_f64(x as u32 as i32),
                Int::I64 => sf::i64_to_f64(x as i64),
                Int::U32 => sf::ui32_to_f64(x as u32),
                Int::U64 => sf::ui64_to_f64(x),
            }
        })
    }
}

fn val<F: Narrow>(bits: u16) -> F {
    F::from_bits(u64::from(bits))
}

fn bits<F: Narrow>(x: F) -> u16 {
    x.to_bits() as u16
}

pub fn is_nan<F: Format>(bits: u16) -> bool {
    u64::from(bits) & !F::SIGN_MASK > F::EXP_MASK
}

fn is_signalling<F: Format>(bits: u16) -> bool {
    is_nan::<F>(bits) && u64::from(bits) & F::QUIET_BIT == 0
}

fn ap_round(mode: RoundingMode) -> Round {
    match mode {
        RoundingMode::NearestEven => Round::NearestTiesToEven,
        RoundingMode::TowardZero => Round::TowardZero,
        RoundingMode::TowardNegative => Round::TowardNegative,
        RoundingMode::TowardPositive => Round::TowardPositive,
        RoundingMode::NearestAway => Round::NearestTiesToAway,
    }
}

/// A value check against APFloat: same bits, or both NaN (APFloat's NaN payload rules differ).
fn check_value<F: Narrow>(what: &str, e: &FpEnv, got: u16, want: F::Ap, operands: &[u16]) {
    let want_bits = want.to_bits() as u16;
    let ok = if want.is_nan() {
        is_nan::<F>(got)
    } else {
        got == want_bits
    };
    assert!(
        ok,
        "{} {what} {operands:04X?} in {:?}: core {got:04X}, rustc_apfloat {want_bits:04X}",
        F::NAME,
        e.rounding
    );
}

/// Under the CUDA and canonical NaN styles an operation gives the x86 result, except that a NaN
/// result is that style's one NaN; the flags are the same.
fn check_nan_styles<F: Narrow>(
    what: &str,
    e: &FpEnv,
    x86: (u16, Flags),
    operands: &[u16],
    op: impl Fn(&mut FpEnv) -> u16,
) {
    for (style, nan) in [
        (NanStyle::Cuda, F::CUDA_NAN),
        (NanStyle::Canonical, F::CANONICAL_NAN),
    ] {
        let mut env = FpEnv { nan: style, ..*e };
        let got = op(&mut env);
        let want = if is_nan::<F>(x86.0) {
            nan as u16
        } else {
            x86.0
        };
        assert_eq!(
            (got, env.flags),
            (want, x86.1),
            "{} {what} {operands:04X?} in {:?}/{:?} with {style:?} NaNs",
            F::NAME,
            e.rounding,
            e.tininess
        );
    }
}

/// One result against SoftFloat's, bits and flags.
fn check_sf<T: PartialEq + core::fmt::Debug>(
    name: &str,
    what: &str,
    e: &FpEnv,
    got: (T, Flags),
    want: (T, Flags),
    operands: &[u64],
) {
    assert_eq!(
        got, want,
        "{name} {what} {operands:X?} in {:?}/{:?} (left: core, right: SoftFloat)",
        e.rounding, e.tininess
    );
}

/// add, sub, mul, div, fma, sqrt and roundToIntegral (inexact or exact) of the operands, in
/// every environment, against SoftFloat (bits and flags), APFloat (values) and the NaN styles.
pub fn check_arithmetic<F: Narrow>(a: u16, b: u16, c: u16) {
    let ops = [u64::from(a), u64::from(b), u64::from(c)];
    for e in crate::all_envs() {
        let with_ap = e.tininess == hc::Tininess::AfterRounding;
        let round = ap_round(e.rounding);
        for op in Bin::ALL {
            let core_op = |env: &mut FpEnv| -> u16 {
                let (x, y) = (val::<F>(a), val::<F>(b));
                bits(match op {
                    Bin::Add => hc::add(x, y, env),
                    Bin::Sub => hc::sub(x, y, env),
                    Bin::Mul => hc::mul(x, y, env),
                    Bin::Div => hc::div(x, y, env),
                })
            };
            let mut env = e;
            let got = (core_op(&mut env), env.flags);
            let what = format!("{op:?}");
            check_sf(
                F::NAME,
                &what,
                &e,
                got,
                F::sf_binary(op, &e, a, b),
                &ops[..2],
            );
            check_nan_styles::<F>(&what, &e, got, &[a, b], core_op);
            if with_ap {
                let (x, y) = (F::Ap::from_bits(a.into()), F::Ap::from_bits(b.into()));
                let want = match op {
                    Bin::Add => x.add_r(y, round),
                    Bin::Sub => x.sub_r(y, round),
                    Bin::Mul => x.mul_r(y, round),
                    Bin::Div => x.div_r(y, round),
                };
                check_value::<F>(&what, &e, got.0, want.value, &[a, b]);
            }
        }

        let fma = |env: &mut FpEnv| bits(hc::fma(val::<F>(a), val::<F>(b), val::<F>(c), env));
        let mut env = e;
        let got = (fma(&mut env), env.flags);
        check_sf(F::NAME, "mulAdd", &e, got, F::sf_fma(&e, a, b, c), &ops);
        check_nan_styles::<F>("mulAdd", &e, got, &[a, b, c], fma);
        if with_ap {
            let (x, y, z) = (
                F::Ap::from_bits(a.into()),
                F::Ap::from_bits(b.into()),
                F::Ap::from_bits(c.into()),
            );
            check_value::<F>(
                "mulAdd",
                &e,
                got.0,
                x.mul_add_r(y, z, round).value,
                &[a, b, c],
            );
        }

        let sqrt = |env: &mut FpEnv| bits(hc::sqrt(val::<F>(a), env));
        let mut env = e;
        let got = (sqrt(&mut env), env.flags);
        check_sf(F::NAME, "sqrt", &e, got, F::sf_sqrt(&e, a), &ops[..1]);
        check_nan_styles::<F>("sqrt", &e, got, &[a], sqrt);

        for exact in [false, true] {
            let rti = |env: &mut FpEnv| bits(hc::round_to_int(val::<F>(a), exact, env));
            let mut env = e;
            let got = (rti(&mut env), env.flags);
            let what = if exact {
                "roundToInt_exact"
            } else {
                "roundToInt"
            };
            check_sf(
                F::NAME,
                what,
                &e,
                got,
                F::sf_round_to_int(&e, a, exact),
                &ops[..1],
            );
            check_nan_styles::<F>(what, &e, got, &[a], rti);
            if with_ap {
                let want = F::Ap::from_bits(a.into()).round_to_integral(round).value;
                check_value::<F>(what, &e, got.0, want, &[a]);
            }
        }
    }
}

/// The comparisons against SoftFloat; unordered, totalOrder, the four IEEE 754-2019 min/max
/// operations and nextUp/nextDown against plain reference models built on SoftFloat.
pub fn check_ordering<F: Narrow>(a: u16, b: u16) {
    let e = FpEnv::default();
    let ops = [u64::from(a), u64::from(b)];
    for op in Cmp::ALL {
        let mut env = e;
        let (x, y) = (val::<F>(a), val::<F>(b));
        let got = match op {
            Cmp::Eq => hc::eq(x, y, &mut env),
            Cmp::Lt => hc::lt(x, y, &mut env),
            Cmp::Le => hc::le(x, y, &mut env),
            Cmp::EqSignaling => hc::eq_signaling(x, y, &mut env),
            Cmp::LtQuiet => hc::lt_quiet(x, y, &mut env),
            Cmp::LeQuiet => hc::le_quiet(x, y, &mut env),
        };
        let what = format!("{op:?}");
        check_sf(
            F::NAME,
            &what,
            &e,
            (got, env.flags),
            F::sf_compare(op, a, b),
            &ops,
        );
    }

    // unordered: true for any NaN; a quiet predicate, so it signals like SoftFloat's `eq`.
    let mut env = e;
    let got = hc::unordered(val::<F>(a), val::<F>(b), &mut env);
    let want = (
        is_nan::<F>(a) || is_nan::<F>(b),
        F::sf_compare(Cmp::Eq, a, b).1,
    );
    check_sf(F::NAME, "unordered", &e, (got, env.flags), want, &ops);

    assert_eq!(
        hc::total_order(val::<F>(a), val::<F>(b)),
        ref_total_order::<F>(a, b),
        "{} totalOrder {a:04X} {b:04X}",
        F::NAME
    );

    for (name, want_min, number) in [
        ("minimum", true, false),
        ("maximum", false, false),
        ("minimumNumber", true, true),
        ("maximumNumber", false, true),
    ] {
        let op = |env: &mut FpEnv| {
            let (x, y) = (val::<F>(a), val::<F>(b));
            bits(match (want_min, number) {
                (true, false) => hc::minimum(x, y, env),
                (false, false) => hc::maximum(x, y, env),
                (true, true) => hc::minimum_number(x, y, env),
                (false, true) => hc::maximum_number(x, y, env),
            })
        };
        let mut env = e;
        let got = (op(&mut env), env.flags);
        check_sf(
            F::NAME,
            name,
            &e,
            got,
            ref_min_max::<F>(a, b, want_min, number),
            &ops,
        );
        check_nan_styles::<F>(name, &e, got, &[a, b], op);
    }

    for (name, up) in [("nextUp", true), ("nextDown", false)] {
        let op = |env: &mut FpEnv| {
            bits(if up {
                hc::next_up(val::<F>(a), env)
            } else {
                hc::next_down(val::<F>(a), env)
            })
        };
        let mut env = e;
        let got = (op(&mut env), env.flags);
        let want = if up {
            ref_next_up::<F>(a)
        } else {
            // nextDown(a) = -nextUp(-a) (NaN operands are handled below).
            let (r, flags) = ref_next_up::<F>(a ^ 0x8000);
            (r ^ 0x8000, flags)
        };
        let want = if is_nan::<F>(a) {
            // A NaN operand: quieted, sign and payload kept (x86), invalid when signalling.
            let q = a | F::QUIET_BIT as u16;
            let flags = if is_signalling::<F>(a) {
                Flags::INVALID
            } else {
                Flags::NONE
            };
            (q, flags)
        } else {
            want
        };
        check_sf(F::NAME, name, &e, got, want, &ops[..1]);
        check_nan_styles::<F>(name, &e, got, &[a], op);
    }
}

/// IEEE 754 totalOrder by cases, on values rather than encodings: negative NaNs first (larger
/// payloads, quiet before signalling, further down), then numbers by value with -0 before +0,
/// then positive NaNs (signalling before quiet, by payload).
fn ref_total_order<F: Narrow>(a: u16, b: u16) -> bool {
    let neg = |x: u16| x & 0x8000 != 0;
    let nan_key = |x: u16| {
        let quiet = u64::from(x) & F::QUIET_BIT != 0;
        (quiet, u64::from(x) & F::FRAC_MASK & !F::QUIET_BIT)
    };
    match (is_nan::<F>(a), is_nan::<F>(b)) {
        (true, true) => match (neg(a), neg(b)) {
            (true, false) => true,
            (false, true) => false,
            (false, false) => nan_key(a) <= nan_key(b),
            (true, true) => nan_key(a) >= nan_key(b),
        },
        (true, false) => neg(a),
        (false, true) => !neg(b),
        (false, false) => {
            let (x, y) = (F::value(a), F::value(b));
            if x != y {
                x < y
            } else {
                // Equal values: only +-0 differ in encoding; -0 comes first.
                neg(a) || !neg(b)
            }
        }
    }
}

/// minimum/maximum(Number) by IEEE 754-2019 clause 9.6: a NaN operand gives the NaN SoftFloat's
/// addition propagates (x86's rule, invalid for a signalling one), except that the *Number
/// variants return the number when only one operand is NaN (still invalid if it signals);
/// otherwise the lesser or greater by value, -0 below +0.
fn ref_min_max<F: Narrow>(a: u16, b: u16, want_min: bool, number: bool) -> (u16, Flags) {
    let (a_nan, b_nan) = (is_nan::<F>(a), is_nan::<F>(b));
    if number && a_nan != b_nan {
        let flags = if is_signalling::<F>(a) || is_signalling::<F>(b) {
            Flags::INVALID
        } else {
            Flags::NONE
        };
        return (if a_nan { b } else { a }, flags);
    }
    if a_nan || b_nan {
        return F::sf_binary(Bin::Add, &FpEnv::default(), a, b);
    }
    let (x, y) = (F::value(a), F::value(b));
    let a_less = x < y || (x == y && a & 0x8000 != 0);
    let pick = if a_less == want_min { a } else { b };
    (pick, Flags::NONE)
}

/// nextUp of a non-NaN operand: adding the smallest subnormal toward +inf lands on it, except at
/// -inf (nextUp is the most negative finite number) and at minus the smallest subnormal (nextUp
/// is -0, the addition gives +0). No flag is raised.
fn ref_next_up<F: Narrow>(a: u16) -> (u16, Flags) {
    if u64::from(a) == F::SIGN_MASK | F::INFINITY_BITS {
        return ((F::SIGN_MASK | F::MAX_FINITE_BITS) as u16, Flags::NONE);
    }
    if a == 0x8001 {
        return (0x8000, Flags::NONE);
    }
    let (r, flags) = F::sf_add_min_subnormal_up(a);
    (r, Flags::from_bits(flags.bits() & Flags::INVALID.bits()))
}

/// The conversions between `F` and f32, f64 and the four integer types, in every environment.
pub fn check_conversions<F: Narrow>(a: u16, x32: u32, x64: u64, int: u64) {
    for e in crate::all_envs() {
        let round = ap_round(e.rounding);
        let with_ap = e.tininess == hc::Tininess::AfterRounding;

        let from32 = |env: &mut FpEnv| bits(hc::from_f32::<F>(f32::from_bits(x32), env));
        let mut env = e;
        let got = (from32(&mut env), env.flags);
        check_sf(
            F::NAME,
            "from_f32",
            &e,
            got,
            F::sf_from_f32(&e, x32),
            &[x32.into()],
        );
        check_nan_styles::<F>("from_f32", &e, got, &[], from32);
        if with_ap {
            let want = F::ap_from_f32(x32, round);
            check_value::<F>("from_f32", &e, got.0, want, &[]);
        }

        let from64 = |env: &mut FpEnv| bits(hc::from_f64::<F>(f64::from_bits(x64), env));
        let mut env = e;
        let got = (from64(&mut env), env.flags);
        check_sf(
            F::NAME,
            "from_f64",
            &e,
            got,
            F::sf_from_f64(&e, x64),
            &[x64],
        );
        check_nan_styles::<F>("from_f64", &e, got, &[], from64);
        if with_ap {
            let want = F::ap_from_f64(x64, round);
            check_value::<F>("from_f64", &e, got.0, want, &[]);
        }

        for kind in Int::ALL {
            let mut env = e;
            let got = bits(match kind {
                Int::I32 => hc::from_i32::<F>(int as u32 as i32, &mut env),
                Int::I64 => hc::from_i64::<F>(int as i64, &mut env),
                Int::U32 => hc::from_u32::<F>(int as u32, &mut env),
                Int::U64 => hc::from_u64::<F>(int, &mut env),
            });
            let what = format!("from_{kind:?}");
            check_sf(
                F::NAME,
                &what,
                &e,
                (got, env.flags),
                F::sf_from_int(kind, &e, int),
                &[int],
            );

            for exact in [false, true] {
                let mut env = e;
                let x = val::<F>(a);
                let got = match kind {
                    Int::I32 => u64::from(hc::to_i32(x, exact, &mut env) as u32),
                    Int::I64 => hc::to_i64(x, exact, &mut env) as u64,
                    Int::U32 => u64::from(hc::to_u32(x, exact, &mut env)),
                    Int::U64 => hc::to_u64(x, exact, &mut env),
                };
                let what = format!("to_{kind:?} exact={exact}");
                let want = F::sf_to_int(kind, &e, a, exact);
                check_sf(F::NAME, &what, &e, (got, env.flags), want, &[a.into()]);
            }
        }

        let mut env = e;
        let got = hc::to_f32(val::<F>(a), &mut env).to_bits();
        check_sf(
            F::NAME,
            "to_f32",
            &e,
            (got, env.flags),
            F::sf_to_f32(&e, a),
            &[a.into()],
        );
        let mut env = e;
        let got = hc::to_f64(val::<F>(a), &mut env).to_bits();
        check_sf(
            F::NAME,
            "to_f64",
            &e,
            (got, env.flags),
            F::sf_to_f64(&e, a),
            &[a.into()],
        );
    }
}
