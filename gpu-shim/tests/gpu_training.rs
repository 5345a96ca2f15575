//! A short training run on the GPU against the simulator's mixed-precision CPU backend, and the
//! sync-free device-scaled path against the GPU's own trait path. Plus an ignored benchmark
//! (one MNIST epoch, device-scaled) that scripts/gpu-check runs.
#![cfg(any(feature = "cuda", feature = "emulate"))]

mod common;

use common::*;
use halfscale_core::scaler::inv_scale;
use halfscale_gpu::DeviceScaler;
use halfscale_sim::adam::{AdamConfig, AdamState};
use halfscale_sim::cpu::CpuBackend;
use halfscale_sim::dataset::{Batches, IMAGE_PIXELS};
use halfscale_sim::model::{Layer, PARAM_COUNT};
use halfscale_sim::rng::SeededRng;
use halfscale_sim::{Backend, Batch, Params, Recipe, StateDict};

const STEPS: usize = 20;
const BATCH: usize = 64;
/// The documented bound on per-step losses over 20 steps (gpu-shim/README.md): relative 1e-3.
const LOSS_REL: f32 = 1e-3;

fn synthetic(len: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
    let mut rng = SeededRng::new(seed);
    let labels: Vec<u8> = (0..len).map(|_| rng.below(10) as u8).collect();
    // Class-dependent blobs so the loss falls.
    let images = (0..len * IMAGE_PIXELS)
        .map(|k| {
            let (img, p) = (k / IMAGE_PIXELS, k % IMAGE_PIXELS);
            let c = usize::from(labels[img]);
            let on = (p / 28) / 3 == c || (p % 28) / 3 == c;
            (if on { 0.8 } else { 0.0 }) + rng.uniform(0.0, 0.2)
        })
        .collect();
    (images, labels)
}

#[test]
fn per_layer_gradients_match_the_simulator_and_losses_stay_within_the_bound() {
    let Some(mut gpu) = backend(BATCH) else {
        return;
    };
    let mut cpu = CpuBackend::new(Recipe::mixed_fp16(), BATCH);
    let (images, labels) = synthetic(STEPS * BATCH, 21);
    let params = Params::init(1);
    for b in [&mut gpu as &mut dyn Backend, &mut cpu] {
        b.import_state(&StateDict::from_training(&params, &AdamState::new(PARAM_COUNT)).unwrap())
            .unwrap();
    }
    let config = AdamConfig::default();
    let scale = 65536f32;
    let (mut gg, mut cg) = (Params::zeros(), Params::zeros());
    let mut worst = [0f64; 4];
    for step in 0..STEPS {
        let r = step * BATCH..(step + 1) * BATCH;
        let batch = Batch {
            images: &images[r.start * IMAGE_PIXELS..r.end * IMAGE_PIXELS],
            labels: &labels[r],
        };
        let lg = gpu.forward_backward(batch, scale).unwrap();
        let lc = cpu.forward_backward(batch, scale).unwrap();
        assert!(
            (lg - lc).abs() <= LOSS_REL * lc.abs().max(1.0),
            "step {step}: loss gpu {lg} cpu {lc}"
        );
        if step == 0 {
            let (mut a, mut c) = (Vec::new(), Vec::new());
            gpu.read_logits(&mut a).unwrap();
            cpu.read_logits(&mut c).unwrap();
            assert_bits("logits (same weights, same batch)", &a, &c);
        }
        gpu.read_grads(&mut gg).unwrap();
        cpu.read_grads(&mut cg).unwrap();
        for (w, l) in worst.iter_mut().zip(Layer::ALL) {
            let d = max_diff(&gg.data[l.range()], &cg.data[l.range()]);
            *w = w.max(d);
        }
        let rg = gpu.unscale_and_check(inv_scale(f64::from(scale))).unwrap();
        let rc = cpu.unscale_and_check(inv_scale(f64::from(scale))).unwrap();
        assert_eq!(rg.found_inf(), rc.found_inf(), "step {step}");
        if !rg.found_inf() {
            gpu.adam_step(&config).unwrap();
            cpu.adam_step(&config).unwrap();
        }
        println!("step {step:2}: loss gpu {lg:.7} cpu {lc:.7}");
    }

    for (w, l) in worst.iter().zip(Layer::ALL) {
        // One line per layer, parsed by scripts/gpu-check.
        println!("LAYER {} max|grad gpu - sim| = {w:.3e}", l.name());
    }
    let mut st = AdamState::new(PARAM_COUNT);
    gpu.export_state().unwrap().copy_adam_into(&mut st).unwrap();
    assert_eq!(st.step, STEPS as u64);
}

#[test]
fn the_device_scaled_step_equals_the_trait_path_bit_for_bit() {
    let Some(mut a) = backend(BATCH) else { return };
    let Some(mut b) = backend(BATCH) else { return };
    let (images, labels) = synthetic(STEPS * BATCH, 22);
    let params = Params::init(3);
    let config = AdamConfig::default();
    for g in [&mut a, &mut b] {
        g.import_state(&StateDict::from_training(&params, &AdamState::new(PARAM_COUNT)).unwrap())
            .unwrap();
    }
    a.upload_train_set(&images, &labels).unwrap();
    let order: Vec<u32> = (0..(STEPS * BATCH) as u32).collect();
    a.set_order(&order).unwrap();
    let scaler = DeviceScaler {
        growth_interval: 5,
        ..DeviceScaler::default()
    };
    a.set_device_scaler(scaler).unwrap();
    for step in 0..STEPS {
        a.step_device_scaled(step * BATCH, BATCH, &config).unwrap();
    }
    let records = a.drain_records().unwrap();
    assert_eq!(records.len(), STEPS);
    // The same steps through the trait with the host scaler of the same semantics.
    let (mut scale, mut tracker) = (scaler.init_scale, 0u32);
    for (step, rec) in records.iter().enumerate() {
        let r = step * BATCH..(step + 1) * BATCH;
        let batch = Batch {
            images: &images[r.start * IMAGE_PIXELS..r.end * IMAGE_PIXELS],
            labels: &labels[r],
        };
        let loss = b.forward_backward(batch, scale).unwrap();
        assert_eq!(rec.loss.to_bits(), loss.to_bits(), "step {step}: loss");
        assert_eq!(rec.scale.to_bits(), scale.to_bits(), "step {step}: scale");
        let report = b.unscale_and_check(inv_scale(f64::from(scale))).unwrap();
        assert_eq!(
            (rec.report.nan, rec.report.inf),
            (report.nan, report.inf),
            "step {step}"
        );
        if !report.found_inf() {
            b.adam_step(&config).unwrap();
        }
        (scale, tracker) = halfscale_core::scaler::pytorch_update_scale(
            scale,
            tracker,
            report.found_inf(),
            scaler.growth_factor,
            scaler.backoff_factor,
            scaler.growth_interval,
        );
        assert_eq!(
            (rec.next_scale.to_bits(), rec.growth_tracker),
            (scale.to_bits(), tracker),
            "step {step}"
        );
    }
    let (mut pa, mut pb) = (Params::zeros(), Params::zeros());
    a.export_state().unwrap().copy_params_into(&mut pa).unwrap();
    b.export_state().unwrap().copy_params_into(&mut pb).unwrap();
    assert_bits("weights after the run", &pa.data, &pb.data);
}

/// Keeps every step record of a run.
#[derive(Default)]
struct Records(Vec<halfscale_sim::train::StepRecord>);

impl halfscale_sim::train::Observer for Records {
    fn step(&mut self, r: &halfscale_sim::train::StepRecord) -> halfscale_sim::Result<()> {
        self.0.push(r.clone());
        Ok(())
    }
}

/// The shared training loop on the GPU twice: once with queued steps (no host round trip until
/// a line is printed) and once cross-checked every step (the four trait calls): the same run.
#[test]
fn the_training_loop_on_queued_steps_equals_the_loop_on_the_trait_calls() {
    use halfscale_core::scaler::{LossScaler, ScalerConfig};
    use halfscale_sim::crosscheck::CrossCheck;
    use halfscale_sim::dataset::{Dataset, Split};
    use halfscale_sim::train::{self, TrainConfig};
    let (images, labels) = synthetic(6 * BATCH, 23);
    let data = Dataset {
        train: Split { images, labels },
        test: Split::default(),
    };
    // 2^24 overflows fp16 at first; growth every other clean step: skips, backoffs, growth.
    let scaler = ScalerConfig {
        init_scale: 16_777_216.0,
        growth_interval: 2,
        ..ScalerConfig::pytorch()
    };
    let config = TrainConfig {
        epochs: 2,
        log_interval: 4,
        evaluate: false,
        ..TrainConfig::default()
    };
    let mut runs = Vec::new();
    for checked in [false, true] {
        let Some(mut gpu) = backend(BATCH) else {
            return;
        };
        let mut check = checked.then(|| {
            CrossCheck::new(
                Box::new(CpuBackend::new(Recipe::fp32(), BATCH)),
                &Recipe::mixed_fp16(),
            )
        });
        let mut records = Records::default();
        let mut host = LossScaler::new(scaler).unwrap();
        let summary = train::train(
            &mut gpu,
            &mut host,
            check.as_mut(),
            &data,
            &config,
            &mut records,
        )
        .unwrap();

        runs.push((summary, records.0));
    }
    let ((queued, qr), (direct, dr)) = (&runs[0], &runs[1]);
    assert_eq!(queued.checked_steps, 0);
    assert_eq!(direct.checked_steps, direct.steps);
    assert!(qr.iter().any(|r| r.outcome.skipped) && qr.iter().any(|r| !r.outcome.skipped));
    assert_eq!(qr.len(), dr.len());
    for (q, d) in qr.iter().zip(dr) {
        assert_eq!(
            (
                q.outcome.loss.to_bits(),
                q.outcome.scale,
                q.outcome.skipped,
                q.outcome.report.nan,
                q.outcome.report.inf,
                q.outcome.first_non_finite()
            ),
            (
                d.outcome.loss.to_bits(),
                d.outcome.scale,
                d.outcome.skipped,
                d.outcome.report.nan,
                d.outcome.report.inf,
                d.outcome.first_non_finite()
            ),
            "step {}",
            d.step
        );
    }
    assert_eq!(queued.final_scale.to_bits(), direct.final_scale.to_bits());
    assert_bits(
        "weights after the run",
        &queued.params.data,
        &direct.params.data,
    );
}

/// One epoch of MNIST (data/MNIST/raw) on the device-scaled path, timed; prints a `BENCH` line
/// for scripts/gpu-check. `cargo test --features cuda -- --ignored epoch_bench`.
#[test]
#[ignore = "benchmark: needs a GPU and data/MNIST/raw; run by scripts/gpu-check"]
fn epoch_bench() {
    let Some(mut g) = backend(BATCH) else { return };
    let dir = std::env::var("HALFSCALE_MNIST")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../data/MNIST/raw").into());
    let data = halfscale_sim::dataset::Dataset::load(std::path::Path::new(&dir)).unwrap();
    let config = AdamConfig::default();
    g.import_state(
        &StateDict::from_training(&Params::init(1), &AdamState::new(PARAM_COUNT)).unwrap(),
    )
    .unwrap();
    let t0 = std::time::Instant::now();
    g.upload_train_set(&data.train.images, &data.train.labels)
        .unwrap();
    let mut batches = Batches::new(
        data.train.len(),
        BATCH,
        1 ^ halfscale_sim::train::SHUFFLE_SEED_XOR,
    );
    let order = batches.next_order().to_vec();
    g.set_order(&order).unwrap();
    g.set_device_scaler(DeviceScaler::default()).unwrap();
    g.synchronize().unwrap();
    let upload = t0.elapsed().as_secs_f64();
    let t1 = std::time::Instant::now();
    let mut steps = 0;
    for start in (0..order.len()).step_by(BATCH) {
        g.step_device_scaled(start, BATCH.min(order.len() - start), &config)
            .unwrap();
        steps += 1;
    }
    let records = g.drain_records().unwrap();
    let secs = t1.elapsed().as_secs_f64();
    let skipped = records.iter().filter(|r| r.skipped).count();
    let last = records.last().map_or(f32::NAN, |r| r.loss);
    println!(
        "BENCH device-scaled epoch: {steps} steps in {secs:.3} s ({:.1} steps/s), upload {upload:.3} s, skipped {skipped}, last loss {last:.4}",
        steps as f64 / secs
    );
    assert_eq!(records.len(), steps);
}

/// Where, over one real MNIST epoch, the GPU's mixed-precision step and the simulator's part.
/// Phase 1 re-synchronises every step (the simulator's weights and Adam state are loaded into
/// the GPU before the next step), so each of the epoch's 938 steps is compared from identical
/// state: the logits (forward kernels), the loss (CUDA's `expf`/`logf` against the host's) and
/// every layer's gradient (the backward, from the loss kernel's `dL/dlogits` on). Phase 2 lets
/// the two run free from the same start and reports the first step whose gradients differ.
/// Prints `PROBE` lines for scripts/gpu-check; asserts the documented claims: forward logits
/// bit-identical on every step, losses within 4 f32 ulp; under the host emulation, whose
/// `expf`/`logf` are the simulator's, everything bit-identical.
#[test]
#[ignore = "needs a GPU and data/MNIST/raw; run by scripts/gpu-check"]
fn mnist_divergence_probe() {
    let Some(mut gpu) = backend(BATCH) else {
        return;
    };
    let mut cpu = CpuBackend::new(Recipe::mixed_fp16(), BATCH);
    let dir = std::env::var("HALFSCALE_MNIST")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../data/MNIST/raw").into());
    let data = halfscale_sim::dataset::Dataset::load(std::path::Path::new(&dir)).unwrap();
    let order = Batches::new(
        data.train.len(),
        BATCH,
        1 ^ halfscale_sim::train::SHUFFLE_SEED_XOR,
    )
    .next_order()
    .to_vec();
    let config = AdamConfig::default();
    let scale = 65536f32;
    let inv = inv_scale(f64::from(scale));
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    let (mut gl, mut cl) = (Vec::new(), Vec::new());
    let (mut gg, mut cg) = (Params::zeros(), Params::zeros());

    // HALFSCALE_PROBE_STEPS caps each phase (the host emulation runs a few steps a second).
    let cap: usize = std::env::var("HALFSCALE_PROBE_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    // The emulation (a few steps a second) runs the free phase only: it alone says whether the
    // run stays identical.
    let phases: &[&str] = if cfg!(feature = "cuda") {
        &["free", "resync"]
    } else {
        &["free"]
    };
    for &phase in phases {
        let params = Params::init(1);
        for b in [&mut gpu as &mut dyn Backend, &mut cpu] {
            b.import_state(
                &StateDict::from_training(&params, &AdamState::new(PARAM_COUNT)).unwrap(),
            )
            .unwrap();
        }
        let (mut logit_steps, mut loss_steps, mut grad_steps) = (0, 0, [0usize; 4]);
        let (mut worst_ulps, mut worst_grad) = (0u32, [0f64; 4]);
        let mut first_grad_step = None;
        let mut steps = 0;
        for (step, ix) in order.chunks(BATCH).enumerate().take(cap) {
            data.train.gather(ix, &mut images, &mut labels);
            let batch = Batch {
                images: &images,
                labels: &labels,
            };
            let lg = gpu.forward_backward(batch, scale).unwrap();
            let lc = cpu.forward_backward(batch, scale).unwrap();
            gpu.read_logits(&mut gl).unwrap();
            cpu.read_logits(&mut cl).unwrap();
            let logits_same = gl.iter().zip(&cl).all(|(a, b)| a.to_bits() == b.to_bits());
            logit_steps += usize::from(!logits_same);
            let ulps = lg.to_bits().abs_diff(lc.to_bits());
            loss_steps += usize::from(ulps != 0);
            worst_ulps = worst_ulps.max(ulps);
            gpu.read_grads(&mut gg).unwrap();
            cpu.read_grads(&mut cg).unwrap();
            let mut any = false;
            for (k, l) in Layer::ALL.into_iter().enumerate() {
                let d = max_diff(&gg.data[l.range()], &cg.data[l.range()]);
                worst_grad[k] = worst_grad[k].max(d);
                grad_steps[k] += usize::from(d != 0.0);
                any |= d != 0.0;
            }
            if any && first_grad_step.is_none() {
                first_grad_step = Some((step, logits_same, ulps));
            }
            steps += 1;
            if phase == "free" && first_grad_step.is_some() {
                break;
            }
            let rg = gpu.unscale_and_check(inv).unwrap();
            let rc = cpu.unscale_and_check(inv).unwrap();
            assert_eq!(rg.found_inf(), rc.found_inf(), "{phase} step {step}");
            if !rc.found_inf() {
                gpu.adam_step(&config).unwrap();
                cpu.adam_step(&config).unwrap();
            }
            if phase == "resync" {
                let (mut p, mut st) = (Params::zeros(), AdamState::new(PARAM_COUNT));
                let state = cpu.export_state().unwrap();
                state.copy_params_into(&mut p).unwrap();
                state.copy_adam_into(&mut st).unwrap();
                gpu.import_state(&StateDict::from_training(&p, &st).unwrap())
                    .unwrap();
            }
        }
        let layers: Vec<String> = Layer::ALL
            .into_iter()
            .zip(grad_steps.iter().zip(&worst_grad))
            .map(|(l, (n, w))| format!("{} {n} steps (max {w:.3e})", l.name()))
            .collect();
        println!(
            "PROBE {phase}: {steps} steps; logits differ on {logit_steps}; loss differs on {loss_steps} (max {worst_ulps} ulp); gradients differ: {}; first gradient difference: {}",
            layers.join(", "),
            first_grad_step.map_or("none".into(), |(s, same, u)| format!(
                "step {s} (logits {}, loss {u} ulp apart)",
                if same { "identical" } else { "differ" }
            )),
        );
        assert_eq!(
            logit_steps, 0,
            "{phase}: forward logits must be bit-identical"
        );
        assert!(worst_ulps <= 4, "{phase}: loss {worst_ulps} ulp apart");
        // The host emulation shares the host's expf/logf with the simulator: nothing may differ.
        #[cfg(not(feature = "cuda"))]
        assert!(
            first_grad_step.is_none() && worst_ulps == 0,
            "{phase}: the emulation must be bit-identical to the simulator"
        );
    }
}

/// The state by name on the device: a round trip is bit-exact, a wrong name or length is a typed
/// error, and neither export nor import goes past device-scaled steps not yet drained.
#[test]
fn the_device_state_round_trips_by_name_and_waits_for_a_drain() {
    use halfscale_sim::error::DeviceError;
    use halfscale_sim::{SimError, Values};
    let Some(mut g) = backend(BATCH) else { return };
    let mut adam = AdamState::new(PARAM_COUNT);
    let mut rng = SeededRng::new(5);
    for (m, v) in adam.exp_avg.iter_mut().zip(adam.exp_avg_sq.iter_mut()) {
        *m = rng.uniform(-1e-3, 1e-3);
        *v = rng.uniform(0.0, 1e-6);
    }
    adam.step = (1 << 24) + 3;
    let mut params = Params::init(9);
    params.data[11] = f32::from_bits(0x7fc0_0abc);
    params.data[12] = -0.0;
    let dict = StateDict::from_training(&params, &adam).unwrap();
    g.import_state(&dict).unwrap();
    // Bit for bit (NaN included), name by name.
    let same = |x: &StateDict, y: &StateDict| {
        assert_eq!(x.names().collect::<Vec<_>>(), y.names().collect::<Vec<_>>());
        for ((name, a), (_, b)) in x.iter().zip(y.iter()) {
            match (a, b) {
                (Values::F32(a), Values::F32(b)) => assert_bits(name, a, b),
                (a, b) => assert_eq!(a, b, "{name}"),
            }
        }
    };
    let out = g.export_state().unwrap();
    same(&dict, &out);
    let mut bad = StateDict::new();
    bad.insert("fc1.bias", Values::F32(vec![0.0; 127]));
    let err = g.import_state(&bad).unwrap_err();
    assert!(
        matches!(&err, SimError::TensorLength { name, expected: 128, found: 127 } if name == "fc1.bias"),
        "{err}"
    );
    bad = StateDict::new();
    bad.insert("fc3.weight", Values::F32(vec![0.0]));
    assert!(matches!(
        g.import_state(&bad).unwrap_err(),
        SimError::UnknownTensor { .. }
    ));
    // Refused imports change nothing.
    same(&g.export_state().unwrap(), &out);

    // Finite weights for a step.
    g.import_state(&StateDict::from_params(&Params::init(9)).unwrap())
        .unwrap();
    let (images, labels) = synthetic(2 * BATCH, 24);
    g.upload_train_set(&images, &labels).unwrap();
    g.set_order(&(0..(2 * BATCH) as u32).collect::<Vec<_>>())
        .unwrap();
    g.set_device_scaler(DeviceScaler::default()).unwrap();
    g.step_device_scaled(0, BATCH, &AdamConfig::default())
        .unwrap();
    let err = g.export_state().unwrap_err();
    assert!(
        matches!(
            err,
            SimError::Device(DeviceError::Undrained { pending: 1, .. })
        ),
        "{err}"
    );
    assert!(g.import_state(&dict).is_err());
    let records = g.drain_records().unwrap();
    assert_eq!(records.len(), 1);
    let after = g.export_state().unwrap();
    let mut st = AdamState::new(0);
    after.copy_adam_into(&mut st).unwrap();
    let stepped = u64::from(!records[0].skipped);
    assert_eq!(
        st.step,
        adam.step + stepped,
        "the step's Adam count, read after the drain"
    );
}
