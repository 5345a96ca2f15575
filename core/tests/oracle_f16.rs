//! binary16 against Berkeley SoftFloat 3 (8086-SSE specialisation): result bits and all five
//! flags, every rounding mode, both tininess rules. Unary operations and widening conversions are
//! exhaustive over all 65,536 inputs; binary and ternary operations run over every pair of a
//! structured set (all exponents, boundary significands, specials) plus seeded random operands
//! and edge-biased proptest strategies.

mod oracle;

use halfscale_core::half::f16;
use halfscale_core::{self as hc, FpEnv, RoundingMode, Tininess};
use oracle::{all_envs, env, f16b, h, run, Rng};
use proptest::prelude::*;
use softfloat_sys as sf;

/// Operands: every exponent with several significands, plus the edge set, both signs.
fn structured_f16() -> Vec<u16> {
    let mut v = oracle::edge_bits_16(10);
    for exp in 0..31u16 {
        for frac in [0u16, 1, 2, 0x155, 0x200, 0x2AA, 0x3FE, 0x3FF] {
            let bits = exp << 10 | frac;
            v.push(bits);
            v.push(bits | 0x8000);
        }
    }
    v.sort_unstable();
    v.dedup();
    v
}

type Bin = fn(f16, f16, &mut FpEnv) -> f16;
type SfBin = unsafe extern "C" fn(sf::float16_t, sf::float16_t) -> sf::float16_t;

const BINARY: [(&str, Bin, SfBin); 4] = [
    ("add", hc::add::<f16>, sf::f16_add),
    ("sub", hc::sub::<f16>, sf::f16_sub),
    ("mul", hc::mul::<f16>, sf::f16_mul),
    ("div", hc::div::<f16>, sf::f16_div),
];

fn check_binary(name: &str, mine: Bin, theirs: SfBin, e: FpEnv, a: u16, b: u16) {
    let mut me = e;
    let got = mine(f16b(a), f16b(b), &mut me).to_bits();
    // SAFETY: a pure SoftFloat function on plain values.
    let (want, flags) = run(&e, || unsafe { theirs(h(a), h(b)) }.v);
    assert_eq!(
        (got, me.flags),
        (want, flags),
        "{name} {a:04X} {b:04X} in {:?}/{:?}",
        e.rounding,
        e.tininess
    );
}

#[test]
fn binary_ops_over_structured_pairs() {
    let values = structured_f16();
    for (name, mine, theirs) in BINARY {
        for e in all_envs() {
            for &a in &values {
                for &b in &values {
                    check_binary(name, mine, theirs, e, a, b);
                }
            }
        }
    }
}

#[test]
fn binary_ops_over_random_pairs() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for (name, mine, theirs) in BINARY {
        for e in all_envs() {
            for _ in 0..100_000 {
                let r = rng.next();
                check_binary(name, mine, theirs, e, r as u16, (r >> 16) as u16);
            }
        }
    }
}

fn check_fma(e: FpEnv, a: u16, b: u16, c: u16) {
    let mut me = e;
    let got = hc::fma(f16b(a), f16b(b), f16b(c), &mut me).to_bits();
    // SAFETY: a pure SoftFloat function on plain values.
    let (want, flags) = run(&e, || unsafe { sf::f16_mulAdd(h(a), h(b), h(c)) }.v);
    assert_eq!(
        (got, me.flags),
        (want, flags),
        "mulAdd {a:04X} {b:04X} {c:04X} in {:?}/{:?}",
        e.rounding,
        e.tininess
    );
}

#[test]
fn fma_over_structured_triples_and_random() {
    let edges = oracle::edge_bits_16(10);
    for e in all_envs() {
        for &a in &edges {
            for &b in &edges {
                for &c in &edges {
                    check_fma(e, a, b, c);
                }
            }
        }
    }
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for e in all_envs() {
        for _ in 0..200_000 {
            let r = rng.next();
            check_fma(e, r as u16, (r >> 16) as u16, (r >> 32) as u16);
        }
        // Products near a tie with an addend that cancels: the classic double-rounding traps.
        for _ in 0..50_000 {
            let r = rng.next();
            let a = (r as u16 & 0x83FF) | 0x3C00;
            let b = ((r >> 16) as u16 & 0x83FF) | 0x3C00;
            let c = ((r >> 32) as u16 & 0x87FF) | 0x3800;
            check_fma(e, a, b, c);
        }
    }
}

#[test]
fn sqrt_and_round_to_int_exhaustive() {
    for e in all_envs() {
        for a in 0..=u16::MAX {
            let mut me = e;
            let got = hc::sqrt(f16b(a), &mut me).to_bits();
            // SAFETY: pure SoftFloat function.
            let want = run(&e, || unsafe { sf::f16_sqrt(h(a)) }.v);
            assert_eq!((got, me.flags), want, "sqrt {a:04X} {:?}", e.rounding);
            for exact in [false, true] {
                let mut me = e;
                let got = hc::round_to_int(f16b(a), exact, &mut me).to_bits();
                let mode = oracle::sf_mode(e.rounding);
                // SAFETY: pure SoftFloat function.
                let want = run(&e, || unsafe { sf::f16_roundToInt(h(a), mode, exact) }.v);
                assert_eq!(
                    (got, me.flags),
                    want,
                    "roundToInt {a:04X} {:?} exact={exact}",
                    e.rounding
                );
            }
        }
    }
}

#[test]
fn conversions_to_wider_and_integers_exhaustive() {
    for mode in RoundingMode::ALL {
        let e = FpEnv::new(mode);
        let m = oracle::sf_mode(mode);
        for a in 0..=u16::MAX {
            let x = f16b(a);
            let mut me = e;
            let got = hc::to_f32(x, &mut me).to_bits();
            // SAFETY: pure SoftFloat functions, here and below.
            let want = run(&e, || unsafe { sf::f16_to_f32(h(a)) }.v);
            assert_eq!((got, me.flags), want, "f16_to_f32 {a:04X}");
            let mut me = e;
            let got = hc::to_f64(x, &mut me).to_bits();
            let want = run(&e, || unsafe { sf::f16_to_f64(h(a)) }.v);
            assert_eq!((got, me.flags), want, "f16_to_f64 {a:04X}");
            for exact in [false, true] {
                let mut me = e;
                let got = hc::to_i32(x, exact, &mut me);
                let want = run(&e, || unsafe { sf::f16_to_i32(h(a), m, exact) } as i32);
                assert_eq!((got, me.flags), want, "f16_to_i32 {a:04X} {mode:?} {exact}");
                let mut me = e;
                let got = hc::to_i64(x, exact, &mut me);
                let want = run(&e, || unsafe { sf::f16_to_i64(h(a), m, exact) } as i64);
                assert_eq!((got, me.flags), want, "f16_to_i64 {a:04X} {mode:?} {exact}");
                let mut me = e;
                let got = hc::to_u32(x, exact, &mut me);
                let want = run(&e, || unsafe { sf::f16_to_ui32(h(a), m, exact) } as u32);
                assert_eq!(
                    (got, me.flags),
                    want,
                    "f16_to_ui32 {a:04X} {mode:?} {exact}"
                );
                let mut me = e;
                let got = hc::to_u64(x, exact, &mut me);
                let want = run(&e, || unsafe { sf::f16_to_ui64(h(a), m, exact) } as u64);
                assert_eq!(
                    (got, me.flags),
                    want,
                    "f16_to_ui64 {a:04X} {mode:?} {exact}"
                );
            }
        }
    }
}

fn check_from_f32(e: FpEnv, x: u32) {
    let mut me = e;
    let got = hc::from_f32::<f16>(f32::from_bits(x), &mut me).to_bits();
    // SAFETY: pure SoftFloat function.
    let want = run(&e, || unsafe { sf::f32_to_f16(oracle::s(x)) }.v);
    assert_eq!(
        (got, me.flags),
        want,
        "f32_to_f16 {x:08X} {:?}/{:?}",
        e.rounding,
        e.tininess
    );
}

fn check_from_f64(e: FpEnv, x: u64) {
    let mut me = e;
    let got = hc::from_f64::<f16>(f64::from_bits(x), &mut me).to_bits();
    // SAFETY: pure SoftFloat function.
    let want = run(&e, || unsafe { sf::f64_to_f16(oracle::d(x)) }.v);
    assert_eq!(
        (got, me.flags),
        want,
        "f64_to_f16 {x:016X} {:?}/{:?}",
        e.rounding,
        e.tininess
    );
}

#[test]
fn narrowing_conversions_every_mode() {
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    for e in all_envs() {
        // Every f32 exponent that can land near binary16's range, with boundary significands.
        for exp in 90u32..=150 {
            for frac in [
                0u32, 1, 0x1000, 0x1FFF, 0x2000, 0x2001, 0x3FFF, 0x7FE000, 0x7FEFFF, 0x7FF000,
                0x7FFFFF,
            ] {
                for sign in [0u32, 0x8000_0000] {
                    check_from_f32(e, sign | exp << 23 | frac);
                    let wide = (u64::from(sign) << 32)
                        | u64::from(exp + 1023 - 127) << 52
                        | u64::from(frac) << 29;
                    check_from_f64(e, wide);
                    check_from_f64(e, wide | 1);
                    check_from_f64(e, wide.wrapping_sub(1));
                }
            }
        }
        for special in [
            0u32,
            0x7F80_0000,
            0x7FC0_0000,
            0x7F80_0001,
            0x7FBF_FFFF,
            0xFFC1_2345,
            0x0000_0001,
        ] {
            check_from_f32(e, special);
            check_from_f32(e, special | 0x8000_0000);
        }
        for special in [
            0u64,
            0x7FF0_0000_0000_0000,
            0x7FF8_0000_0000_0000,
            0x7FF0_0000_0000_0001,
            0x7FF4_0000_0000_0000,
            1,
        ] {
            check_from_f64(e, special);
            check_from_f64(e, special | 1 << 63);
        }
        for _ in 0..100_000 {
            let r = rng.next();
            check_from_f32(e, r as u32);
            // Bias the f64 exponent into binary16's neighbourhood half of the time.
            let x = if r & 1 == 0 {
                r
            } else {
                (r & 0x800F_FFFF_FFFF_FFFF) | ((990 + (r >> 52) % 60) << 52)
            };
            check_from_f64(e, x);
        }
    }
}

#[test]
fn integer_to_f16_every_mode() {
    let mut rng = Rng(0x0F0F_1234_8765_4321);
    for e in all_envs() {
        let check = |x: i64| {
            let (mut a, mut b, mut c, mut d) = (e, e, e, e);
            let g32 = hc::from_i32::<f16>(x as i32, &mut a).to_bits();
            // SAFETY: pure SoftFloat functions.
            let w32 = run(&e, || unsafe { sf::i32_to_f16(x as i32) }.v);
            assert_eq!((g32, a.flags), w32, "i32_to_f16 {}", x as i32);
            let g64 = hc::from_i64::<f16>(x, &mut b).to_bits();
            let w64 = run(&e, || unsafe { sf::i64_to_f16(x) }.v);
            assert_eq!((g64, b.flags), w64, "i64_to_f16 {x}");
            let gu32 = hc::from_u32::<f16>(x as u32, &mut c).to_bits();
            let wu32 = run(&e, || unsafe { sf::ui32_to_f16(x as u32) }.v);
            assert_eq!((gu32, c.flags), wu32, "ui32_to_f16 {}", x as u32);
            let gu64 = hc::from_u64::<f16>(x as u64, &mut d).to_bits();
            let wu64 = run(&e, || unsafe { sf::ui64_to_f16(x as u64) }.v);
            assert_eq!((gu64, d.flags), wu64, "ui64_to_f16 {}", x as u64);
        };
        for x in -70_000i64..=70_000 {
            check(x);
        }
        for x in [
            i64::MIN,
            i64::MAX,
            i32::MIN.into(),
            i32::MAX.into(),
            65504,
            65519,
            65520,
            -65520,
        ] {
            check(x);
        }
        for _ in 0..20_000 {
            let r = rng.next();
            check(r as i64 >> (r % 63));
        }
    }
}

#[test]
fn comparisons_over_structured_pairs() {
    type Cmp = fn(f16, f16, &mut FpEnv) -> bool;
    type SfCmp = unsafe extern "C" fn(sf::float16_t, sf::float16_t) -> bool;
    let ops: [(&str, Cmp, SfCmp); 6] = [
        ("eq", hc::eq::<f16>, sf::f16_eq),
        ("lt", hc::lt::<f16>, sf::f16_lt),
        ("le", hc::le::<f16>, sf::f16_le),
        (
            "eq_signaling",
            hc::eq_signaling::<f16>,
            sf::f16_eq_signaling,
        ),
        ("lt_quiet", hc::lt_quiet::<f16>, sf::f16_lt_quiet),
        ("le_quiet", hc::le_quiet::<f16>, sf::f16_le_quiet),
    ];
    let values = structured_f16();
    let e = FpEnv::default();
    for (name, mine, theirs) in ops {
        for &a in &values {
            for &b in &values {
                let mut me = e;
                let got = mine(f16b(a), f16b(b), &mut me);
                // SAFETY: pure SoftFloat function.
                let want = run(&e, || unsafe { theirs(h(a), h(b)) });
                assert_eq!((got, me.flags), want, "{name} {a:04X} {b:04X}");
            }
        }
    }
}

fn edge_biased_f16() -> impl Strategy<Value = u16> {
    prop_oneof![
        prop::sample::select(oracle::edge_bits_16(10)),
        any::<u16>(),
        // Near the ends of the exponent range, where ties and overflow meet.
        (0u16..0x0800).prop_map(|b| b | 0x7000),
        (0u16..0x0800),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn prop_binary_ops_match_softfloat(a in edge_biased_f16(), b in edge_biased_f16(), m in 0usize..5) {
        for (name, mine, theirs) in BINARY {
            check_binary(name, mine, theirs, env(RoundingMode::ALL[m], Tininess::AfterRounding), a, b);
        }
    }

    #[test]
    fn prop_fma_matches_softfloat(a in edge_biased_f16(), b in edge_biased_f16(), c in edge_biased_f16(), m in 0usize..5) {
        check_fma(env(RoundingMode::ALL[m], Tininess::AfterRounding), a, b, c);
    }
}

/// Every f32 -> f16 conversion in nearest-even (2^32 inputs, about a minute on two cores in
/// release mode; skipped in debug builds, where it would take an hour).
#[test]
#[cfg_attr(debug_assertions, ignore = "exhaustive: run with --release")]
fn every_f32_to_f16_nearest_even() {
    let e = FpEnv::new(RoundingMode::NearestEven);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let per = (1u64 << 32) / threads;
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                let end = if t == threads - 1 {
                    1 << 32
                } else {
                    (t + 1) * per
                };
                for x in t * per..end {
                    check_from_f32(e, x as u32);
                }
            });
        }
    });
}
