//! `halfscale`: the CLI's library half. Re-exports the workspace crates so one dependency brings
//! them all, and holds the command implementations so they can be tested without a process.
pub use halfscale_core as core;
pub use halfscale_sim as sim;

pub mod cli;

/// The README's Rust examples run as doctests, so the front door cannot drift from the code.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
