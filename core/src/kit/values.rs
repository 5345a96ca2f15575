//! Edge-biased 16-bit values and conversion ties.
//!
//! A uniform draw over the 65,536 patterns of a 16-bit format almost never lands where kernels go
//! wrong: 1 in 64 f16 patterns is subnormal, 1 in 32,768 is the largest finite, and a uniform
//! f32 is halfway between two f16 neighbours with probability 2^-13. These strategies give each
//! such class a fixed share of the draws, for any [`Format`] (f16, bf16, ...).

use proptest::prelude::*;

use crate::convert::to_f64;
use crate::env::{FpEnv, RoundingMode};
use crate::format::Format;
use crate::half::{bf16, f16};

/// The classes [`edge_bits`] draws from, each with a fixed share (weights in parentheses).
///
/// Every class is drawn with either sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EdgeClass {
    /// +-0 (1).
    Zero,
    /// Any non-zero subnormal (3).
    Subnormal,
    /// The smallest normal and its four nearest neighbours on either side (2).
    MinNormal,
    /// The eight largest finite values, the largest itself among them (2).
    OverflowEdge,
    /// +-inf (1).
    Infinity,
    /// A quiet NaN with any payload (2).
    QuietNan,
    /// A signalling NaN with any non-zero payload (2).
    SignallingNan,
    /// 1.0 and its four nearest neighbours on either side (1).
    NearOne,
    /// Any normal value (4).
    Normal,
}

impl EdgeClass {
    /// The class a bit pattern of `F` falls in (sign ignored), for labelling draws. Where the
    /// ranges meet, the narrower class wins: the smallest normal's neighbours are `MinNormal`
    /// even when subnormal, and `NearOne` only covers normals outside the other edges.
    pub fn of<F: Format>(bits: u64) -> EdgeClass {
        let mag = bits & !F::SIGN_MASK;
        let min_normal = 1u64 << F::FRAC_BITS;
        let one = (F::BIAS as u64) << F::FRAC_BITS;
        if mag == 0 {
            EdgeClass::Zero
        } else if mag == F::INFINITY_BITS {
            EdgeClass::Infinity
        } else if mag > F::INFINITY_BITS {
            if mag & F::QUIET_BIT != 0 {
                EdgeClass::QuietNan
            } else {
                EdgeClass::SignallingNan
            }
        } else if mag.abs_diff(min_normal) <= 4 {
            EdgeClass::MinNormal
        } else if mag < min_normal {
            EdgeClass::Subnormal
        } else if mag + 7 >= F::MAX_FINITE_BITS {
            EdgeClass::OverflowEdge
        } else if mag.abs_diff(one) <= 4 {
            EdgeClass::NearOne
        } else {
            EdgeClass::Normal
        }
    }
}

/// Draws bit patterns of `F` (sign included) with the shares of [`EdgeClass`].
pub fn edge_bits<F: Format>() -> impl Strategy<Value = u64> + Clone {
    let min_normal = 1u64 << F::FRAC_BITS;
    let one = (F::BIAS as u64) << F::FRAC_BITS;
    let magnitude = prop_oneof![
        1 => Just(0u64),
        3 => 1..=F::FRAC_MASK,
        2 => (min_normal - 4)..=(min_normal + 4),
        2 => (F::MAX_FINITE_BITS - 7)..=F::MAX_FINITE_BITS,
        1 => Just(F::INFINITY_BITS),
        2 => (0..F::QUIET_BIT).prop_map(|p| F::EXP_MASK | F::QUIET_BIT | p),
        2 => (1..F::QUIET_BIT).prop_map(|p| F::EXP_MASK | p),
        1 => (one - 4)..=(one + 4),
        4 => min_normal..F::EXP_MASK,
    ];
    (any::<bool>(), magnitude).prop_map(|(negative, m)| if negative { F::SIGN_MASK | m } else { m })
}

/// Edge-biased values of `F`: [`edge_bits`] as values.
pub fn edge_values<F: Format>() -> impl Strategy<Value = F> + Clone {
    edge_bits::<F>().prop_map(F::from_bits)
}

/// Edge-biased binary16 values (see [`EdgeClass`]).
///
/// ```
/// use halfscale_core::kit::values::f16_edge;
/// use proptest::prelude::*;
/// proptest!(|(x in f16_edge())| {
///     // Negation flips the sign bit of every value, NaNs included.
///     prop_assert_eq!((-x).to_bits(), x.to_bits() ^ 0x8000);
/// });
/// ```
pub fn f16_edge() -> impl Strategy<Value = f16> + Clone {
    edge_values::<f16>()
}

/// Edge-biased bfloat16 values (see [`EdgeClass`]).
pub fn bf16_edge() -> impl Strategy<Value = bf16> + Clone {
    edge_values::<bf16>()
}

/// The classes of [`conversion_ties`], each a quarter of the draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TieClass {
    /// Halfway between 0 and the smallest subnormal: nearest-even flushes it to zero.
    Underflow,
    /// Halfway between two subnormals (or the largest subnormal and the smallest normal).
    Subnormal,
    /// Halfway between two normal neighbours.
    Normal,
    /// Halfway between the largest finite value and 2^(emax+1): nearest-even rounds it to inf.
    Overflow,
}

/// f32 values exactly halfway between two neighbouring values of `F` (either sign): the inputs
/// on which an f32 -> `F` conversion's tie rule decides (IEEE 754 clause 4.3.1,
/// roundTiesToEven). Every such midpoint is exact in f32 for f16 and bf16.
pub fn conversion_ties<F: Format>() -> impl Strategy<Value = f32> + Clone {
    let min_normal = 1u64 << F::FRAC_BITS;
    let lower = prop_oneof![
        Just(0u64),
        1..min_normal,
        min_normal..F::MAX_FINITE_BITS,
        Just(F::MAX_FINITE_BITS),
    ];
    (any::<bool>(), lower).prop_map(|(negative, k)| {
        let mut env = FpEnv::new(RoundingMode::NearestEven);
        let lo = to_f64(F::from_bits(k), &mut env);
        // The upper neighbour of the largest finite value is 2^(emax + 1), past the format.
        let hi = if k == F::MAX_FINITE_BITS {
            libm::ldexp(1.0, F::EMAX + 1)
        } else {
            to_f64(F::from_bits(k + 1), &mut env)
        };
        let mid = ((lo + hi) / 2.0) as f32;
        if negative {
            -mid
        } else {
            mid
        }
    })
}

/// The tie class of a conversion tie for `F` (for labelling draws).
pub fn tie_class<F: Format>(tie: f32) -> TieClass {
    let a = f64::from(tie.abs());
    let smallest_subnormal = libm::ldexp(1.0, F::EMIN - F::FRAC_BITS as i32);
    let min_normal = libm::ldexp(1.0, F::EMIN);
    let max_finite = libm::ldexp(2.0 - libm::ldexp(1.0, -(F::FRAC_BITS as i32)), F::EMAX);
    if a < smallest_subnormal {
        TieClass::Underflow
    } else if a < min_normal {
        TieClass::Subnormal
    } else if a > max_finite {
        TieClass::Overflow
    } else {
        TieClass::Normal
    }
}
