//! The fate classifiers (`fate`, `fate_f32`, `census`, `safe_scale_window`) for binary16 and
//! bfloat16 against an actual conversion: SoftFloat's nearest-even f64 -> F, whose result bits
//! and inexact flag say what storing the value did.
//!
//! Input: `x32 scale32 x64 scale64` (little-endian f32, f32, f64, f64 bits), then f32 values for
//! the census (up to 256), scaled by `scale32`.
#![no_main]

use halfscale_core::half::{bf16, f16};
use halfscale_core::{census, fate, fate_f32, safe_scale_window, Census, Fate, Flags, FpEnv};
use halfscale_fuzz::narrow::Narrow;
use halfscale_fuzz::{f32s, Bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let x32 = f32::from_bits(input.u32());
    let scale32 = f32::from_bits(input.u32());
    let x64 = f64::from_bits(input.u64());
    let scale64 = f64::from_bits(input.u64());
    let mut values = f32s(input.rest());
    values.truncate(256);
    check::<f16>(x32, scale32, x64, scale64, &values);
    check::<bf16>(x32, scale32, x64, scale64, &values);
});

fn check<F: Narrow>(x32: f32, scale32: f32, x64: f64, scale64: f64, values: &[f32]) {
    let exact_product = f64::from(x32) * f64::from(scale32);
    assert_eq!(
        fate_f32::<F>(x32, scale32),
        expected::<F>(exact_product),
        "{} fate_f32({x32:e}, {scale32:e})",
        F::NAME
    );
    assert_eq!(
        fate::<F>(x64, scale64),
        expected::<F>(x64 * scale64),
        "{} fate({x64:e}, {scale64:e})",
        F::NAME
    );
    let got = census::<F>(values, scale32);
    let want = expected_census::<F>(values, scale32);
    assert_eq!(got, want, "{} census of {values:?} at {scale32:e}", F::NAME);
    check_window::<F>(&got, values);
}

/// What storing `y` in `F` does, read off SoftFloat's nearest-even conversion.
fn expected<F: Narrow>(y: f64) -> Fate {
    if y.is_nan() {
        return Fate::Nan;
    }
    if y.is_infinite() {
        return Fate::Inf;
    }
    if y == 0.0 {
        return Fate::Zero;
    }
    let (r, flags) = F::sf_from_f64(&FpEnv::default(), y.to_bits());
    let r = u64::from(r);
    let inexact = flags.contains(Flags::INEXACT);
    let magnitude = r & !F::SIGN_MASK;
    if magnitude == F::INFINITY_BITS {
        Fate::Overflow
    } else if magnitude == 0 {
        Fate::FlushedToZero
    } else if magnitude & F::EXP_MASK == 0 {
        let kept = 64 - magnitude.leading_zeros();
        Fate::Subnormal {
            bits_lost: F::PRECISION - kept,
            exact: !inexact,
        }
    } else if inexact {
        Fate::Rounded
    } else {
        Fate::Exact
    }
}

/// floor(log2 |y|) of a finite non-zero f64, from its fields.
fn ilogb(y: f64) -> i32 {
    let bits = y.to_bits();
    let biased = ((bits >> 52) & 0x7FF) as i32;
    if biased == 0 {
        let frac = bits & ((1 << 52) - 1);
        -1011 - frac.leading_zeros() as i32
    } else {
        biased - 1023
    }
}

fn expected_census<F: Narrow>(values: &[f32], scale: f32) -> Census {
    use halfscale_core::fate::{HIST_BINS, HIST_MIN_EXP};
    let mut c = Census::default();
    for &x in values {
        let y = f64::from(x) * f64::from(scale);
        match expected::<F>(y) {
            Fate::Zero => c.zero += 1,
            Fate::Exact => c.exact += 1,
            Fate::Rounded => c.rounded += 1,
            Fate::Subnormal { exact, .. } => {
                c.subnormal += 1;
                if !exact {
                    c.subnormal_inexact += 1;
                }
            }
            Fate::FlushedToZero => c.flushed_to_zero += 1,
            Fate::Overflow => c.overflow += 1,
            // binary16 and bfloat16 overflow to infinity; `expected` never says these.
            Fate::OverflowToNan | Fate::Saturated => unreachable!("IEEE formats overflow to inf"),
            Fate::Nan => c.nan += 1,
            Fate::Inf => c.inf += 1,
        }
        if y.is_finite() && y != 0.0 {
            let bin = (ilogb(y) - HIST_MIN_EXP).clamp(0, HIST_BINS as i32 - 1);
            c.exp_hist[bin as usize] += 1;
        }
        let ax = f64::from(x).abs();
        if ax.is_finite() && ax != 0.0 {
            c.max_abs = c.max_abs.max(ax);
            c.min_nonzero_abs = c.min_nonzero_abs.min(ax);
        }
    }
    c
}

/// `2^k` exactly, for `k` in f64's normal range (the windows stay well inside it).
fn pow2(k: i32) -> f64 {
    assert!((-1022..=1023).contains(&k), "scale exponent {k}");
    f64::from_bits(((1023 + k) as u64) << 52)
}

/// The window's defining properties, element by element: at `2^max_exp` nothing overflows and at
/// `2^(max_exp + 1)` something does; at `2^min_exp_no_flush` nothing is flushed to zero and one
/// step below something is.
fn check_window<F: Narrow>(c: &Census, values: &[f32]) {
    let finite: Vec<f64> = values
        .iter()
        .map(|&x| f64::from(x))
        .filter(|x| x.is_finite() && *x != 0.0)
        .collect();
    let Some(w) = safe_scale_window::<F>(c) else {
        assert!(finite.is_empty(), "{} no window for {values:?}", F::NAME);
        return;
    };
    let any = |k: i32, fate: Fate| finite.iter().any(|&x| expected::<F>(x * pow2(k)) == fate);
    let msg = || format!("{} window {w:?} for {values:?}", F::NAME);
    assert!(!any(w.max_exp, Fate::Overflow), "{}", msg());
    assert!(any(w.max_exp + 1, Fate::Overflow), "{}", msg());
    assert!(!any(w.min_exp_no_flush, Fate::FlushedToZero), "{}", msg());
    assert!(
        any(w.min_exp_no_flush - 1, Fate::FlushedToZero),
        "{}",
        msg()
    );
    assert_eq!(w.best_exp, w.max_exp, "{}", msg());
    assert_eq!(
        w.is_lossless(),
        w.min_exp_no_flush <= w.max_exp,
        "{}",
        msg()
    );
}
