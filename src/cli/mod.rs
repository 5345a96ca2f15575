//! The `halfscale` subcommands, one module each.
pub mod data;
pub mod eval;
pub mod f16;
pub mod f16_batch;
pub mod fp8;
pub mod fp8_batch;
pub mod mx;
pub mod scaler;
pub mod train;
