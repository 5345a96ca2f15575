#![doc = include_str!("../../docs/fuzz-your-f16-kernel.md")]
//!
//! # What implements `Arbitrary`
//! Derived: [`RoundingMode`](crate::RoundingMode), [`Tininess`](crate::Tininess),
//! [`NanStyle`](crate::NanStyle), [`FpEnv`](crate::FpEnv), [`ScalerConfig`](crate::ScalerConfig)
//! and its policy enums, [`ScalerState`](crate::scaler::ScalerState),
//! [`Found`](crate::scaler::Found), [`StepOutcome`](crate::StepOutcome),
//! [`OptimizerId`](crate::scaler::OptimizerId). Here: [`Flags`] (only the five defined bits)
//! and [`Operand`]. Configurations and states are drawn field by field, invalid ones included,
//! since validation is part of what a fuzzer should reach.

use arbitrary::{Arbitrary, Result, Unstructured};

use crate::env::Flags;
use crate::format::Format;

impl<'a> Arbitrary<'a> for Flags {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Flags::from_bits(u8::arbitrary(u)?))
    }

    fn size_hint(depth: usize) -> (usize, Option<usize>) {
        u8::size_hint(depth)
    }
}

/// Any value of a format, every bit pattern equally likely: the fuzzer's bytes read as the
/// format's bits (two bytes for f16 and bf16, little-endian as `arbitrary` reads integers).
/// `half::bf16` has no `Arbitrary` of its own; this covers it and any other [`Format`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Operand<F>(pub F);

impl<'a, F: Format> Arbitrary<'a> for Operand<F> {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let bits = match F::WIDTH {
            0..=16 => u64::from(u16::arbitrary(u)?),
            17..=32 => u64::from(u32::arbitrary(u)?),
            _ => u64::arbitrary(u)?,
        };
        Ok(Operand(F::from_bits(bits)))
    }

    fn size_hint(_depth: usize) -> (usize, Option<usize>) {
        let n = F::WIDTH.div_ceil(8).next_power_of_two() as usize;
        (n, Some(n))
    }
}
