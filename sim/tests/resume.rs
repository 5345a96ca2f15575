//! Resuming: a run split at several steps, its `TrainState` serialised to JSON at each split,
//! read back and handed to a new trainer on a new backend, takes exactly the steps of the
//! uninterrupted run: every record (loss, scale, skip, cross-check figures) and line, the final
//! weights, the Adam moments, the scaler's state and the FP8 recipes' scaling histories, bit for
//! bit, in each precision, with and without the cross-check.

mod common;

use common::{synthetic, Collect};
use halfscale_core::recipe::mx::ScaleMode;
use halfscale_core::recipe::AmaxComputeAlgo;
use halfscale_core::scaler::{LossScaler, ScalerConfig};
use halfscale_sim::cpu::CpuBackend;
use halfscale_sim::crosscheck::CrossCheck;
use halfscale_sim::dataset::Dataset;
use halfscale_sim::recipe::Fp8Scaling;
use halfscale_sim::state::TrainState;
use halfscale_sim::train::{self, TrainConfig, Trainer};
use halfscale_sim::Recipe;

const BATCH: usize = 16;

/// 64 synthetic examples: four batches an epoch (a small subset keeps the test quick).
fn data() -> Dataset {
    Dataset {
        train: synthetic(64, 1),
        test: synthetic(16, 2),
    }
}

/// Three epochs of four batches: 12 steps, crossing two epoch
/// boundaries (and reshuffles).
fn config() -> TrainConfig {
    TrainConfig {
        epochs: 3,
        batch_size: BATCH,
        log_interval: 2,
        evaluate: false,
        ..TrainConfig::default()
    }
}

const STEPS: u64 = 12;

/// A scaler that overflows fp16 at first (2^24), backs off, and grows every other clean step,
/// so the growth tracker is mid-interval at some of the splits.
fn busy_scaler() -> ScalerConfig {
    ScalerConfig {
        init_scale: 16_777_216.0,
        growth_interval: 2,
        ..ScalerConfig::pytorch()
    }
}

struct Outcome {
    state: TrainState,
    seen: Collect,
}

/// Runs the 12 steps, stopping after each step in `splits`: the trainer syncs the state, which
/// is written to JSON and read back, and a new backend, cross-check and trainer take it up.
fn run_split(precision: Recipe, scaler: ScalerConfig, check: bool, splits: &[u64]) -> Outcome {
    let data = data();
    let config = config();
    let mut state = TrainState::init(
        &config,
        &LossScaler::new(scaler).unwrap(),
        precision.state(),
    );
    let mut seen = Collect::default();
    let mut ends: Vec<u64> = splits.to_vec();
    ends.push(STEPS);
    for end in ends {
        let mut backend = CpuBackend::new(precision.clone(), BATCH);
        let mut cross = check
            .then(|| CrossCheck::new(Box::new(CpuBackend::new(Recipe::fp32(), BATCH)), &precision));
        let mut trainer = Trainer::new(
            &mut backend,
            cross.as_mut(),
            &data,
            &config,
            scaler,
            &mut seen,
        )
        .unwrap();
        while state.step < end {
            assert!(trainer.step(&mut state).unwrap(), "step {}", state.step);
        }
        trainer.sync(&mut state).unwrap();
        drop(trainer);
        let json = serde_json::to_string(&state).unwrap();
        let back: TrainState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state, "JSON round trip at step {end}");
        state = back;
    }
    Outcome { state, seen }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn assert_same(resumed: &Outcome, whole: &Outcome, what: &str) {
    let (r, w) = (&resumed.state, &whole.state);
    assert_eq!(r.step, STEPS, "{what}");
    assert_eq!(r.step, w.step, "{what}");
    assert_eq!(r.cursor, w.cursor, "{what}");
    assert_eq!(
        bits(&r.params.data),
        bits(&w.params.data),
        "{what}: weights"
    );
    assert_eq!(bits(&r.adam.exp_avg), bits(&w.adam.exp_avg), "{what}");
    assert_eq!(bits(&r.adam.exp_avg_sq), bits(&w.adam.exp_avg_sq), "{what}");
    assert_eq!(r.adam.step, w.adam.step, "{what}");
    assert_eq!(r.scaler, w.scaler, "{what}: scaler state");
    assert_eq!(r.recipe, w.recipe, "{what}");
    assert_eq!(resumed.seen.lines, whole.seen.lines, "{what}: lines");
    let (rr, wr) = (&resumed.seen.records, &whole.seen.records);
    assert_eq!(rr.len(), STEPS as usize, "{what}");
    assert_eq!(rr.len(), wr.len(), "{what}");
    for (a, b) in rr.iter().zip(wr) {
        assert_eq!(
            a.outcome.loss.to_bits(),
            b.outcome.loss.to_bits(),
            "{what}: step {}",
            b.step
        );
        // Debug text, so NaN divergences (an overflowed step's check) equal themselves.
        assert_eq!(
            format!("{a:?}"),
            format!("{b:?}"),
            "{what}: step {}",
            b.step
        );
    }
}

#[test]
fn a_run_split_and_resumed_from_json_takes_the_uninterrupted_steps_bit_for_bit() {
    let splits: &[u64] = &[1, 4, 6, 7, 11];
    for (precision, scaler) in [
        (Recipe::fp32(), ScalerConfig::disabled()),
        (Recipe::mixed_fp16(), busy_scaler()),
        (Recipe::mixed_bf16(), busy_scaler()),
        // Delayed FP8 scaling with a history of 4, so the amax window rolls over within the
        // run and across the splits; the per-tensor histories travel in the state.
        (
            Recipe::fp8(Fp8Scaling::Delayed {
                history: 4,
                margin: 0,
                algo: AmaxComputeAlgo::Max,
            })
            .unwrap(),
            busy_scaler(),
        ),
        (Recipe::fp8(Fp8Scaling::default()).unwrap(), busy_scaler()),
        (Recipe::fp8(Fp8Scaling::Current).unwrap(), busy_scaler()),
        (Recipe::mxfp8(ScaleMode::Floor), busy_scaler()),
    ] {
        for check in [false, true] {
            let what = format!("{precision:?}, cross-check {check}");
            let whole = run_split(precision.clone(), scaler, check, &[]);
            let resumed = run_split(precision.clone(), scaler, check, splits);
            assert_same(&resumed, &whole, &what);
            let records = &whole.seen.records;
            assert_eq!(
                records.iter().filter(|r| r.check.is_some()).count(),
                if check { STEPS as usize } else { 0 },
                "{what}"
            );
            if precision == Recipe::mixed_fp16() {
                // The split points fall between skips, backoffs and growth.
                assert!(records.iter().any(|r| r.outcome.skipped), "{what}");
                assert!(
                    records
                        .windows(2)
                        .any(|w| w[1].outcome.scale > w[0].outcome.scale),
                    "{what}"
                );
            }
        }
    }
}

#[test]
fn the_trainer_takes_the_steps_train_takes() {
    // `train` is `Trainer::run` from `TrainState::init`: same weights and records.
    let data = data();
    let config = config();
    let mut backend = CpuBackend::new(Recipe::mixed_fp16(), BATCH);
    let mut scaler = LossScaler::new(busy_scaler()).unwrap();
    let mut seen = Collect::default();
    let summary = train::train(&mut backend, &mut scaler, None, &data, &config, &mut seen).unwrap();
    let whole = run_split(Recipe::mixed_fp16(), busy_scaler(), false, &[]);
    assert_eq!(bits(&summary.params.data), bits(&whole.state.params.data));
    assert_eq!(scaler.state(), whole.state.scaler);
    assert_eq!(seen.lines, whole.seen.lines);
    assert_eq!(summary.steps, STEPS);
}

#[test]
fn a_state_with_the_scaler_on_is_refused_by_a_run_without_one() {
    let data = data();
    let config = config();
    let state = TrainState::init(
        &config,
        &LossScaler::new(busy_scaler()).unwrap(),
        Recipe::mixed_fp16().state(),
    );
    let mut backend = CpuBackend::new(Recipe::mixed_fp16(), BATCH);
    let mut seen = Collect::default();
    let mut trainer = Trainer::new(
        &mut backend,
        None,
        &data,
        &config,
        ScalerConfig::disabled(),
        &mut seen,
    )
    .unwrap();
    let err = trainer.load(&state).unwrap_err().to_string();
    assert!(
        err.contains("loss scaling is on in the state but off in the run"),
        "{err}"
    );
}
