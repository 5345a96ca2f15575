//! `halfscale`: the CLI's library half. Re-exports the workspace crates so one dependency brings
//! them all, and holds the command implementations so they can be tested without a process.
pub use halfscale_core as core;
pub use halfscale_sim as sim;

pub mod cli;
