//! bfloat16 against Berkeley SoftFloat 3: result bits and all five flags, every rounding mode and
//! both tininess rules. SoftFloat has bfloat16 conversions (`f32_to_bf16`, `bf16_to_f32`) but no
//! bfloat16 arithmetic, so arithmetic is checked through SoftFloat's round-to-odd composition
//! (see `oracle::bf16_via_odd`). Unary operations are exhaustive over all 65,536 inputs.

mod oracle;

use halfscale_core::half::bf16;
use halfscale_core::{self as hc, FpEnv, RoundingMode, Tininess};
use oracle::{all_envs, bf16_to_sf64, bf16_via_odd, bf16b, env, run, s, Rng};
use proptest::prelude::*;
use softfloat_sys as sf;

fn structured_bf16() -> Vec<u16> {
    let mut v = oracle::edge_bits_16(7);
    for exp in (0..255u16)
        .step_by(3)
        .chain([1, 2, 126, 127, 128, 253, 254])
    {
        for frac in [0u16, 1, 0x2A, 0x40, 0x55, 0x7E, 0x7F] {
            let bits = exp << 7 | frac;
            v.push(bits);
            v.push(bits | 0x8000);
        }
    }
    v.sort_unstable();
    v.dedup();
    v
}

type Bin = fn(bf16, bf16, &mut FpEnv) -> bf16;
type SfBin = unsafe extern "C" fn(sf::float64_t, sf::float64_t) -> sf::float64_t;

const BINARY: [(&str, Bin, SfBin); 4] = [
    ("add", hc::add::<bf16>, sf::f64_add),
    ("sub", hc::sub::<bf16>, sf::f64_sub),
    ("mul", hc::mul::<bf16>, sf::f64_mul),
    ("div", hc::div::<bf16>, sf::f64_div),
];

fn check_binary(name: &str, mine: Bin, theirs: SfBin, e: FpEnv, a: u16, b: u16) {
    let mut me = e;
    let got = mine(bf16b(a), bf16b(b), &mut me).to_bits();
    // SAFETY: pure SoftFloat functions.
    let want = bf16_via_odd(&e, || unsafe { theirs(bf16_to_sf64(a), bf16_to_sf64(b)) });
    assert_eq!(
        (got, me.flags),
        want,
        "bf16 {name} {a:04X} {b:04X} {:?}/{:?}",
        e.rounding,
        e.tininess
    );
}

fn check_fma(e: FpEnv, a: u16, b: u16, c: u16) {
    let mut me = e;
    let got = hc::fma(bf16b(a), bf16b(b), bf16b(c), &mut me).to_bits();
    // SAFETY: pure SoftFloat function.
    let want = bf16_via_odd(&e, || unsafe {
        sf::f64_mulAdd(bf16_to_sf64(a), bf16_to_sf64(b), bf16_to_sf64(c))
    });
    assert_eq!(
        (got, me.flags),
        want,
        "bf16 mulAdd {a:04X} {b:04X} {c:04X} {:?}",
        e.rounding
    );
}

#[test]
fn binary_ops_structured_and_random() {
    let values = structured_bf16();
    let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B);
    for (name, mine, theirs) in BINARY {
        for e in all_envs() {
            for &a in &values {
                for &b in &values {
                    check_binary(name, mine, theirs, e, a, b);
                }
            }
            for _ in 0..50_000 {
                let r = rng.next();
                check_binary(name, mine, theirs, e, r as u16, (r >> 16) as u16);
            }
        }
    }
}

#[test]
fn fma_edges_and_random() {
    let edges = oracle::edge_bits_16(7);
    let mut rng = Rng(0xA076_1D64_78BD_642F);
    for e in all_envs() {
        for &a in &edges {
            for &b in &edges {
                for &c in &edges {
                    check_fma(e, a, b, c);
                }
            }
        }
        for _ in 0..100_000 {
            let r = rng.next();
            check_fma(e, r as u16, (r >> 16) as u16, (r >> 32) as u16);
        }
    }
}

#[test]
fn unary_ops_exhaustive() {
    for e in all_envs() {
        let m = oracle::sf_mode(e.rounding);
        for a in 0..=u16::MAX {
            let mut me = e;
            let got = hc::sqrt(bf16b(a), &mut me).to_bits();
            // SAFETY: pure SoftFloat functions, here and below.
            let want = bf16_via_odd(&e, || unsafe { sf::f64_sqrt(bf16_to_sf64(a)) });
            assert_eq!((got, me.flags), want, "bf16 sqrt {a:04X} {:?}", e.rounding);
            for exact in [false, true] {
                let mut me = e;
                let got = hc::round_to_int(bf16b(a), exact, &mut me).to_bits();
                let (r, flags) = run(&e, || unsafe {
                    sf::f32_roundToInt(s(u32::from(a) << 16), m, exact)
                });
                assert_eq!(
                    (got, me.flags),
                    ((r.v >> 16) as u16, flags),
                    "bf16 roundToInt {a:04X}"
                );
                let mut me = e;
                let got = hc::to_i32(bf16b(a), exact, &mut me);
                let want = run(
                    &e,
                    || unsafe { sf::f32_to_i32(s(u32::from(a) << 16), m, exact) } as i32,
                );
                assert_eq!(
                    (got, me.flags),
                    want,
                    "bf16_to_i32 {a:04X} {:?} {exact}",
                    e.rounding
                );
            }
            let mut me = e;
            let got = hc::to_f32(bf16b(a), &mut me).to_bits();
            let (wide, flags) = oracle::bf16_to_f32(&e, a);
            assert_eq!((got, me.flags), (wide, flags), "bf16_to_f32 {a:04X}");
            let mut me = e;
            let got = hc::to_f64(bf16b(a), &mut me).to_bits();
            let (wider, _) = run(&e, || unsafe { sf::f32_to_f64(s(wide)) }.v);
            assert_eq!((got, me.flags), (wider, flags), "bf16_to_f64 {a:04X}");
        }
    }
}

#[test]
fn narrowing_conversions() {
    let mut rng = Rng(0x1F83_D9AB_FB41_BD6B);
    for e in all_envs() {
        let check32 = |x: u32| {
            let mut me = e;
            let got = hc::from_f32::<bf16>(f32::from_bits(x), &mut me).to_bits();
            let want = oracle::bf16_from_f32(&e, x);
            assert_eq!(
                (got, me.flags),
                want,
                "f32_to_bf16 {x:08X} {:?}/{:?}",
                e.rounding,
                e.tininess
            );
        };
        let check64 = |x: u64| {
            let mut me = e;
            let got = hc::from_f64::<bf16>(f64::from_bits(x), &mut me).to_bits();
            let want = bf16_via_odd(&e, || oracle::d(x));
            assert_eq!(
                (got, me.flags),
                want,
                "f64_to_bf16 {x:016X} {:?}",
                e.rounding
            );
        };
        let check_i32 = |x: i32| {
            let mut me = e;
            let got = hc::from_i32::<bf16>(x, &mut me).to_bits();
            // SAFETY: pure SoftFloat function.
            let want = bf16_via_odd(&e, || unsafe { sf::i32_to_f64(x) });
            assert_eq!((got, me.flags), want, "i32_to_bf16 {x}");
        };
        for exp in 0u32..255 {
            for frac in [
                0u32, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF, 0x1_0000, 0x7F_7FFF, 0x7F_8000, 0x7F_FFFF,
            ] {
                check32(exp << 23 | frac);
                check32(0x8000_0000 | exp << 23 | frac);
            }
        }
        for special in [
            0x7F80_0000u32,
            0x7FC0_0000,
            0x7F80_0001,
            0xFFA0_0001,
            0x7F7F_FFFF,
        ] {
            check32(special);
        }
        for _ in 0..100_000 {
            let r = rng.next();
            check32(r as u32);
            check64(r);
            check64((r & 0x800F_FFFF_FFFF_FFFF) | ((850 + (r >> 52) % 330) << 52));
            check_i32((r >> 32) as i32 >> (r % 31));
        }
        for x in [i32::MIN, i32::MAX, 0, 1, -1, 255, 256, 257, 511, 513] {
            check_i32(x);
        }
    }
}

#[test]
fn comparisons_structured() {
    type Cmp = fn(bf16, bf16, &mut FpEnv) -> bool;
    type SfCmp = unsafe extern "C" fn(sf::float32_t, sf::float32_t) -> bool;
    let ops: [(&str, Cmp, SfCmp); 6] = [
        ("eq", hc::eq::<bf16>, sf::f32_eq),
        ("lt", hc::lt::<bf16>, sf::f32_lt),
        ("le", hc::le::<bf16>, sf::f32_le),
        (
            "eq_signaling",
            hc::eq_signaling::<bf16>,
            sf::f32_eq_signaling,
        ),
        ("lt_quiet", hc::lt_quiet::<bf16>, sf::f32_lt_quiet),
        ("le_quiet", hc::le_quiet::<bf16>, sf::f32_le_quiet),
    ];
    let values = structured_bf16();
    let e = FpEnv::default();
    for (name, mine, theirs) in ops {
        for &a in &values {
            for &b in &values {
                let mut me = e;
                let got = mine(bf16b(a), bf16b(b), &mut me);
                // SAFETY: pure SoftFloat function; bf16 -> f32 is exact as a shift.
                let want = run(&e, || unsafe {
                    theirs(s(u32::from(a) << 16), s(u32::from(b) << 16))
                });
                assert_eq!((got, me.flags), want, "bf16 {name} {a:04X} {b:04X}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn prop_bf16_ops_match_softfloat(
        a in prop_oneof![prop::sample::select(oracle::edge_bits_16(7)), any::<u16>()],
        b in prop_oneof![prop::sample::select(oracle::edge_bits_16(7)), any::<u16>()],
        c in prop_oneof![prop::sample::select(oracle::edge_bits_16(7)), any::<u16>()],
        m in 0usize..5,
    ) {
        let e = env(RoundingMode::ALL[m], Tininess::AfterRounding);
        for (name, mine, theirs) in BINARY {
            check_binary(name, mine, theirs, e, a, b);
        }
        check_fma(e, a, b, c);
    }
}
