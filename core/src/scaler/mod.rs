//! Dynamic loss scaling with PyTorch `torch.amp.GradScaler` semantics, bit for bit, and the
//! policies of its peers (DeepSpeed, Megatron-LM), each off unless chosen.
//!
//! # Why
//! fp16 gradients underflow unless the loss is multiplied by a large scale before the backward
//! pass; too large a scale overflows them instead. Every framework adjusts the scale slightly
//! differently, with known traps: PyTorch's scale can back off to exactly 0 (166 halvings from
//! 2^16) after which every step is skipped silently; DeepSpeed grows one update later than
//! PyTorch; skipped steps are invisible to LR schedulers; NaN (usually a bug) is taken for an
//! overflow. This module reproduces PyTorch exactly ([`ScalerConfig::pytorch`]), can replay
//! DeepSpeed ([`ScalerConfig::deepspeed`]), and is safer by default
//! ([`ScalerConfig::recommended`]: a floor, NaN reported).
//!
//! # The rules, and where they come from
//! - Update: PyTorch's `_amp_update_scale_` kernel, see [`pytorch_update_scale`]. The product
//!   `float * double` is formed in f64 and rounded once more to f32; a growth whose f32 result
//!   is not finite is refused.
//! - Unscale: PyTorch's `_amp_foreach_non_finite_check_and_unscale_` with
//!   `inv = f32(1 / f64(scale))`, see [`unscale_and_check`]; NaN and inf are counted apart.
//! - Per-optimizer protocol: PyTorch's `OptState` machine and its errors, see [`GradScaler`].
//! - Hysteresis, floor, DeepSpeed growth timing and f64 scale: DeepSpeed's
//!   `DynamicLossScaler.update_scale`, see [`ScalerConfig`].
//!
//! # One training iteration
//! ```
//! use halfscale_core::scaler::{GradScaler, OptimizerId, ScalerConfig, StepOutcome};
//!
//! let mut scaler: GradScaler<1> = GradScaler::new(ScalerConfig::pytorch())?;
//! let opt = OptimizerId(0);
//! let mut lr_steps = 0;
//! for loss in [0.5f32, 0.25] {
//!     // Forward, then backward on the scaled loss: gradients come out multiplied by the scale.
//!     let scaled_loss = scaler.scale_loss(loss);
//!     let mut grads = [scaled_loss * 2.0, scaled_loss * -4.0];
//!     // Unscale and check them in one pass.
//!     let report = scaler.unscale_(opt, &mut grads)?;
//!     assert_eq!(report.nan + report.inf, 0);
//!     assert_eq!(grads, [loss * 2.0, loss * -4.0]);
//!     // Step, or skip, and let the outcome gate the LR scheduler.
//!     match scaler.step(opt)? {
//!         StepOutcome::Stepped => lr_steps += 1, // optimizer.step(); scheduler.step();
//!         StepOutcome::SkippedInf | StepOutcome::SkippedNan => {}
//!     }
//!     scaler.update()?;
//! }
//! assert_eq!(lr_steps, 2);
//! assert_eq!(scaler.scaler().growth_tracker(), 2);
//! # Ok::<(), halfscale_core::scaler::ScalerError>(())
//! ```
//!
//! Without per-optimizer bookkeeping (a check done elsewhere, a replayed log), a [`LossScaler`]
//! takes one [`Found`] per iteration.
//!
//! # Replaying DeepSpeed
//! [`ScalerConfig::deepspeed`] follows `DynamicLossScaler.update_scale` line by line (the tests
//! hold it against a transcription of it): `cur_scale` is a Python float, so the scale is an f64
//! ([`ScalePrecision::F64`]) and [`LossScaler::scale`] is the value DeepSpeed holds, bit for bit;
//! `cur_scale / 2.0` equals `cur_scale * 0.5` exactly. Two deliberate differences, neither
//! reachable in practice: DeepSpeed would grow an f64 scale to inf after ~1000 doublings (this
//! crate keeps the scale, as PyTorch does), and a Python `int` `min_scale` makes DeepSpeed's
//! scale an `int` after a clamp (numerically the same). DeepSpeed's older rule,
//! `(cur_iter - last_overflow_iter) % scale_window == 0`, is [`GrowthTiming::PyTorch`] with an
//! f64 scale.

mod config;
mod error;
mod grad_scaler;
mod loss_scaler;
mod optimizer;
mod state;
mod unscale;
mod update;

pub use config::{ConfigError, FloorPolicy, GrowthTiming, NanPolicy, ScalePrecision, ScalerConfig};
pub use error::{ScalerError, StateError};
pub use grad_scaler::GradScaler;
pub use loss_scaler::LossScaler;
pub use optimizer::{OptStage, OptimizerId, OptimizerStates, StepOutcome};
pub use state::ScalerState;
pub use unscale::{
    check_non_finite, inv_scale, scale_loss, unscale_and_check, unscale_and_check_bf16,
    unscale_and_check_f16, Found, NonFiniteReport,
};
pub use update::{pytorch_update_scale, ScaleChange};
