//! Conversions of binary16 and bfloat16 from and to f32, f64 and the four integer types, and
//! between the two 16-bit formats, in every rounding mode and both tininess rules, against
//! Berkeley SoftFloat (bits and flags), rustc_apfloat (values) and the NaN styles.
//!
//! Input: `steer a x32 x64 int`: one steering byte, then little-endian u16, u32, u64, u64.
//! Steering bits move random wide operands to where the narrow formats round, underflow and
//! overflow: bit 0 puts the f32 exponent in binary16's neighbourhood, bit 1 the f64 exponent in
//! binary16's, bit 2 in bfloat16's, bit 3 shifts the integer right by its low six bits.
#![no_main]

use halfscale_core as hc;
use halfscale_core::half::{bf16, f16};
use halfscale_fuzz::oracle::{self, h, run, s};
use halfscale_fuzz::{all_envs, narrow, steer_exponent, Bytes};
use libfuzzer_sys::fuzz_target;
use softfloat_sys as sf;

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let steer = input.u8();
    let a = input.u16();
    let mut x32 = input.u32();
    let mut x64 = input.u64();
    let mut int = input.u64();
    if steer & 1 != 0 {
        x32 = steer_exponent(x32.into(), 23, 8, 90, 61) as u32;
    }
    if steer & 2 != 0 {
        x64 = steer_exponent(x64, 52, 11, 990, 61);
    } else if steer & 4 != 0 {
        x64 = steer_exponent(x64, 52, 11, 850, 331);
    }
    if steer & 8 != 0 {
        int = ((int as i64) >> (int & 63)) as u64;
    }
    narrow::check_conversions::<f16>(a, x32, x64, int);
    narrow::check_conversions::<bf16>(a, x32, x64, int);
    check_between_formats(a);
});

/// binary16 <-> bfloat16: through f32, which holds both exactly, so SoftFloat's widening then
/// its (single) narrowing rounding is the correctly rounded conversion.
fn check_between_formats(a: u16) {
    for e in all_envs() {
        let mut env = e;
        let got = hc::convert::<f16, bf16>(f16::from_bits(a), &mut env).to_bits();
        // SAFETY: a pure SoftFloat conversion.
        let (wide, f1) = run(&e, || unsafe { sf::f16_to_f32(h(a)) }.v);
        let (want, f2) = oracle::bf16_from_f32(&e, wide);
        assert_eq!(
            (got, env.flags),
            (want, f1 | f2),
            "f16 -> bf16 {a:04X} in {:?}/{:?}",
            e.rounding,
            e.tininess
        );

        let mut env = e;
        let got = hc::convert::<bf16, f16>(bf16::from_bits(a), &mut env).to_bits();
        let (wide, f1) = oracle::bf16_to_f32(&e, a);
        // SAFETY: a pure SoftFloat conversion.
        let (want, f2) = run(&e, || unsafe { sf::f32_to_f16(s(wide)) }.v);
        assert_eq!(
            (got, env.flags),
            (want, f1 | f2),
            "bf16 -> f16 {a:04X} in {:?}/{:?}",
            e.rounding,
            e.tininess
        );
    }
}
