//! `halfscale scaler`: loss-scaler tools. `replay` runs a sequence of gradient checks through a
//! scaler configuration and prints the scale after every update, so a policy can be tried on a
//! recorded run and a trajectory compared with PyTorch's or DeepSpeed's bit for bit.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;

use halfscale_core::scaler::{
    ConfigError, FloorPolicy, Found, GrowthTiming, LossScaler, NanPolicy, ScalePrecision,
    ScalerConfig, ScalerError, StepOutcome,
};

/// Loss-scaler tools.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Replay gradient checks (finite/inf/nan, one per line on stdin) through a scaler
    /// configuration; print the scale after each update as one JSON object per line.
    #[command(long_about = REPLAY_ABOUT)]
    Replay(ReplayArgs),
}

const REPLAY_ABOUT: &str = "\
Replay a sequence of gradient checks through a loss-scaler configuration and print the scale \
after each update, so a policy can be tried on a recorded run and trajectories compared with \
PyTorch (torch.amp.GradScaler) or DeepSpeed (DynamicLossScaler) bit for bit. The defaults are \
PyTorch's: init scale 65536, growth 2, backoff 0.5, growth interval 2000.

INPUT (standard input): one event per line: `finite` (every gradient finite), `inf` (an inf \
was found) or `nan` (a NaN was found), case-insensitive, surrounding spaces ignored. Blank lines \
and lines starting with `#` are skipped. Any other line is an error naming its line number.

OUTPUT (standard output): one JSON object per event, in order, for example
  {\"step\":1,\"event\":\"finite\",\"outcome\":\"stepped\",\"scale\":65536.0,\"scale_bits\":\"0x47800000\",\"growth_tracker\":1}
  step            1-based event number (skipped lines are not counted).
  event           finite, inf or nan.
  outcome         stepped: the optimizer step of that iteration runs; skipped_inf / skipped_nan: it \
is skipped because of an inf / a NaN (a NaN is an overflow unless --nan-policy error).
  scale           the scale after that event's update, exactly as the framework holds it, written as \
Python's repr writes a float (shortest round-trip decimal): with f32 precision (PyTorch) the float32 \
value, as GradScaler.get_scale() returns it; with f64 precision (DeepSpeed) the Python float \
cur_scale.
  scale_bits      the f32 bit pattern of the scale; for an f64 scale, of the nearest f32 (the factor \
a float32 loss is multiplied by).
  growth_tracker  after the update. PyTorch timing: _growth_tracker, clean updates since the last \
overflow or growth (0 to W-1). DeepSpeed timing: the stable_interval (cur_iter - last_overflow_iter \
- 1) the next update tests, kept in 0..=W: 0 after an overflow, +1 per clean update, wrapping from \
W to 1 when the scale grows; a clean update that finds it at W grows the scale.

EXIT STATUS: 0 on success; 1 when the scaler refuses an event (a NaN with --nan-policy error, an \
overflow at the floor with --at-floor error): the lines before it are printed and the error, naming \
the step and input line, goes to standard error; 2 for bad flags or a bad input line.

DeepSpeed with its fp16 defaults (initial_scale_power 16, loss_scale_window 1000, hysteresis 2, \
min_loss_scale 1, raise_error_at_min_scale):
  halfscale scaler replay --growth-timing deepspeed --growth-interval 1000 --hysteresis 2 \
--min-scale 1 --at-floor error";

/// The configuration flags of `halfscale scaler replay`.
#[derive(clap::Args, Debug, Clone)]
pub struct ReplayArgs {
    /// Initial scale (PyTorch init_scale; DeepSpeed 2**initial_scale_power).
    #[arg(long, value_name = "F", default_value_t = 65536.0)]
    pub init_scale: f64,
    /// Multiplier on growth, > 1 (DeepSpeed's scale_factor is 2).
    #[arg(long, value_name = "F", default_value_t = 2.0)]
    pub growth_factor: f64,
    /// Multiplier on backoff, in (0, 1). DeepSpeed divides by its scale_factor instead: with
    /// --growth-timing deepspeed and a backoff of exactly 1/growth the scale is divided by the
    /// growth factor, as DeepSpeed does (x / 3 and x * (1/3) differ in f64).
    #[arg(long, value_name = "F", default_value_t = 0.5)]
    pub backoff_factor: f64,
    /// Clean updates per growth, W (PyTorch growth_interval, DeepSpeed scale_window).
    #[arg(long, value_name = "W", default_value_t = 2000)]
    pub growth_interval: u32,
    /// Back off on the N-th overflow only (DeepSpeed delayed_shift / hysteresis); 1 = at once.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub hysteresis: u32,
    /// Refill the hysteresis on every clean update (DeepSpeed consecutive_hysteresis).
    #[arg(long)]
    pub consecutive_hysteresis: bool,
    /// Floor on the scale: a backoff never goes below it (DeepSpeed min_scale).
    #[arg(long, value_name = "F")]
    pub min_scale: Option<f64>,
    /// Ceiling on the scale: a growth is clamped to it.
    #[arg(long, value_name = "F")]
    pub max_scale: Option<f64>,
    /// When the scale grows: on the W-th clean update (pytorch) or the (W+1)-th after an
    /// overflow, then every W (deepspeed).
    #[arg(long, value_enum, value_name = "TIMING", default_value_t = Timing::Pytorch)]
    pub growth_timing: Timing,
    /// A NaN is an overflow (PyTorch, DeepSpeed) or an error that stops the replay.
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = NanArg::Overflow)]
    pub nan_policy: NanArg,
    /// An overflow at the floor holds the scale there, or is an error (DeepSpeed's
    /// raise_error_at_min_scale, its default).
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = AtFloor::Hold)]
    pub at_floor: AtFloor,
    /// Number type of the scale: f32 (PyTorch's float32 tensor) or f64 (DeepSpeed's Python
    /// float). Default: f32 with pytorch timing, f64 with deepspeed timing.
    #[arg(long, value_enum, value_name = "TYPE")]
    pub scale_precision: Option<Precision>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timing {
    /// PyTorch's _amp_update_scale_.
    Pytorch,
    /// DeepSpeed's DynamicLossScaler.update_scale.
    Deepspeed,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NanArg {
    /// A NaN backs off like an inf.
    Overflow,
    /// A NaN stops the replay with exit status 1.
    Error,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtFloor {
    /// Stay at the floor.
    Hold,
    /// Stop the replay with exit status 1.
    Error,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// float32, rounding every product once more from f64 (PyTorch).
    F32,
    /// float64 (DeepSpeed).
    F64,
}

impl ReplayArgs {
    /// The scaler configuration the flags describe (not yet validated).
    pub fn config(&self) -> ScalerConfig {
        let growth_timing = match self.growth_timing {
            Timing::Pytorch => GrowthTiming::PyTorch,
            Timing::Deepspeed => GrowthTiming::DeepSpeed,
        };
        let precision = match (self.scale_precision, growth_timing) {
            (Some(Precision::F32), _) | (None, GrowthTiming::PyTorch) => ScalePrecision::F32,
            (Some(Precision::F64), _) | (None, GrowthTiming::DeepSpeed) => ScalePrecision::F64,
        };
        ScalerConfig {
            enabled: true,
            init_scale: self.init_scale,
            growth_factor: self.growth_factor,
            backoff_factor: self.backoff_factor,
            growth_interval: self.growth_interval,
            hysteresis: self.hysteresis,
            consecutive_hysteresis: self.consecutive_hysteresis,
            min_scale: self.min_scale,
            max_scale: self.max_scale,
            at_floor: match self.at_floor {
                AtFloor::Hold => FloorPolicy::Hold,
                AtFloor::Error => FloorPolicy::Error,
            },
            growth_timing,
            nan_policy: match self.nan_policy {
                NanArg::Overflow => NanPolicy::Overflow,
                NanArg::Error => NanPolicy::Error,
            },
            precision,
        }
    }
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("line {line}: {reason}")]
    BadLine { line: usize, reason: String },
    #[error("step {step} (line {line}): {source}")]
    Refused {
        step: u64,
        line: usize,
        source: ScalerError,
    },
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl ReplayError {
    /// 2 for bad flags or input, 1 for a refused event or an I/O failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            ReplayError::Config(_) | ReplayError::BadLine { .. } => 2,
            ReplayError::Refused { .. } | ReplayError::Io(_) => 1,
        }
    }
}

/// Parses one input line: `Ok(None)` for a blank or comment line.
fn parse_event(line: &[u8], number: usize) -> Result<Option<Found>, ReplayError> {
    let text = std::str::from_utf8(line).map_err(|_| ReplayError::BadLine {
        line: number,
        reason: "not UTF-8 text".into(),
    })?;
    let t = text.trim();
    if t.is_empty() || t.starts_with('#') {
        return Ok(None);
    }
    if t.eq_ignore_ascii_case("finite") {
        Ok(Some(Found::Finite))
    } else if t.eq_ignore_ascii_case("inf") {
        Ok(Some(Found::Inf))
    } else if t.eq_ignore_ascii_case("nan") {
        Ok(Some(Found::Nan))
    } else {
        let shown: String = t.chars().take(40).collect();
        Err(ReplayError::BadLine {
            line: number,
            reason: format!("unknown event {shown:?} (expected finite, inf or nan)"),
        })
    }
}

fn event_name(found: Found) -> &'static str {
    match found {
        Found::Finite => "finite",
        Found::Inf => "inf",
        Found::Nan => "nan",
    }
}

/// Replays `input` through the configuration, writing one JSON line per event to `out`.
/// Returns the number of events replayed.
pub fn replay<R: BufRead, W: Write>(
    args: &ReplayArgs,
    input: R,
    out: &mut W,
) -> Result<u64, ReplayError> {
    let mut scaler = LossScaler::new(args.config())?;
    let mut step = 0u64;
    for (index, line) in input.split(b'\n').enumerate() {
        let line = line?;
        let number = index + 1;
        let Some(found) = parse_event(&line, number)? else {
            continue;
        };
        step += 1;
        scaler
            .update(found)
            .map_err(|source| ReplayError::Refused {
                step,
                line: number,
                source,
            })?;
        let scale = scaler.scale();
        writeln!(
            out,
            "{{\"step\":{step},\"event\":\"{}\",\"outcome\":\"{}\",\"scale\":{},\"scale_bits\":\"{:#010x}\",\"growth_tracker\":{}}}",
            event_name(found),
            StepOutcome::from_found(found).as_str(),
            python_float_repr(scale),
            (scale as f32).to_bits(),
            scaler.growth_tracker(),
        )?;
    }
    Ok(step)
}

/// `x` as Python's `repr(float)` (and so `json.dumps`) writes it: the shortest decimal that
/// reads back as `x`, positional with a `.0` for decimal exponents from -4 to 15, scientific
/// with a signed two-digit exponent otherwise (`1e+16`, `9.5367431640625e-07`). Non-finite
/// values are written as `json.dumps` does (`NaN`, `Infinity`, `-Infinity`).
pub fn python_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits, d.ddd e exp.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if x < 0.0 { "-" } else { "" };
    // Python's rule (format_float_short, repr mode): with the decimal point `decpt` digits into
    // the digit string, scientific when decpt <= -4 or decpt > 16.
    let decpt = exp + 1;
    let n = digits.len() as i32;
    if decpt <= -4 || decpt > 16 {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{dot}{rest}e{esign}{:02}", exp.unsigned_abs())
    } else if decpt <= 0 {
        format!(
            "{sign}0.{}{digits}",
            "0".repeat(decpt.unsigned_abs() as usize)
        )
    } else if decpt >= n {
        format!("{sign}{digits}{}.0", "0".repeat((decpt - n) as usize))
    } else {
        let (int, frac) = digits.split_at(decpt as usize);
        format!("{sign}{int}.{frac}")
    }
}

/// Runs `halfscale scaler ...`.
pub fn run(args: Args) -> ExitCode {
    match args.command {
        Command::Replay(replay_args) => {
            let stdin = io::stdin().lock();
            let mut out = io::BufWriter::new(io::stdout().lock());
            let result = replay(&replay_args, stdin, &mut out);
            let flushed = out.flush();
            match (result, flushed) {
                (Ok(_), Ok(())) => ExitCode::SUCCESS,
                (Err(ReplayError::Io(e)), _) | (Ok(_), Err(e))
                    if e.kind() == io::ErrorKind::BrokenPipe =>
                {
                    // The reader went away (`| head`): not a failure of the replay.
                    ExitCode::SUCCESS
                }
                (Ok(_), Err(e)) => {
                    eprintln!("halfscale scaler replay: {e}");
                    ExitCode::from(1)
                }
                (Err(e), _) => {
                    eprintln!("halfscale scaler replay: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
    }
}
