//! The mixed-precision emulation against the core's rounding: every value at a rounding point is
//! representable in the low format, the f32 path rounds nothing, and the emulation is what
//! rounding the f32 computation at those points gives.

use halfscale_core::fast::round_slice_through_f16;
use halfscale_sim::cpu::CpuBackend;
use halfscale_sim::dataset::IMAGE_PIXELS;
use halfscale_sim::linear::Linear;
use halfscale_sim::model::{Params, FC2};
use halfscale_sim::rng::SeededRng;
use halfscale_sim::{Backend, Batch, LowFormat, Recipe, StateDict};

fn batch(n: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
    let mut rng = SeededRng::new(seed);
    let images = (0..n * IMAGE_PIXELS)
        .map(|_| rng.uniform(0.0, 1.0))
        .collect();
    let labels = (0..n).map(|_| rng.below(10) as u8).collect();
    (images, labels)
}

fn all_representable(p: LowFormat, v: &[f32]) -> bool {
    v.iter().all(|&x| p.is_representable(x))
}

#[test]
fn every_rounding_point_holds_low_precision_values() {
    for (recipe, p) in [
        (Recipe::mixed_fp16(), LowFormat::F16),
        (Recipe::mixed_bf16(), LowFormat::Bf16),
    ] {
        let (images, labels) = batch(19, 3); // not a multiple of the group size
        let mut be = CpuBackend::new(recipe, 32);
        be.import_state(&StateDict::from_params(&Params::init(5)).unwrap())
            .unwrap();
        let loss = be
            .forward_backward(
                Batch {
                    images: &images,
                    labels: &labels,
                },
                1024.0,
            )
            .unwrap();
        assert!(loss.is_finite() && loss > 0.0);
        let mut logits = Vec::new();
        be.read_logits(&mut logits).unwrap();
        assert_eq!(logits.len(), 19 * 10);
        assert!(all_representable(p, &logits), "{p:?} logits");
        assert!(all_representable(p, be.logit_grads()), "{p:?} dL/dlogits");
        let mut grads = Params::zeros();
        be.read_grads(&mut grads).unwrap();
        assert!(all_representable(p, &grads.data), "{p:?} gradients");
        assert!(grads.data.iter().any(|&g| g != 0.0));
        // log_softmax runs in f32: its output is generally not representable.
        assert!(
            !all_representable(p, be.log_probs()),
            "{p:?} log_softmax is f32"
        );
    }
}

#[test]
fn fp32_path_rounds_nothing() {
    let (images, labels) = batch(8, 4);
    let mut be = CpuBackend::new(Recipe::fp32(), 8);
    be.import_state(&StateDict::from_params(&Params::init(6)).unwrap())
        .unwrap();
    be.forward_backward(
        Batch {
            images: &images,
            labels: &labels,
        },
        1.0,
    )
    .unwrap();
    let mut grads = Params::zeros();
    be.read_grads(&mut grads).unwrap();
    assert!(!all_representable(LowFormat::F16, &grads.data));
}

#[test]
fn mixed_logits_are_fc2_on_rounded_operands_rounded_once() {
    // fc2 alone: logits = round(h1 . round(W)^T + round(b)) with f32 accumulation.
    let mut rng = SeededRng::new(9);
    let n = 3;
    let mut h1: Vec<f32> = (0..n * 128).map(|_| rng.uniform(0.0, 2.0)).collect();
    round_slice_through_f16(&mut h1); // relu outputs of rounded values are representable
    let mut w: Vec<f32> = (0..1280).map(|_| rng.uniform(-0.1, 0.1)).collect();
    let mut b: Vec<f32> = (0..10).map(|_| rng.uniform(-0.1, 0.1)).collect();
    let mut y = vec![0.0f32; n * 10];
    round_slice_through_f16(&mut w);
    round_slice_through_f16(&mut b);
    let lin: Linear = FC2;
    lin.forward(n, &h1, &w, &b, &mut y);
    let mut y16 = y.clone();
    round_slice_through_f16(&mut y16);
    // f64 reference of the same products, rounded once: equal up to f32 accumulation order,
    // which can move an element by at most one fp16 ulp.
    for i in 0..n {
        for o in 0..10 {
            let exact: f64 = f64::from(b[o])
                + (0..128)
                    .map(|k| f64::from(h1[i * 128 + k]) * f64::from(w[o * 128 + k]))
                    .sum::<f64>();
            let e16 = half::f16::from_f64(exact).to_f32();
            let got = y16[i * 10 + o];
            let ulp = half::f16::from_f32(e16).to_f32().abs().max(6.1e-5) * 2f32.powi(-10);
            assert!((got - e16).abs() <= ulp, "{got} vs {e16}");
        }
    }
}

#[test]
fn without_scaling_small_logit_gradients_flush_to_zero() {
    // A confident model: dL/dlogits = (softmax - onehot)/N has elements far below fp16's
    // smallest subnormal (2^-24); at scale 1 they become 0, at 2^16 they survive.
    let (images, labels) = batch(8, 10);
    let mut params = Params::init(11);
    for (i, v) in params
        .layer_mut(halfscale_sim::Layer::Fc2)
        .1
        .iter_mut()
        .enumerate()
    {
        *v = if i == 0 { 10.0 } else { -10.0 }; // bias: class 0 dominates
    }
    let labels0 = vec![0u8; labels.len()];
    let count_zero = |scale: f32| {
        let mut be = CpuBackend::new(Recipe::mixed_fp16(), 8);
        be.import_state(&StateDict::from_params(&params).unwrap())
            .unwrap();
        be.forward_backward(
            Batch {
                images: &images,
                labels: &labels0,
            },
            scale,
        )
        .unwrap();
        be.logit_grads().iter().filter(|&&g| g == 0.0).count()
    };
    let mut reference = CpuBackend::new(Recipe::fp32(), 8);
    reference
        .import_state(&StateDict::from_params(&params).unwrap())
        .unwrap();
    reference
        .forward_backward(
            Batch {
                images: &images,
                labels: &labels0,
            },
            1.0,
        )
        .unwrap();
    let ref_zero = reference
        .logit_grads()
        .iter()
        .filter(|&&g| g == 0.0)
        .count();
    assert!(
        count_zero(1.0) > ref_zero + 40,
        "{} vs {ref_zero}",
        count_zero(1.0)
    );
    assert!(count_zero(65536.0) < count_zero(1.0));
}
