//! The checkpoint file: a state written and read back is the same state, bit for bit (NaN
//! payloads in the moments included), and its weights read as a weights file.

use halfscale_core::scaler::{LossScaler, ScalerConfig};
use halfscale_sim::checkpoint::{self, DatasetId, RunConfig};
use halfscale_sim::recipe::Recipe;
use halfscale_sim::state::TrainState;
use halfscale_sim::train::TrainConfig;
use halfscale_sim::weights;
use std::path::Path;

fn run() -> RunConfig {
    RunConfig {
        recipe: String::new(),
        precision: "mixed".into(),
        scaler_policy: "pytorch".into(),
        scaler: ScalerConfig::pytorch(),
        batch_size: 64,
        epochs: 3,
        max_batches: None,
        seed: 5,
        dataset: DatasetId {
            train: 60000,
            test: 10000,
            train_labels_crc32: 1,
            test_labels_crc32: 2,
        },
    }
}

#[test]
fn a_state_reads_back_bit_for_bit() {
    let config = TrainConfig {
        seed: 5,
        ..TrainConfig::default()
    };
    let mut scaler = LossScaler::new(ScalerConfig::pytorch()).unwrap();
    scaler.update(halfscale_core::scaler::Found::Inf).unwrap();
    let mut state = TrainState::init(&config, &scaler, Recipe::mixed_fp16().state());
    state.step = 1234;
    state.cursor.epoch = 1;
    state.cursor.batch = 296;
    state.cursor.rng_word_pos = 987_654;
    state.adam.step = 1233;
    for (k, (m, v)) in state
        .adam
        .exp_avg
        .iter_mut()
        .zip(state.adam.exp_avg_sq.iter_mut())
        .enumerate()
    {
        *m = (k as f32 * 1e-3).sin();
        *v = (k as f32).to_bits() as f32 * 1e-12;
    }
    state.adam.exp_avg[7] = f32::from_bits(0x7fc0_1234);
    state.adam.exp_avg_sq[9] = -0.0;
    let bytes = checkpoint::to_bytes(&state, &run());
    let (back, back_run) = checkpoint::from_bytes(&bytes, Path::new("ck")).unwrap();
    assert_eq!(back_run, run());
    assert_eq!(back.step, state.step);
    assert_eq!(back.cursor, state.cursor);
    assert_eq!(back.scaler, state.scaler);
    assert_eq!(back.recipe, state.recipe);
    assert_eq!(back.adam.step, state.adam.step);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&back.params.data), bits(&state.params.data));
    assert_eq!(bits(&back.adam.exp_avg), bits(&state.adam.exp_avg));
    assert_eq!(bits(&back.adam.exp_avg_sq), bits(&state.adam.exp_avg_sq));
    // The checkpoint is a weights file too (halfscale eval --weights CHECKPOINT).
    let w = weights::from_bytes(&bytes, Path::new("ck")).unwrap();
    assert_eq!(bits(&w.data), bits(&state.params.data));
}

#[test]
fn a_mismatched_run_names_the_field() {
    let saved = run();
    let mut asked = run();
    asked.epochs = 9;
    asked.seed = 1;
    assert!(
        saved.check(&asked, Path::new("ck")).is_ok(),
        "epochs and seed may change"
    );
    asked.dataset.train_labels_crc32 = 3;
    let e = saved
        .check(&asked, Path::new("ck"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("ck: the checkpoint's dataset is 60000 train"),
        "{e}"
    );
    let mut asked = run();
    asked.scaler.growth_interval = 1000;
    let e = saved
        .check(&asked, Path::new("ck"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("scaler is pytorch ({"), "{e}");
    assert!(e.contains("\"growth_interval\":1000"), "{e}");
}
