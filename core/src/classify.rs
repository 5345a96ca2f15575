//! The IEEE 754 class of a value (clause 5.7.2, `class`) and the predicates built on it.

use crate::format::{unpack, Format, Unpacked};

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

/// The IEEE class of `x` (a NaN-only format's NaN is quiet; a finite-only format has only
/// zeros, subnormals and normals).
pub fn class<F: Format>(x: F) -> Class {
    let bits = x.to_bits();
    let negative = bits & F::SIGN_MASK != 0;
    let pick = |neg, pos| if negative { neg } else { pos };
    match unpack::<F>(bits) {
        Unpacked::Nan {
            signalling: true, ..
        } => Class::SignalingNaN,
        Unpacked::Nan { .. } => Class::QuietNaN,
        Unpacked::Inf { .. } => pick(Class::NegativeInfinity, Class::PositiveInfinity),
        Unpacked::Zero { .. } => pick(Class::NegativeZero, Class::PositiveZero),
        Unpacked::Finite { .. } if bits & F::EXP_MASK == 0 => {
            pick(Class::NegativeSubnormal, Class::PositiveSubnormal)
        }
        Unpacked::Finite { .. } => pick(Class::NegativeNormal, Class::PositiveNormal),
    }
}
