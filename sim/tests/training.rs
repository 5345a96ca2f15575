//! The loop: a skipped step changes nothing, runs are deterministic (also across thread
//! counts), the assembled network's gradient matches finite differences, and the seed's lines
//! are formatted as Python formats them.

mod common;

use common::{data, Collect};
use halfscale_core::scaler::{LossScaler, ScalerConfig};
use halfscale_sim::adam::AdamState;
use halfscale_sim::cpu::CpuBackend;
use halfscale_sim::crosscheck::{CrossCheck, Finding};
use halfscale_sim::model::{Params, PARAM_COUNT};
use halfscale_sim::rng::SeededRng;
use halfscale_sim::train::{self, progress_line, TestResult, TrainConfig};
use halfscale_sim::{Backend, Batch, Recipe, StateDict};

fn run(
    precision: Recipe,
    scaler: ScalerConfig,
    batches: usize,
    seed: u64,
) -> (train::Summary, Collect, AdamState) {
    let mut backend = CpuBackend::new(precision.clone(), 64);
    let mut scaler = LossScaler::new(scaler).unwrap();
    let mut check = CrossCheck::new(Box::new(CpuBackend::new(Recipe::fp32(), 64)), &precision);
    let mut obs = Collect::default();
    let config = TrainConfig {
        seed,
        max_batches: Some(batches),
        log_interval: 1,
        ..TrainConfig::default()
    };
    let s = train::train(
        &mut backend,
        &mut scaler,
        Some(&mut check),
        &data(),
        &config,
        &mut obs,
    )
    .unwrap();
    let mut adam = AdamState::new(PARAM_COUNT);
    backend
        .export_state()
        .unwrap()
        .copy_adam_into(&mut adam)
        .unwrap();
    (s, obs, adam)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn a_skipped_step_leaves_weights_and_optimizer_bit_identical() {
    // A scale of 2^100 overflows fp16 in the first backward: the step must be skipped.
    let huge = ScalerConfig {
        init_scale: 2f64.powi(100),
        ..ScalerConfig::pytorch()
    };
    let (s, obs, adam) = run(Recipe::mixed_fp16(), huge, 1, 3);
    assert_eq!(s.skipped, 1);
    assert_eq!(bits(&s.params.data), bits(&Params::init(3).data));
    assert_eq!(adam, AdamState::new(PARAM_COUNT));
    assert_eq!(s.final_scale, 2f64.powi(99), "backoff halves the scale");
    let r = &obs.records[0];
    assert!(r.outcome.skipped && r.outcome.found() != "finite");
    assert!(r.outcome.first_non_finite().is_some());
    let c = r.check.as_ref().unwrap();
    assert!(c.expected_skip && c.scaler_skipped && c.skip_ok);
    assert_eq!(s.wrong_skips, 0);
}

#[test]
fn two_batch_runs_are_deterministic_for_a_seed_and_across_thread_counts() {
    let go = |threads: usize, seed: u64| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| run(Recipe::mixed_fp16(), ScalerConfig::pytorch(), 2, seed))
    };
    let (a, oa, _) = go(2, 5);
    let (b, ob, _) = go(2, 5);
    let (c, oc, _) = go(1, 5);
    let (d, _, _) = go(2, 6);
    assert_eq!(a.steps, 2);
    assert_eq!(bits(&a.params.data), bits(&b.params.data));
    assert_eq!(bits(&a.params.data), bits(&c.params.data));
    assert_ne!(bits(&a.params.data), bits(&d.params.data));
    assert_eq!(oa.lines, ob.lines);
    assert_eq!(oa.lines, oc.lines);
    assert_eq!(a.test, c.test);
    assert!(
        a.params.data != Params::init(5).data,
        "the steps moved the weights"
    );
}

#[test]
fn mixed_training_learns_and_stays_within_the_cross_check_bounds() {
    for p in [Recipe::mixed_fp16(), Recipe::mixed_bf16()] {
        let (s, obs, _) = run(p.clone(), ScalerConfig::pytorch(), 4, 1);
        assert_eq!(s.checked_steps, 4);
        assert_eq!(s.divergent_steps, 0, "{p:?}: {:?}", s.worst);
        assert_eq!(s.wrong_skips, 0);
        let first = obs.records.first().unwrap().outcome.loss;
        assert!(first > 2.0 && first < 2.6, "{first}");
        assert!(s.test.is_some());
    }
    // 12 epochs' worth of steps on the synthetic set: it is learnable.
    let mut backend = CpuBackend::new(Recipe::mixed_fp16(), 64);
    let mut scaler = LossScaler::new(ScalerConfig::pytorch()).unwrap();
    let config = TrainConfig {
        epochs: 12,
        ..TrainConfig::default()
    };
    let s = train::train(
        &mut backend,
        &mut scaler,
        None,
        &data(),
        &config,
        &mut Collect::default(),
    )
    .unwrap();
    let t = s.test.unwrap();
    assert!(t.correct >= 60, "{t:?}");
}

/// The whole network in f64, composed plainly from the (separately finite-difference-tested)
/// layers on the whole batch at once: returns the loss and, with `grads`, all gradients.
fn network_f64(p: &[f64], images: &[f64], labels: &[u8], grads: Option<&mut [f64]>) -> f64 {
    use halfscale_sim::model::{Layer, CONV1, CONV2, FC1, FC2};
    use halfscale_sim::{loss, pool, relu};
    let n = labels.len();
    let at = |l: Layer| {
        let r = l.range();
        let w = l.sizes().0;
        (&p[r.start..r.start + w], &p[r.start + w..r.end])
    };
    let ((w1, b1), (w2, b2), (w3, b3), (w4, b4)) = (
        at(Layer::Conv1),
        at(Layer::Conv2),
        at(Layer::Fc1),
        at(Layer::Fc2),
    );
    let mut col1 = vec![0.0; CONV1.col_len(n)];
    CONV1.im2col(n, images, &mut col1);
    let mut a1 = vec![0.0; CONV1.output_len(n)];
    CONV1.forward(n, &col1, w1, b1, &mut a1);
    let mut p1 = vec![0.0; 32 * n * 144];
    let mut arg1 = vec![0u8; p1.len()];
    pool::forward(32 * n, 24, 24, &a1, &mut p1, &mut arg1);
    relu::forward(&mut p1);
    let mut col2 = vec![0.0; CONV2.col_len(n)];
    CONV2.im2col(n, &p1, &mut col2);
    let mut a2 = vec![0.0; CONV2.output_len(n)];
    CONV2.forward(n, &col2, w2, b2, &mut a2);
    let mut p2 = vec![0.0; 64 * n * 16];
    let mut arg2 = vec![0u8; p2.len()];
    pool::forward(64 * n, 8, 8, &a2, &mut p2, &mut arg2);
    relu::forward(&mut p2);
    // flatten: [c][n][16] -> [n][c*16]
    let mut flat = vec![0.0; n * 1024];
    for c in 0..64 {
        for i in 0..n {
            for s in 0..16 {
                flat[i * 1024 + c * 16 + s] = p2[(c * n + i) * 16 + s];
            }
        }
    }
    let mut h1 = vec![0.0; n * 128];
    FC1.forward(n, &flat, w3, b3, &mut h1);
    relu::forward(&mut h1);
    let mut logits = vec![0.0; n * 10];
    FC2.forward(n, &h1, w4, b4, &mut logits);
    let mut logp = vec![0.0; n * 10];
    loss::log_softmax(n, 10, &logits, &mut logp);
    let l = loss::nll_loss(n, 10, &logp, labels);
    let Some(g) = grads else { return l };
    let mut dlogits = vec![0.0; n * 10];
    loss::backward(n, 10, &logp, labels, 1.0, &mut dlogits);
    let (g1, rest) = g.split_at_mut(Layer::Conv1.range().len());
    let (g2, rest) = rest.split_at_mut(Layer::Conv2.range().len());
    let (g3, g4) = rest.split_at_mut(Layer::Fc1.range().len());
    let (gw4, gb4) = g4.split_at_mut(1280);
    FC2.backward_params(n, &dlogits, &h1, gw4, gb4);
    let mut dh1 = vec![0.0; n * 128];
    FC2.backward_input(n, &dlogits, w4, &mut dh1);
    relu::backward(&h1, &mut dh1);
    let (gw3, gb3) = g3.split_at_mut(131072);
    FC1.backward_params(n, &dh1, &flat, gw3, gb3);
    let mut dflat = vec![0.0; n * 1024];
    FC1.backward_input(n, &dh1, w3, &mut dflat);
    let mut dp2 = vec![0.0; p2.len()];
    for c in 0..64 {
        for i in 0..n {
            for s in 0..16 {
                dp2[(c * n + i) * 16 + s] = dflat[i * 1024 + c * 16 + s];
            }
        }
    }
    relu::backward(&p2, &mut dp2);
    let mut da2 = vec![0.0; a2.len()];
    pool::backward(64 * n, 8, 8, &dp2, &arg2, &mut da2);
    let (gw2, gb2) = g2.split_at_mut(51200);
    CONV2.backward_params(n, &da2, &col2, gw2, gb2, false);
    let (mut dcol2, mut dp1) = (vec![0.0; col2.len()], vec![0.0; p1.len()]);
    CONV2.backward_input(n, &da2, w2, &mut dcol2, &mut dp1);
    relu::backward(&p1, &mut dp1);
    let mut da1 = vec![0.0; a1.len()];
    pool::backward(32 * n, 24, 24, &dp1, &arg1, &mut da1);
    let (gw1, gb1) = g1.split_at_mut(800);
    CONV1.backward_params(n, &da1, &col1, gw1, gb1, false);
    l
}

#[test]
fn network_gradient_matches_an_f64_composition_and_its_finite_differences() {
    let d = data();
    let n = 19; // two full groups of 8 and a partial one
    let (images, labels) = d.train.slice(0, n);
    let params = Params::init(8);
    let mut be = CpuBackend::new(Recipe::fp32(), n);
    be.import_state(&StateDict::from_params(&params).unwrap())
        .unwrap();
    let loss = be.forward_backward(Batch { images, labels }, 1.0).unwrap();
    let mut grads = Params::zeros();
    be.read_grads(&mut grads).unwrap();

    let p64: Vec<f64> = params.data.iter().map(|&v| f64::from(v)).collect();
    let x64: Vec<f64> = images.iter().map(|&v| f64::from(v)).collect();
    let mut g64 = vec![0.0; PARAM_COUNT];
    let l64 = network_f64(&p64, &x64, labels, Some(&mut g64));
    assert!(
        (f64::from(loss) - l64).abs() < 1e-5 * l64,
        "{loss} vs {l64}"
    );
    let norm = g64.iter().map(|v| v * v).sum::<f64>().sqrt();
    let diff = grads
        .data
        .iter()
        .zip(&g64)
        .map(|(&a, b)| (f64::from(a) - b).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(
        diff <= 1e-4 * norm,
        "f32 backend vs f64 composition: {diff} / {norm}"
    );

    // Central differences of the f64 network at the largest gradient of each layer and a few
    // random coordinates.
    let mut rng = SeededRng::new(12);
    let mut coords: Vec<usize> = halfscale_sim::Layer::ALL
        .iter()
        .map(|l| {
            l.range()
                .max_by(|&a, &b| g64[a].abs().total_cmp(&g64[b].abs()))
                .unwrap()
        })
        .collect();
    coords.extend((0..8).map(|_| rng.below(PARAM_COUNT as u32) as usize));
    for i in coords {
        let h = 1e-6;
        let mut p = p64.clone();
        p[i] += h;
        let up = network_f64(&p, &x64, labels, None);
        p[i] -= 2.0 * h;
        let down = network_f64(&p, &x64, labels, None);
        let fd = (up - down) / (2.0 * h);
        assert!(
            (fd - g64[i]).abs() <= 1e-6 + 1e-4 * g64[i].abs(),
            "param {i}: fd {fd} vs {}",
            g64[i]
        );
    }
}

#[test]
fn seed_lines_are_formatted_as_python_does() {
    assert_eq!(
        progress_line(0, 100, 64, 60000, 938, 0.123456),
        "Train Epoch: 0 [6400/60000 (11%)]\tLoss: 0.123456"
    );
    assert_eq!(
        progress_line(0, 0, 64, 60000, 938, 2.3013),
        "Train Epoch: 0 [0/60000 (0%)]\tLoss: 2.301300"
    );
    assert_eq!(
        progress_line(2, 900, 64, 60000, 938, 0.5),
        "Train Epoch: 2 [57600/60000 (96%)]\tLoss: 0.500000"
    );
    // Python rounds half to even: f"{12.5:.0f}" == "12", f"{0.0078125:.6f}" == "0.007812".
    assert_eq!(
        progress_line(0, 1, 8, 64, 8, 0.0078125),
        "Train Epoch: 0 [8/64 (12%)]\tLoss: 0.007812"
    );
    let t = TestResult {
        average_loss: 0.0456,
        correct: 9861,
        total: 10000,
    };
    assert_eq!(
        t.line(),
        "Test set: Average loss: 0.0456, Accuracy: 9861/10000 (98.61%)"
    );
}

/// `rel_diff` against exact integer sums of squares. Values `m * 2^-44` with `|m| < 2^44` and
/// at most 24 significant bits are f32s; their differences' squares and their own are integers
/// times 2^-88, whose sums over 100,003 terms fit an `i128` exactly. The figure may differ from
/// the exact one only by the f64 sums' roundings; and it is the same bits on one thread as on
/// two (a figure the metrics record must not depend on the machine).
#[test]
fn rel_diff_is_the_exact_relative_norm_to_rounding_on_any_thread_count() {
    use halfscale_sim::crosscheck::rel_diff;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let n = 100_003; // several blocks and a remainder that is no whole lane group
    let (mut a, mut r, mut ma, mut mr) = (vec![], vec![], vec![], vec![]);
    for _ in 0..n {
        // m = s * 2^k: s of at most 24 bits, k in 0..=20.
        let value = |s: i64, k: u64| {
            let m = s << k;
            (m, m as f32 * 2f32.powi(-44))
        };
        let bits = next();
        let (s1, k) = (
            ((bits & 0xff_ffff) as i64) * if bits >> 63 == 1 { -1 } else { 1 },
            (bits >> 24) % 21,
        );
        let (m1, x) = value(s1, k);
        // `a` near `r` (a gradient and its reference: the same binade, a few units off) or
        // anywhere.
        let (m2, y) = if next() % 4 == 0 {
            let bits = next();
            value((bits & 0xff_ffff) as i64, (bits >> 24) % 21)
        } else {
            let s2 = (s1 + (next() % 2001) as i64 - 1000).clamp(-0xff_ffff, 0xff_ffff);
            value(s2, k)
        };
        assert_eq!(
            (x as f64 * 2f64.powi(44)) as i64,
            m1,
            "exactly representable"
        );
        assert_eq!(
            (y as f64 * 2f64.powi(44)) as i64,
            m2,
            "exactly representable"
        );
        a.push(y);
        r.push(x);
        ma.push(m2);
        mr.push(m1);
    }
    let (mut num, mut den) = (0i128, 0i128);
    for (&p, &q) in ma.iter().zip(&mr) {
        num += i128::from(p - q) * i128::from(p - q);
        den += i128::from(q) * i128::from(q);
    }
    let exact = (num as f64 / den as f64).sqrt();
    let on = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| rel_diff(&a, &r))
    };
    let got = on(2);
    assert!((got - exact).abs() <= 1e-12 * exact, "{got} vs {exact}");
    assert_eq!(got.to_bits(), on(1).to_bits());
    assert_eq!(rel_diff(&[0.0; 9], &[0.0; 9]), 0.0);
    assert_eq!(rel_diff(&[0.0, 1e-30], &[0.0, 0.0]), f64::INFINITY);
    assert_eq!(rel_diff(&a, &a), 0.0);
    assert!(rel_diff(&[f32::NAN, 1.0], &[1.0, 1.0]).is_nan());
}

#[test]
fn non_finite_gradients_are_a_skip_with_a_scaler_and_a_finding_without() {
    let d = data();
    let (images, labels) = d.train.slice(0, 8);
    let batch = Batch { images, labels };
    let mut params = Params::init(4);
    for w in params.layer_mut(halfscale_sim::Layer::Conv1).0.iter_mut() {
        *w *= 1e5; // conv1 overflows fp16 in the forward pass
    }
    let mut be = CpuBackend::new(Recipe::mixed_fp16(), 8);
    be.import_state(&StateDict::from_params(&params).unwrap())
        .unwrap();
    let loss = be.forward_backward(batch, 1.0).unwrap();
    let mut check = CrossCheck::new(
        Box::new(CpuBackend::new(Recipe::fp32(), 8)),
        &Recipe::mixed_fp16(),
    );
    let r = check.compare(&be, batch, loss, 1.0, 1.0).unwrap();
    assert!(r.expected_skip);
    // A scaler that skips: right decision, nothing applied.
    let with = r.clone().judge(true, true);
    assert!(with.skip_ok && with.within_bounds);
    assert_eq!(with.finding(), None);
    // A scaler that steps anyway: wrong decision.
    let wrong = r.clone().judge(false, true);
    assert!(!wrong.skip_ok);
    assert!(matches!(wrong.finding(), Some(Finding::NonFiniteApplied)));
    // No scaler: nothing to decide, but non-finite gradients reach the weights.
    let r = r.judge(false, false);
    assert!(r.skip_ok && !r.within_bounds);
    assert_eq!(r.finding(), Some(Finding::NonFiniteApplied));
    assert_eq!(
        r.finding().unwrap().to_string(),
        "the low-precision backward produced inf/NaN and no scaler skipped the step"
    );
}

#[test]
fn state_of_another_length_is_a_typed_error_and_changes_nothing() {
    let mut be = CpuBackend::new(Recipe::mixed_fp16(), 8);
    be.import_state(&StateDict::from_params(&Params::init(3)).unwrap())
        .unwrap();
    let short = Params {
        data: vec![0.5; PARAM_COUNT - 1],
    };
    let err = StateDict::from_params(&short)
        .and_then(|s| be.import_state(&s))
        .unwrap_err();
    assert!(
        matches!(
            err,
            halfscale_sim::SimError::StateMismatch {
                what: "parameters",
                expected: PARAM_COUNT,
                found
            } if found == PARAM_COUNT - 1
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "parameters: {} values, but the model has {PARAM_COUNT}",
            PARAM_COUNT - 1
        )
    );
    let mut kept = Params::zeros();
    be.export_state()
        .unwrap()
        .copy_params_into(&mut kept)
        .unwrap();
    assert_eq!(
        kept.data,
        Params::init(3).data,
        "a refused load changes nothing"
    );

    let mut other_model = AdamState::new(PARAM_COUNT + 7);
    other_model.step = 9;
    let err = StateDict::from_training(&Params::init(3), &other_model)
        .and_then(|s| be.import_state(&s))
        .unwrap_err();
    assert!(err.to_string().starts_with("Adam exp_avg: "), "{err}");
    let mut adam = AdamState::new(0);
    be.export_state()
        .unwrap()
        .copy_adam_into(&mut adam)
        .unwrap();
    assert_eq!((adam.step, adam.exp_avg.len()), (0, PARAM_COUNT));
}

#[test]
fn a_scaler_error_mid_run_names_the_step_and_keeps_the_scaler_error_as_its_source() {
    use halfscale_core::scaler::ScalerError;
    use halfscale_sim::dataset::{Dataset, IMAGE_PIXELS};
    use halfscale_sim::SimError;
    // A NaN pixel makes the loss and the gradients NaN; the recommended policy errors on NaN.
    let mut data = Dataset {
        train: common::synthetic(8, 1),
        test: common::synthetic(8, 2),
    };
    data.train.images[3 * IMAGE_PIXELS + 100] = f32::NAN;
    let mut backend = CpuBackend::new(Recipe::mixed_fp16(), 8);
    let mut scaler = LossScaler::new(ScalerConfig::recommended()).unwrap();
    let config = TrainConfig {
        batch_size: 8,
        evaluate: false,
        ..TrainConfig::default()
    };
    let err = train::train(
        &mut backend,
        &mut scaler,
        None,
        &data,
        &config,
        &mut Collect::default(),
    )
    .unwrap_err();
    assert!(matches!(err, SimError::Scaler { step: 0, .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("loss scaler: step 0: NaN gradient"),
        "{err}"
    );
    let source = std::error::Error::source(&err).expect("a source");
    assert!(
        matches!(
            source.downcast_ref::<ScalerError>(),
            Some(ScalerError::NanGradient { .. })
        ),
        "{source}"
    );
}

#[test]
fn a_verdict_is_complete_and_names_its_finding() {
    use halfscale_sim::crosscheck::{Bounds, Comparison};
    let bounds = Bounds::for_recipe(&Recipe::mixed_fp16());
    let comparison = Comparison {
        loss_ref: 2.3,
        loss_rel: 1e-4,
        logits_rel: 1e-4,
        layers: Vec::new(),
        logit_grad_census: Default::default(),
        expected_skip: false,
        max_grad_rel: 0.5, // beyond fp16's 3e-1
        bounds,
    };
    let v = comparison.clone().judge(false, true);
    assert!(v.skip_ok && !v.within_bounds);
    assert_eq!(
        v.finding().unwrap().to_string(),
        "divergence beyond the bound: loss 1.00e-4, logits 1.00e-4, gradients 5.00e-1"
    );
    let v = comparison.clone().judge(true, true);
    assert_eq!(
        v.finding().unwrap().to_string(),
        "wrong skip decision: the scaler skipped but the low-precision backward produced no inf/NaN"
    );
    let within = Comparison {
        max_grad_rel: 0.1,
        ..comparison
    }
    .judge(false, true);
    assert_eq!(within.finding(), None);
}
