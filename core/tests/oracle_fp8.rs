//! FP8 E4M3 and E5M2 against `rustc_apfloat` (the Rust port of LLVM's APFloat, whose
//! `Float8E4M3FN` is `NonfiniteBehavior::NanOnly` and `Float8E5M2` IEEE-like): every operand pair
//! of add, sub, mul, div and the comparisons in every rounding mode, fma over structured and
//! random triples, and conversions from f32 (structured and random) and f64.
//!
//! Result bits must match exactly, except that two NaNs match (APFloat's NaN sign and payload
//! rules are LLVM's, not a hardware's; which NaN comes out is tested elsewhere, per profile).
//! Flags must match exactly with one documented exception: APFloat decides tininess on the result
//! rounded to the format's bounded exponent range, so a value that rounds up to the smallest
//! normal does not underflow there, while IEEE 754's "after rounding" (ours and SoftFloat's)
//! rounds with an unbounded exponent and can still call it tiny. rustc_apfloat 0.2.3's NaN-only
//! overflow path (`overflow_result(round).copy_sign(..)`) ignores the sign in the directed modes,
//! so a negative E4M3 overflow in round-toward-negative comes out -448 instead of IEEE 754 clause
//! 7.4's "-infinity" (NaN here): for negative results in directed modes the oracle is asked for
//! the mirror image, `-op(-x)` in the opposite direction, which is the same function by symmetry
//! and takes APFloat's correct positive path. And APFloat raises only inexact
//! when a directed rounding turns an overflow into the largest finite number, where IEEE 754
//! clause 7.4 (and SoftFloat) raise overflow too.

use halfscale_core::{self as hc, Flags, Format, FpEnv, RoundingMode, E4M3, E5M2};
use rustc_apfloat::ieee::{Double, Float8E4M3FN, Float8E5M2, Single};
use rustc_apfloat::{Float, FloatConvert, Round, Status, StatusAnd};

fn round(mode: RoundingMode) -> Round {
    match mode {
        RoundingMode::NearestEven => Round::NearestTiesToEven,
        RoundingMode::TowardZero => Round::TowardZero,
        RoundingMode::TowardNegative => Round::TowardNegative,
        RoundingMode::TowardPositive => Round::TowardPositive,
        RoundingMode::NearestAway => Round::NearestTiesToAway,
    }
}

fn flags(status: Status) -> Flags {
    let mut f = Flags::NONE;
    for (s, g) in [
        (Status::INEXACT, Flags::INEXACT),
        (Status::UNDERFLOW, Flags::UNDERFLOW),
        (Status::OVERFLOW, Flags::OVERFLOW),
        (Status::DIV_BY_ZERO, Flags::DIV_BY_ZERO),
        (Status::INVALID_OP, Flags::INVALID),
    ] {
        if status.intersects(s) {
            f |= g;
        }
    }
    f
}

/// The pairing of a core format with its APFloat twin.
trait Twin: Format {
    type Ap: Float + FloatConvert<Single> + FloatConvert<Double>;
    fn from_single(x: Single, r: Round) -> StatusAnd<Self::Ap>;
    fn from_double(x: Double, r: Round) -> StatusAnd<Self::Ap>;
}

macro_rules! twin {
    ($f:ty, $ap:ty) => {
        impl Twin for $f {
            type Ap = $ap;
            fn from_single(x: Single, r: Round) -> StatusAnd<$ap> {
                x.convert_r(r, &mut false)
            }
            fn from_double(x: Double, r: Round) -> StatusAnd<$ap> {
                x.convert_r(r, &mut false)
            }
        }
    };
}
twin!(E4M3, Float8E4M3FN);
twin!(E5M2, Float8E5M2);

fn ap<F: Twin>(bits: u64) -> F::Ap {
    F::Ap::from_bits(u128::from(bits))
}

fn is_nan<F: Twin>(bits: u64) -> bool {
    ap::<F>(bits).is_nan()
}

/// Whether the result is the smallest normal (either sign): where APFloat's tininess differs.
fn at_min_normal<F: Format>(bits: u64) -> bool {
    bits & !F::SIGN_MASK == 1 << F::FRAC_BITS
}

#[track_caller]
fn check<F: Twin>(what: &str, mine: (u64, Flags), theirs: StatusAnd<F::Ap>) {
    let their_bits = theirs.value.to_bits() as u64;
    let their_flags = flags(theirs.status);
    let bits_ok = mine.0 == their_bits || (is_nan::<F>(mine.0) && is_nan::<F>(their_bits));
    let flags_ok = mine.1 == their_flags
        || (at_min_normal::<F>(mine.0) && mine.1 == their_flags | Flags::UNDERFLOW)
        || (mine.0 & !F::SIGN_MASK == F::MAX_FINITE_BITS
            && their_flags == Flags::INEXACT
            && mine.1 == Flags::INEXACT | Flags::OVERFLOW);
    assert!(
        bits_ok && flags_ok,
        "{} {what}: mine {:02X} {:02X}, apfloat {:02X} {:02X}",
        F::NAME,
        mine.0,
        mine.1.bits(),
        their_bits,
        their_flags.bits()
    );
}

/// The opposite directed rounding (`-round_m(-x) == round_mirror(m)(x)`).
fn mirror(r: Round) -> Round {
    match r {
        Round::TowardNegative => Round::TowardPositive,
        Round::TowardPositive => Round::TowardNegative,
        other => other,
    }
}

/// APFloat's answer for an operation `f(round, negate)` (with `negate`, the operands' signs
/// flipped so that the exact result is negated), routed through the mirror image for negative
/// results in directed modes of a NaN-only format (see the module doc).
fn oracle<F: Twin>(r: Round, f: impl Fn(Round, bool) -> StatusAnd<F::Ap>) -> StatusAnd<F::Ap> {
    let direct = f(r, false);
    let directed = matches!(r, Round::TowardNegative | Round::TowardPositive);
    if F::SPECIALS == hc::Specials::NanOnly && directed && direct.value.is_negative() {
        let m = f(mirror(r), true);
        m.status.and(-m.value)
    } else {
        direct
    }
}

fn env(mode: RoundingMode) -> FpEnv {
    FpEnv::new(mode)
}

fn every_pair<F: Twin>() {
    let n = 1u64 << F::WIDTH;
    for mode in RoundingMode::ALL {
        let r = round(mode);
        for a in 0..n {
            for b in 0..n {
                let (x, y) = (F::from_bits(a), F::from_bits(b));
                let p = |neg: bool| ap::<F>(if neg { a ^ F::SIGN_MASK } else { a });
                let q = |neg: bool| ap::<F>(if neg { b ^ F::SIGN_MASK } else { b });
                let mut e = env(mode);
                let out = hc::add(x, y, &mut e).to_bits();
                let theirs = oracle::<F>(r, |r, n| p(n).add_r(q(n), r));
                check::<F>(
                    &format!("{a:02X} + {b:02X} {mode:?}"),
                    (out, e.flags),
                    theirs,
                );
                let mut e = env(mode);
                let out = hc::sub(x, y, &mut e).to_bits();
                let theirs = oracle::<F>(r, |r, n| p(n).sub_r(q(n), r));
                check::<F>(
                    &format!("{a:02X} - {b:02X} {mode:?}"),
                    (out, e.flags),
                    theirs,
                );
                let mut e = env(mode);
                let out = hc::mul(x, y, &mut e).to_bits();
                let theirs = oracle::<F>(r, |r, n| p(n).mul_r(q(false), r));
                check::<F>(
                    &format!("{a:02X} * {b:02X} {mode:?}"),
                    (out, e.flags),
                    theirs,
                );
                let mut e = env(mode);
                let out = hc::div(x, y, &mut e).to_bits();
                let theirs = oracle::<F>(r, |r, n| p(n).div_r(q(false), r));
                check::<F>(
                    &format!("{a:02X} / {b:02X} {mode:?}"),
                    (out, e.flags),
                    theirs,
                );
            }
        }
    }
}

#[test]
fn e4m3_every_pair_every_mode() {
    every_pair::<E4M3>();
}

#[test]
fn e5m2_every_pair_every_mode() {
    every_pair::<E5M2>();
}

/// Comparisons: APFloat's `partial_cmp` is the numeric order; NaN compares unordered. The quiet
/// predicates raise nothing here (neither format has a signalling NaN in E4M3; E5M2's raise
/// invalid, which APFloat does not model, so the flag is checked against the class directly).
fn comparisons<F: Twin>() {
    use std::cmp::Ordering;
    let n = 1u64 << F::WIDTH;
    for a in 0..n {
        for b in 0..n {
            let (x, y) = (F::from_bits(a), F::from_bits(b));
            let order = ap::<F>(a).partial_cmp(&ap::<F>(b));
            let unordered = order.is_none();
            let mut e = FpEnv::default();
            assert_eq!(
                hc::eq(x, y, &mut e),
                order == Some(Ordering::Equal),
                "{a:02X} == {b:02X}"
            );
            let signalling = |v: u64| {
                F::SPECIALS == hc::Specials::Ieee && is_nan::<F>(v) && v & F::QUIET_BIT == 0
            };
            let any_snan = signalling(a) || signalling(b);
            assert_eq!(
                e.flags.contains(Flags::INVALID),
                any_snan,
                "eq flags {a:02X} {b:02X}"
            );
            let mut e = FpEnv::default();
            assert_eq!(
                hc::lt(x, y, &mut e),
                order == Some(Ordering::Less),
                "{a:02X} < {b:02X}"
            );
            assert_eq!(e.flags.contains(Flags::INVALID), unordered);
            let mut e = FpEnv::default();
            assert_eq!(
                hc::le(x, y, &mut e),
                matches!(order, Some(Ordering::Less | Ordering::Equal)),
                "{a:02X} <= {b:02X}"
            );
            assert_eq!(e.flags.contains(Flags::INVALID), unordered);
        }
    }
}

#[test]
fn comparisons_every_pair() {
    comparisons::<E4M3>();
    comparisons::<E5M2>();
}

/// fma over every (a, b) with a structured set of addends, and random triples.
fn fma_triples<F: Twin>() {
    let n = 1u64 << F::WIDTH;
    let addends: Vec<u64> = (0..n)
        .step_by(7)
        .chain([0, F::SIGN_MASK, 1, F::MAX_FINITE_BITS])
        .collect();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for mode in RoundingMode::ALL {
        let r = round(mode);
        for a in 0..n {
            for b in 0..n {
                let c = addends[(next() % addends.len() as u64) as usize];
                let c2 = next() % n;
                for c in [c, c2] {
                    let mut e = env(mode);
                    let out = hc::fma(F::from_bits(a), F::from_bits(b), F::from_bits(c), &mut e);
                    let flip = |v: u64, n: bool| ap::<F>(if n { v ^ F::SIGN_MASK } else { v });
                    let theirs = oracle::<F>(r, |r, n| {
                        flip(a, n).mul_add_r(flip(b, false), flip(c, n), r)
                    });
                    check::<F>(
                        &format!("fma({a:02X}, {b:02X}, {c:02X}) {mode:?}"),
                        (out.to_bits(), e.flags),
                        theirs,
                    );
                }
            }
        }
    }
}

#[test]
fn fma_over_all_products_and_sampled_addends() {
    fma_triples::<E4M3>();
    fma_triples::<E5M2>();
}

/// f32 bit patterns around every rounding decision of an 8-bit format: for every exponent from
/// below the smallest subnormal's half to past overflow, significands at, just off and between
/// ties, plus the specials.
fn structured_f32() -> Vec<u32> {
    let mut out = vec![
        0,
        0x8000_0000,
        0x7F80_0000,
        0xFF80_0000,
        0x7FC0_0000,
        0xFFC0_0001,
        0x7F80_0001,
        0x7FFF_FFFF,
        1,
        0x007F_FFFF,
    ];
    for exp in 100u32..=150 {
        for frac in [
            0u32, 1, 0x7F_FFFF, 0x10_0000, 0x0F_FFFF, 0x10_0001, 0x08_0000, 0x07_FFFF, 0x08_0001,
            0x20_0000, 0x1F_FFFF, 0x20_0001, 0x40_0000, 0x3F_FFFF, 0x40_0001, 0x60_0000, 0x50_0000,
            0x70_0000, 0x68_0000, 0x78_0000, 0x74_0000, 0x7C_0000, 0x30_0000, 0x18_0000, 0x04_0000,
        ] {
            for sign in [0, 0x8000_0000] {
                out.push(sign | exp << 23 | frac);
            }
        }
    }
    let mut state = 0x9E37_79B9u64;
    for _ in 0..200_000 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let bits = (state >> 32) as u32;
        // Bias towards the exponents that matter for 8-bit formats.
        let exp = 96 + ((state >> 20) % 64) as u32;
        out.push(bits & 0x807F_FFFF | exp << 23);
        out.push(bits);
    }
    out
}

fn from_f32<F: Twin>() {
    for mode in RoundingMode::ALL {
        let r = round(mode);
        for &x in &structured_f32() {
            let mut e = env(mode);
            let out: F = hc::from_f32(f32::from_bits(x), &mut e);
            let theirs = oracle::<F>(r, |r, n| {
                F::from_single(Single::from_bits(u128::from(x ^ (u32::from(n) << 31))), r)
            });
            check::<F>(
                &format!("f32 {x:08X} {mode:?}"),
                (out.to_bits(), e.flags),
                theirs,
            );
            let wide = f64::from(f32::from_bits(x));
            if !wide.is_nan() {
                let mut e = env(mode);
                let out: F = hc::from_f64(wide, &mut e);
                let theirs = oracle::<F>(r, |r, n| {
                    let w = if n { -wide } else { wide };
                    F::from_double(Double::from_bits(u128::from(w.to_bits())), r)
                });
                check::<F>(
                    &format!("f64 {wide:e} {mode:?}"),
                    (out.to_bits(), e.flags),
                    theirs,
                );
            }
        }
    }
}

#[test]
fn conversions_from_f32_and_f64() {
    from_f32::<E4M3>();
    from_f32::<E5M2>();
}

/// Widening every code to f32 and f64 is exact and raises nothing (APFloat agrees bit for bit on
/// numbers; NaN stays NaN with its sign).
fn widening<F: Twin>() {
    for a in 0..1u64 << F::WIDTH {
        let mut e = FpEnv::default();
        let wide = hc::to_f32(F::from_bits(a), &mut e);
        let mut loses = false;
        let theirs: StatusAnd<Single> = ap::<F>(a).convert_r(Round::NearestTiesToEven, &mut loses);
        let tb = theirs.value.to_bits() as u32;
        if wide.is_nan() {
            assert!(theirs.value.is_nan(), "{a:02X}");
            assert_eq!(
                wide.is_sign_negative(),
                theirs.value.is_negative(),
                "{a:02X}"
            );
        } else {
            assert_eq!(wide.to_bits(), tb, "{} {a:02X} -> f32", F::NAME);
        }
        let snan = F::SPECIALS == hc::Specials::Ieee && wide.is_nan() && a & F::QUIET_BIT == 0;
        assert_eq!(e.flags.contains(Flags::INVALID), snan, "{a:02X}");
        let d = hc::to_f64(F::from_bits(a), &mut e);
        assert!(d.is_nan() && wide.is_nan() || d == f64::from(wide));
    }
}

#[test]
fn widening_every_code() {
    widening::<E4M3>();
    widening::<E5M2>();
}
