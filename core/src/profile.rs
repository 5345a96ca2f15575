//! Implementation profiles: how a real library narrows to (and widens from) the 8-, 6- and 4-bit
//! formats, reproduced bit for bit in round-to-nearest-even. They agree on every finite value
//! that does not overflow (all round correctly to nearest-even) and differ on the rest:
//!
//! | profile | format | finite overflow | +-inf in | NaN in | NaN widened to f32 |
//! | --- | --- | --- | --- | --- | --- |
//! | `ml-dtypes` (ml_dtypes 0.6.0 `astype`) | E4M3 | NaN `0x7F`/`0xFF` (sign kept) | NaN, sign kept | `0x7F`/`0xFF` (sign kept) | `0x7FC00000` with sign |
//! | | E5M2 | +-inf | +-inf | `0x7E`/`0xFE` (sign kept) | `0x7FC00000` with sign |
//! | | E3M2, E2M3, E2M1 | saturates to +-max | +-max | zero with the *opposite* sign (`+NaN -> -0`) | (no NaN) |
//! | | E8M0 | NaN `0xFF` | `+inf`: NaN | NaN `0xFF`; zero and negatives too | `0x7FC00000` |
//! | `torch` (torch 2.15 CPU `.to()`) | E4M3 | saturates to +-448 | +-448 | `0x7F`/`0xFF` (sign kept) | `0x7FF00000` with sign (payload widened) |
//! | | E5M2 | +-inf | +-inf | `0x7F`/`0xFF` (sign kept) | payload widened and quieted, sign kept |
//! | | E8M0 | `0xFF` above 2^127 after rounding | `0xFF` | `0xFF` | `0x7F800001` |
//! | `cuda-satfinite` (`__nv_cvt_float_to_fp8(.., __NV_SATFINITE, ..)`) | E4M3, E5M2 | +-max | +-max | `0x7F`, sign dropped | `0x7FFFFFFF` |
//! | `cuda-nosat` (`__NV_NOSAT`) | E4M3 | NaN `0x7F`/`0xFF` (sign kept) | NaN, sign kept | `0x7F`, sign dropped | `0x7FFFFFFF` |
//! | | E5M2 | +-inf | +-inf | `0x7F`, sign dropped | `0x7FFFFFFF` |
//!
//! Signed zero: `-0` stays `-0` in every profile and signed format. E8M0 has no zero and no sign:
//! ml_dtypes turns zero and every negative number into NaN, torch ignores the sign (`-0` and `+0`
//! give `0x00`, 2^-127; `-x` gives the code of `x`). A NaN *result* of arithmetic under a profile is
//! the profile's narrowing of the f32 NaN its scalar operators produce (see below).
//!
//! Sources: ml_dtypes' `float8.h` `ConvertImpl` and `mxfloat.h`, recorded in
//! `tests/fixtures/fp8_profiles.json.gz`; PyTorch's CPU copy kernel and
//! `c10/util/Float8_e8m0fnu-inl.h` (`fp8e8m0fnu_from_fp32_value`: the sign is ignored, an f32
//! exponent field of all ones gives `0xFF`, and the implied bit acts as the even/odd bit, so a tie
//! rounds up for normal f32 inputs and down for subnormal ones; zero is `0x00`, i.e. 2^-127);
//! `cuda_fp8.hpp` (CUDA 13.2) `__nv_cvt_double_to_fp8` and `__nv_cvt_float_to_fp8`, which turn any
//! f32 NaN into `0x7FFFFFFF` first (hence `0x7F` without sign), and `__nv_cvt_fp8_to_halfraw`
//! (NaN -> half `0x7FFF` -> f32 `0x7FFFFFFF`). binary16 and bfloat16 operands are widened to f32
//! first, as torch and CUDA do (exactly; ml_dtypes converts directly, to the same results).
//! torch has no FP6/FP4 dtypes and cuda_fp8.h no FP6/FP4/E8M0 conversion: those pairs are
//! [`ProfileError::Unsupported`].
//!
//! Arithmetic under a profile is what the library's scalar operators do: widen both operands to
//! f32 (the profile's widening, NaNs included), compute in f32 as x86 SSE does (one rounding,
//! [`crate::NanStyle::X86Sse`]), and narrow the f32 result with the profile's conversion. For
//! E4M3 and E5M2 the f32 step is exact or its double rounding innocuous (24 >= 2p + 2), so finite
//! results equal the correctly rounded ones; overflow and NaN follow the profile; `mul_add` is
//! described at [`Profile::mul_add`]. Which NaN an ml_dtypes operation returns was measured on
//! every operand pair: `+` and `-` return a NaN first operand with its sign and a NaN second
//! operand as the positive NaN; `*` returns the second of two NaNs; `/` and `sqrt` follow x86.
//! Flags are those of the core operations involved.

use crate::arith;
use crate::compare;
use crate::convert::convert;
use crate::e8m0::E8M0;
use crate::env::{Flags, FpEnv, NanStyle, Overflow};
use crate::format::{is_nan_bits, Format, Specials};
use core::fmt;

/// A real implementation whose narrowing and widening this module reproduces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Profile {
    /// ml_dtypes 0.6.0 (`astype`, scalar arithmetic through f32).
    MlDtypes,
    /// PyTorch 2.15 on the CPU (`tensor.to(torch.float8_e4m3fn | float8_e5m2 | float8_e8m0fnu)`).
    Torch,
    /// `cuda_fp8.h` `__nv_cvt_float_to_fp8` with `__NV_SATFINITE`.
    CudaSatfinite,
    /// `cuda_fp8.h` `__nv_cvt_float_to_fp8` with `__NV_NOSAT`.
    CudaNosat,
}

/// A profile asked for a format its library does not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileError {
    Unsupported {
        profile: Profile,
        format: &'static str,
    },
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProfileError::Unsupported { profile, format } => write!(
                f,
                "profile {} has no {format} conversion (torch: e4m3 e5m2 e8m0; cuda: e4m3 e5m2)",
                profile.name()
            ),
        }
    }
}

impl core::error::Error for ProfileError {}

/// The f32 arithmetic a profile's scalar operators run on: x86 SSE, correctly rounded.
fn f32_env(env: &FpEnv) -> FpEnv {
    FpEnv {
        nan: NanStyle::X86Sse,
        overflow: Overflow::Ieee,
        flags: Flags::NONE,
        ..*env
    }
}

impl Profile {
    pub const ALL: [Profile; 4] = [
        Profile::MlDtypes,
        Profile::Torch,
        Profile::CudaSatfinite,
        Profile::CudaNosat,
    ];

    /// The CLI name (`ml-dtypes`, `torch`, `cuda-satfinite`, `cuda-nosat`).
    pub const fn name(self) -> &'static str {
        match self {
            Profile::MlDtypes => "ml-dtypes",
            Profile::Torch => "torch",
            Profile::CudaSatfinite => "cuda-satfinite",
            Profile::CudaNosat => "cuda-nosat",
        }
    }

    pub fn parse(name: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Whether the profile's library converts to the format named `format` (`e4m3`, `e8m0`...).
    pub fn supports(self, format: &str) -> bool {
        match self {
            Profile::MlDtypes => true,
            Profile::Torch => matches!(format, "e4m3" | "e5m2" | "e8m0"),
            Profile::CudaSatfinite | Profile::CudaNosat => matches!(format, "e4m3" | "e5m2"),
        }
    }

    fn check(self, format: &'static str) -> Result<(), ProfileError> {
        if self.supports(format) {
            Ok(())
        } else {
            Err(ProfileError::Unsupported {
                profile: self,
                format,
            })
        }
    }

    /// The overflow policy of the profile's narrowing to `D` (what [`crate::fate_with`] needs to
    /// say what an overflow becomes).
    pub fn overflow_policy<D: Format>(self) -> Overflow {
        let saturates = match self {
            Profile::MlDtypes => D::SPECIALS == Specials::FiniteOnly,
            Profile::Torch => D::SPECIALS != Specials::Ieee,
            Profile::CudaSatfinite => true,
            Profile::CudaNosat => false,
        };
        if saturates {
            Overflow::Saturate
        } else {
            Overflow::Ieee
        }
    }

    /// The code a NaN operand of sign `sign` becomes in `D`.
    fn nan_code<D: Format>(self, sign: bool) -> u64 {
        let signed = |bits: u64| if sign { bits | D::SIGN_MASK } else { bits };
        match (self, D::SPECIALS) {
            // ml_dtypes: no NaN to go to; what its conversion yields is zero of the other sign.
            (_, Specials::FiniteOnly) => {
                if sign {
                    0
                } else {
                    D::SIGN_MASK
                }
            }
            (Profile::MlDtypes, Specials::Ieee) => signed(D::EXP_MASK | D::QUIET_BIT),
            (Profile::MlDtypes | Profile::Torch, _) => signed(D::EXP_MASK | D::FRAC_MASK),
            (Profile::CudaSatfinite | Profile::CudaNosat, _) => D::EXP_MASK | D::FRAC_MASK,
        }
    }

    /// Narrows `x` (f32, f64, binary16, bfloat16) to `D` as the profile's library does, in the
    /// environment's rounding mode (the libraries themselves only round to nearest-even).
    pub fn narrow<S: Format, D: Format>(self, x: S, env: &mut FpEnv) -> Result<D, ProfileError> {
        self.check(D::NAME)?;
        let mut e = env.with_overflow(self.overflow_policy::<D>());
        e.flags = Flags::NONE;
        let out: D = convert::<S, D>(x, &mut e);
        env.flags |= e.flags;
        let bits = x.to_bits();
        if is_nan_bits::<S>(bits) {
            return Ok(D::from_bits(self.nan_code::<D>(bits & S::SIGN_MASK != 0)));
        }
        Ok(out)
    }

    /// Narrows `x` to the E8M0 scale as the profile's library does.
    pub fn narrow_e8m0<S: Format>(self, x: S, env: &mut FpEnv) -> Result<E8M0, ProfileError> {
        self.check("e8m0")?;
        let generic = E8M0::from_format(x, env);
        // Both libraries read the f32 exponent field; binary16 and bfloat16 widen to f32 exactly.
        let wide_bits = || convert::<S, f32>(x, &mut FpEnv::default()).to_bits();
        Ok(match self {
            Profile::Torch => torch_e8m0(f32::from_bits(wide_bits())),
            // ml_dtypes rounds a positive f32 subnormal as torch does: up to 2^-126 from anything
            // above 2^-127 (the nearest-even answer would be 2^-127 below 2^-127 * 1.5).
            Profile::MlDtypes if S::EXP_BITS <= 8 && wide_bits() >> 23 == 0 && wide_bits() != 0 => {
                torch_e8m0(f32::from_bits(wide_bits()))
            }
            _ => generic,
        })
    }

    /// Widens `x` to f32 as the profile's library does: exact for numbers; NaN per the table.
    pub fn widen<F: Format>(self, x: F, env: &mut FpEnv) -> Result<f32, ProfileError> {
        self.check(F::NAME)?;
        let bits = x.to_bits();
        let wide = convert::<F, f32>(x, env);
        if !is_nan_bits::<F>(bits) {
            return Ok(wide);
        }
        let sign = if bits & F::SIGN_MASK != 0 {
            0x8000_0000
        } else {
            0
        };
        Ok(match self {
            Profile::MlDtypes => f32::from_bits(sign | 0x7FC0_0000),
            Profile::Torch => wide,
            Profile::CudaSatfinite | Profile::CudaNosat => f32::from_bits(0x7FFF_FFFF),
        })
    }

    /// Widens an E8M0 scale to f32 as the profile's library does.
    pub fn widen_e8m0(self, x: E8M0) -> Result<f32, ProfileError> {
        self.check("e8m0")?;
        Ok(match (self, x.is_nan()) {
            (Profile::Torch, true) => f32::from_bits(0x7F80_0001),
            _ => x.to_f32(),
        })
    }

    /// `op` on the f32 widenings of `a` and `b`, narrowed back (see the module doc).
    fn through_f32<F: Format>(
        self,
        a: F,
        b: F,
        env: &mut FpEnv,
        op: impl FnOnce(f32, f32, &mut FpEnv) -> f32,
    ) -> Result<F, ProfileError> {
        let mut wide = f32_env(env);
        let (x, y) = (self.widen(a, &mut wide)?, self.widen(b, &mut wide)?);
        let r = op(x, y, &mut wide);
        let kept = Flags::INVALID | Flags::DIV_BY_ZERO;
        env.flags |= Flags::from_bits(wide.flags.bits() & kept.bits());
        self.narrow::<f32, F>(r, env)
    }

    /// ml_dtypes' addition and subtraction with a NaN operand (measured on every E4M3 and E5M2
    /// pair): a NaN first operand comes out with its sign, a NaN second operand after a number as
    /// the positive NaN, whatever its sign; `None` when neither is NaN.
    fn ml_dtypes_add_nan<F: Format>(self, a: F, b: F, env: &mut FpEnv) -> Option<F> {
        let (ab, bb) = (a.to_bits(), b.to_bits());
        let nan = if is_nan_bits::<F>(ab) {
            ab & F::SIGN_MASK != 0
        } else if is_nan_bits::<F>(bb) {
            false
        } else {
            return None;
        };
        if crate::format::is_signalling_bits::<F>(ab) || crate::format::is_signalling_bits::<F>(bb)
        {
            env.raise(Flags::INVALID);
        }
        Some(F::from_bits(self.nan_code::<F>(nan)))
    }

    pub fn add<F: Format>(self, a: F, b: F, env: &mut FpEnv) -> Result<F, ProfileError> {
        self.check(F::NAME)?;
        if self == Profile::MlDtypes {
            if let Some(nan) = self.ml_dtypes_add_nan(a, b, env) {
                return Ok(nan);
            }
        }
        self.through_f32(a, b, env, arith::add)
    }

    pub fn sub<F: Format>(self, a: F, b: F, env: &mut FpEnv) -> Result<F, ProfileError> {
        self.check(F::NAME)?;
        if self == Profile::MlDtypes {
            if let Some(nan) = self.ml_dtypes_add_nan(a, b, env) {
                return Ok(nan);
            }
        }
        self.through_f32(a, b, env, arith::sub)
    }

    /// ml_dtypes' product of two NaNs is the second one (its f32 multiply takes the operands
    /// the other way round; measured on every pair): the x86 rule on `b * a`.
    pub fn mul<F: Format>(self, a: F, b: F, env: &mut FpEnv) -> Result<F, ProfileError> {
        if self == Profile::MlDtypes {
            return self.through_f32(b, a, env, arith::mul);
        }
        self.through_f32(a, b, env, arith::mul)
    }

    pub fn div<F: Format>(self, a: F, b: F, env: &mut FpEnv) -> Result<F, ProfileError> {
        self.through_f32(a, b, env, arith::div)
    }

    pub fn sqrt<F: Format>(self, a: F, env: &mut FpEnv) -> Result<F, ProfileError> {
        self.through_f32(a, a, env, |x, _, e| arith::sqrt(x, e))
    }

    /// `a * b + c`. ml_dtypes has no fused multiply-add: `a * b` narrowed, then `+ c` narrowed,
    /// as `a * b + c` on ml_dtypes arrays computes it. torch (which has no float8 addition) and
    /// CUDA: `a * b + c` in f32, then narrowed once; the f32 product of two 8-bit values is exact,
    /// so that is the correctly rounded fma for finite results. Of two NaN operands torch's f32
    /// kernels return the second, as measured on `x.float() * y.float() + z.float()`.
    pub fn mul_add<F: Format>(self, a: F, b: F, c: F, env: &mut FpEnv) -> Result<F, ProfileError> {
        if self == Profile::MlDtypes {
            let product = self.mul(a, b, env)?;
            return self.add(product, c, env);
        }
        let mut wide = f32_env(env);
        let z = self.widen(c, &mut wide)?;
        // torch's f32 kernels return the second of two NaN operands (measured on `x * y + z`).
        self.through_f32(a, b, env, |x, y, e| {
            let product = arith::mul(y, x, e);
            arith::add(z, product, e)
        })
    }

    /// The comparisons of the widened values: the same as the core's on the codes.
    pub fn eq<F: Format>(self, a: F, b: F, env: &mut FpEnv) -> Result<bool, ProfileError> {
        self.check(F::NAME)?;
        Ok(compare::eq(a, b, env))
    }

    pub fn lt<F: Format>(self, a: F, b: F, env: &mut FpEnv) -> Result<bool, ProfileError> {
        self.check(F::NAME)?;
        Ok(compare::lt(a, b, env))
    }

    pub fn le<F: Format>(self, a: F, b: F, env: &mut FpEnv) -> Result<bool, ProfileError> {
        self.check(F::NAME)?;
        Ok(compare::le(a, b, env))
    }
}

/// PyTorch's `fp8e8m0fnu_from_fp32_value` (c10/util/Float8_e8m0fnu-inl.h): the f32 exponent
/// field, rounded up when the guard bit is set and the round or sticky bit, or the implied bit (1
/// for a normal f32), is; the sign is ignored; an all-ones exponent field (inf, NaN) is `0xFF`.
fn torch_e8m0(x: f32) -> E8M0 {
    let bits = x.to_bits();
    let exponent = (bits >> 23) & 0xFF;
    if exponent == 0xFF {
        return E8M0::NAN;
    }
    let guard = bits & 0x40_0000 != 0;
    let round = bits & 0x20_0000 != 0;
    let sticky = bits & 0x1F_FFFF != 0;
    let lsb = exponent > 0;
    let up = guard && (round || sticky || lsb);
    E8M0::from_code((exponent + u32::from(up)) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::minifloat::{E4M3, E5M2};

    fn e4m3(p: Profile, x: f32) -> u8 {
        p.narrow::<f32, E4M3>(x, &mut FpEnv::default())
            .unwrap()
            .code()
    }

    fn e5m2(p: Profile, x: f32) -> u8 {
        p.narrow::<f32, E5M2>(x, &mut FpEnv::default())
            .unwrap()
            .code()
    }

    /// The cases `__nv_cvt_double_to_fp8` / `__nv_cvt_float_to_fp8` (cuda_fp8.hpp, CUDA 13.2)
    /// single out, read off its source: NaN is made `0x7FFFFFFF` first (so `0x7F`, no sign);
    /// `absx > FP8_OVERFLOW_THRESHOLD` (464 for E4M3, just below 61440 for E5M2) is MAXNORM with
    /// `__NV_SATFINITE`, `0x7F` (E4M3) or `0x7C` (E5M2) with `__NV_NOSAT`, the sign OR'ed in.
    #[test]
    fn cuda_profiles_follow_the_header() {
        let (sat, nosat) = (Profile::CudaSatfinite, Profile::CudaNosat);
        for p in [sat, nosat] {
            assert_eq!(e4m3(p, f32::NAN), 0x7F);
            assert_eq!(e4m3(p, -f32::NAN), 0x7F);
            assert_eq!(e5m2(p, -f32::NAN), 0x7F);
            assert_eq!(
                e4m3(p, 464.0),
                0x7E,
                "a tie below the threshold rounds to even"
            );
            assert_eq!(e4m3(p, -0.0), 0x80);
            assert_eq!(
                e4m3(p, 2f32.powi(-10)),
                0x00,
                "half the smallest subnormal ties to 0"
            );
            let w = p
                .widen(E4M3::from_code(0xFF), &mut FpEnv::default())
                .unwrap();
            assert_eq!(w.to_bits(), 0x7FFF_FFFF);
        }
        assert_eq!(e4m3(sat, 465.0), 0x7E);
        assert_eq!(e4m3(nosat, 465.0), 0x7F);
        assert_eq!(e4m3(sat, f32::NEG_INFINITY), 0xFE);
        assert_eq!(e4m3(nosat, f32::NEG_INFINITY), 0xFF);
        assert_eq!(e5m2(sat, 61440.0), 0x7B);
        assert_eq!(e5m2(nosat, 61440.0), 0x7C);
        assert_eq!(e5m2(nosat, 61439.996), 0x7B);
        assert_eq!(e5m2(sat, f32::NEG_INFINITY), 0xFB);
        assert_eq!(e5m2(nosat, f32::NEG_INFINITY), 0xFC);
    }

    #[test]
    fn unsupported_pairs_are_errors() {
        let mut env = FpEnv::default();
        let err = Profile::Torch.narrow::<f32, crate::E2M1>(1.0, &mut env);
        assert_eq!(
            err,
            Err(ProfileError::Unsupported {
                profile: Profile::Torch,
                format: "e2m1"
            })
        );
        assert!(Profile::CudaNosat.narrow_e8m0(1.0f32, &mut env).is_err());
        assert!(Profile::MlDtypes.narrow_e8m0(1.0f32, &mut env).is_ok());
        for p in Profile::ALL {
            assert_eq!(Profile::parse(p.name()), Some(p));
        }
    }
}
