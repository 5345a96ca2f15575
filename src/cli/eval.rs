//! `halfscale eval`: the seed's test evaluation of a weights file (safetensors in PyTorch's
//! layout, see `halfscale_sim::weights`), in f32 or in emulated autocast, printing the seed's
//! `Test set: Average loss: ..., Accuracy: N/10000 (P%)` line. Batch 1000, the loss summed per
//! image then divided by the test-set size, as the seed's `test()` does.

use super::train::PrecisionArg;
use halfscale_sim::backend::Backend;
use halfscale_sim::cpu::CpuBackend;
use halfscale_sim::dataset::Dataset;
use halfscale_sim::{train, weights, SimError, StateDict};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The weights: a safetensors file with SimpleCNN's state_dict (F32, F16 or BF16), as
    /// `safetensors.torch.save_file(model.state_dict(), FILE)` writes it.
    #[arg(long)]
    pub weights: PathBuf,
    /// Directory holding the four IDX files (default: ./data/MNIST/raw, $HALFSCALE_DATA, then the
    /// repository's copy).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Arithmetic of the forward pass: fp32 (as PyTorch's eval), mixed (fp16 autocast) or bf16.
    #[arg(long, value_enum, default_value_t = PrecisionArg::Fp32)]
    pub precision: PrecisionArg,
    /// Images per evaluation batch (the seed's test loader uses 1000).
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
}

fn execute(args: &Args) -> Result<String, String> {
    if args.batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    let params = weights::load(&args.weights).map_err(|e| e.to_string())?;
    let dir = super::data::locate(args.data.as_deref())?;
    let data = Dataset::load(&dir).map_err(|e| e.to_string())?;
    let mut backend = CpuBackend::new(
        args.precision
            .recipe(&super::train::Fp8Args::default())
            .map_err(|e| e.to_string())?,
        args.batch_size,
    );
    StateDict::from_params(&params)
        .and_then(|weights| backend.import_state(&weights))
        .map_err(|e: SimError| e.to_string())?;
    let test =
        train::evaluate(&mut backend, &data.test, args.batch_size).map_err(|e| e.to_string())?;
    Ok(test.line())
}

pub fn run(args: Args) -> ExitCode {
    match execute(&args) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
