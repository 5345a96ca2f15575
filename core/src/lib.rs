//! # halfscale-core
//!
//! Bit-exact IEEE 754 binary16 (and bfloat16) arithmetic with all five rounding modes and the five
//! exception flags, classifiers that say what storing an f32 in 16 bits does to it, and a loss
//! scaler with PyTorch `GradScaler` semantics. `#![no_std]`, no allocation, no `unsafe`.
//!
//! Values are `half::f16` / `half::bf16` (re-exported as [`half`]). Every operation that can round
//! or raise takes a caller-owned [`FpEnv`]; [`fast`] has flag-free nearest-even hot paths.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub use half;

pub mod env;
pub mod fast;
pub mod format;
pub mod scaler;

pub use env::{Flags, FpEnv, NanStyle, RoundingMode, Tininess};
pub use format::Format;
