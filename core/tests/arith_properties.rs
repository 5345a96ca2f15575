//! The seed's examples, the fast nearest-even paths against the generic one, NaN styles, and the
//! quiet operations against `rustc_apfloat` (a pure-Rust value oracle, independent of this crate).

use halfscale_core::half::{bf16, f16};
use halfscale_core::{self as hc, fast, Class, Flags, FpEnv, NanStyle, RoundingMode};
use rustc_apfloat::ieee::{BFloat, Half};
use rustc_apfloat::Float as _;

fn rne() -> FpEnv {
    FpEnv::new(RoundingMode::NearestEven)
}

#[test]
fn seed_examples() {
    let mut env = rne();
    let product = hc::mul(f16::from_f32(32000.0), f16::from_f32(3.0), &mut env);
    assert_eq!(product.to_bits(), 0x7C00);
    assert_eq!(env.flags, Flags::OVERFLOW | Flags::INEXACT);

    let mut env = rne();
    let small: f16 = hc::from_f64(1.2e-5, &mut env);
    assert_eq!(small.to_bits(), 0x00C9);
    assert_eq!(env.flags, Flags::UNDERFLOW | Flags::INEXACT);
    assert_eq!(format!("{:.4e}", small.to_f64()), "1.1981e-5");

    assert_eq!(
        format!("{:.4e}", f16::from_bits(0x0400).to_f64()),
        "6.1035e-5"
    );
    assert_eq!(
        format!("{:.2e}", f16::from_bits(0x0001).to_f64()),
        "5.96e-8"
    );
    assert_eq!(f16::from_bits(0x7BFF).to_f64(), 65504.0);
    assert_eq!(hc::class(f16::from_bits(0x00C9)), Class::PositiveSubnormal);
}

#[test]
fn f64_to_f16_rounds_once_where_half_rounds_twice() {
    // 1 + 2^-11 + 2^-40: just above a binary16 tie. Through f32 the 2^-40 is lost, leaving an
    // exact tie that rounds to even (1.0); rounded once it must go up.
    let x = 1.0 + 2f64.powi(-11) + 2f64.powi(-40);
    let mut env = rne();
    let once: f16 = hc::from_f64(x, &mut env);
    assert_eq!(once.to_bits(), 0x3C01);
    assert_eq!(f16::from_f64(x).to_bits(), 0x3C00, "half's double rounding");
}

#[test]
fn nan_styles() {
    let a = f16::from_bits(0x7D00); // signalling NaN with a payload
    let one = f16::ONE;
    let mut x86 = rne();
    assert_eq!(hc::add(a, one, &mut x86).to_bits(), 0x7F00);
    assert_eq!(x86.flags, Flags::INVALID);
    let mut cuda = FpEnv::cuda();
    assert_eq!(hc::add(a, one, &mut cuda).to_bits(), 0x7FFF);
    assert_eq!(
        hc::mul(f16::INFINITY, f16::ZERO, &mut cuda).to_bits(),
        0x7FFF
    );
    let mut arm = FpEnv {
        nan: NanStyle::Canonical,
        ..rne()
    };
    assert_eq!(hc::sqrt(f16::NEG_ONE, &mut arm).to_bits(), 0x7E00);
    assert_eq!(hc::sqrt(bf16::NEG_ONE, &mut arm).to_bits(), 0x7FC0);
    let mut x86 = rne();
    assert_eq!(hc::sqrt(f16::NEG_ONE, &mut x86).to_bits(), 0xFE00);
}

/// A small deterministic generator (xorshift64*).
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed;
    move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        s.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn same_value(a: u64, b: u64, nan: bool) -> bool {
    a == b || nan
}

#[test]
fn fast_paths_match_the_generic_path() {
    let mut next = rng(7);
    let sqrt_all = (0..=u16::MAX).map(|b| (b, 0));
    let random = (0..400_000).map(|_| {
        let r = next();
        (r as u16, (r >> 16) as u16)
    });
    for (a, b) in sqrt_all.chain(random) {
        let (x, y) = (f16::from_bits(a), f16::from_bits(b));
        let mut e = rne();
        type Pair = (fn(f16, f16) -> f16, fn(f16, f16, &mut FpEnv) -> f16);
        let ops: [Pair; 4] = [
            (fast::add_f16, hc::add::<f16>),
            (fast::sub_f16, hc::sub::<f16>),
            (fast::mul_f16, hc::mul::<f16>),
            (fast::div_f16, hc::div::<f16>),
        ];
        for (quick, exact) in ops {
            let (q, s) = (quick(x, y), exact(x, y, &mut e));
            assert!(
                same_value(
                    q.to_bits().into(),
                    s.to_bits().into(),
                    q.is_nan() && s.is_nan()
                ),
                "{a:04X} {b:04X}"
            );
        }
        let (q, s) = (fast::sqrt_f16(x), hc::sqrt(x, &mut e));
        assert!(
            q.to_bits() == s.to_bits() || (q.is_nan() && s.is_nan()),
            "sqrt {a:04X}"
        );
        let (xb, yb) = (bf16::from_bits(a), bf16::from_bits(b));
        let (q, s) = (fast::mul_bf16(xb, yb), hc::mul(xb, yb, &mut e));
        assert!(
            q.to_bits() == s.to_bits() || (q.is_nan() && s.is_nan()),
            "bf16 mul {a:04X} {b:04X}"
        );
        let (q, s) = (fast::div_bf16(xb, yb), hc::div(xb, yb, &mut e));
        assert!(
            q.to_bits() == s.to_bits() || (q.is_nan() && s.is_nan()),
            "bf16 div {a:04X} {b:04X}"
        );
        let (q, s) = (fast::add_bf16(xb, yb), hc::add(xb, yb, &mut e));
        assert!(
            q.to_bits() == s.to_bits() || (q.is_nan() && s.is_nan()),
            "bf16 add {a:04X} {b:04X}"
        );
    }
}

#[test]
fn slice_round_trips_match_scalar_conversion() {
    let mut next = rng(11);
    let mut values: Vec<f32> = (0..10_000).map(|_| f32::from_bits(next() as u32)).collect();
    values.extend([
        0.0,
        -0.0,
        65504.0,
        65520.0,
        65519.99,
        1e-8,
        2.98e-8,
        3e-8,
        f32::INFINITY,
    ]);
    let mut through16 = values.clone();
    fast::round_slice_through_f16(&mut through16);
    let mut through_bf = values.clone();
    fast::round_slice_through_bf16(&mut through_bf);
    for ((&x, &r16), &rbf) in values.iter().zip(&through16).zip(&through_bf) {
        let mut e = rne();
        let want16 = hc::to_f32(hc::from_f32::<f16>(x, &mut e), &mut e);
        let wantbf = hc::to_f32(hc::from_f32::<bf16>(x, &mut e), &mut e);
        assert!(
            r16.to_bits() == want16.to_bits() || (x.is_nan() && r16.is_nan()),
            "{x:e}"
        );
        assert!(
            rbf.to_bits() == wantbf.to_bits() || (x.is_nan() && rbf.is_nan()),
            "{x:e}"
        );
    }
}

fn half(bits: u16) -> Half {
    Half::from_bits(bits.into())
}

#[test]
fn quiet_ops_match_apfloat_exhaustively_on_one_side() {
    let mut next = rng(3);
    let partners: Vec<u16> = (0..48)
        .map(|_| next() as u16)
        .chain([0, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0x0001, 0x8001])
        .collect();
    for a in 0..=u16::MAX {
        let x = f16::from_bits(a);
        let mut e = rne();
        let up = hc::next_up(x, &mut e);
        let down = hc::next_down(x, &mut e);
        if !x.is_nan() {
            assert_eq!(
                u128::from(up.to_bits()),
                half(a).next_up().value.to_bits(),
                "next_up {a:04X}"
            );
            assert_eq!(
                u128::from(down.to_bits()),
                half(a).next_down().value.to_bits(),
                "next_down {a:04X}"
            );
        } else {
            assert!(up.is_nan() && down.is_nan());
        }
        for &b in &partners {
            let y = f16::from_bits(b);
            let mut e = rne();
            let pairs = [
                (hc::minimum(x, y, &mut e), half(a).minimum(half(b))),
                (hc::maximum(x, y, &mut e), half(a).maximum(half(b))),
                (hc::minimum_number(x, y, &mut e), half(a).min(half(b))),
                (hc::maximum_number(x, y, &mut e), half(a).max(half(b))),
            ];
            let both_zero = (a | b) & 0x7FFF == 0;
            for (i, (mine, theirs)) in pairs.into_iter().enumerate() {
                if both_zero && i >= 2 {
                    // apfloat's min/max are 754-2008 minNum/maxNum, which leave the sign of a
                    // zero pair unspecified; 754-2019's minimumNumber orders -0 below +0.
                    let want_negative = if i == 2 {
                        (a | b) & 0x8000 != 0
                    } else {
                        a & b & 0x8000 != 0
                    };
                    assert_eq!(
                        mine.is_sign_negative(),
                        want_negative,
                        "op {i} {a:04X} {b:04X}"
                    );
                } else if theirs.is_nan() {
                    assert!(mine.is_nan(), "op {i} {a:04X} {b:04X}");
                } else {
                    assert_eq!(
                        u128::from(mine.to_bits()),
                        theirs.to_bits(),
                        "op {i} {a:04X} {b:04X}"
                    );
                }
            }
            // totalOrder is a total order consistent with the numeric one on numbers.
            let mut e = rne();
            if !x.is_nan() && !y.is_nan() && hc::lt(x, y, &mut e) {
                assert!(hc::total_order(x, y) && !hc::total_order(y, x));
            }
            assert!(hc::total_order(x, y) || hc::total_order(y, x));
        }
    }
    assert!(
        hc::total_order(f16::NEG_ZERO, f16::ZERO) && !hc::total_order(f16::ZERO, f16::NEG_ZERO)
    );
    assert!(hc::total_order(f16::from_bits(0xFE00), f16::NEG_INFINITY));
    assert!(
        hc::total_order(f16::from_bits(0x7D00), f16::from_bits(0x7E00)),
        "signalling below quiet"
    );
    let mut e = rne();
    assert_eq!(
        hc::minimum(f16::ZERO, f16::NEG_ZERO, &mut e).to_bits(),
        0x8000
    );
    assert_eq!(
        hc::maximum_number(f16::from_bits(0x7D00), f16::ONE, &mut e),
        f16::ONE
    );
    assert_eq!(
        e.flags,
        Flags::INVALID,
        "a signalling NaN signals even when it loses"
    );
}

#[test]
fn class_is_consistent_with_the_predicates() {
    for a in 0..=u16::MAX {
        let x = f16::from_bits(a);
        let c = hc::class(x);
        let negative = x.is_sign_negative();
        let expect = if x.is_nan() {
            if a & 0x0200 != 0 {
                Class::QuietNaN
            } else {
                Class::SignalingNaN
            }
        } else if x.is_infinite() {
            if negative {
                Class::NegativeInfinity
            } else {
                Class::PositiveInfinity
            }
        } else if x == f16::ZERO {
            if negative {
                Class::NegativeZero
            } else {
                Class::PositiveZero
            }
        } else if x.is_normal() {
            if negative {
                Class::NegativeNormal
            } else {
                Class::PositiveNormal
            }
        } else if negative {
            Class::NegativeSubnormal
        } else {
            Class::PositiveSubnormal
        };
        assert_eq!(c, expect, "{a:04X}");
        let b = bf16::from_bits(a);
        assert_eq!(
            hc::class(b) == Class::QuietNaN || hc::class(b) == Class::SignalingNaN,
            b.is_nan()
        );
        let _ = BFloat::ZERO;
    }
}

/// The branch-free bfloat16 round trip equals `half`'s conversion on every one of the 2^32 f32
/// bit patterns, NaN payloads included.
#[test]
fn round_through_bf16_equals_half_on_every_f32() {
    const BLOCK: u32 = 1 << 16;
    let mut values = vec![0.0f32; BLOCK as usize];
    for hi in 0..=u16::MAX {
        let base = u32::from(hi) << 16;
        for (lo, v) in values.iter_mut().enumerate() {
            *v = f32::from_bits(base | lo as u32);
        }
        fast::round_slice_through_bf16(&mut values);
        for (lo, v) in values.iter().enumerate() {
            let x = f32::from_bits(base | lo as u32);
            let want = half::bf16::from_f32(x).to_f32();
            assert_eq!(v.to_bits(), want.to_bits(), "{:#010x}", base | lo as u32);
        }
    }
}
