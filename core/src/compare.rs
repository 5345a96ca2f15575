//! Comparisons and other quiet operations on the order of values: IEEE 754 clause 5.11
//! (compareQuiet*/compareSignaling*), 5.10 (totalOrder), 9.6 of IEEE 754-2019 (minimum, maximum,
//! minimumNumber, maximumNumber) and 5.3.1 (nextUp, nextDown).

use crate::env::{Flags, FpEnv};
use crate::format::{is_nan_bits, is_signalling_bits, Format};
use crate::rounding::propagate_nan;
use core::cmp::Ordering;

/// Raises invalid when a comparison meets NaN: any NaN for signalling predicates, only a
/// signalling NaN for quiet ones. Returns whether the operands are unordered.
fn check_nans<F: Format>(a: u64, b: u64, signalling: bool, env: &mut FpEnv) -> bool {
    let unordered = is_nan_bits::<F>(a) || is_nan_bits::<F>(b);
    if (signalling && unordered) || is_signalling_bits::<F>(a) || is_signalling_bits::<F>(b) {
        env.raise(Flags::INVALID);
    }
    unordered
}

/// The numeric order of two non-NaN encodings (`-0 == +0`).
fn numeric_cmp<F: Format>(a: u64, b: u64) -> Ordering {
    let key = |x: u64| -> i64 {
        let magnitude = (x & !F::SIGN_MASK) as i64;
        if x & F::SIGN_MASK != 0 {
            -magnitude
        } else {
            magnitude
        }
    };
    key(a).cmp(&key(b))
}

fn compare<F: Format>(a: F, b: F, signalling: bool, env: &mut FpEnv) -> Option<Ordering> {
    let (a, b) = (a.to_bits(), b.to_bits());
    if check_nans::<F>(a, b, signalling, env) {
        None
    } else {
        Some(numeric_cmp::<F>(a, b))
    }
}

/// compareQuietEqual: false for NaN; invalid only for a signalling NaN (SoftFloat `f16_eq`).
pub fn eq<F: Format>(a: F, b: F, env: &mut FpEnv) -> bool {
    compare(a, b, false, env) == Some(Ordering::Equal)
}

/// compareSignalingEqual: like [`eq`] but any NaN raises invalid (`f16_eq_signaling`).
pub fn eq_signaling<F: Format>(a: F, b: F, env: &mut FpEnv) -> bool {
    compare(a, b, true, env) == Some(Ordering::Equal)
}

/// compareSignalingLess: any NaN raises invalid (SoftFloat `f16_lt`).
pub fn lt<F: Format>(a: F, b: F, env: &mut FpEnv) -> bool {
    compare(a, b, true, env) == Some(Ordering::Less)
}

/// compareSignalingLessEqual: any NaN raises invalid (SoftFloat `f16_le`).
pub fn le<F: Format>(a: F, b: F, env: &mut FpEnv) -> bool {
    matches!(
        compare(a, b, true, env),
        Some(Ordering::Less | Ordering::Equal)
    )
}

/// compareQuietLess: invalid only for a signalling NaN (SoftFloat `f16_lt_quiet`).
pub fn lt_quiet<F: Format>(a: F, b: F, env: &mut FpEnv) -> bool {
    compare(a, b, false, env) == Some(Ordering::Less)
}

/// compareQuietLessEqual: invalid only for a signalling NaN (SoftFloat `f16_le_quiet`).
pub fn le_quiet<F: Format>(a: F, b: F, env: &mut FpEnv) -> bool {
    matches!(
        compare(a, b, false, env),
        Some(Ordering::Less | Ordering::Equal)
    )
}

/// compareQuietUnordered: true when either operand is NaN.
pub fn unordered<F: Format>(a: F, b: F, env: &mut FpEnv) -> bool {
    compare(a, b, false, env).is_none()
}

/// totalOrder(a, b) (IEEE 754 clause 5.10): `-NaN < -inf < ... < -0 < +0 < ... < +inf < +NaN`,
/// NaNs ordered by payload, signalling below quiet. Raises nothing.
pub fn total_order<F: Format>(a: F, b: F) -> bool {
    let key = |x: u64| -> i64 {
        let magnitude = (x & !F::SIGN_MASK) as i64;
        if x & F::SIGN_MASK != 0 {
            -magnitude - 1
        } else {
            magnitude
        }
    };
    key(a.to_bits()) <= key(b.to_bits())
}

/// Which of two ordered operands a min/max picks: `-0` counts as below `+0`.
fn pick<F: Format>(a: u64, b: u64, want_min: bool) -> u64 {
    let order = match numeric_cmp::<F>(a, b) {
        Ordering::Equal => (b & F::SIGN_MASK).cmp(&(a & F::SIGN_MASK)), // sign set = smaller
        other => other,
    };
    if (order == Ordering::Less) == want_min {
        a
    } else {
        b
    }
}

fn min_max<F: Format>(a: F, b: F, want_min: bool, number: bool, env: &mut FpEnv) -> F {
    let (ab, bb) = (a.to_bits(), b.to_bits());
    let (a_nan, b_nan) = (is_nan_bits::<F>(ab), is_nan_bits::<F>(bb));
    let bits = if number && a_nan != b_nan {
        // minimumNumber/maximumNumber: a NaN loses to a number; a signalling one still signals.
        if is_signalling_bits::<F>(ab) || is_signalling_bits::<F>(bb) {
            env.raise(Flags::INVALID);
        }
        if a_nan {
            bb
        } else {
            ab
        }
    } else if a_nan || b_nan {
        propagate_nan::<F>(ab, Some(bb), env)
    } else {
        pick::<F>(ab, bb, want_min)
    };
    F::from_bits(bits)
}

/// IEEE 754-2019 minimum: NaN if either operand is NaN, `-0 < +0`.
pub fn minimum<F: Format>(a: F, b: F, env: &mut FpEnv) -> F {
    min_max(a, b, true, false, env)
}

/// IEEE 754-2019 maximum: NaN if either operand is NaN, `-0 < +0`.
pub fn maximum<F: Format>(a: F, b: F, env: &mut FpEnv) -> F {
    min_max(a, b, false, false, env)
}

/// IEEE 754-2019 minimumNumber: a number wins over a NaN, `-0 < +0`.
pub fn minimum_number<F: Format>(a: F, b: F, env: &mut FpEnv) -> F {
    min_max(a, b, true, true, env)
}

/// IEEE 754-2019 maximumNumber: a number wins over a NaN, `-0 < +0`.
pub fn maximum_number<F: Format>(a: F, b: F, env: &mut FpEnv) -> F {
    min_max(a, b, false, true, env)
}

/// nextUp (IEEE 754 clause 5.3.1): the least value greater than `a`. `nextUp(+inf) = +inf`
/// (and, in a format without infinities, nextUp of its largest number is itself),
/// `nextUp(-0) = nextUp(+0)` = the smallest subnormal; NaNs propagate (signalling raises invalid).
pub fn next_up<F: Format>(a: F, env: &mut FpEnv) -> F {
    let bits = a.to_bits();
    let out = if is_nan_bits::<F>(bits) {
        propagate_nan::<F>(bits, None, env)
    } else if bits == F::INFINITY_BITS || bits == F::MAX_FINITE_BITS && !F::HAS_INFINITY {
        // +inf, or the largest number of a format without infinities, is its own successor.
        bits
    } else if bits & !F::SIGN_MASK == 0 {
        1
    } else if bits & F::SIGN_MASK != 0 {
        bits - 1
    } else {
        bits + 1
    };
    F::from_bits(out)
}

/// nextDown (IEEE 754 clause 5.3.1): `-nextUp(-a)`.
pub fn next_down<F: Format>(a: F, env: &mut FpEnv) -> F {
    let bits = a.to_bits();
    if is_nan_bits::<F>(bits) {
        return F::from_bits(propagate_nan::<F>(bits, None, env));
    }
    let up = next_up(F::from_bits(bits ^ F::SIGN_MASK), env).to_bits();
    F::from_bits(up ^ F::SIGN_MASK)
}
