//! `halfscale train`: the seed's MNIST training on the CPU (f32, or mixed precision emulated
//! exactly) or the GPU (`--device cuda|auto`, mixed fp16), cross-checked against an f32
//! reference on the CPU (see `halfscale-sim`).
//!
//! stdout carries the seed's lines byte for byte, then a short summary; stderr a progress bar
//! (only when it is a terminal), cross-check warnings and errors, one line each.

use halfscale_core::recipe::mx::ScaleMode;
use halfscale_core::recipe::AmaxComputeAlgo;
use halfscale_core::scaler::{LossScaler, ScalerConfig};
use halfscale_sim::backend::Backend;
use halfscale_sim::checkpoint::{self, DatasetId, RunConfig};
use halfscale_sim::cpu::CpuBackend;
use halfscale_sim::crosscheck::census_format;
use halfscale_sim::crosscheck::CrossCheck;
use halfscale_sim::dataset::Dataset;
use halfscale_sim::metrics::MetricsWriter;
use halfscale_sim::model::Layer;
use halfscale_sim::plot::{self, Curves};
use halfscale_sim::quantize::QuantStats;
use halfscale_sim::recipe::{Fp8Scaling, Role, Site};
use halfscale_sim::state::TrainState;
use halfscale_sim::train::{self, Observer, StepRecord, Summary, TrainConfig, Trainer};
use halfscale_sim::weights;
use halfscale_sim::{Recipe, Result, SimError};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the training step runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    /// The CPU (fp32 or the exact emulation of autocast).
    Cpu,
    /// An NVIDIA GPU through the CUDA backend (mixed fp16 only; needs `--features cuda`).
    Cuda,
    /// The GPU when this binary has CUDA and a device answers, else the CPU; says which.
    Auto,
}

/// Arithmetic of the training run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionArg {
    /// Plain f32: the reference.
    Fp32,
    /// Autocast with fp16 (binary16), as `torch.autocast("cuda")`.
    Mixed,
    /// Autocast with bfloat16.
    Bf16,
    /// FP8 GEMMs, Transformer Engine's HYBRID recipe (E4M3 forward, E5M2 gradients), per-tensor
    /// scaling (--fp8-scaling); the rest as bf16.
    Fp8,
    /// MXFP8 GEMMs (E4M3, one E8M0 scale per 32 elements along each reduction); the rest as
    /// bf16.
    Mxfp8,
}

/// How the fp8 recipe scales each tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Fp8ScalingArg {
    /// TE's DelayedScaling: the scale from the amax history of previous steps.
    Delayed,
    /// Per-tensor just-in-time scaling from the tensor's own amax (TE's Float8CurrentScaling).
    Current,
    /// A plain saturating cast, no scale (shows what scaling prevents).
    None,
}

/// TE's `amax_compute_algo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AmaxAlgoArg {
    /// The largest amax of the history window.
    Max,
    /// The amax of the last step.
    #[value(name = "most_recent")]
    MostRecent,
}

/// torchao's MX scale calculation mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MxScaleModeArg {
    Floor,
    Rceil,
    Ceil,
    Even,
}

/// The FP8 recipes' settings (ignored by the other precisions).
#[derive(clap::Args, Debug, Clone)]
pub struct Fp8Args {
    /// fp8: how each tensor's scale is chosen.
    #[arg(long, value_enum, default_value_t = Fp8ScalingArg::Delayed)]
    pub fp8_scaling: Fp8ScalingArg,
    /// fp8 delayed scaling: amax history length (TE's amax_history_len).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub fp8_history: u64,
    /// fp8 delayed scaling: margin (the scale leaves 2^margin of headroom).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-64..=64))]
    pub fp8_margin: i32,
    /// fp8 delayed scaling: amax_compute_algo.
    #[arg(long, value_enum, default_value_t = AmaxAlgoArg::Max)]
    pub fp8_amax: AmaxAlgoArg,
    /// mxfp8: how a block's amax becomes its E8M0 scale.
    #[arg(long, value_enum, default_value_t = MxScaleModeArg::Floor)]
    pub mx_scale_mode: MxScaleModeArg,
}

impl Default for Fp8Args {
    fn default() -> Self {
        Self {
            fp8_scaling: Fp8ScalingArg::Delayed,
            fp8_history: 1024,
            fp8_margin: 0,
            fp8_amax: AmaxAlgoArg::Max,
            mx_scale_mode: MxScaleModeArg::Floor,
        }
    }
}

/// Loss-scaler policy (ignored with `--no-scaler` and in fp32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScalerArg {
    /// `torch.amp.GradScaler()` defaults.
    Pytorch,
    /// PyTorch's update with a floor of 1 and errors on NaN or an overflow at the floor.
    Recommended,
    /// DeepSpeed's dynamic loss scaler defaults (hysteresis 2, window 1000).
    Deepspeed,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory holding the four IDX files (torchvision names, gzip or not); default:
    /// ./data/MNIST/raw, else $HALFSCALE_DATA, else the repository's copy.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Arithmetic: fp32, mixed (fp16 autocast), bf16 (bfloat16 autocast), fp8 (TE HYBRID) or
    /// mxfp8 [default: mixed, or the checkpoint's with --resume].
    #[arg(long, value_enum)]
    pub precision: Option<PrecisionArg>,
    #[command(flatten)]
    pub fp8: Fp8Args,
    /// Where to run: cpu (default), cuda, or auto.
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// Mixed precision without loss scaling (shows the underflow the scaler prevents).
    #[arg(long)]
    pub no_scaler: bool,
    /// Loss-scaler policy [default: pytorch, or the checkpoint's with --resume].
    #[arg(long, value_enum)]
    pub scaler: Option<ScalerArg>,
    /// Epochs to train, in all [default: 1, or the checkpoint's run's with --resume].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Seed of the initial weights and of the epoch order.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Cross-check steps against the f32 reference (default: on for mixed/bf16, off for fp32).
    #[arg(long, overrides_with = "no_check")]
    pub check: bool,
    /// Do not cross-check.
    #[arg(long)]
    pub no_check: bool,
    /// Cross-check every N-th step only.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub check_every: u64,
    /// Exit non-zero if a checked step diverges beyond the bound or a skip decision is wrong.
    #[arg(long)]
    pub strict: bool,
    /// Write one JSON object per step to this file.
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    /// Draw loss, scale and underflow curves into this .svg or .png file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Print the progress line every N batches.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub log_interval: u64,
    /// Stop each epoch after N batches (quick runs).
    #[arg(long)]
    pub max_batches: Option<usize>,
    /// Skip the test-set evaluation at the end.
    #[arg(long)]
    pub no_test: bool,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Start from these weights (safetensors, PyTorch's SimpleCNN state_dict) instead of the
    /// seeded initialisation.
    #[arg(long, value_name = "FILE", conflicts_with = "resume")]
    pub init_from: Option<PathBuf>,
    /// Write the final weights here (safetensors, F32, PyTorch's state_dict names and shapes).
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// Keep a whole-run checkpoint here, rewritten at the end of every epoch (and every
    /// --checkpoint-every steps); replaced atomically, so a killed run can always resume.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<PathBuf>,
    /// Also write the checkpoint every N steps.
    #[arg(long, value_name = "N", requires = "checkpoint", value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_every: Option<u64>,
    /// Stop after this many steps in all (counted from the run's start, also when resumed); with
    /// --checkpoint the state is saved there, for a later --resume.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub stop_after: Option<u64>,
    /// Continue the run saved in this checkpoint (its weights, optimizer, scaler and data order);
    /// unless --checkpoint says otherwise, keeps checkpointing to the same file.
    #[arg(long, value_name = "PATH")]
    pub resume: Option<PathBuf>,
}

/// Prints the seed's lines, drives the progress bar, writes metrics and collects the curves.
struct CliObserver {
    bar: ProgressBar,
    metrics: Option<MetricsWriter>,
    curves: Curves,
    warnings: u64,
}

const MAX_WARNINGS: u64 = 10;

impl Observer for CliObserver {
    fn line(&mut self, line: &str) {
        self.bar.suspend(|| println!("{line}"));
    }

    fn progress(&mut self, epoch: usize, batch: usize, batches: usize) {
        if batch == 0 {
            self.bar.set_length(batches as u64);
            self.bar.set_position(0);
            self.bar.set_message(format!("epoch {epoch}"));
        }
        self.bar.inc(1);
    }

    fn step(&mut self, r: &StepRecord) -> Result<()> {
        if let Some(m) = self.metrics.as_mut() {
            m.write(r)?;
        }
        let x = r.step as f64;
        self.curves.loss.push((x, f64::from(r.outcome.loss)));
        self.curves.scale.push((x, f64::from(r.outcome.scale)));
        if !r.tensors.is_empty() {
            let mut total = QuantStats::default();
            for t in &r.tensors {
                self.curves
                    .push_tensor_scale(&t.tensor, x, f64::from(t.scale));
                total.merge(&t.stats);
            }
            let n = total.total.max(1) as f64;
            self.curves.saturated.push((x, total.saturated as f64 / n));
            self.curves
                .flushed
                .push((x, total.flushed_to_zero as f64 / n));
        }
        if let Some(c) = &r.check {
            let total = c.censused();
            if total > 0 {
                self.curves
                    .underflow
                    .push((x, c.underflowed() as f64 / total as f64));
            }
            if let Some(what) = c.finding() {
                self.warnings += 1;
                if self.warnings <= MAX_WARNINGS {
                    self.bar
                        .suspend(|| eprintln!("warning: step {}: cross-check: {what}", r.step));
                } else if self.warnings == MAX_WARNINGS + 1 {
                    self.bar.suspend(|| {
                        eprintln!("warning: more cross-check findings; see the summary (and --metrics for every step)")
                    });
                }
            }
        }
        Ok(())
    }
}

impl PrecisionArg {
    /// The recipe of the flag (with the FP8 settings): the one place the CLI names formats.
    pub fn recipe(self, fp8: &Fp8Args) -> Result<Recipe> {
        Ok(match self {
            PrecisionArg::Fp32 => Recipe::fp32(),
            PrecisionArg::Mixed => Recipe::mixed_fp16(),
            PrecisionArg::Bf16 => Recipe::mixed_bf16(),
            PrecisionArg::Fp8 => Recipe::fp8(match fp8.fp8_scaling {
                Fp8ScalingArg::Delayed => Fp8Scaling::Delayed {
                    history: usize::try_from(fp8.fp8_history).map_err(|_| {
                        SimError::Config(format!("--fp8-history {}: too long", fp8.fp8_history))
                    })?,
                    margin: fp8.fp8_margin,
                    algo: match fp8.fp8_amax {
                        AmaxAlgoArg::Max => AmaxComputeAlgo::Max,
                        AmaxAlgoArg::MostRecent => AmaxComputeAlgo::MostRecent,
                    },
                },
                Fp8ScalingArg::Current => Fp8Scaling::Current,
                Fp8ScalingArg::None => Fp8Scaling::None,
            })?,
            PrecisionArg::Mxfp8 => Recipe::mxfp8(match fp8.mx_scale_mode {
                MxScaleModeArg::Floor => ScaleMode::Floor,
                MxScaleModeArg::Rceil => ScaleMode::Rceil,
                MxScaleModeArg::Ceil => ScaleMode::Ceil,
                MxScaleModeArg::Even => ScaleMode::Even,
            }),
        })
    }
}

/// The scaler's policy name (`none` when scaling is off) and configuration.
fn scaler_config(args: &Args, scaler: ScalerArg, recipe: &Recipe) -> (String, ScalerConfig) {
    if args.no_scaler || !recipe.is_mixed() {
        return ("none".into(), ScalerConfig::disabled());
    }
    let config = match scaler {
        ScalerArg::Pytorch => ScalerConfig::pytorch(),
        ScalerArg::Recommended => ScalerConfig::recommended(),
        ScalerArg::Deepspeed => ScalerConfig::deepspeed(),
    };
    (value_name(scaler), config)
}

/// A value's name on the command line.
fn value_name(v: impl clap::ValueEnum) -> String {
    v.to_possible_value()
        .map_or_else(String::new, |p| p.get_name().to_string())
}

/// The FP8 recipes' casts over the run: per tensor the fraction saturated and flushed to zero,
/// and the tensor that lost the most elements to the format's range.
fn print_fp8_casts(s: &Summary) {
    if s.tensors.is_empty() {
        return;
    }
    let pct = |n: u64, total: u64| 100.0 * n as f64 / total.max(1) as f64;
    let casts: Vec<String> = s
        .tensors
        .iter()
        .map(|t| {
            format!(
                "{} ({}) {:.3}%/{:.3}%",
                t.tensor,
                t.format,
                pct(t.stats.saturated, t.stats.total),
                pct(t.stats.flushed_to_zero, t.stats.total)
            )
        })
        .collect();
    println!(
        "FP8 casts (saturated/flushed to zero, over the run): {}",
        casts.join(", ")
    );
    let worst = s
        .tensors
        .iter()
        .max_by(|a, b| {
            pct(a.stats.lost(), a.stats.total).total_cmp(&pct(b.stats.lost(), b.stats.total))
        })
        .filter(|t| t.stats.lost() > 0);
    match worst {
        Some(t) => println!(
            "FP8 tensor that lost the most: {} ({}): {} of {} elements ({:.3}%): {} saturated, {} flushed to zero",
            t.tensor,
            t.format,
            t.stats.lost(),
            t.stats.total,
            pct(t.stats.lost(), t.stats.total),
            t.stats.saturated,
            t.stats.flushed_to_zero
        ),
        None => println!("FP8 tensor that lost the most: none (no element saturated or flushed)"),
    }
}

fn print_summary(s: &Summary, recipe: &Recipe, scaling: bool) {
    println!(
        "Summary: {}: {} steps, {} images in {:.1} s ({:.0} images/s), wall {:.1} s",
        s.backend,
        s.steps,
        s.images,
        s.train_seconds,
        s.images_per_second(),
        s.wall_seconds
    );
    println!(
        "Loss scaling: {}; steps skipped: {}; final scale: {}",
        if scaling { "on" } else { "off" },
        s.skipped,
        s.final_scale
    );
    print_fp8_casts(s);
    if s.checked_steps == 0 {
        println!("Cross-check: off");
        return;
    }
    // The format the cross-check's census counted the gradients in.
    let format = census_format(recipe, Site::new(Layer::Conv1, Role::WeightGrad)).name();
    let layers: Vec<String> = s
        .underflow_by_layer
        .iter()
        .map(|(l, n)| format!("{} {n}", l.name()))
        .collect();
    println!(
        "Underflowed gradient elements ({format} at the step's scale, {} checked steps): {}; dL/dlogits {}",
        s.checked_steps,
        layers.join(", "),
        s.logit_grad_underflow
    );
    if let Some(w) = s.worst {
        println!(
            "Cross-check: worst gradient divergence {:.2e} ({}) at step {} (loss {:.2e}, logits {:.2e}); {} step(s) beyond the bound, {} wrong skip decision(s)",
            w.grad_rel,
            w.layer.name(),
            w.step,
            w.loss_rel,
            w.logits_rel,
            s.divergent_steps,
            s.wrong_skips
        );
    } else {
        println!(
            "Cross-check: no comparable step; {} wrong skip decision(s)",
            s.wrong_skips
        );
    }
    if let Some(b) = s.bounds {
        println!(
            "Cross-check bounds (relative L2): loss {:.0e}, logits {:.0e}, gradients {:.0e}",
            b.loss, b.logits, b.grads
        );
    }
}

fn execute(args: &Args) -> Result<bool> {
    if args.batch_size == 0 {
        return Err(SimError::Config("--batch-size must be at least 1".into()));
    }
    // A resume takes the checkpoint's settings where none are given, and refuses other ones.
    let resumed = args
        .resume
        .as_deref()
        .map(|p| checkpoint::load(p).map(|(state, run)| (p, state, run)))
        .transpose()?;
    let saved = resumed.as_ref().map(|(_, _, run)| run);
    let parse_name = |name: &str| <PrecisionArg as clap::ValueEnum>::from_str(name, false).ok();
    let precision = args
        .precision
        .or_else(|| saved.and_then(|r| parse_name(&r.precision)))
        .unwrap_or(PrecisionArg::Mixed);
    let scaler_arg = args
        .scaler
        .or_else(|| {
            saved.and_then(|r| {
                <ScalerArg as clap::ValueEnum>::from_str(&r.scaler_policy, false).ok()
            })
        })
        .unwrap_or(ScalerArg::Pytorch);
    let epochs = args.epochs.or(saved.map(|r| r.epochs)).unwrap_or(1);
    let recipe = precision.recipe(&args.fp8)?;
    if let Some(t) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()
            .map_err(|e| SimError::Config(format!("--threads {t}: {e}")))?;
    }
    let dir = super::data::locate(args.data.as_deref()).map_err(SimError::Config)?;
    let data = Dataset::load(&dir)?;
    let (scaler_policy, scaler_config) = scaler_config(args, scaler_arg, &recipe);
    let run = RunConfig {
        precision: value_name(precision),
        recipe: recipe.name(),
        scaler_policy,
        scaler: scaler_config,
        batch_size: args.batch_size,
        epochs,
        max_batches: args.max_batches,
        seed: args.seed,
        dataset: DatasetId::of(&data),
    };
    if let Some((path, _, saved)) = &resumed {
        saved.check(&run, path)?;
    }
    let init_weights = args.init_from.as_deref().map(weights::load).transpose()?;
    let mut scaler = LossScaler::new(scaler_config).map_err(SimError::ScalerConfig)?;
    let checking = if args.no_check {
        false
    } else {
        args.check || recipe.is_mixed()
    };
    let mut backend = choose_backend(args.device, &recipe, args.batch_size)?;
    let mut check = checking.then(|| {
        CrossCheck::new(
            Box::new(CpuBackend::new(Recipe::fp32(), args.batch_size)),
            &recipe,
        )
    });
    let metrics = args
        .metrics
        .as_deref()
        .map(MetricsWriter::create)
        .transpose()?;
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} batches, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut observer = CliObserver {
        bar,
        metrics,
        curves: Curves::default(),
        warnings: 0,
    };
    let config = TrainConfig {
        epochs,
        batch_size: args.batch_size,
        seed: args.seed,
        log_interval: args.log_interval as usize,
        check_every: args.check_every as usize,
        max_batches: args.max_batches,
        evaluate: !args.no_test,
        ..TrainConfig::default()
    };
    let state = match resumed {
        Some((_, state, _)) => state,
        None => {
            let mut state = TrainState::init(&config, &scaler, backend.recipe().state());
            if let Some(params) = init_weights {
                state.params = params;
            }
            state
        }
    };
    let checkpoint_path = args.checkpoint.as_deref().or(args.resume.as_deref());
    let every = args.checkpoint_every.unwrap_or(u64::MAX);
    let stop_after = args.stop_after.unwrap_or(u64::MAX);
    let mut write_checkpoint =
        |trainer: &mut Trainer<'_>, state: &mut TrainState| -> Result<bool> {
            let go_on = state.step < stop_after;
            let due = state.step.is_multiple_of(every) || state.cursor.batch == 0 || !go_on;
            if let (Some(path), true) = (checkpoint_path, due) {
                trainer.sync(state)?;
                checkpoint::save(path, state, &run)?;
            }
            Ok(go_on)
        };
    let (summary, _) = train::train_from(
        state,
        backend.as_mut(),
        &mut scaler,
        check.as_mut(),
        &data,
        &config,
        &mut observer,
        &mut write_checkpoint,
    )?;
    observer.bar.finish_and_clear();
    if let Some(m) = observer.metrics.take() {
        m.finish()?;
    }
    if let Some(path) = &args.save {
        weights::save(&summary.params, path)?;
    }
    if let Some(path) = &args.plot {
        plot::write(path, &observer.curves)?;
    }
    print_summary(&summary, &recipe, scaler.is_enabled());
    let clean = summary.divergent_steps == 0 && summary.wrong_skips == 0;
    Ok(clean || !args.strict)
}

/// The backend for `--device`: the CPU, the CUDA backend, or (auto) the CUDA backend when this
/// binary has it and a device answers. Auto says on stderr which it picked and why.
fn choose_backend(
    device: DeviceArg,
    recipe: &Recipe,
    batch_size: usize,
) -> Result<Box<dyn Backend>> {
    let gpu = || halfscale_gpu::GpuBackend::new(recipe.clone(), batch_size);
    match device {
        DeviceArg::Cpu => Ok(Box::new(CpuBackend::new(recipe.clone(), batch_size))),
        DeviceArg::Cuda => Ok(Box::new(gpu()?)),
        DeviceArg::Auto => {
            // A recipe the kernels run opens the device once, through the backend; others only
            // look for one, to say why the CPU was picked.
            let reason = if halfscale_gpu::GpuBackend::runs(recipe) {
                match gpu() {
                    Ok(backend) => {
                        eprintln!("device: cuda ({})", backend.device());
                        return Ok(Box::new(backend));
                    }
                    Err(e) => e.to_string(),
                }
            } else {
                match halfscale_gpu::probe() {
                    Ok(_) => format!(
                        "the CUDA backend runs mixed fp16 only, not {}",
                        recipe.name()
                    ),
                    Err(e) => e.to_string(),
                }
            };
            eprintln!("device: cpu ({reason})");
            Ok(Box::new(CpuBackend::new(recipe.clone(), batch_size)))
        }
    }
}

pub fn run(args: Args) -> ExitCode {
    match execute(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("error: --strict: the cross-check found steps beyond the bound or wrong skip decisions");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
