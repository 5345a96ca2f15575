//! FP8 and microscaling *scaling recipes*: how a real training stack picks the factor a tensor is
//! multiplied by before it is stored in 8 bits or fewer, reproduced bit for bit.
//!
//! | module | recipe | reproduces |
//! | --- | --- | --- |
//! | [`delayed`] | per-tensor scale from a history of past amaxes | Transformer Engine `DelayedScaling` (`delayed_scaling.cu`) |
//! | [`current`] | per-tensor scale from this step's amax | TE `compute_scale_from_amax` (`recipe_common.cuh`); torchao `float8_utils.amax_to_scale` |
//! | [`mx`] | one E8M0 scale per block of 32 | torchao 0.18 `mx_formats.mx_tensor.to_mx` / `to_dtype` (FLOOR, RCEIL, CEIL, EVEN) |
//!
//! All of it is f32 (and, where torchao uses it, f64) arithmetic in a fixed order, so every
//! operation is written out as the kernel does it and cited; the places where a kernel's float
//! library decides a bit (`torch.log2`) are in [`torch_log2`].

pub mod current;
pub mod delayed;
pub mod mx;
pub mod torch_log2;

pub use current::{te_compute_scale_from_amax, te_scale_inv, torchao_tensorwise_scale};
pub use delayed::{
    amax_and_scale_update, AmaxComputeAlgo, DelayedScaling, DelayedScalingState, Fp8Format,
    HistoryRoll, Pass,
};
