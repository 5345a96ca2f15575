//! The seed's MNIST training in candle, one epoch, with f16 compute, f32 master weights and
//! halfscale's `GradScaler` (PyTorch's `torch.autocast(float16)` + `GradScaler` recipe), or in
//! plain f32 candle (`--f32`) to compare.
//!
//! ```text
//! cargo run --release -p halfscale-candle --example mnist [-- --f32 | --bf16]
//!     [--native-kernels] [--data DIR] [--seed N] [--batches N]
//! ```
//!
//! f16 convolutions and linear layers accumulate in f32 and round their result to f16, as
//! autocast's cuDNN/cuBLAS calls do; `--native-kernels` uses candle's own f16 CPU kernels instead
//! (much slower in the convolution backward: see the crate README).
//!
//! Same data, initial weights (PyTorch's default init drawn by halfscale-sim from `--seed`) and
//! batch order as `halfscale train --seed N`; Adam lr 1e-3 (candle's `AdamW` with no weight
//! decay is `torch.optim.Adam`), batch 64. Prints the seed's progress lines every 100 batches,
//! the `Test set:` line, then the epoch time, skipped steps and final scale.

mod simple_cnn;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use halfscale_candle::{GradScaler, MasterWeights};
use halfscale_core::scaler::ScalerConfig;
use halfscale_sim::dataset::{Batches, Dataset, Split, IMAGE_SIDE};
use halfscale_sim::model::{Layer, Params};
use halfscale_sim::train::{progress_line, TestResult, SHUFFLE_SEED_XOR};
use simple_cnn::{Kernels, SimpleCnn};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

const BATCH: usize = 64;
const TEST_BATCH: usize = 1000;
const LOG_INTERVAL: usize = 100;

struct Args {
    compute: DType,
    kernels: Kernels,
    data: PathBuf,
    seed: u64,
    /// Stop after this many batches (a quick look; the full epoch by default).
    batches: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        compute: DType::F16,
        kernels: Kernels::AccumulateF32,
        data: PathBuf::from("data/MNIST/raw"),
        seed: 1,
        batches: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--f32" => args.compute = DType::F32,
            "--bf16" => args.compute = DType::BF16,
            "--native-kernels" => args.kernels = Kernels::Native,
            "--data" => args.data = PathBuf::from(value("--data")?),
            "--seed" => {
                let v = value("--seed")?;
                args.seed = v.parse().map_err(|_| format!("--seed: `{v}` is not an integer"))?;
            }
            "--batches" => {
                let v = value("--batches")?;
                let n: usize = v.parse().map_err(|_| format!("--batches: `{v}` is not an integer"))?;
                args.batches = Some(n.max(1));
            }
            other => return Err(format!("unknown argument `{other}` (expected --f32, --bf16, --native-kernels, --data DIR, --seed N, --batches N)")),
        }
    }
    Ok(args)
}

/// Creates the model's f32 variables in `varmap` and loads halfscale-sim's seeded PyTorch
/// initialisation into them.
fn init_vars(varmap: &VarMap, seed: u64, dev: &Device) -> candle_core::Result<()> {
    SimpleCnn::new(
        VarBuilder::from_varmap(varmap, DType::F32, dev),
        Kernels::Native,
    )?;
    let params = Params::init(seed);
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::msg("poisoned VarMap"))?;
    for layer in Layer::ALL {
        let (w, b) = params.layer(layer);
        for (suffix, values) in [("weight", w), ("bias", b)] {
            let var = &vars[&format!("{}.{suffix}", layer.name())];
            var.set(&Tensor::from_slice(values, var.shape(), dev)?)?;
        }
    }
    Ok(())
}

/// One batch as tensors: images `[n, 1, 28, 28]` in `dtype`, labels as u32.
fn batch(
    split: &Split,
    indices: &[u32],
    dtype: DType,
    dev: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    split.gather(indices, &mut images, &mut labels);
    let n = labels.len();
    let x = Tensor::from_vec(images, (n, 1, IMAGE_SIDE, IMAGE_SIDE), dev)?.to_dtype(dtype)?;
    let y = Tensor::from_vec(
        labels.into_iter().map(u32::from).collect::<Vec<u32>>(),
        n,
        dev,
    )?;
    Ok((x, y))
}

/// Summed NLL and correct predictions over `split`, forward only, in the training precision.
fn evaluate(
    model: &SimpleCnn,
    split: &Split,
    dtype: DType,
    dev: &Device,
) -> candle_core::Result<TestResult> {
    let (mut loss_sum, mut correct) = (0.0f64, 0usize);
    let all: Vec<u32> = (0..split.len() as u32).collect();
    for chunk in all.chunks(TEST_BATCH) {
        let (x, y) = batch(split, chunk, dtype, dev)?;
        let log_probs = model.forward(&x)?;
        let nll = candle_nn::loss::nll(&log_probs, &y)?.to_scalar::<f32>()?;
        loss_sum += f64::from(nll) * chunk.len() as f64;
        let pred = log_probs.argmax(D::Minus1)?;
        correct += pred
            .eq(&y)?
            .to_dtype(DType::U32)?
            .sum_all()?
            .to_scalar::<u32>()? as usize;
    }
    Ok(TestResult {
        average_loss: loss_sum / split.len().max(1) as f64,
        correct,
        total: split.len(),
    })
}

fn run(args: &Args) -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let data = Dataset::load(&args.data).map_err(candle_core::Error::wrap)?;
    let varmap = VarMap::new();
    init_vars(&varmap, args.seed, &dev)?;
    let masters = MasterWeights::from_varmap(&varmap, args.compute)?;
    let adam = ParamsAdamW {
        lr: 1e-3,
        weight_decay: 0.0,
        ..ParamsAdamW::default()
    };
    let mixed = args.compute != DType::F32;
    // Plain f32: candle's AdamW alone. Mixed: AdamW on the f32 masters inside the scaler.
    let mut plain = (!mixed)
        .then(|| AdamW::new(masters.vars(), adam.clone()))
        .transpose()?;
    let mut scaler = mixed
        .then(|| {
            let opt = AdamW::new(masters.vars(), adam.clone())?;
            GradScaler::new(opt, masters.vars(), ScalerConfig::pytorch())
        })
        .transpose()?;

    let mut batches = Batches::new(data.train.len(), BATCH, args.seed ^ SHUFFLE_SEED_XOR);
    let per_epoch = batches.batches_per_epoch();
    let limit = args.batches.unwrap_or(per_epoch).min(per_epoch);
    let start = Instant::now();
    for (batch_idx, indices) in batches.next_epoch().take(limit).enumerate() {
        let (x, y) = batch(&data.train, indices, args.compute, &dev)?;
        // Mixed: the model is rebuilt each step over this step's f16 copies of the masters.
        let model = SimpleCnn::new(masters.var_builder()?, args.kernels)?;
        let loss = candle_nn::loss::nll(&model.forward(&x)?, &y)?;
        match (&mut scaler, &mut plain) {
            (Some(s), _) => {
                s.backward_step(&loss)?;
            }
            (None, Some(opt)) => opt.backward_step(&loss)?,
            (None, None) => unreachable!("one optimizer is built"),
        }
        if batch_idx % LOG_INTERVAL == 0 {
            let l = loss.to_scalar::<f32>()?;
            println!(
                "{}",
                progress_line(0, batch_idx, BATCH, data.train.len(), per_epoch, l)
            );
        }
    }
    let epoch_secs = start.elapsed().as_secs_f64();
    let model = SimpleCnn::new(masters.var_builder()?, args.kernels)?;
    let test = evaluate(&model, &data.test, args.compute, &dev)?;
    println!();
    println!("{}", test.line());
    println!();
    println!(
        "compute {:?} ({:?} kernels), {limit} steps in {epoch_secs:.1} s ({:.1} steps/s)",
        args.compute,
        args.kernels,
        limit as f64 / epoch_secs
    );
    if let Some(s) = &scaler {
        println!(
            "skipped steps: {}, final scale: {}",
            s.scaler().skipped_steps(),
            s.scale()
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mnist: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mnist: {e}");
            ExitCode::FAILURE
        }
    }
}
