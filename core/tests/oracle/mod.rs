//! Berkeley SoftFloat 3 (through `softfloat-sys`, the C library itself) as the independent oracle
//! for result bits and flags. SoftFloat's rounding mode, tininess rule and flags are thread-local
//! globals: `run` sets them, calls, and reads the flags back.
#![allow(dead_code)]

use halfscale_core::half::{bf16, f16};
use halfscale_core::{Flags, FpEnv, RoundingMode, Tininess};
use softfloat_sys as sf;

pub fn sf_mode(mode: RoundingMode) -> u8 {
    match mode {
        RoundingMode::NearestEven => sf::softfloat_round_near_even,
        RoundingMode::TowardZero => sf::softfloat_round_minMag,
        RoundingMode::TowardNegative => sf::softfloat_round_min,
        RoundingMode::TowardPositive => sf::softfloat_round_max,
        RoundingMode::NearestAway => sf::softfloat_round_near_maxMag,
    }
}

/// Runs `f` under SoftFloat with the environment's mode and tininess; returns its result and the
/// flags it raised.
pub fn run<T>(env: &FpEnv, f: impl FnOnce() -> T) -> (T, Flags) {
    // SAFETY: these helpers only read and write SoftFloat's thread-local globals.
    unsafe {
        sf::softfloat_roundingMode_write_helper(sf_mode(env.rounding));
        sf::softfloat_detectTininess_write_helper(match env.tininess {
            Tininess::AfterRounding => sf::softfloat_tininess_afterRounding,
            Tininess::BeforeRounding => sf::softfloat_tininess_beforeRounding,
        });
        sf::softfloat_exceptionFlags_write_helper(0);
    }
    let out = f();
    // SAFETY: as above.
    let flags = unsafe { sf::softfloat_exceptionFlags_read_helper() };
    (out, Flags::from_bits(flags))
}

pub fn h(bits: u16) -> sf::float16_t {
    sf::float16_t { v: bits }
}
pub fn s(bits: u32) -> sf::float32_t {
    sf::float32_t { v: bits }
}
pub fn d(bits: u64) -> sf::float64_t {
    sf::float64_t { v: bits }
}

/// Every rounding mode under both tininess rules.
pub fn all_envs() -> impl Iterator<Item = FpEnv> {
    RoundingMode::ALL.into_iter().flat_map(|m| {
        [Tininess::AfterRounding, Tininess::BeforeRounding]
            .into_iter()
            .map(move |t| env(m, t))
    })
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

pub fn env(mode: RoundingMode, tininess: Tininess) -> FpEnv {
    FpEnv {
        tininess,
        ..FpEnv::new(mode)
    }
}

pub fn f16b(bits: u16) -> f16 {
    f16::from_bits(bits)
}
pub fn bf16b(bits: u16) -> bf16 {
    bf16::from_bits(bits)
}

/// SoftFloat has no bfloat16 arithmetic, but it has `f32_to_bf16` (its `softfloat_roundPackToBF16`)
/// and round-to-odd. A bfloat16 operation is computed exactly enough in f64 with round-to-odd
/// (53 >= 2 * 8 + 2 bits), narrowed to f32 with round-to-odd (24 >= 8 + 2, and bfloat16's exponent
/// range is f32's, subnormals included), then rounded once to bfloat16 in the wanted mode: the
/// classic round-to-odd composition, which is correctly rounded in every mode. Flags of the two
/// round-to-odd steps are discarded except invalid, divide-by-zero and overflow.
pub fn bf16_via_odd(env: &FpEnv, op: impl Fn() -> sf::float64_t) -> (u16, Flags) {
    let odd = FpEnv {
        rounding: RoundingMode::NearestEven,
        ..*env
    };
    let (wide, flags) = run(&odd, || {
        // SAFETY: sets SoftFloat's thread-local rounding mode.
        unsafe { sf::softfloat_roundingMode_write_helper(sf::softfloat_round_odd) };
        let r64 = op();
        // SAFETY: pure SoftFloat conversion.
        unsafe { sf::f64_to_f32(r64) }
    });
    // Overflow in the f64 -> f32 step means |result| >= 2^128: bfloat16 overflows too. Round-to-odd
    // saturated to the largest f32, whose rounding to bfloat16 gives the mode's overflow result.
    let keep = Flags::INVALID | Flags::DIV_BY_ZERO | Flags::OVERFLOW;
    let keep = Flags::from_bits(flags.bits() & keep.bits());
    if wide.v & 0x7FFF_FFFF == 0 {
        // An exact zero's sign depends on the rounding mode (x + -x is -0 only toward -inf):
        // ask SoftFloat again in the real mode; zeros narrow exactly.
        let (zero, flags) = run(env, &op);
        return (((zero.v >> 48) & 0x8000) as u16, flags);
    }
    let (out, f2) = bf16_from_f32(env, wide.v);
    (out, keep | f2)
}

/// SoftFloat's `f32_to_bf16`, except for NaN payloads: softfloat-sys's bfloat16 patch shifts the
/// payload by 56 where the rule it uses for every other format (64 - fraction bits: 54 for
/// binary16) gives 57, dropping a payload bit. Held here to that rule: sign and leading payload
/// bits kept, quiet bit set, which is also what x86's VCVTNEPS2BF16 and `half` do.
pub fn bf16_from_f32(env: &FpEnv, x: u32) -> (u16, Flags) {
    if x & 0x7FFF_FFFF > 0x7F80_0000 {
        let invalid = if x & 0x0040_0000 == 0 {
            Flags::INVALID
        } else {
            Flags::NONE
        };
        return ((x >> 16) as u16 | 0x0040, invalid);
    }
    // SAFETY: pure SoftFloat conversion.
    let (out, flags) = run(env, || unsafe { sf::f32_to_bf16(s(x)) });
    (out.v, flags)
}

/// SoftFloat's `bf16_to_f32`, with NaN payloads held to SoftFloat's rule for the other formats
/// (see [`bf16_from_f32`]: the patch's shift is off by one in this direction too).
pub fn bf16_to_f32(env: &FpEnv, a: u16) -> (u32, Flags) {
    if a & 0x7FFF > 0x7F80 {
        let invalid = if a & 0x0040 == 0 {
            Flags::INVALID
        } else {
            Flags::NONE
        };
        return (u32::from(a) << 16 | 0x0040_0000, invalid);
    }
    // SAFETY: pure SoftFloat conversion.
    let (out, flags) = run(env, || unsafe { sf::bf16_to_f32(sf::bfloat16_t { v: a }) });
    (out.v, flags)
}

/// bfloat16 bits widened to an f64 SoftFloat value; a signalling NaN raises invalid (and is
/// quieted), exactly as the bfloat16 operation itself must.
pub fn bf16_to_sf64(bits: u16) -> sf::float64_t {
    // SAFETY: pure SoftFloat conversion; bf16 -> f32 is the bit shift.
    unsafe { sf::f32_to_f64(s(u32::from(bits) << 16)) }
}

/// Values that matter for 16-bit formats: zeros, subnormal boundaries, the smallest normals, one
/// and its neighbours, largest finite values, infinities, quiet and signalling NaNs with payloads,
/// all with both signs.
pub fn edge_bits_16(frac_bits: u32) -> Vec<u16> {
    let exp_mask: u16 = (0x7FFFu16 >> frac_bits) << frac_bits;
    let frac_mask: u16 = (1 << frac_bits) - 1;
    let one: u16 = (exp_mask >> 1) & exp_mask;
    let quiet: u16 = 1 << (frac_bits - 1);
    let mut v = vec![
        0,
        1,
        2,
        3,
        frac_mask - 1,
        frac_mask,
        frac_mask + 1,
        frac_mask + 2,
        (frac_mask + 1) * 2,
        one - 1,
        one,
        one + 1,
        one + quiet,
        one + (1 << frac_bits),
        exp_mask - 2,
        exp_mask - 1,
        exp_mask,
        exp_mask | 1,
        exp_mask | quiet,
        exp_mask | quiet | 1,
        exp_mask | frac_mask,
        exp_mask | (quiet >> 1),
    ];
    let positives = v.clone();
    v.extend(positives.iter().map(|b| b | 0x8000));
    v
}
