//! # halfscale-core
//!
//! Bit-exact IEEE 754 binary16 (and bfloat16) arithmetic with all five rounding modes and the five
//! exception flags, classifiers that say what storing an f32 in 16 bits does to it, and a loss
//! scaler with PyTorch `GradScaler` semantics. `#![no_std]`, no allocation, no `unsafe`.
//!
//! Values are `half::f16` / `half::bf16` (re-exported as [`half`]). Every operation that can round
//! or raise takes a caller-owned [`FpEnv`] and is generic over the [`Format`]:
//!
//! ```
//! use halfscale_core::{half::f16, mul, FpEnv, Flags, RoundingMode};
//! let mut env = FpEnv::new(RoundingMode::NearestEven);
//! let product = mul(f16::from_f32(32000.0), f16::from_f32(3.0), &mut env);
//! assert!(product.is_infinite());
//! assert_eq!(env.flags, Flags::OVERFLOW | Flags::INEXACT);
//! ```
//!
//! [`fast`] has flag-free nearest-even hot paths; [`fate`] classifies what storage does to a value.
//!
//! Features: `std` (F16C slice conversions at run time, std error impls), `serde` (the scaler's
//! configuration and state), `proptest` and `arbitrary` (the verification kit for runtime
//! authors, `kit`: strategies, a ready scaler property, fuzzer inputs).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[cfg(feature = "proptest")]
extern crate alloc;
// `arbitrary`'s derive keeps a thread-local recursion count, so it needs std.
#[cfg(all(feature = "arbitrary", not(test)))]
extern crate std;

pub use half;

pub mod arith;
pub mod classify;
pub mod compare;
pub mod convert;
pub mod env;
pub mod fast;
pub mod fate;
pub mod format;
#[cfg(any(feature = "proptest", feature = "arbitrary"))]
pub mod kit;
mod rounding;
pub mod scaler;

pub use arith::{add, div, fma, mul, round_to_int, sqrt, sub};
pub use classify::{class, Class};
pub use compare::{
    eq, eq_signaling, le, le_quiet, lt, lt_quiet, maximum, maximum_number, minimum, minimum_number,
    next_down, next_up, total_order, unordered,
};
pub use convert::{
    convert, from_f32, from_f64, from_i32, from_i64, from_u32, from_u64, to_f32, to_f64, to_i32,
    to_i64, to_u32, to_u64,
};
pub use env::{Flags, FpEnv, NanStyle, RoundingMode, Tininess};
pub use fate::{census, fate, fate_f32, safe_scale_window, Census, Fate, ScaleWindow};
pub use format::Format;
pub use scaler::{GradScaler, LossScaler, NonFiniteReport, ScalerConfig, ScalerError, StepOutcome};
