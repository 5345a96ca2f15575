//! candle's own f16/bf16 CPU arithmetic and casts, checked against halfscale-core's bit-exact
//! soft float (IEEE 754 binary16/bfloat16, round to nearest, ties to even).
//!
//! Unary operations and the narrow -> f32 casts are checked on all 65,536 inputs; f32 -> narrow
//! casts on every tie (the exact midpoint between two adjacent narrow values) and its two f32
//! neighbours, the overflow edge and NaNs with payloads; binary operations on every pair of an
//! edge-biased set (zeros, subnormals, the normal boundary, the overflow edge, ties, powers of
//! two, NaN, inf) plus a long deterministic pseudo-random stream over all bit patterns.
//!
//! A NaN result must be a NaN; the payload is not compared (IEEE 754 6.2.3 only asks that a NaN
//! operand's payload be preserved "if possible"; candle's CPU kernels go through `half`, whose
//! quieting is checked separately below).

use candle_core::{DType, Device, Tensor};
use halfscale_core::half::{bf16, f16};
use halfscale_core::{add, convert, div, mul, sqrt, Format, FpEnv, RoundingMode};

type R<T = ()> = candle_core::Result<T>;

fn env() -> FpEnv {
    FpEnv::new(RoundingMode::NearestEven)
}

/// The 16-bit formats under test (candle's `WithDType` gives the dtype).
trait Narrow: Format + candle_core::WithDType {}
impl Narrow for f16 {}
impl Narrow for bf16 {}

fn bits<F: Format>(x: F) -> u16 {
    Format::to_bits(x) as u16
}

fn from_bits<F: Format>(b: u16) -> F {
    F::from_bits(u64::from(b))
}

fn is_nan<F: Format>(x: F) -> bool {
    let b = Format::to_bits(x);
    b & F::EXP_MASK == F::EXP_MASK && b & F::FRAC_MASK != 0
}

fn all<F: Narrow>() -> Vec<F> {
    (0..=u16::MAX).map(from_bits).collect()
}

fn tensor<T: candle_core::WithDType>(v: Vec<T>) -> R<Tensor> {
    let n = v.len();
    Tensor::from_vec(v, n, &Device::Cpu)
}

/// The inputs whose candle result differs from halfscale-core's (a NaN matches any NaN); the
/// first few are shown.
fn mismatches<F: Narrow>(
    what: &str,
    got: &[F],
    want: &[F],
    input: impl Fn(usize) -> String,
) -> Vec<usize> {
    let mut bad = Vec::new();
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let same = if is_nan(*w) {
            is_nan(*g)
        } else {
            bits(*g) == bits(*w)
        };
        if !same {
            if bad.len() < 5 {
                eprintln!(
                    "{what} {}: {} -> candle {:#06x}, halfscale {:#06x}",
                    F::NAME,
                    input(i),
                    bits(*g),
                    bits(*w)
                );
            }
            bad.push(i);
        }
    }
    bad
}

/// An edge-biased set of values of format `F`: signed zeros, the smallest and largest
/// subnormals, the normal boundary, one and its neighbours, values whose sums and products tie,
/// the largest finite values, inf and NaNs (quiet, signalling-pattern, payloads).
fn edge_set<F: Narrow>() -> Vec<F> {
    let (exp_bits, frac_bits) = (F::EXP_BITS as u16, F::FRAC_BITS as u16);
    let frac_mask: u16 = (1 << frac_bits) - 1;
    let exp_all: u16 = ((1u16 << exp_bits) - 1) << frac_bits;
    let bias = (1u16 << (exp_bits - 1)) - 1;
    let one = bias << frac_bits;
    let mut b: Vec<u16> = vec![
        0,
        1,
        2,
        3,
        frac_mask >> 1,
        frac_mask - 1,
        frac_mask,
        frac_mask + 1,
        frac_mask + 2,
        (2 << frac_bits) | 1,
        one - 1,
        one,
        one + 1,
        one + 2,
        one + frac_mask,
        one | (1 << (frac_bits - 1)),
        one | (1 << (frac_bits - 1)) | 1,
        (bias + 1) << frac_bits,
        ((bias + frac_bits) << frac_bits) | frac_mask, // 2^p - 1: the last exact integer range
        (bias + frac_bits + 1) << frac_bits,
        ((bias + 3) << frac_bits) | 0x5,
        exp_all - (1 << frac_bits),
        exp_all - 2,
        exp_all - 1,                      // the largest finite value
        exp_all,                          // inf
        exp_all | 1,                      // a signalling-pattern NaN
        exp_all | (1 << (frac_bits - 1)), // the canonical quiet NaN
        exp_all | frac_mask,
        exp_all | 0x15,
    ];
    // Powers of two across the whole range.
    b.extend(
        (1..(1u16 << exp_bits) - 1)
            .step_by(3)
            .map(|e| e << frac_bits),
    );
    let mut with_signs: Vec<u16> = b.iter().flat_map(|&x| [x, x | 0x8000]).collect();
    with_signs.sort_unstable();
    with_signs.dedup();
    with_signs.into_iter().map(from_bits).collect()
}

/// SplitMix64: a deterministic stream of bit patterns (no dependency, same on every machine).
fn splitmix(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Operand pairs: every pair of the edge set, then `random` pairs over all bit patterns.
fn pairs<F: Narrow>(random: usize) -> (Vec<F>, Vec<F>) {
    let edges = edge_set::<F>();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for &x in &edges {
        for &y in &edges {
            a.push(x);
            b.push(y);
        }
    }
    let mut seed = 0x6861_6c66_7363_616c; // "halfscal"
    for _ in 0..random {
        let r = splitmix(&mut seed);
        a.push(from_bits(r as u16));
        b.push(from_bits((r >> 16) as u16));
    }
    (a, b)
}

type SoftOp<F> = fn(F, F, &mut FpEnv) -> F;

/// The pairs (and both results) where candle's binary op differs from halfscale-core's.
struct BinaryCheck<F> {
    pairs: usize,
    /// `(candle, halfscale)` for each mismatch.
    diffs: Vec<(F, F)>,
}

fn check_binary<F: Narrow>(
    name: &str,
    candle_op: impl Fn(&Tensor, &Tensor) -> R<Tensor>,
    soft: SoftOp<F>,
) -> R<BinaryCheck<F>> {
    let (a, b) = pairs::<F>(300_000);
    let got = candle_op(&tensor(a.clone())?, &tensor(b.clone())?)?.to_vec1::<F>()?;
    let mut e = env();
    let want: Vec<F> = a
        .iter()
        .zip(&b)
        .map(|(&x, &y)| soft(x, y, &mut e))
        .collect();
    let bad = mismatches(name, &got, &want, |i| {
        format!("{:#06x}, {:#06x}", bits(a[i]), bits(b[i]))
    });
    Ok(BinaryCheck {
        pairs: a.len(),
        diffs: bad.into_iter().map(|i| (got[i], want[i])).collect(),
    })
}

#[test]
fn f16_add_mul_div_are_correctly_rounded() -> R {
    assert_eq!(
        check_binary::<f16>("add", |x, y| x.add(y), add)?
            .diffs
            .len(),
        0
    );
    assert_eq!(
        check_binary::<f16>("mul", |x, y| x.mul(y), mul)?
            .diffs
            .len(),
        0
    );
    assert_eq!(
        check_binary::<f16>("div", |x, y| x.div(y), div)?
            .diffs
            .len(),
        0
    );
    Ok(())
}

#[test]
fn bf16_mul_div_are_correctly_rounded() -> R {
    assert_eq!(
        check_binary::<bf16>("mul", |x, y| x.mul(y), mul)?
            .diffs
            .len(),
        0
    );
    assert_eq!(
        check_binary::<bf16>("div", |x, y| x.div(y), div)?
            .diffs
            .len(),
        0
    );
    Ok(())
}

/// Known difference: candle 0.11.1's bf16 `add` on an x86 CPU with AVX512-BF16 stores each
/// 8-lane f32 sum with `VCVTNEPS2BF16` (`_mm256_cvtneps_pbh`, candle-core `src/cpu/avx.rs`),
/// which flushes subnormal results to zero whatever MXCSR says. A sum whose exact bfloat16
/// result is subnormal (|x| < 2^-126) comes out as a zero of the same sign; everything else
/// (normal results, ties, overflow, NaN) is correctly rounded, and the elements past the last
/// full SIMD block go through `half` and are exact too. Without AVX512-BF16 candle's add is
/// correctly rounded everywhere, and this test demands exactly that.
#[test]
fn bf16_add_is_correctly_rounded_except_avx512bf16_flush_to_zero() -> R {
    let check = check_binary::<bf16>("add", |x, y| x.add(y), add)?;
    let flushes = check.diffs.iter().all(|(got, want)| {
        let w = bits(*want);
        let subnormal = w & 0x7f80 == 0 && w & 0x7f != 0;
        subnormal && bits(*got) == w & 0x8000
    });
    assert!(flushes, "a difference other than a flushed subnormal");
    if avx512_bf16() {
        // The edge set has many subnormal sums (e.g. 0 + the smallest subnormal).
        assert!(
            !check.diffs.is_empty(),
            "AVX512-BF16 no longer flushes: update the README"
        );
        eprintln!(
            "bf16 add: {} of {} results flushed to zero (AVX512-BF16)",
            check.diffs.len(),
            check.pairs
        );
    } else {
        assert!(check.diffs.is_empty());
    }
    Ok(())
}

fn avx512_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
            && std::arch::is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn check_sqrt<F: Narrow>() -> R {
    let x = all::<F>();
    let got = tensor(x.clone())?.sqrt()?.to_vec1::<F>()?;
    let mut e = env();
    let want: Vec<F> = x.iter().map(|&v| sqrt(v, &mut e)).collect();
    assert!(mismatches("sqrt", &got, &want, |i| format!("{:#06x}", bits(x[i]))).is_empty());
    Ok(())
}

#[test]
fn f16_sqrt_is_correctly_rounded_on_every_input() -> R {
    check_sqrt::<f16>()
}

#[test]
fn bf16_sqrt_is_correctly_rounded_on_every_input() -> R {
    check_sqrt::<bf16>()
}

/// Narrow -> f32 is exact: every one of the 65,536 values, NaN payloads kept (a widening has
/// room for them; IEEE 754 6.2.3).
fn check_widen<F: Narrow>() -> R {
    let x = all::<F>();
    let got = tensor(x.clone())?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    let mut e = env();
    for (v, g) in x.iter().zip(&got) {
        let want: f32 = convert(*v, &mut e);
        if is_nan(*v) {
            assert!(g.is_nan(), "{} {:#06x}", F::NAME, bits(*v));
        } else {
            assert_eq!(g.to_bits(), want.to_bits(), "{} {:#06x}", F::NAME, bits(*v));
        }
    }
    Ok(())
}

#[test]
fn f16_to_f32_is_exact_on_every_input() -> R {
    check_widen::<f16>()
}

#[test]
fn bf16_to_f32_is_exact_on_every_input() -> R {
    check_widen::<bf16>()
}

/// f32 inputs that test a narrowing: for every pair of adjacent finite narrow values (and the
/// step past the largest, where rounding overflows to inf), the exact midpoint (a tie) and its two
/// f32 neighbours; all narrow values themselves; f32 subnormals and the f32 extremes; NaNs.
fn narrowing_inputs<F: Narrow>() -> Vec<f32> {
    let mut e = env();
    let mut out = Vec::new();
    let mut b = 0u16;
    loop {
        let lo32: f32 = convert(from_bits::<F>(b), &mut e);
        let hi32: f32 = convert(from_bits::<F>(b + 1), &mut e);
        if hi32.is_infinite() {
            // `lo` is the largest finite value: the tie with the next value of an unbounded
            // exponent range decides overflow (IEEE 754 7.4).
            let prev: f32 = convert(from_bits::<F>(b - 1), &mut e);
            let mid = lo32 + (lo32 - prev) / 2.0;
            out.extend([
                lo32,
                mid,
                f32::from_bits(mid.to_bits() - 1),
                f32::from_bits(mid.to_bits() + 1),
            ]);
            break;
        }
        // Exact: 11 (or 8) significand bits plus one fit in f32's 24.
        let mid = (lo32 + hi32) / 2.0;
        out.extend([
            lo32,
            mid,
            f32::from_bits(mid.to_bits() - 1),
            f32::from_bits(mid.to_bits() + 1),
        ]);
        b += 1;
    }
    out.extend([
        f32::from_bits(1),
        f32::from_bits(0x007f_ffff),
        f32::MIN_POSITIVE,
        f32::MAX,
        f32::INFINITY,
        f32::NAN,
        f32::from_bits(0x7f80_0001),
        f32::from_bits(0x7fc0_1234),
        f32::from_bits(0x7fbf_ffff),
    ]);
    let negatives: Vec<f32> = out.iter().map(|v| -v).collect();
    out.extend(negatives);
    out
}

fn check_narrow<F: Narrow>() -> R<Vec<usize>> {
    let x = narrowing_inputs::<F>();
    assert!(x.len() > 100_000, "{} inputs", x.len());
    let got = tensor(x.clone())?
        .to_dtype(<F as candle_core::WithDType>::DTYPE)?
        .to_vec1::<F>()?;
    let mut e = env();
    let want: Vec<F> = x.iter().map(|&v| convert(v, &mut e)).collect();
    Ok(mismatches("f32->", &got, &want, |i| {
        format!("{:#010x}", x[i].to_bits())
    }))
}

#[test]
fn f32_to_f16_rounds_to_nearest_even() -> R {
    assert!(check_narrow::<f16>()?.is_empty());
    Ok(())
}

#[test]
fn f32_to_bf16_rounds_to_nearest_even() -> R {
    assert!(check_narrow::<bf16>()?.is_empty());
    Ok(())
}

/// The same operations on the verification kit's edge-biased draws (`halfscale_core::kit`):
/// subnormals, the overflow edge, NaN payloads and signalling NaNs get a fixed share of the draws,
/// and f32 -> narrow casts are drawn on exact ties of every class (underflow, subnormal, normal,
/// overflow). The bf16 add flush (above) is allowed for on AVX512-BF16 machines only.
mod kit {
    use super::*;
    use halfscale_core::kit::values::{conversion_ties, edge_values};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    /// Draws 1,024 operand vectors of 64 pairs (candle's SIMD blocks see full vectors).
    fn check_pairs<F: Narrow>(
        candle_op: fn(&Tensor, &Tensor) -> R<Tensor>,
        soft: SoftOp<F>,
        allow_ftz: bool,
    ) {
        let mut runner = TestRunner::new(Config {
            cases: 1024,
            failure_persistence: None,
            ..Config::default()
        });
        let pairs = proptest::collection::vec((edge_values::<F>(), edge_values::<F>()), 64);
        runner
            .run(&pairs, |pairs| {
                let (a, b): (Vec<F>, Vec<F>) = pairs.into_iter().unzip();
                let got = candle_op(&tensor(a.clone()).unwrap(), &tensor(b.clone()).unwrap())
                    .unwrap()
                    .to_vec1::<F>()
                    .unwrap();
                let mut e = env();
                for i in 0..a.len() {
                    let want = soft(a[i], b[i], &mut e);
                    let (g, w) = (bits(got[i]), bits(want));
                    let flushed = w & 0x7f80 == 0 && w & 0x7f != 0 && g == w & 0x8000;
                    prop_assert!(
                        if is_nan(want) {
                            is_nan(got[i])
                        } else {
                            g == w || (allow_ftz && flushed)
                        },
                        "{} {:#06x}, {:#06x}: candle {:#06x}, halfscale {:#06x}",
                        F::NAME,
                        bits(a[i]),
                        bits(b[i]),
                        g,
                        w
                    );
                }
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn f16_ops_on_edge_draws() {
        check_pairs::<f16>(|x, y| x.add(y), add, false);
        check_pairs::<f16>(|x, y| x.mul(y), mul, false);
        check_pairs::<f16>(|x, y| x.div(y), div, false);
    }

    #[test]
    fn bf16_ops_on_edge_draws() {
        check_pairs::<bf16>(|x, y| x.add(y), add, avx512_bf16());
        check_pairs::<bf16>(|x, y| x.mul(y), mul, false);
        check_pairs::<bf16>(|x, y| x.div(y), div, false);
    }

    fn check_ties<F: Narrow>() {
        let mut runner = TestRunner::new(Config {
            cases: 1024,
            failure_persistence: None,
            ..Config::default()
        });
        let ties = proptest::collection::vec(conversion_ties::<F>(), 64);
        runner
            .run(&ties, |ties| {
                let got = tensor(ties.clone())
                    .unwrap()
                    .to_dtype(<F as candle_core::WithDType>::DTYPE)
                    .unwrap()
                    .to_vec1::<F>()
                    .unwrap();
                let mut e = env();
                for (t, g) in ties.iter().zip(&got) {
                    let want: F = convert(*t, &mut e);
                    prop_assert_eq!(bits(*g), bits(want), "{} tie {:e}", F::NAME, t);
                }
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn f32_to_narrow_casts_on_kit_ties() {
        check_ties::<f16>();
        check_ties::<bf16>();
    }
}
