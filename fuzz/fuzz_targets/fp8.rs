//! The 8-, 6- and 4-bit formats: E4M3 and E5M2 arithmetic and conversions from f32 in every
//! rounding mode against rustc_apfloat's `Float8E4M3FN` and `Float8E5M2` (values, and flags but
//! for the two APFloat deviations documented in core/tests/oracle_fp8.rs), the E4M3 fast path
//! against the generic conversion, every profile and the fate classifier on the same operands
//! (no panic; the fate agrees with the conversion), and `halfscale fp8 batch`'s line parser on
//! arbitrary text (an answer or a `LineError`, never a panic).
//!
//! Input: `a b c mode x32 scale32`, then free text for the batch parser.
#![no_main]

use halfscale::cli::fp8_batch::answer_line;
use halfscale_core::{
    self as hc, fast, Fate, Flags, Format, FpEnv, Overflow, Profile, RoundingMode, Specials, E2M1,
    E2M3, E3M2, E4M3, E5M2, E8M0,
};
use halfscale_fuzz::{steer_exponent, Bytes};
use libfuzzer_sys::fuzz_target;
use rustc_apfloat::ieee::{Float8E4M3FN, Float8E5M2, Single};
use rustc_apfloat::{Float, FloatConvert, Round, StatusAnd};

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let (a, b, c) = (input.u8(), input.u8(), input.u8());
    let mode = RoundingMode::ALL[usize::from(input.u8() % 5)];
    let mut x32 = input.u32();
    let scale = f32::from_bits(steer_exponent(input.u32().into(), 23, 8, 117, 20) as u32);
    if a & 1 == 1 {
        // Into the 8-bit formats' neighbourhood: 2^-30 .. 2^33.
        x32 = steer_exponent(x32.into(), 23, 8, 97, 64) as u32;
    }
    arithmetic::<E4M3, Float8E4M3FN>(a, b, c, mode);
    arithmetic::<E5M2, Float8E5M2>(a, b, c, mode);
    conversion::<E4M3, Float8E4M3FN>(x32, mode);
    conversion::<E5M2, Float8E5M2>(x32, mode);
    fast_path(f32::from_bits(x32), scale);
    profiles_and_fates(f32::from_bits(x32), scale);
    let text = String::from_utf8_lossy(input.rest());
    for line in text.lines() {
        for profile in [None, Some(Profile::MlDtypes), Some(Profile::Torch)] {
            if let Ok(answer) = answer_line(line, FpEnv::default(), profile) {
                let (result, flags) = answer.split_once(' ').expect("RESULT FLAGS");
                assert!(
                    [1, 2, 8].contains(&result.len()) && flags.len() == 2,
                    "{line:?}"
                );
            }
        }
    }
});

fn round(mode: RoundingMode) -> Round {
    match mode {
        RoundingMode::NearestEven => Round::NearestTiesToEven,
        RoundingMode::TowardZero => Round::TowardZero,
        RoundingMode::TowardNegative => Round::TowardNegative,
        RoundingMode::TowardPositive => Round::TowardPositive,
        RoundingMode::NearestAway => Round::NearestTiesToAway,
    }
}

/// Values agree (NaN with NaN); for a negative overflow in a directed mode of the NaN-only format
/// APFloat's result is not IEEE's (see core/tests/oracle_fp8.rs), so only NaN-or-max is asked.
fn agree<F: Format, A: Float>(what: &str, mine: F, flags: Flags, theirs: StatusAnd<A>) {
    let t = theirs.value.to_bits() as u64;
    let m = mine.to_bits();
    let nan = |bits: u64| A::from_bits(u128::from(bits)).is_nan();
    if flags.contains(Flags::OVERFLOW) {
        let max = m & !F::SIGN_MASK == F::MAX_FINITE_BITS;
        assert!(
            nan(m) || max || m & !F::SIGN_MASK == F::INFINITY_BITS,
            "{what}"
        );
        assert!(
            nan(t) || t & !F::SIGN_MASK == m & !F::SIGN_MASK || F::SPECIALS == Specials::NanOnly,
            "{what}: {m:02X} vs {t:02X}"
        );
        return;
    }
    assert!(
        m == t || (nan(m) && nan(t)),
        "{what}: mine {m:02X}, apfloat {t:02X}"
    );
}

fn arithmetic<F: Format, A: Float>(a: u8, b: u8, c: u8, mode: RoundingMode) {
    let (x, y, z) = (
        F::from_bits(a.into()),
        F::from_bits(b.into()),
        F::from_bits(c.into()),
    );
    let (p, q, s) = (
        A::from_bits(a.into()),
        A::from_bits(b.into()),
        A::from_bits(c.into()),
    );
    let r = round(mode);
    let what = format!("{} {a:02X} {b:02X} {c:02X} {mode:?}", F::NAME);
    let mut e = FpEnv::new(mode);
    agree(
        &format!("add {what}"),
        hc::add(x, y, &mut e),
        e.flags,
        p.add_r(q, r),
    );
    let mut e = FpEnv::new(mode);
    agree(
        &format!("mul {what}"),
        hc::mul(x, y, &mut e),
        e.flags,
        p.mul_r(q, r),
    );
    let mut e = FpEnv::new(mode);
    agree(
        &format!("div {what}"),
        hc::div(x, y, &mut e),
        e.flags,
        p.div_r(q, r),
    );
    let mut e = FpEnv::new(mode);
    agree(
        &format!("fma {what}"),
        hc::fma(x, y, z, &mut e),
        e.flags,
        p.mul_add_r(q, s, r),
    );
}

fn conversion<F: Format, A: Float>(x: u32, mode: RoundingMode)
where
    Single: FloatConvert<A>,
{
    let mut e = FpEnv::new(mode);
    let mine: F = hc::from_f32(f32::from_bits(x), &mut e);
    let theirs: StatusAnd<A> = Single::from_bits(x.into()).convert_r(round(mode), &mut false);
    agree(
        &format!("{} from f32 {x:08X} {mode:?}", F::NAME),
        mine,
        e.flags,
        theirs,
    );
}

fn fast_path(x: f32, scale: f32) {
    for overflow in [Overflow::Ieee, Overflow::Saturate] {
        let mut e = FpEnv::default().with_overflow(overflow);
        let generic: E4M3 = hc::from_f32(x * scale, &mut e);
        let fast = fast::f32_to_e4m3(x * scale, overflow);
        assert_eq!(fast, generic, "{x:e} * {scale:e} {overflow:?}");
    }
}

fn fate_agrees<F: Format>(y: f64, overflow: Overflow) {
    let fate = hc::fate_with::<F>(y, 1.0, overflow);
    let mut e = FpEnv::default().with_overflow(overflow);
    let stored: F = hc::from_f64(y, &mut e);
    let what = format!("{} {y:e} {overflow:?}: {fate:?}", F::NAME);
    assert_eq!(
        fate.is_overflow(),
        e.flags.contains(Flags::OVERFLOW),
        "{what}"
    );
    if fate == Fate::Saturated {
        assert_eq!(
            stored.to_bits() & !F::SIGN_MASK,
            F::MAX_FINITE_BITS,
            "{what}"
        );
    }
    if fate == Fate::FlushedToZero {
        assert_eq!(stored.to_bits() & !F::SIGN_MASK, 0, "{what}");
    }
}

fn profiles_and_fates(x: f32, scale: f32) {
    let y = f64::from(x) * f64::from(scale);
    for overflow in [Overflow::Ieee, Overflow::Saturate] {
        fate_agrees::<E4M3>(y, overflow);
        fate_agrees::<E5M2>(y, overflow);
        fate_agrees::<E3M2>(y, overflow);
        fate_agrees::<E2M3>(y, overflow);
        fate_agrees::<E2M1>(y, overflow);
    }
    for p in Profile::ALL {
        let mut e = FpEnv::default();
        let _ = p.narrow::<f32, E4M3>(x, &mut e);
        let _ = p.narrow::<f32, E2M1>(x, &mut e);
        let _ = p.narrow_e8m0::<f32>(x, &mut e);
        let _ = p.mul(
            E4M3::from_code(x.to_bits() as u8),
            E4M3::from_code((x.to_bits() >> 8) as u8),
            &mut e,
        );
    }
    let mut e = FpEnv::default();
    let _ = E8M0::from_f32(x, &mut e);
}
