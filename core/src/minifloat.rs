//! The 8-, 6- and 4-bit element formats of FP8 training and OCP Microscaling (MX), each a newtype
//! over its code in a `u8` (right-aligned: an FP4 code is `0x0..=0xF`) implementing [`Format`], so
//! every conversion, comparison and arithmetic operation of the core applies to them unchanged.
//!
//! | type | bits | bias | specials | max | min normal | min subnormal | `EMAX` | source |
//! | --- | --- | --- | --- | --- | --- | --- | --- | --- |
//! | [`E4M3`] | 1.4.3 | 7 | NaN only: `S.1111.111` | 448 (`0x7E`) | 2^-6 | 2^-9 | 8 | OCP FP8 v1.0 "E4M3", `float8_e4m3fn` |
//! | [`E5M2`] | 1.5.2 | 15 | IEEE: inf `S.11111.00`, NaN `S.11111.xx` | 57344 (`0x7B`) | 2^-14 | 2^-16 | 15 | OCP FP8 v1.0 "E5M2", `float8_e5m2` |
//! | [`E3M2`] | 1.3.2 | 3 | none (finite only) | 28 (`0x1F`) | 2^-2 | 2^-4 | 4 | OCP MX v1.0 FP6 E3M2, `float6_e3m2fn` |
//! | [`E2M3`] | 1.2.3 | 1 | none (finite only) | 7.5 (`0x1F`) | 2^0 | 2^-3 | 2 | OCP MX v1.0 FP6 E2M3, `float6_e2m3fn` |
//! | [`E2M1`] | 1.2.1 | 1 | none (finite only) | 6 (`0x7`) | 2^0 | 2^-1 | 2 | OCP MX v1.0 FP4 E2M1, `float4_e2m1fn` |
//! | [`E8M0`](crate::e8m0::E8M0) | 0.8.0 | 127 | NaN `0xFF`; no sign, no zero | 2^127 (`0xFE`) | 2^-127 (`0x00`) | none | 127 | OCP MX v1.0 scale, `float8_e8m0fnu` |
//!
//! All five signed formats have a negative zero (`0x80`, `0x20`, `0x8`) and subnormals. The table is
//! the constants the [`Format`] impls derive (`MAX_FINITE_BITS`, `EMIN`, `EMAX`); the unit tests
//! below check each cell against them.
//!
//! Conversions go through the generic [`crate::convert()`], [`crate::from_f32`],
//! [`crate::from_f64`], [`crate::to_f32`], rounding once in the environment's mode; whether an
//! overflow saturates is the environment's `overflow` field ([`crate::Overflow`]). Widening to f32
//! is exact. What real implementations do differently is in [`crate::profile`].

use crate::format::{Format, Specials};

macro_rules! minifloat {
    ($(#[$doc:meta])* $name:ident, $cli:literal, $exp:literal, $frac:literal, $specials:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(u8);

        /// Any code of the format (the bits above its width are dropped), for cargo-fuzz.
        #[cfg(feature = "arbitrary")]
        impl<'a> arbitrary::Arbitrary<'a> for $name {
            fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
                Ok(Self::from_code(u8::arbitrary(u)?))
            }
        }

        impl $name {
            /// The value whose code is `code`; bits above the format's width are dropped.
            pub const fn from_code(code: u8) -> Self {
                $name(code & ((1u16 << (1 + $exp + $frac)) - 1) as u8)
            }

            /// The code, right-aligned in the byte.
            pub const fn code(self) -> u8 {
                self.0
            }
        }

        impl Format for $name {
            const EXP_BITS: u32 = $exp;
            const FRAC_BITS: u32 = $frac;
            const NAME: &'static str = $cli;
            const SPECIALS: Specials = $specials;
            fn to_bits(self) -> u64 {
                u64::from(self.0)
            }
            fn from_bits(bits: u64) -> Self {
                $name::from_code(bits as u8)
            }
        }
    };
}

minifloat!(
    /// OCP FP8 E4M3 ("fn": finite and NaN; `torch.float8_e4m3fn`): no infinities, NaN `S.1111.111`.
    E4M3, "e4m3", 4, 3, Specials::NanOnly
);
minifloat!(
    /// OCP FP8 E5M2 (`torch.float8_e5m2`): IEEE 754-style, with infinities and NaNs.
    E5M2, "e5m2", 5, 2, Specials::Ieee
);
minifloat!(
    /// OCP MX FP6 E3M2: finite only.
    E3M2, "e3m2", 3, 2, Specials::FiniteOnly
);
minifloat!(
    /// OCP MX FP6 E2M3: finite only.
    E2M3, "e2m3", 2, 3, Specials::FiniteOnly
);
minifloat!(
    /// OCP MX FP4 E2M1: finite only.
    E2M1, "e2m1", 2, 1, Specials::FiniteOnly
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::FpEnv;

    fn value<F: Format>(bits: u64) -> f64 {
        crate::convert::to_f64(F::from_bits(bits), &mut FpEnv::default())
    }

    /// Each row of the module's table, read back from the derived constants.
    fn row<F: Format>(bias: i32, max: f64, min_normal_exp: i32, min_sub_exp: i32, emax: i32) {
        assert_eq!(F::BIAS, bias, "{}", F::NAME);
        assert_eq!(value::<F>(F::MAX_FINITE_BITS), max, "{}", F::NAME);
        assert_eq!(F::EMIN, min_normal_exp, "{}", F::NAME);
        assert_eq!(
            value::<F>(1 << F::FRAC_BITS),
            libm::ldexp(1.0, min_normal_exp)
        );
        assert_eq!(value::<F>(1), libm::ldexp(1.0, min_sub_exp), "{}", F::NAME);
        assert_eq!(F::EMAX, emax, "{}", F::NAME);
        assert_eq!(value::<F>(F::SIGN_MASK).to_bits(), (-0.0f64).to_bits());
    }

    #[test]
    fn the_table_holds() {
        row::<E4M3>(7, 448.0, -6, -9, 8);
        row::<E5M2>(15, 57344.0, -14, -16, 15);
        row::<E3M2>(3, 28.0, -2, -4, 4);
        row::<E2M3>(1, 7.5, 0, -3, 2);
        row::<E2M1>(1, 6.0, 0, -1, 2);
        assert_eq!(E4M3::MAX_FINITE_BITS, 0x7E);
        assert_eq!(E5M2::MAX_FINITE_BITS, 0x7B);
        assert_eq!(E3M2::MAX_FINITE_BITS, 0x1F);
        assert_eq!(E2M1::MAX_FINITE_BITS, 0x7);
        assert!(value::<E4M3>(0x7F).is_nan() && value::<E4M3>(0xFF).is_nan());
        assert_eq!(value::<E5M2>(0x7C), f64::INFINITY);
        assert!(value::<E5M2>(0x7D).is_nan());
    }

    #[test]
    fn codes_are_right_aligned_and_masked() {
        assert_eq!(E2M1::from_code(0xFF).code(), 0xF);
        assert_eq!(E3M2::from_code(0xFF).code(), 0x3F);
        assert_eq!(E4M3::from_code(0xFF).code(), 0xFF);
    }
}
