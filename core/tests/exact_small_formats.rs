//! Every 8-, 6- and 4-bit format (and E8M0) against exact arithmetic written here from the
//! formats' definitions (OCP FP8 v1.0, OCP MX v1.0), not from the conversion code: each code
//! is decoded by its formula; a value is rounded by searching the sorted list of representable
//! magnitudes and comparing with the midpoints, all dyadic rationals that f64 holds exactly.
//!
//! Covered: decoding of every code; conversion from f32 in all five rounding modes under both
//! overflow policies (specials, every representable value, every midpoint and its f32 neighbours,
//! and pseudo-random patterns), with flags; sqrt of every E4M3 and E5M2 code in every mode.

use halfscale_core::{
    self as hc, Flags, Format, FpEnv, Overflow, RoundingMode, Specials, E2M1, E2M3, E3M2, E4M3,
    E5M2, E8M0,
};

/// The value of a code by the format's definition, `None` for NaN, +-inf as f64 infinities.
fn decode<F: Format>(code: u64) -> Option<f64> {
    let (e_bits, m_bits) = (F::EXP_BITS as i32, F::FRAC_BITS as i32);
    let bias = (1 << (e_bits - 1)) - 1;
    let sign = if code >> (e_bits + m_bits) & 1 == 1 {
        -1.0
    } else {
        1.0
    };
    let e = (code >> m_bits) as i32 & ((1 << e_bits) - 1);
    let m = (code & ((1 << m_bits) - 1)) as i32;
    let top = e == (1 << e_bits) - 1;
    match F::SPECIALS {
        Specials::Ieee if top => {
            return if m == 0 {
                Some(sign * f64::INFINITY)
            } else {
                None
            }
        }
        Specials::NanOnly if top && m == (1 << m_bits) - 1 => return None,
        _ => {}
    }
    let magnitude = if e == 0 {
        f64::from(m) * 2f64.powi(1 - bias - m_bits)
    } else {
        f64::from(m + (1 << m_bits)) * 2f64.powi(e - bias - m_bits)
    };
    Some(sign * magnitude)
}

/// The finite non-negative magnitudes of `F` with their codes, ascending.
fn magnitudes<F: Format>() -> Vec<(f64, u64)> {
    let mut v: Vec<(f64, u64)> = (0..F::SIGN_MASK)
        .filter_map(|c| decode::<F>(c).filter(|x| x.is_finite()).map(|x| (x, c)))
        .collect();
    v.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    v
}

#[test]
fn decoding_every_code() {
    fn check<F: Format>() {
        for code in 0..1u64 << F::WIDTH {
            let mut env = FpEnv::default();
            let wide = hc::to_f32(F::from_bits(code), &mut env);
            match decode::<F>(code) {
                Some(v) => {
                    assert_eq!(f64::from(wide), v, "{} {code:02X}", F::NAME);
                    assert_eq!(wide.is_sign_negative(), code & F::SIGN_MASK != 0);
                    assert!(env.flags.is_empty());
                }
                None => assert!(wide.is_nan(), "{} {code:02X}", F::NAME),
            }
        }
        // The derived constants agree with the decoding.
        let mags = magnitudes::<F>();
        assert_eq!(mags.last().unwrap().1, F::MAX_FINITE_BITS, "{}", F::NAME);
        assert_eq!(
            F::HAS_NAN,
            (0..1u64 << F::WIDTH).any(|c| decode::<F>(c).is_none())
        );
    }
    check::<E4M3>();
    check::<E5M2>();
    check::<E3M2>();
    check::<E2M3>();
    check::<E2M1>();
    for code in 0..=255u8 {
        let x = E8M0::from_code(code);
        if code == 0xFF {
            assert!(x.to_f32().is_nan() && x.to_f64().is_nan());
        } else {
            let v = 2f64.powi(i32::from(code) - 127);
            assert_eq!(x.to_f64(), v);
            assert_eq!(f64::from(x.to_f32()), v);
        }
    }
}

/// Whether rounding the magnitude goes to the upper candidate, by the rules of IEEE 754 4.3.
fn round_up(mode: RoundingMode, negative: bool, a: f64, lo: f64, hi: f64, hi_even: bool) -> bool {
    let mid = (lo + hi) / 2.0;
    match mode {
        RoundingMode::NearestEven => a > mid || (a == mid && hi_even),
        RoundingMode::NearestAway => a >= mid,
        RoundingMode::TowardZero => false,
        RoundingMode::TowardPositive => !negative,
        RoundingMode::TowardNegative => negative,
    }
}

/// The correctly rounded code of a finite non-zero `x` in `F`, with IEEE flags (tininess after
/// rounding with unbounded exponent), by search over the representable magnitudes.
fn oracle<F: Format>(
    mags: &[(f64, u64)],
    x: f64,
    mode: RoundingMode,
    overflow: Overflow,
) -> (u64, Flags) {
    let negative = x < 0.0;
    let a = x.abs();
    let sign = if negative { F::SIGN_MASK } else { 0 };
    let (max, max_code) = *mags.last().unwrap();
    // Beyond the largest, the next magnitude with an unbounded exponent: one top-binade ulp up.
    let ulp_top = 2f64.powi(F::EMAX - F::FRAC_BITS as i32);
    let beyond = max + ulp_top;
    let (lo, lo_code, hi, hi_code) = match mags.iter().position(|&(v, _)| v > a) {
        Some(i) => (mags[i - 1].0, mags[i - 1].1, mags[i].0, Some(mags[i].1)),
        None if a < beyond => (max, max_code, beyond, None),
        None => (beyond, u64::MAX, 2.0 * beyond, None), // a at or past `beyond`: overflow
    };
    let overflow_result = |to_inf: bool| {
        let code = if to_inf && overflow == Overflow::Ieee {
            match F::SPECIALS {
                Specials::Ieee => F::EXP_MASK,
                Specials::NanOnly => F::EXP_MASK | F::FRAC_MASK,
                Specials::FiniteOnly => max_code,
            }
        } else {
            max_code
        };
        (sign | code, Flags::OVERFLOW | Flags::INEXACT)
    };
    let away = match mode {
        RoundingMode::NearestEven | RoundingMode::NearestAway => true,
        RoundingMode::TowardZero => false,
        RoundingMode::TowardPositive => !negative,
        RoundingMode::TowardNegative => negative,
    };
    if lo_code == u64::MAX {
        return overflow_result(away);
    }
    if a == lo {
        return (sign | lo_code, Flags::NONE);
    }
    // The evenness of the upper candidate: its code's last bit (the virtual one past the largest
    // continues the code sequence).
    let hi_even = match hi_code {
        Some(c) => c & 1 == 0,
        None => (max_code + 1) & 1 == 0,
    };
    let up = round_up(mode, negative, a, lo, hi, hi_even);
    if up && hi_code.is_none() {
        return overflow_result(away);
    }
    let code = if up { hi_code.unwrap() } else { lo_code };
    let min_normal = 2f64.powi(F::EMIN);
    let mut flags = Flags::INEXACT;
    if a < min_normal {
        // Tiny unless rounding at full precision with an unbounded exponent reaches 2^EMIN.
        let q = 2f64.powi(F::EMIN - 1 - F::FRAC_BITS as i32);
        let below = (a / q).floor() * q;
        let above = below + q;
        let even = ((a / q).floor() as u64) & 1 == 1; // `above`'s multiple is even
        let unbounded = if a == below {
            a
        } else if round_up(mode, negative, a, below, above, even) {
            above
        } else {
            below
        };
        if unbounded < min_normal {
            flags |= Flags::UNDERFLOW;
        }
    }
    (sign | code, flags)
}

/// f32 inputs: specials, every magnitude and midpoint of `F` with its f32 neighbours, pseudo-random.
fn inputs<F: Format>() -> Vec<u32> {
    let mut out = vec![
        0,
        0x8000_0000,
        0x7F80_0000,
        0xFF80_0000,
        0x7FC0_0000,
        0xFFC0_0000,
        0x7F80_0001,
        1,
        0x7F7F_FFFF,
    ];
    let mags = magnitudes::<F>();
    let mut points: Vec<f64> = mags.iter().map(|m| m.0).collect();
    for w in mags.windows(2) {
        points.push((w[0].0 + w[1].0) / 2.0);
    }
    let (max, top) = (
        mags.last().unwrap().0,
        2f64.powi(F::EMAX - F::FRAC_BITS as i32),
    );
    points.extend([
        max + top / 2.0,
        max + top,
        max * 4.0,
        mags[1].0 / 2.0,
        mags[1].0 / 4.0,
    ]);
    for p in points {
        let b = (p as f32).to_bits();
        for d in [b, b.wrapping_add(1), b.wrapping_sub(1)] {
            out.push(d);
            out.push(d | 0x8000_0000);
        }
    }
    let mut s = 0x853C_49E6_748F_EA9Bu64;
    for _ in 0..20_000 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let exp = (127 + F::EMIN - 12 + (s >> 40) as i32 % (F::EMAX - F::EMIN + 16)) as u32;
        out.push((s as u32 & 0x807F_FFFF) | exp << 23);
    }
    out
}

/// What converting the finite, infinite or NaN `x` must give, or `None` when the caller checks
/// NaN-ness only (a NaN result).
fn expected<F: Format>(
    mags: &[(f64, u64)],
    x: f64,
    mode: RoundingMode,
    overflow: Overflow,
) -> Option<(u64, Flags)> {
    let sign = if x.is_sign_negative() {
        F::SIGN_MASK
    } else {
        0
    };
    if x.is_nan() {
        return None;
    }
    if x == 0.0 {
        return Some((sign, Flags::NONE));
    }
    if x.is_infinite() {
        let saturated = overflow == Overflow::Saturate || F::SPECIALS == Specials::FiniteOnly;
        return Some(if saturated {
            (sign | F::MAX_FINITE_BITS, Flags::INEXACT)
        } else if F::HAS_INFINITY {
            (sign | F::EXP_MASK, Flags::NONE)
        } else {
            (sign | F::EXP_MASK | F::FRAC_MASK, Flags::INEXACT)
        });
    }
    Some(oracle::<F>(mags, x, mode, overflow))
}

/// Every binary16 and bfloat16 pattern to `F`, every mode, both overflow policies.
fn from_16_bit<F: Format>() {
    use hc::half::{bf16, f16};
    let mags = magnitudes::<F>();
    for overflow in [Overflow::Ieee, Overflow::Saturate] {
        for mode in RoundingMode::ALL {
            for bits in 0..=0xFFFFu16 {
                for (x, got, flags) in [
                    {
                        let mut env = FpEnv::new(mode).with_overflow(overflow);
                        let h = f16::from_bits(bits);
                        let got: F = hc::convert(h, &mut env);
                        (h.to_f64(), got.to_bits(), env.flags)
                    },
                    {
                        let mut env = FpEnv::new(mode).with_overflow(overflow);
                        let b = bf16::from_bits(bits);
                        let got: F = hc::convert(b, &mut env);
                        (b.to_f64(), got.to_bits(), env.flags)
                    },
                ] {
                    let what = format!("{} {x:e} ({bits:04X}) {mode:?} {overflow:?}", F::NAME);
                    match expected::<F>(&mags, x, mode, overflow) {
                        Some(want) => assert_eq!((got, flags), want, "{what}"),
                        None if F::HAS_NAN => assert!(decode::<F>(got).is_none(), "{what}"),
                        None => assert!(flags.contains(Flags::INVALID), "{what}"),
                    }
                }
            }
        }
    }
}

#[test]
fn every_f16_and_bf16_pattern_to_every_format() {
    from_16_bit::<E4M3>();
    from_16_bit::<E5M2>();
    from_16_bit::<E3M2>();
    from_16_bit::<E2M3>();
    from_16_bit::<E2M1>();
}

fn conversions<F: Format>() {
    let mags = magnitudes::<F>();
    let nan_code = |sign: bool| match F::SPECIALS {
        Specials::FiniteOnly => None,
        _ => Some(sign),
    };
    for overflow in [Overflow::Ieee, Overflow::Saturate] {
        for mode in RoundingMode::ALL {
            for &bits in &inputs::<F>() {
                let x = f32::from_bits(bits);
                let mut env = FpEnv::new(mode).with_overflow(overflow);
                let got = hc::from_f32::<F>(x, &mut env).to_bits();
                let what = format!("{} {bits:08X} {mode:?} {overflow:?}", F::NAME);
                if x.is_nan() {
                    match nan_code(x.is_sign_negative()) {
                        Some(_) => assert!(decode::<F>(got).is_none(), "{what}: {got:02X}"),
                        None => assert!(env.flags.contains(Flags::INVALID), "{what}"),
                    }
                    continue;
                }
                if x == 0.0 {
                    assert_eq!(
                        got,
                        if x.is_sign_negative() {
                            F::SIGN_MASK
                        } else {
                            0
                        }
                    );
                    continue;
                }
                if x.is_infinite() {
                    let sign = if x < 0.0 { F::SIGN_MASK } else { 0 };
                    let want =
                        if overflow == Overflow::Saturate || F::SPECIALS == Specials::FiniteOnly {
                            F::MAX_FINITE_BITS
                        } else if F::HAS_INFINITY {
                            F::EXP_MASK
                        } else {
                            F::EXP_MASK | F::FRAC_MASK
                        };
                    assert_eq!(got, sign | want, "{what}");
                    continue;
                }
                let want = oracle::<F>(&mags, f64::from(x), mode, overflow);
                assert_eq!(
                    (got, env.flags),
                    want,
                    "{what}: got {got:02X} {:02X}",
                    env.flags.bits()
                );
            }
        }
    }
}

#[test]
fn conversions_from_f32_fp8() {
    conversions::<E4M3>();
    conversions::<E5M2>();
}

#[test]
fn conversions_from_f32_fp6_fp4() {
    conversions::<E3M2>();
    conversions::<E2M3>();
    conversions::<E2M1>();
}

/// E8M0 by search over the 255 powers of two. A tie `1.5 * 2^k` rounds up in nearest-even (the
/// one-bit significand `1.1` rounds to `10`); below 2^-127 the result is 2^-127 (no zero).
#[test]
fn e8m0_conversions() {
    let mut xs: Vec<f64> = Vec::new();
    for k in -130..=130 {
        let p = 2f64.powi(k);
        xs.extend([
            p,
            p * 1.5,
            p * 1.25,
            p * 1.75,
            p * 1.5 * (1.0 + 1e-9),
            p * 1.5 * (1.0 - 1e-9),
            p * (1.0 + 1e-12),
        ]);
    }
    for mode in RoundingMode::ALL {
        for overflow in [Overflow::Ieee, Overflow::Saturate] {
            for &x in &xs {
                let mut env = FpEnv::new(mode).with_overflow(overflow);
                let got = E8M0::from_f64(x, &mut env);
                let k = x.log2().floor() as i32;
                let lo = 2f64.powi(k);
                let exact = x == lo;
                let up = !exact
                    && match mode {
                        RoundingMode::NearestEven | RoundingMode::NearestAway => x >= 1.5 * lo,
                        RoundingMode::TowardPositive => true,
                        _ => false,
                    };
                let e = k + i32::from(up);
                let what = format!("{x:e} {mode:?} {overflow:?}");
                if k < -127 {
                    assert_eq!(got, E8M0::MIN, "{what}");
                    assert_eq!(env.flags, Flags::INEXACT | Flags::UNDERFLOW, "{what}");
                } else if e > 127 {
                    let to_nan = overflow == Overflow::Ieee
                        && !matches!(
                            mode,
                            RoundingMode::TowardZero | RoundingMode::TowardNegative
                        );
                    assert_eq!(got, if to_nan { E8M0::NAN } else { E8M0::MAX }, "{what}");
                    assert_eq!(env.flags, Flags::OVERFLOW | Flags::INEXACT, "{what}");
                } else {
                    assert_eq!(got.exponent(), Some(e), "{what}");
                    assert_eq!(env.flags.contains(Flags::INEXACT), !exact, "{what}");
                }
            }
        }
    }
    for bad in [0.0, -0.0, -1.0, f64::NAN, f64::NEG_INFINITY] {
        let mut env = FpEnv::default();
        assert!(E8M0::from_f64(bad, &mut env).is_nan());
        assert_eq!(env.flags.contains(Flags::INVALID), !bad.is_nan(), "{bad}");
    }
    let mut env = FpEnv::default().with_overflow(Overflow::Saturate);
    assert_eq!(E8M0::from_f64(f64::INFINITY, &mut env), E8M0::MAX);
}

/// sqrt of every code in every mode: the root lies between the representable `lo <= sqrt(v)`
/// and the next `hi`; comparisons of squares are exact in f64.
fn sqrt_exhaustive<F: Format>() {
    let mags = magnitudes::<F>();
    for mode in RoundingMode::ALL {
        for code in 0..1u64 << F::WIDTH {
            let mut env = FpEnv::new(mode);
            let got = hc::sqrt(F::from_bits(code), &mut env).to_bits();
            let what = format!("{} sqrt {code:02X} {mode:?}", F::NAME);
            match decode::<F>(code) {
                None => assert!(decode::<F>(got).is_none(), "{what}"),
                Some(0.0) => assert_eq!(got, code, "{what}"),
                Some(v) if v < 0.0 => {
                    assert!(decode::<F>(got).is_none(), "{what}");
                    assert_eq!(env.flags, Flags::INVALID, "{what}");
                }
                Some(v) if v.is_infinite() => assert_eq!(got, code, "{what}"),
                Some(v) => {
                    let i = mags.iter().rposition(|&(m, _)| m * m <= v).unwrap();
                    let (lo, lo_code) = mags[i];
                    let want = if lo * lo == v {
                        (lo_code, Flags::NONE)
                    } else {
                        let (hi, hi_code) = mags[i + 1]; // roots of finite values stay in range
                        let mid = (lo + hi) / 2.0;
                        let up = match mode {
                            RoundingMode::NearestEven | RoundingMode::NearestAway => mid * mid < v,
                            RoundingMode::TowardPositive => true,
                            _ => false,
                        };
                        assert!(mid * mid != v, "no ties in square roots");
                        (if up { hi_code } else { lo_code }, Flags::INEXACT)
                    };
                    assert_eq!((got, env.flags), want, "{what}");
                }
            }
        }
    }
}

#[test]
fn sqrt_every_code_every_mode() {
    sqrt_exhaustive::<E4M3>();
    sqrt_exhaustive::<E5M2>();
}

/// `fate_with` says what the exact conversion does: for every input of the conversion test, in
/// nearest-even under both policies, the fate follows from the oracle's code and flags.
fn fates<F: Format>() {
    use hc::Fate;
    let mags = magnitudes::<F>();
    for overflow in [Overflow::Ieee, Overflow::Saturate] {
        let mut census = hc::Census::default();
        let mut want_counts = [0u64; 3]; // overflow to inf, to NaN, saturated
        for &bits in &inputs::<F>() {
            let x = f32::from_bits(bits);
            let fate = hc::fate_with::<F>(f64::from(x), 1.0, overflow);
            census.add_with::<F>(f64::from(x), 1.0, overflow);
            let what = format!("{} {bits:08X} {overflow:?}: {fate:?}", F::NAME);
            if x.is_nan() || x.is_infinite() || x == 0.0 {
                let want = if x.is_nan() {
                    Fate::Nan
                } else if x == 0.0 {
                    Fate::Zero
                } else {
                    Fate::Inf
                };
                assert_eq!(fate, want, "{what}");
                continue;
            }
            let (code, flags) =
                oracle::<F>(&mags, f64::from(x), RoundingMode::NearestEven, overflow);
            let magnitude = code & !F::SIGN_MASK;
            let inexact = flags.contains(Flags::INEXACT);
            let want = if flags.contains(Flags::OVERFLOW) {
                let kind = if overflow == Overflow::Saturate || F::SPECIALS == Specials::FiniteOnly
                {
                    Fate::Saturated
                } else if F::HAS_INFINITY {
                    Fate::Overflow
                } else {
                    Fate::OverflowToNan
                };
                want_counts[match kind {
                    Fate::Overflow => 0,
                    Fate::OverflowToNan => 1,
                    _ => 2,
                }] += 1;
                kind
            } else if magnitude == 0 {
                Fate::FlushedToZero
            } else if magnitude < 1 << F::FRAC_BITS {
                Fate::Subnormal {
                    bits_lost: F::PRECISION - (64 - magnitude.leading_zeros()),
                    exact: !inexact,
                }
            } else if inexact {
                Fate::Rounded
            } else {
                Fate::Exact
            };
            assert_eq!(fate, want, "{what}");
        }
        assert_eq!(
            [census.overflow, census.overflow_nan, census.saturated],
            want_counts,
            "{} census {overflow:?}",
            F::NAME
        );
        assert!(want_counts.iter().sum::<u64>() > 0);
        assert_eq!(census.overflowed(), want_counts.iter().sum::<u64>());
    }
}

#[test]
fn fates_and_census_follow_the_exact_conversion() {
    fates::<E4M3>();
    fates::<E5M2>();
    fates::<E3M2>();
    fates::<E2M3>();
    fates::<E2M1>();
}

/// The power-of-two scale window for 8/6/4-bit storage, checked against its definition by
/// trying every scale exponent on every element.
#[test]
fn safe_scale_windows_by_definition() {
    fn check<F: Format>(values: &[f32]) {
        let census = hc::census::<F>(values, 1.0);
        let w = hc::safe_scale_window::<F>(&census).unwrap();
        let scaled = |k: i32| {
            values
                .iter()
                .map(move |&x| hc::fate::<F>(f64::from(x), 2f64.powi(k)))
        };
        assert!(!scaled(w.max_exp).any(|f| f.is_overflow()), "{}", F::NAME);
        assert!(
            scaled(w.max_exp + 1).any(|f| f.is_overflow()),
            "{}",
            F::NAME
        );
        let flushed = |k: i32| scaled(k).any(|f| f == hc::Fate::FlushedToZero);
        assert!(!flushed(w.min_exp_no_flush), "{}", F::NAME);
        assert!(flushed(w.min_exp_no_flush - 1), "{}", F::NAME);
    }
    let values = [3.0e-3f32, -7.5, 0.0, 1.0e-5, 250.0, -0.4];
    check::<E4M3>(&values);
    check::<E5M2>(&values);
    check::<E3M2>(&values);
    check::<E2M3>(&values);
    check::<E2M1>(&values);
}
