//! The `halfscale` subcommands, one module each.
pub mod data;
pub mod eval;
pub mod f16;
pub mod f16_batch;
pub mod scaler;
pub mod train;
