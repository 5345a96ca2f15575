//! What the fuzz targets share: the Berkeley SoftFloat oracle (the very module the core's test
//! suite uses, so the fuzzers and the tests cannot drift apart), a reader that turns fuzz bytes
//! into operands, and the generic per-format checks.
//!
//! Every check panics on a mismatch, with the operands and environment in the message: to
//! libFuzzer a panic is a crash, saved under `fuzz/artifacts/<target>/`.

// Written for test crates, where clippy holds its public helpers to fewer rules.
#[path = "../../core/tests/oracle/mod.rs"]
#[allow(clippy::should_implement_trait)]
pub mod oracle;

pub mod narrow;
pub mod scaler_model;

use halfscale_core::{FpEnv, NanStyle, RoundingMode, Tininess};

/// Every rounding mode with both tininess rules, x86 NaNs: the environments SoftFloat models.
pub fn all_envs() -> impl Iterator<Item = FpEnv> {
    RoundingMode::ALL.into_iter().flat_map(|rounding| {
        [Tininess::AfterRounding, Tininess::BeforeRounding]
            .into_iter()
            .map(move |tininess| FpEnv {
                rounding,
                tininess,
                nan: NanStyle::X86Sse,
                ..FpEnv::default()
            })
    })
}

/// Reads little-endian numbers off the front of the fuzz input; past its end every read is zero,
/// so a short input is a valid input (libFuzzer starts from tiny ones).
pub struct Bytes<'a>(pub &'a [u8]);

impl<'a> Bytes<'a> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
    pub fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
    /// Whatever is left.
    pub fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.0)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `bits` with its exponent field (at `shift`, `width` bits wide) replaced by
/// `base + (old % span)`: how the targets steer random wide operands into the narrow formats'
/// neighbourhood, where rounding, underflow and overflow happen, without losing the rest.
pub fn steer_exponent(bits: u64, shift: u32, width: u32, base: u64, span: u64) -> u64 {
    let mask = ((1u64 << width) - 1) << shift;
    let old = (bits & mask) >> shift;
    (bits & !mask) | ((base + old % span) << shift)
}

/// f32 values from the bytes, four at a time (a trailing partial word is dropped).
pub fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_bits(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect()
}
