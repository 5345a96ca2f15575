use clap::{Parser, Subcommand};
use halfscale::cli;
use std::process::ExitCode;

/// Mixed-precision training numerics, verifiable bit for bit.
#[derive(Parser)]
#[command(name = "halfscale", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Binary16/bfloat16 arithmetic with explicit rounding and IEEE flags.
    F16(cli::f16::Args),
    /// FP8 (E4M3, E5M2), FP6, FP4 and E8M0: conversions, arithmetic, library profiles.
    Fp8(cli::fp8::Args),
    /// OCP MX block quantization, bit-exact with torchao 0.18's to_mx.
    Mx(cli::mx::Args),
    /// Loss-scaler tools.
    Scaler(cli::scaler::Args),
    /// Train the seed's SimpleCNN on MNIST (CPU by default).
    Train(Box<cli::train::Args>),
    /// Evaluate a SimpleCNN weights file (safetensors, PyTorch's layout) on the MNIST test set.
    Eval(cli::eval::Args),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::F16(args) => cli::f16::run(args),
        Command::Fp8(args) => cli::fp8::run(args),
        Command::Mx(args) => cli::mx::run(args),
        Command::Scaler(args) => cli::scaler::run(args),
        Command::Train(args) => cli::train::run(*args),
        Command::Eval(args) => cli::eval::run(args),
    }
}
