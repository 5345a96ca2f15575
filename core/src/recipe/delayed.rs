//! Transformer Engine's `DelayedScaling` recipe: a tensor is scaled by a factor computed from the
//! amaxes of *previous* steps, kept in a fixed-length history.
//!
//! The update is `amax_and_scale_update` of `transformer_engine/common/recipe/delayed_scaling.cu`
//! (`kernel` for one tensor, `kernel_bulk` for the fused multi-tensor update that TE's PyTorch
//! front end calls after the amax reduction), transcribed operation by operation in f32:
//!
//! 1. `scaled_max = fp8_max * std::pow(2.f, -margin)`, `fp8_max` 448 (E4M3) or 57344 (E5M2);
//! 2. the amax the scale is computed from: `most_recent` takes `history[0]`; `max` takes
//!    `fmaxf` over the whole history, starting from 0 (so a NaN entry is skipped and the result is
//!    never negative);
//! 3. the history rolls: `new[i] = old[i + 1]` for `i < len - 1`, `new[len - 1] = old[0]`, then
//!    `new[0] = 0` (the same as TE's Python `torch.roll(history, -1)` followed by
//!    `history[0].fill_(0)`);
//! 4. if the amax is finite and `> 0`, `scale = scaled_max / amax` (IEEE division, round to nearest
//!    even); otherwise the previous scale stays. An infinite scale (an amax so small that the
//!    quotient overflows) becomes `f32::MAX`;
//! 5. `scale_inv = 1 / scale`.
//!
//! Where the amax goes: the quantization kernels of a step write the step's amax into
//! `history[0]` (which the previous roll left at 0); the update at the end of that step then reads
//! it from there, moves it to `history[len - 1]` and zeroes `history[0]` for the next step. So the
//! window of `max` is the current amax plus the `len - 1` before it.

/// `amax_compute_algo` of TE's `DelayedScaling`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AmaxComputeAlgo {
    /// `"max"`: the largest amax in the history window (TE's default).
    Max,
    /// `"most_recent"`: the amax of the step just finished.
    MostRecent,
}

/// `fp8_format` of TE's `DelayedScaling` (`transformer_engine.common.recipe.Format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fp8Format {
    /// E4M3 in both passes.
    E4M3,
    /// E4M3 in the forward pass, E5M2 (more range, for gradients) in the backward pass (TE's
    /// default).
    Hybrid,
}

/// Which pass a tensor belongs to, for [`Fp8Format::Hybrid`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pass {
    /// Activations and weights.
    Forward,
    /// Gradients.
    Backward,
}

/// Which of TE's two update kernels to follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum HistoryRoll {
    /// `amax_and_scale_update_impl::kernel` (`nvte_delayed_scaling_recipe_amax_and_scale_update`):
    /// the history rolls every update.
    #[default]
    Always,
    /// `amax_and_scale_update_impl::kernel_bulk` (`amax_and_scale_update_after_reduction`, what
    /// TE's PyTorch front end runs): when `history[0]` is exactly 0 the history is left as it is
    /// and the amax is 0, so nothing changes (`if (last_amax != 0.0f) { roll }`).
    SkipWhenZero,
}

/// The recipe's parameters, as in `transformer_engine.common.recipe.DelayedScaling`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DelayedScaling {
    /// `margin`: the scale leaves `2^margin` of headroom below the format's maximum.
    pub margin: i32,
    pub amax_compute_algo: AmaxComputeAlgo,
    pub fp8_format: Fp8Format,
    pub roll: HistoryRoll,
}

impl Default for DelayedScaling {
    /// TE's defaults: margin 0, `max`, HYBRID, and the single-tensor kernel's roll.
    fn default() -> Self {
        DelayedScaling {
            margin: 0,
            amax_compute_algo: AmaxComputeAlgo::Max,
            fp8_format: Fp8Format::Hybrid,
            roll: HistoryRoll::Always,
        }
    }
}

impl DelayedScaling {
    /// `fp8_dtype_max`: the largest finite value of the pass's format (448 or 57344).
    pub const fn fp8_max(&self, pass: Pass) -> f32 {
        match (self.fp8_format, pass) {
            (Fp8Format::Hybrid, Pass::Backward) => 57344.0,
            _ => 448.0,
        }
    }

    /// `scaled_max = fp8_dtype_max(dtype) * std::pow(2.f, -margin)`, both factors f32.
    pub fn scaled_max(&self, pass: Pass) -> f32 {
        // std::pow(2.f, -margin) is exact for an integer margin: 2^-margin rounded to f32 (0 or
        // inf beyond f32's range, a subnormal below 2^-126).
        let factor = libm::exp2(-f64::from(self.margin)) as f32;
        self.fp8_max(pass) * factor
    }
}

/// The per-tensor state TE keeps in `fp8_meta`: the amax history (capacity `H`, TE's
/// `amax_history_len`), `scale` and `scale_inv`. Initialised as TE does: history zero, scale and
/// scale_inv one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DelayedScalingState<const H: usize> {
    history: [f32; H],
    scale: f32,
    scale_inv: f32,
}

impl<const H: usize> Default for DelayedScalingState<H> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const H: usize> DelayedScalingState<H> {
    const NONEMPTY: () = assert!(H > 0, "amax_history_len must be at least 1");

    /// Fresh state: `amax_history = zeros(H)`, `scale = scale_inv = 1`.
    pub const fn new() -> Self {
        let () = Self::NONEMPTY;
        DelayedScalingState {
            history: [0.0; H],
            scale: 1.0,
            scale_inv: 1.0,
        }
    }

    /// The amax history, `history[0]` being the slot the current step writes.
    pub const fn history(&self) -> &[f32; H] {
        &self.history
    }

    /// The scale the next quantization multiplies by.
    pub const fn scale(&self) -> f32 {
        self.scale
    }

    /// `1 / scale`, what a GEMM multiplies the FP8 product by.
    pub const fn scale_inv(&self) -> f32 {
        self.scale_inv
    }

    /// Records this step's amax: the value the quantization (after any amax reduction) writes into
    /// `history[0]`.
    pub fn record_amax(&mut self, amax: f32) {
        self.history[0] = amax;
    }

    /// Replaces the scale (as a checkpoint load would); `scale_inv` follows as `1 / scale`.
    pub fn set_scale(&mut self, scale: f32) {
        self.scale = scale;
        self.scale_inv = 1.0 / scale;
    }

    /// TE's `amax_and_scale_update` for this tensor: picks the amax, rolls the history, updates
    /// `scale` and `scale_inv` (see the module documentation). Returns the amax it used.
    pub fn update(&mut self, recipe: &DelayedScaling, pass: Pass) -> f32 {
        let (amax, scale) = amax_and_scale_update(recipe, pass, &mut self.history, self.scale);
        self.scale = scale;
        self.scale_inv = 1.0 / scale;
        amax
    }
}

/// TE's `amax_and_scale_update` for one tensor whose amax history (TE's `amax_history`, any
/// length: `amax_history_len` is a run-time setting in TE) is `history` and whose scale is
/// `scale`: picks the amax, rolls the history in place and returns `(amax used, new scale)`;
/// `scale_inv` is `1 / scale` (TE's `__frcp_rn`). The one implementation of the update:
/// [`DelayedScalingState::update`] is this function on its fixed-capacity history. An empty
/// history has no amax: nothing changes and the amax returned is 0.
pub fn amax_and_scale_update(
    recipe: &DelayedScaling,
    pass: Pass,
    history: &mut [f32],
    scale: f32,
) -> (f32, f32) {
    let Some(&last_amax) = history.first() else {
        return (0.0, scale);
    };
    let rolls = !(recipe.roll == HistoryRoll::SkipWhenZero && last_amax == 0.0);
    // fmaxf over every entry, starting from 0, as the kernel's roll loop accumulates it.
    let mut window_max = 0.0f32;
    if rolls {
        for &a in history.iter() {
            window_max = fmaxf(window_max, a);
        }
        history.rotate_left(1);
        history[0] = 0.0;
    }
    let amax = match recipe.amax_compute_algo {
        AmaxComputeAlgo::MostRecent => last_amax,
        AmaxComputeAlgo::Max => window_max,
    };
    let mut new_scale = if amax.is_finite() && amax > 0.0 {
        recipe.scaled_max(pass) / amax
    } else {
        scale
    };
    if new_scale.is_infinite() {
        new_scale = f32::MAX;
    }
    (amax, new_scale)
}

/// C's `fmaxf`: the larger operand, a NaN operand ignored (IEEE 754-2008 maxNum).
fn fmaxf(a: f32, b: f32) -> f32 {
    if a.is_nan() {
        b
    } else if b.is_nan() || a >= b {
        a
    } else {
        b
    }
}
