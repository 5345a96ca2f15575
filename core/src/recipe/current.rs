//! Current (just-in-time, per-tensor) scaling: the scale comes from the amax of the tensor being
//! quantized, in the same step.
//!
//! Two implementations that round differently:
//! - Transformer Engine's `compute_scale_from_amax` (`transformer_engine/common/recipe/
//!   recipe_common.cuh`, used by `Float8CurrentScaling` and the blockwise recipes): all f32, one
//!   division `__fdiv_rn(max_fp8, amax)`;
//! - torchao's tensorwise rule, `torchao.float8.float8_utils.amax_to_scale`: the amax is widened to
//!   f64, floored at `EPS = 1e-12`, and `fp8_max / amax` is evaluated by torch as
//!   `amax.reciprocal() * fp8_max` (Python's `float / Tensor` is `Tensor.__rtruediv__`, which
//!   torch implements as `self.reciprocal() * other`): two f64 roundings, then one to f32.

use super::torch_log2::{exp2_integer, floor_log2};

/// TE's `compute_scale_from_amax(amax, max_fp8, force_pow_2_scales, epsilon, value_for_inf)`:
///
/// ```text
/// if (amax < epsilon) amax = epsilon;          // a NaN amax compares false and stays NaN
/// if (isinf(amax) || amax == 0 || isnan(amax)) return 1;
/// scale = __fdiv_rn(max_fp8, amax);            // IEEE division, nearest even
/// if (isinf(scale)) scale = value_for_inf;     // f32::MAX from the current-scaling kernels
/// if (force_pow_2_scales) scale_bits &= 0xFF800000;   // keep sign and exponent
/// ```
pub fn te_compute_scale_from_amax(
    amax: f32,
    max_fp8: f32,
    force_pow_2_scales: bool,
    epsilon: f32,
    value_for_inf: f32,
) -> f32 {
    let amax = if amax < epsilon { epsilon } else { amax };
    if amax.is_infinite() || amax == 0.0 || amax.is_nan() {
        return 1.0;
    }
    let mut scale = max_fp8 / amax;
    if scale.is_infinite() {
        scale = value_for_inf;
    }
    if force_pow_2_scales {
        scale = f32::from_bits(scale.to_bits() & 0xFF80_0000);
    }
    scale
}

/// TE's `reciprocal<float>(scale_inv, scale)`: `__frcp_rn(scale)`, the correctly rounded `1 /
/// scale`.
pub fn te_scale_inv(scale: f32) -> f32 {
    1.0 / scale
}

/// torchao's `EPS`, the floor of the amax in `amax_to_scale`.
pub const TORCHAO_EPS: f64 = 1e-12;

/// `torchao.float8.float8_utils.amax_to_scale(amax, float8_dtype, round_scales_to_power_of_2)` for
/// an f32 amax and a format whose `torch.finfo(...).max` is `fp8_max` (448 for e4m3fn, 57344 for
/// e5m2):
///
/// ```text
/// amax = amax.to(float64)
/// res = fp8_max / clamp(amax, min=EPS)     # = clamp(...).reciprocal() * fp8_max, in f64
/// res = res.to(float32)                    # round to nearest even, inf on overflow
/// if round_scales_to_power_of_2: res = exp2(floor(log2(res)))   # float32 ops
/// ```
///
/// A NaN amax gives NaN (clamp keeps NaN), an infinite one 0 (its reciprocal is 0).
pub fn torchao_tensorwise_scale(amax: f32, fp8_max: f64, round_scales_to_power_of_2: bool) -> f32 {
    let amax = f64::from(amax);
    // torch.clamp(min=EPS): NaN propagates, anything below EPS (negatives included) becomes EPS.
    let clamped = if amax.is_nan() || amax >= TORCHAO_EPS {
        amax
    } else {
        TORCHAO_EPS
    };
    let res = ((1.0 / clamped) * fp8_max) as f32;
    if round_scales_to_power_of_2 {
        exp2_integer(floor_log2(res))
    } else {
        res
    }
}
