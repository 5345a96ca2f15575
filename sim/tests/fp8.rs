//! The FP8 recipes in training: the fake quantization against the core's implementations of
//! the cast (the CUDA `satfinite` profile) and of torchao's MX blocks, the GEMM operands the CPU
//! backend multiplies against the recipe's casts of its weights, delayed scaling's state over
//! steps, and determinism.

mod common;

use halfscale_core::e8m0::E8M0;
use halfscale_core::env::FpEnv;
use halfscale_core::env::RoundingMode;
use halfscale_core::minifloat::{E4M3, E5M2};
use halfscale_core::profile::Profile;
use halfscale_core::recipe::mx::{self, Element, ScaleMode, BLOCK_SIZE};
use halfscale_core::recipe::{te_compute_scale_from_amax, te_scale_inv, AmaxComputeAlgo};
use halfscale_sim::backend::Backend;
use halfscale_sim::cpu::CpuBackend;
use halfscale_sim::dataset::IMAGE_PIXELS;
use halfscale_sim::model::{Layer, Params};
use halfscale_sim::quantize::{self, Axis, Fp8Element};
use halfscale_sim::recipe::{Fp8Scaling, Role, Site};
use halfscale_sim::rng::SeededRng;
use halfscale_sim::{Batch, Recipe, StateDict};

/// The cast of `y` through the core's CUDA `__NV_SATFINITE` profile and back to f32.
fn satfinite(elem: Fp8Element, y: f32) -> f32 {
    let mut env = FpEnv::new(RoundingMode::NearestEven);
    let p = Profile::CudaSatfinite;
    match elem {
        Fp8Element::E4M3 => {
            let q: E4M3 = p.narrow(y, &mut env).unwrap();
            p.widen(q, &mut env).unwrap()
        }
        Fp8Element::E5M2 => {
            let q: E5M2 = p.narrow(y, &mut env).unwrap();
            p.widen(q, &mut env).unwrap()
        }
    }
}

/// Values around every binade of both formats, ties, beyond the range, infinities and NaN.
fn edge_values() -> Vec<f32> {
    let mut v = vec![0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 1e-30];
    for e in -30..20 {
        let p = 2f32.powi(e);
        for m in [
            1.0, 1.0625, 1.125, 1.1875, 1.25, 1.3125, 1.5, 1.75, 1.9375, 1.99,
        ] {
            v.push(p * m);
            v.push(-p * m);
        }
    }
    let mut rng = SeededRng::new(7);
    for _ in 0..4000 {
        let e = rng.below(50) as i32 - 30;
        let x = (rng.uniform(0.0, 1.0) + 1.0) * 2f32.powi(e);
        v.push(if rng.below(2) == 0 { x } else { -x });
    }
    v
}

fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

#[test]
fn per_tensor_casts_are_the_cuda_satfinite_casts_read_back_with_scale_inv() {
    let values = edge_values();
    for elem in [Fp8Element::E4M3, Fp8Element::E5M2] {
        for scale in [1.0f32, 448.0 / 3.7, 0.5, 57344.0 / 0.013, 3.0e-3] {
            let scale_inv = te_scale_inv(scale);
            let mut q = values.clone();
            let stats = quantize::quantize_tensor(&mut q, elem, scale, scale_inv);
            let mut saturated = 0;
            for (&x, &got) in values.iter().zip(&q) {
                let want = satfinite(elem, x * scale) * scale_inv;
                assert!(
                    same(got, want),
                    "{elem:?} scale {scale}: {x:e} -> {got:e}, the profile gives {want:e}"
                );
                saturated += u64::from((x * scale).abs() > elem.max());
            }
            assert_eq!(stats.total, values.len() as u64);
            assert_eq!(stats.saturated, saturated, "{elem:?} scale {scale}");
            assert_eq!(stats.nan, 1);
        }
    }
}

/// The MX cast of a row-major matrix along `axis` through the core's block routines: each line
/// in blocks of 32, a partial block padded with zeros.
fn mx_oracle(values: &[f32], rows: usize, cols: usize, axis: Axis, mode: ScaleMode) -> Vec<f32> {
    let mut out = values.to_vec();
    let (lines, len, stride, step) = match axis {
        Axis::Rows => (rows, cols, 1, cols),
        Axis::Cols => (cols, rows, cols, 1),
    };
    for line in 0..lines {
        for start in (0..len).step_by(BLOCK_SIZE) {
            let mut block = [0.0f32; BLOCK_SIZE];
            for i in start..(start + BLOCK_SIZE).min(len) {
                block[i - start] = values[line * step + i * stride];
            }
            let q = mx::quantize_block(&block, Element::E4M3, mode);
            let back = mx::dequantize_block(&q, Element::E4M3);
            for i in start..(start + BLOCK_SIZE).min(len) {
                out[line * step + i * stride] = back[i - start];
            }
        }
    }
    out
}

#[test]
fn mx_casts_are_the_cores_blocks_along_either_axis_with_partial_blocks() {
    let mut rng = SeededRng::new(3);
    // conv1's 25 taps (one partial block), fc2's 10 outputs, a batch of 64 and one of 37.
    for (rows, cols) in [(25, 96), (64, 10), (37, 128), (32, 64)] {
        let values: Vec<f32> = (0..rows * cols)
            .map(|i| {
                let x = (rng.uniform(0.0, 1.0) - 0.5) * 2f32.powi((i % 17) as i32 - 9);
                if i % 29 == 0 {
                    0.0
                } else {
                    x
                }
            })
            .collect();
        for axis in [Axis::Rows, Axis::Cols] {
            for mode in ScaleMode::ALL {
                let mut got = values.clone();
                let stats =
                    quantize::quantize_mx(&mut got, rows, cols, axis, Fp8Element::E4M3, mode);
                assert_eq!(stats.total, (rows * cols) as u64, "padding is not counted");
                let zeros = values.iter().filter(|x| **x == 0.0).count() as u64;
                let flushed = values
                    .iter()
                    .zip(&mx_oracle(&values, rows, cols, axis, mode))
                    .filter(|(x, q)| **x != 0.0 && **q == 0.0)
                    .count() as u64;
                assert!(zeros > 0);
                assert_eq!(stats.flushed_to_zero, flushed, "{axis:?} {mode:?}");
                let want = mx_oracle(&values, rows, cols, axis, mode);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        same(*g, *w),
                        "{rows}x{cols} {axis:?} {mode:?} at {i}: {g:e} vs {w:e}"
                    );
                }
            }
        }
    }
    // The E8M0 NaN scale (a NaN in the block) reads back as NaN.
    let mut v = vec![1.0f32; 32];
    v[3] = f32::NAN;
    quantize::quantize_mx(
        &mut v,
        1,
        32,
        Axis::Rows,
        Fp8Element::E4M3,
        ScaleMode::Floor,
    );
    assert!(v.iter().all(|x| x.is_nan()));
    assert!(E8M0::from_code(255).is_nan());
}

fn batch_of(data: &halfscale_sim::dataset::Split, n: usize) -> (Vec<f32>, Vec<u8>) {
    (
        data.images[..n * IMAGE_PIXELS].to_vec(),
        data.labels[..n].to_vec(),
    )
}

fn backend(recipe: Recipe) -> CpuBackend {
    let mut b = CpuBackend::new(recipe, 32);
    b.import_state(&StateDict::from_params(&Params::init(1)).unwrap())
        .unwrap();
    b
}

fn weight(p: &Params, layer: Layer) -> &[f32] {
    p.layer(layer).0
}

#[test]
fn the_gemms_multiply_the_recipes_casts_of_the_weights() {
    let data = common::data();
    let (images, labels) = batch_of(&data.train, 32);
    let batch = Batch {
        images: &images,
        labels: &labels,
    };
    // Current scaling: each weight's scale from its own amax, TE's compute_scale_from_amax.
    let mut b = backend(Recipe::fp8(Fp8Scaling::Current).unwrap());
    b.forward_backward(batch, 1.0).unwrap();
    for layer in Layer::ALL {
        let master = weight(b.params(), layer);
        let amax = master.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let scale = te_compute_scale_from_amax(amax, 448.0, false, 0.0, f32::MAX);
        let inv = te_scale_inv(scale);
        let cast = weight(b.cast_params(), layer);
        for (m, c) in master.iter().zip(cast) {
            assert!(
                same(*c, satfinite(Fp8Element::E4M3, m * scale) * inv),
                "{layer:?}"
            );
        }
        let t = b
            .recipe()
            .tensors()
            .iter()
            .find(|t| t.site == Site::new(layer, Role::Weight))
            .unwrap();
        assert_eq!(t.amax, amax);
        assert_eq!(t.scale_used, scale);
    }
    // MXFP8: blocks of 32 along each weight row (the forward's reduction).
    let mut b = backend(Recipe::mxfp8(ScaleMode::Floor));
    b.forward_backward(batch, 1.0).unwrap();
    for layer in Layer::ALL {
        let master = weight(b.params(), layer);
        let (_, rows, cols) = match layer {
            Layer::Conv1 => (0, 32, 25),
            Layer::Conv2 => (0, 64, 800),
            Layer::Fc1 => (0, 128, 1024),
            Layer::Fc2 => (0, 10, 128),
        };
        let want = mx_oracle(master, rows, cols, Axis::Rows, ScaleMode::Floor);
        let cast = weight(b.cast_params(), layer);
        assert!(
            cast.iter().zip(&want).all(|(c, w)| same(*c, *w)),
            "{layer:?}"
        );
    }
    // fc1's input is the MX cast of the features along each example's 1024 features.
    let x = b.fc1_input();
    assert_eq!(x.len(), 32 * 1024);
    let again = mx_oracle(x, 32, 1024, Axis::Rows, ScaleMode::Floor);
    assert!(
        x.iter().zip(&again).all(|(a, b)| same(*a, *b)),
        "a second cast changes nothing only if the first was the cast"
    );
}

#[test]
fn delayed_scaling_takes_each_scale_from_the_previous_steps_amaxes() {
    let data = common::data();
    let history = 3;
    let mut b = backend(
        Recipe::fp8(Fp8Scaling::Delayed {
            history,
            margin: 0,
            algo: AmaxComputeAlgo::Max,
        })
        .unwrap(),
    );
    let sites = b.recipe().tensors().len();
    assert_eq!(
        sites, 12,
        "input, weight and output gradient of four layers"
    );
    let mut amaxes: Vec<Vec<f32>> = vec![Vec::new(); sites];
    for step in 0..6 {
        let (images, labels) = batch_of(&data.train, 32);
        let batch = Batch {
            images: &images[..],
            labels: &labels[..],
        };
        let expected_used: Vec<f32> = b.recipe().tensors().iter().map(|t| t.scale).collect();
        b.forward_backward(batch, 1.0).unwrap();
        let mut grads = Params::zeros();
        b.read_grads(&mut grads).unwrap();
        b.adam_step(&Default::default()).unwrap();
        for (i, t) in b.recipe().tensors().iter().enumerate() {
            // The cast used the scale the previous update left (1 at the first step, as TE).
            assert_eq!(
                t.scale_used,
                expected_used[i],
                "{} step {step}",
                t.site.name()
            );
            if step == 0 {
                assert_eq!(t.scale_used, 1.0);
            }
            amaxes[i].push(t.amax);
            let window = &amaxes[i][amaxes[i].len().saturating_sub(history)..];
            let amax = window.iter().fold(0.0f32, |m, &a| m.max(a));
            let fp8_max = if t.site.role == Role::OutputGrad {
                57344.0f32
            } else {
                448.0
            };
            assert_eq!(
                t.element,
                if t.site.role == Role::OutputGrad {
                    Fp8Element::E5M2
                } else {
                    Fp8Element::E4M3
                }
            );
            assert!(amax > 0.0 && amax.is_finite(), "{}", t.site.name());
            assert_eq!(
                t.scale,
                fp8_max / amax,
                "{} after step {step}: the max over the last {history} amaxes",
                t.site.name()
            );
            assert_eq!(t.history.len(), history);
        }
    }
}

#[test]
fn a_zero_or_non_finite_amax_keeps_the_scale() {
    let mut r = Recipe::fp8(Fp8Scaling::Delayed {
        history: 2,
        margin: 1,
        algo: AmaxComputeAlgo::MostRecent,
    })
    .unwrap();
    let site = Site::new(Layer::Fc1, Role::Input);
    let scale_of = |r: &Recipe| r.tensors().iter().find(|t| t.site == site).unwrap().scale;
    assert_eq!(r.tensor_scale(site, 2.0), Some((1.0, 1.0)));
    r.end_step();
    // margin 1: 448 * 2^-1 / 2.
    assert_eq!(scale_of(&r), 112.0);
    for amax in [0.0, f32::INFINITY, f32::NAN] {
        let (used, inv) = r.tensor_scale(site, amax).unwrap();
        assert_eq!((used, inv), (112.0, 1.0 / 112.0));
        r.end_step();
        assert_eq!(scale_of(&r), 112.0, "amax {amax}");
    }
    // Sites that are not GEMM operands get no scale; other recipes scale nothing.
    assert_eq!(r.tensor_scale(Site::new(Layer::Fc1, Role::Bias), 1.0), None);
    assert_eq!(
        Recipe::mixed_bf16().tensor_scale(site, 1.0),
        None,
        "bf16 scales nothing"
    );
    assert!(Recipe::fp8(Fp8Scaling::Delayed {
        history: 0,
        margin: 0,
        algo: AmaxComputeAlgo::Max
    })
    .is_err());
}

#[test]
fn evaluation_records_no_amax() {
    let data = common::data();
    let (images, labels) = batch_of(&data.train, 32);
    let batch = Batch {
        images: &images,
        labels: &labels,
    };
    let mut b = backend(Recipe::fp8(Fp8Scaling::default()).unwrap());
    b.forward_backward(batch, 1.0).unwrap();
    let before = b.recipe().state();
    b.evaluate(batch).unwrap();
    assert_eq!(b.recipe().state(), before);
}

#[test]
fn fp8_steps_are_deterministic() {
    let data = common::data();
    let (images, labels) = batch_of(&data.train, 32);
    let batch = Batch {
        images: &images,
        labels: &labels,
    };
    for recipe in [
        Recipe::fp8(Fp8Scaling::default()).unwrap(),
        Recipe::fp8(Fp8Scaling::Current).unwrap(),
        Recipe::fp8(Fp8Scaling::None).unwrap(),
        Recipe::mxfp8(ScaleMode::Rceil),
    ] {
        let run = || {
            let mut b = backend(recipe.clone());
            let mut losses = Vec::new();
            for _ in 0..3 {
                losses.push(b.forward_backward(batch, 1024.0).unwrap().to_bits());
                b.unscale_and_check(1.0 / 1024.0).unwrap();
                b.adam_step(&Default::default()).unwrap();
            }
            let mut g = Params::zeros();
            b.read_grads(&mut g).unwrap();
            let bits: Vec<u32> = g.data.iter().map(|x| x.to_bits()).collect();
            (losses, bits, b.recipe().state())
        };
        assert!(run() == run(), "{}", recipe.name());
    }
}

#[test]
fn without_a_scale_fp8_flushes_what_current_scaling_keeps() {
    let data = common::data();
    let (images, labels) = batch_of(&data.train, 32);
    let batch = Batch {
        images: &images,
        labels: &labels,
    };
    let flushed = |recipe: Recipe| {
        let mut b = backend(recipe);
        // No loss scale: the gradients as they are.
        b.forward_backward(batch, 1.0).unwrap();
        let of = |role: Role| -> u64 {
            b.recipe()
                .tensors()
                .iter()
                .filter(|t| t.site.role == role)
                .map(|t| t.stats.flushed_to_zero)
                .sum()
        };
        (of(Role::Weight), of(Role::OutputGrad))
    };
    let (none_w, none_g) = flushed(Recipe::fp8(Fp8Scaling::None).unwrap());
    let (cur_w, cur_g) = flushed(Recipe::fp8(Fp8Scaling::Current).unwrap());
    assert!(
        none_w > 1000,
        "unscaled weights below E4M3's subnormals: {none_w}"
    );
    assert_eq!(cur_w, 0, "scaled to the format's top, no weight flushes");
    assert!(
        none_g > 10 * cur_g.max(1),
        "gradients flushed: none {none_g}, current {cur_g}"
    );
}

#[test]
fn a_partial_group_reads_nothing_left_by_an_earlier_batch() {
    // 30 examples: the last group of 4 holds 2. A backend that ran a full batch before must
    // give the same bits as a fresh one (every quantized copy and bias sum sized to the batch).
    let data = common::data();
    let (images, labels) = batch_of(&data.train, 32);
    let full = Batch {
        images: &images,
        labels: &labels,
    };
    let (images30, labels30) = batch_of(&data.test, 30);
    let partial = Batch {
        images: &images30,
        labels: &labels30,
    };
    for recipe in [
        Recipe::fp8(Fp8Scaling::Current).unwrap(),
        Recipe::mxfp8(ScaleMode::Floor),
    ] {
        let grads = |warm: bool| {
            let mut b = backend(recipe.clone());
            if warm {
                b.forward_backward(full, 1.0).unwrap();
            }
            b.forward_backward(partial, 1.0).unwrap();
            let mut g = Params::zeros();
            b.read_grads(&mut g).unwrap();
            g.data.iter().map(|x| x.to_bits()).collect::<Vec<u32>>()
        };
        let (warm, fresh) = (grads(true), grads(false));
        let first = warm.iter().zip(&fresh).position(|(a, b)| a != b);
        assert_eq!(
            first,
            None,
            "{}: gradients differ from element",
            recipe.name()
        );
    }
}
