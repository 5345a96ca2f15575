//! `torch.optim.Adam` with its defaults (lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay,
//! no amsgrad), reproducing the order of operations of `_single_tensor_adam` in
//! `torch/optim/adam.py` and the CPU kernels it calls, on f32 parameters:
//!
//! ```text
//! step += 1
//! exp_avg.lerp_(grad, 1 - beta1)              m = fma(w, g - m, m), w = f32(1 - beta1)
//! exp_avg_sq.mul_(beta2)                      v = v * f32(beta2)
//!           .addcmul_(grad, grad, 1 - beta2)  v = v + (f32(1 - beta2) * g) * g
//! bias_correction1 = 1 - beta1 ** step        (Python floats: f64)
//! bias_correction2 = 1 - beta2 ** step
//! step_size = lr / bias_correction1
//! bias_correction2_sqrt = sqrt(bias_correction2)
//! denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
//!                                             d = sqrt(v) / f32(bc2_sqrt) + f32(eps)
//! param.addcdiv_(exp_avg, denom, -step_size)  p = p + (f32(-step_size) * m) / d
//! ```
//!
//! Scalars are computed in f64 as Python does and converted to f32 where a kernel takes them
//! (`Scalar::to<float>`). `lerp` is `self + weight * (end - self)` for `|weight| < 0.5`, which
//! ATen's vectorised kernel (`lerp_vec`) evaluates as one fused multiply-add; `addcmul` and
//! `addcdiv` are `self + value * t1 * t2` and `self + value * t1 / t2`, left to right, unfused.
//! (PyTorch before 2.1 used `mul_(beta1).add_(grad, alpha=1 - beta1)` for the first moment; the
//! lerp form is the current one.)

use rayon::prelude::*;

/// Adam's hyper-parameters, f64 as in Python.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for AdamConfig {
    /// `torch.optim.Adam` defaults.
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// The optimizer state: the step count and both moments, one f32 per parameter.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamState {
    pub step: u64,
    #[serde(with = "crate::state::f32_bits")]
    pub exp_avg: Vec<f32>,
    #[serde(with = "crate::state::f32_bits")]
    pub exp_avg_sq: Vec<f32>,
}

impl AdamState {
    /// Fresh state (step 0, zero moments) for `len` parameters.
    pub fn new(len: usize) -> Self {
        Self {
            step: 0,
            exp_avg: vec![0.0; len],
            exp_avg_sq: vec![0.0; len],
        }
    }
}

/// The per-step scalars, computed in f64 and converted to f32 as the kernels receive them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepScalars {
    /// `f32(1 - beta1)`, the lerp weight.
    pub lerp_weight: f32,
    /// `f32(beta2)`.
    pub beta2: f32,
    /// `f32(1 - beta2)`, the addcmul value.
    pub one_minus_beta2: f32,
    /// `f32(sqrt(1 - beta2^step))`.
    pub bias_correction2_sqrt: f32,
    /// `f32(eps)`.
    pub eps: f32,
    /// `f32(-(lr / (1 - beta1^step)))`, the addcdiv value.
    pub neg_step_size: f32,
}

impl AdamConfig {
    /// The scalars of step number `step` (1-based, after the increment).
    pub fn scalars(&self, step: u64) -> StepScalars {
        let t = step as f64;
        let bias_correction1 = 1.0 - self.beta1.powf(t);
        let bias_correction2 = 1.0 - self.beta2.powf(t);
        let step_size = self.lr / bias_correction1;
        StepScalars {
            lerp_weight: (1.0 - self.beta1) as f32,
            beta2: self.beta2 as f32,
            one_minus_beta2: (1.0 - self.beta2) as f32,
            bias_correction2_sqrt: bias_correction2.sqrt() as f32,
            eps: self.eps as f32,
            neg_step_size: (-step_size) as f32,
        }
    }
}

/// One element of the update, exactly as above.
#[inline(always)]
fn update(s: &StepScalars, p: &mut f32, g: f32, m: &mut f32, v: &mut f32) {
    *m = s.lerp_weight.mul_add(g - *m, *m);
    *v *= s.beta2;
    *v += s.one_minus_beta2 * g * g;
    let denom = v.sqrt() / s.bias_correction2_sqrt + s.eps;
    *p += s.neg_step_size * *m / denom;
}

/// One Adam step over all parameters with their gradients (equal lengths).
pub fn step(config: &AdamConfig, state: &mut AdamState, params: &mut [f32], grads: &[f32]) {
    assert_eq!(
        params.len(),
        grads.len(),
        "adam: params and grads differ in length"
    );
    assert_eq!(
        params.len(),
        state.exp_avg.len(),
        "adam: state has another length"
    );
    state.step += 1;
    let s = config.scalars(state.step);
    // Elementwise, so splitting across threads changes nothing in the result.
    const PART: usize = 1 << 14;
    params
        .par_chunks_mut(PART)
        .zip(grads.par_chunks(PART))
        .zip(state.exp_avg.par_chunks_mut(PART))
        .zip(state.exp_avg_sq.par_chunks_mut(PART))
        .for_each(|(((p, g), m), v)| run(&s, p, g, m, v));
}

#[cfg(target_arch = "x86_64")]
fn run(s: &StepScalars, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports FMA (checked just above), the only feature enabled.
        unsafe { run_fma(s, p, g, m, v) }
    } else {
        run_portable(s, p, g, m, v)
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn run(s: &StepScalars, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    run_portable(s, p, g, m, v)
}

/// The same loop compiled with FMA enabled, so `mul_add` is one instruction instead of a call
/// to the correctly rounded software `fmaf` (the result is identical either way).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn run_fma(s: &StepScalars, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    run_portable(s, p, g, m, v)
}

#[inline(always)]
fn run_portable(s: &StepScalars, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        update(s, p, g, m, v);
    }
}
