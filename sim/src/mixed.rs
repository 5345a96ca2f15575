//! The precision modes and the rounding points of the autocast emulation.
//!
//! PyTorch's CUDA autocast (fp16 or bf16) casts the float inputs of the ops on its lower-precision
//! list (`conv2d`, `linear`, ...) to the low type and runs them there; cuDNN/cuBLAS accumulate in
//! f32 and round the result once. Ops on its fp32 list (`log_softmax`, `nll_loss`) upcast their
//! inputs to f32. Ops not listed (`max_pool2d`, `relu`) run in whatever type they receive. The
//! backward pass mirrors the casts: the gradient arriving at a low-precision tensor is in the low
//! type, and the backward of a cast converts the gradient back.
//!
//! So the emulation rounds (through `halfscale-core`'s nearest-even slice conversions) at exactly
//! these points, and nowhere else:
//!
//! | where                      | forward                                  | backward |
//! |----------------------------|------------------------------------------|----------|
//! | conv1, conv2, fc1, fc2 in  | input, weight and bias rounded            | input gradient rounded (f32 accumulation) |
//! | conv1, conv2, fc1, fc2 out | output rounded (f32 accumulation)         | weight and bias gradients rounded (f32 accumulation), then upcast exactly to the f32 master gradients |
//! | max_pool, relu             | exact on low-precision values             | exact (selection / masking) |
//! | logits -> log_softmax      | upcast (exact)                            | `dL/dlogits` (times the loss scale) rounded: where small gradients underflow without a scaler |
//! | log_softmax, nll_loss      | f32                                        | f32 |
//!
//! Inputs of fc1 and fc2 are outputs of relu/max_pool on rounded values, already representable,
//! so rounding them again is the identity and is skipped.

use halfscale_core::fast::{round_slice_through_bf16, round_slice_through_f16};

/// Arithmetic of a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Plain f32 everywhere: the reference.
    Fp32,
    /// Autocast with binary16 (`torch.autocast("cuda", dtype=torch.float16)`).
    Fp16,
    /// Autocast with bfloat16.
    Bf16,
}

impl Precision {
    /// Rounds every element to the low-precision format and back (nearest-even), in place; the
    /// identity for `Fp32`.
    #[inline]
    pub fn round(self, values: &mut [f32]) {
        match self {
            Precision::Fp32 => {}
            Precision::Fp16 => round_slice_through_f16(values),
            Precision::Bf16 => round_slice_through_bf16(values),
        }
    }

    /// Whether `v` is exactly representable in this precision (always true for `Fp32`).
    pub fn is_representable(self, v: f32) -> bool {
        let mut x = [v];
        self.round(&mut x);
        x[0].to_bits() == v.to_bits() || (v.is_nan() && x[0].is_nan())
    }

    /// Name as the CLI spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "mixed fp16",
            Precision::Bf16 => "mixed bf16",
        }
    }

    /// True for the autocast modes.
    pub const fn is_mixed(self) -> bool {
        !matches!(self, Precision::Fp32)
    }
}
