//! The IEEE 754 class of a value (clause 5.7.2, `class`) and the predicates built on it.

use crate::format::Format;

/// The ten classes of IEEE 754 clause 5.7.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    SignalingNaN,
    QuietNaN,
    NegativeInfinity,
    NegativeNormal,
    NegativeSubnormal,
    NegativeZero,
    PositiveZero,
    PositiveSubnormal,
    PositiveNormal,
    PositiveInfinity,
}

impl Class {
    pub const fn name(self) -> &'static str {
        match self {
            Class::SignalingNaN => "signalingNaN",
            Class::QuietNaN => "quietNaN",
            Class::NegativeInfinity => "negativeInfinity",
            Class::NegativeNormal => "negativeNormal",
            Class::NegativeSubnormal => "negativeSubnormal",
            Class::NegativeZero => "negativeZero",
            Class::PositiveZero => "positiveZero",
            Class::PositiveSubnormal => "positiveSubnormal",
            Class::PositiveNormal => "positiveNormal",
            Class::PositiveInfinity => "positiveInfinity",
        }
    }
}

/// The IEEE class of `x`.
pub fn class<F: Format>(x: F) -> Class {
    let bits = x.to_bits();
    let negative = bits & F::SIGN_MASK != 0;
    let exp = bits & F::EXP_MASK;
    let frac = bits & F::FRAC_MASK;
    let pick = |neg, pos| if negative { neg } else { pos };
    if exp == F::EXP_MASK {
        if frac == 0 {
            pick(Class::NegativeInfinity, Class::PositiveInfinity)
        } else if frac & F::QUIET_BIT != 0 {
            Class::QuietNaN
        } else {
            Class::SignalingNaN
        }
    } else if exp == 0 {
        if frac == 0 {
            pick(Class::NegativeZero, Class::PositiveZero)
        } else {
            pick(Class::NegativeSubnormal, Class::PositiveSubnormal)
        }
    } else {
        pick(Class::NegativeNormal, Class::PositiveNormal)
    }
}
