//! The simulator's layers forward and backward at batch 64, in GFLOP/s against the machine's f32
//! FMA peak (printed at the start, from the detected ISA, the core count and the measured clock),
//! and a whole training step (forward, backward, unscale + check, Adam) in fp32 and in emulated
//! fp16 and bf16 mixed precision and in the FP8 recipes (fp8 delayed and current scaling,
//! mxfp8), against the same peak; and the FP8 recipes' emulated quantization (fake-quantizing a
//! GEMM operand in place) on conv2's im2col matrix of a group of 4 images, in elements/s.
//!
//! The layer benches call the public layer functions once on all 64 images (one GEMM per
//! convolution, im2col/col2im included), on one thread: their anchor is one core's peak. The
//! training step is `CpuBackend`, which splits the batch over rayon's threads (groups of 4
//! images): its anchor is the whole machine's peak. Criterion's throughput is FLOPs counted as 2
//! per multiply-add of the GEMMs (bias, pooling and relu are not counted), so its "elem/s" reads
//! as FLOP/s.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use halfscale::core::recipe::mx::ScaleMode;
use halfscale::core::scaler::inv_scale;
use halfscale::sim::adam::AdamConfig;
use halfscale::sim::conv2d::Conv2d;
use halfscale::sim::cpu::CpuBackend;
use halfscale::sim::crosscheck::CrossCheck;
use halfscale::sim::gemm::{gemm_f32_with, Kernel, Mat, MatMut};
use halfscale::sim::linear::Linear;
use halfscale::sim::model::{Layer, Params, CONV1, CONV2, FC1, FC2};
use halfscale::sim::quantize::{self, Axis, Fp8Element};
use halfscale::sim::recipe::Fp8Scaling;
use halfscale::sim::{pool, relu, Backend, Batch, Recipe, StateDict};
use std::hint::black_box;

const N: usize = 64;

fn conv_flops(c: &Conv2d) -> u64 {
    2 * (c.out_channels * c.col_rows() * N * c.out_plane()) as u64
}

fn linear_flops(l: &Linear) -> u64 {
    2 * (l.in_features * l.out_features * N) as u64
}

fn data(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = common::Rng(seed);
    (0..len).map(|_| rng.unit()).collect()
}

fn layers(c: &mut Criterion) {
    let machine = common::Machine::detect();
    println!("machine: {}", machine.describe());
    println!(
        "one core's f32 FMA peak: {:.1} GFLOP/s",
        machine.peak_flops() / machine.cores as f64 / 1e9
    );
    let params = Params::init(1);

    for (layer, conv) in [(Layer::Conv1, CONV1), (Layer::Conv2, CONV2)] {
        let (weight, bias) = params.layer(layer);
        let x = data(conv.input_len(N), 7);
        let mut col = vec![0.0f32; conv.col_len(N)];
        let mut y = vec![0.0f32; conv.output_len(N)];
        let dy = data(conv.output_len(N), 11);
        let (mut dw, mut db) = (vec![0.0f32; weight.len()], vec![0.0f32; bias.len()]);
        let mut dx = vec![0.0f32; conv.input_len(N)];
        let mut dcol = vec![0.0f32; conv.col_len(N)];
        conv.im2col(N, &x, &mut col);

        let mut group = c.benchmark_group(format!("{}_b64", layer.name()));
        group.throughput(Throughput::Elements(conv_flops(&conv)));
        group.bench_function("forward", |b| {
            b.iter(|| {
                conv.im2col(N, &x, &mut col);
                conv.forward(N, &col, weight, bias, &mut y);
                black_box(&y);
            })
        });
        // conv1's input is the images: training needs no input gradient there.
        let input_grad = layer != Layer::Conv1;
        group.throughput(Throughput::Elements(
            conv_flops(&conv) * if input_grad { 2 } else { 1 },
        ));
        group.bench_function("backward", |b| {
            b.iter(|| {
                conv.backward_params(N, &dy, &col, &mut dw, &mut db, false);
                if input_grad {
                    conv.backward_input(N, &dy, weight, &mut dcol, &mut dx);
                }
                black_box((&dw, &db, &dx));
            })
        });
        group.finish();
    }

    for (layer, lin) in [(Layer::Fc1, FC1), (Layer::Fc2, FC2)] {
        let (weight, bias) = params.layer(layer);
        let x = data(N * lin.in_features, 13);
        let dy = data(N * lin.out_features, 17);
        let mut y = vec![0.0f32; N * lin.out_features];
        let (mut dw, mut db) = (vec![0.0f32; weight.len()], vec![0.0f32; bias.len()]);
        let mut dx = vec![0.0f32; N * lin.in_features];
        let mut group = c.benchmark_group(format!("{}_b64", layer.name()));
        group.throughput(Throughput::Elements(linear_flops(&lin)));
        group.bench_function("forward", |b| {
            b.iter(|| {
                lin.forward(N, &x, weight, bias, &mut y);
                black_box(&y);
            })
        });
        group.throughput(Throughput::Elements(2 * linear_flops(&lin)));
        group.bench_function("backward", |b| {
            b.iter(|| {
                lin.backward_params(N, &dy, &x, &mut dw, &mut db);
                lin.backward_input(N, &dy, weight, &mut dx);
                black_box((&dw, &db, &dx));
            })
        });
        group.finish();
    }

    // The layers without FLOPs to speak of, in elements (inputs) per second.
    let (planes, side) = (CONV1.out_channels * N, CONV1.out_height());
    let x = data(planes * side * side, 19);
    let mut y = vec![0.0f32; planes * side * side / 4];
    let mut arg = vec![0u8; y.len()];
    let dy = data(y.len(), 23);
    let mut dx = vec![0.0f32; x.len()];
    let mut group = c.benchmark_group("pool1_relu_b64");
    group.throughput(Throughput::Elements(x.len() as u64));
    group.bench_function("pool_forward", |b| {
        b.iter(|| {
            pool::forward(planes, side, side, &x, &mut y, &mut arg);
            black_box(&y);
        })
    });
    group.bench_function("pool_backward", |b| {
        b.iter(|| {
            pool::backward(planes, side, side, &dy, &arg, &mut dx);
            black_box(&dx);
        })
    });
    group.throughput(Throughput::Elements(y.len() as u64));
    let mut r = y.clone();
    group.bench_function("relu_forward", |b| {
        b.iter(|| {
            r.copy_from_slice(&y);
            relu::forward(&mut r);
            black_box(&r);
        })
    });
    group.finish();
}

/// The GEMMs of one training step as `CpuBackend` runs them (convolutions per group of 4 images,
/// fc1 per half batch, fc2 per batch): `(name, m, k, n, a transposed, b transposed)`.
const GEMM_SHAPES: &[(&str, usize, usize, usize, bool, bool)] = &[
    ("conv1_fwd_32x25x2304", 32, 25, 2304, false, false),
    ("conv1_dw_32x2304x25", 32, 2304, 25, false, true),
    ("conv2_fwd_64x800x256", 64, 800, 256, false, false),
    ("conv2_dw_64x256x800", 64, 256, 800, false, true),
    ("conv2_dcol_800x64x256", 800, 64, 256, true, false),
    ("fc1_fwd_32x1024x128", 32, 1024, 128, false, true),
    ("fc1_dw_64x64x1024", 64, 64, 1024, true, false),
    ("fc1_dx_32x128x1024", 32, 128, 1024, false, false),
];

/// Each GEMM shape of a step on each kernel this CPU runs (the portable one is left out: without
/// a compile-time FMA it calls `fmaf` per element and says nothing about the others), one
/// thread, GFLOP/s against one core's peak. `reference` is `matrixmultiply`, the kernel before.
fn gemm_kernels(c: &mut Criterion) {
    let kernels: Vec<Kernel> = [Kernel::Reference, Kernel::Avx2Fma, Kernel::Avx512]
        .into_iter()
        .filter(|k| k.supported())
        .collect();
    for &(name, m, k, n, a_t, b_t) in GEMM_SHAPES {
        let a = data(m * k, 31);
        let b = data(k * n, 37);
        let mut out = vec![0.0f32; m * n];
        let av = if a_t {
            Mat::row_major(&a, k, m).t()
        } else {
            Mat::row_major(&a, m, k)
        };
        let bv = if b_t {
            Mat::row_major(&b, n, k).t()
        } else {
            Mat::row_major(&b, k, n)
        };
        let mut group = c.benchmark_group(format!("gemm_{name}"));
        group.throughput(Throughput::Elements(2 * (m * k * n) as u64));
        for &kernel in &kernels {
            group.bench_function(kernel.name(), |bench| {
                bench.iter(|| {
                    gemm_f32_with(kernel, 1.0, av, bv, 0.0, MatMut::row_major(&mut out, m, n))
                        .expect("a supported kernel");
                    black_box(&out);
                })
            });
        }
        group.finish();
    }
}

/// FLOPs of one training step at batch 64: every layer forward, every layer backward (conv1 with
/// no input gradient).
fn step_flops() -> u64 {
    let forward = conv_flops(&CONV1) + conv_flops(&CONV2) + linear_flops(&FC1) + linear_flops(&FC2);
    let backward =
        conv_flops(&CONV1) + 2 * (conv_flops(&CONV2) + linear_flops(&FC1) + linear_flops(&FC2));
    forward + backward
}

fn training_step(c: &mut Criterion) {
    let images = data(N * 28 * 28, 29)
        .into_iter()
        .map(|v| v.abs())
        .collect::<Vec<f32>>();
    let labels: Vec<u8> = (0..N as u8).map(|i| i % 10).collect();
    let batch = Batch {
        images: &images,
        labels: &labels,
    };
    let adam = AdamConfig::default();
    let mut group = c.benchmark_group("train_step_b64");
    group.throughput(Throughput::Elements(step_flops()));
    let recipes = [
        ("fp32", Recipe::fp32(), 1.0f32, false),
        ("mixed_fp16", Recipe::mixed_fp16(), 65536.0, false),
        ("mixed_bf16", Recipe::mixed_bf16(), 1.0, false),
        (
            "fp8_delayed",
            Recipe::fp8(Fp8Scaling::default()).unwrap(),
            1.0,
            false,
        ),
        (
            "fp8_current",
            Recipe::fp8(Fp8Scaling::Current).unwrap(),
            1.0,
            false,
        ),
        ("mxfp8_floor", Recipe::mxfp8(ScaleMode::Floor), 1.0, false),
        // The default run's step: mixed fp16 and the f32 reference's step, compared.
        ("mixed_fp16_checked", Recipe::mixed_fp16(), 65536.0, true),
    ];
    for (name, precision, scale, checked) in recipes {
        let mut check = checked
            .then(|| CrossCheck::new(Box::new(CpuBackend::new(Recipe::fp32(), N)), &precision));
        let mut backend = CpuBackend::new(precision, N);
        backend
            .import_state(&StateDict::from_params(&Params::init(3)).unwrap())
            .unwrap();
        let initial = Params::init(3);
        let mut steps = 0u32;
        let inv = inv_scale(f64::from(scale));
        group.bench_function(name, |b| {
            b.iter(|| {
                // Back to the same weights every 100 steps, so a long run cannot drift into NaN.
                steps += 1;
                if steps.is_multiple_of(100) {
                    backend
                        .import_state(&StateDict::from_params(&initial).unwrap())
                        .unwrap();
                }
                let loss = backend
                    .forward_backward(batch, scale)
                    .expect("a valid batch");
                if let Some(c) = check.as_mut() {
                    black_box(c.compare(&backend, batch, loss, scale, inv).unwrap());
                }
                let report = backend.unscale_and_check(inv).unwrap();
                if !report.found_inf() {
                    backend.adam_step(&adam).unwrap();
                }
                black_box(loss)
            })
        });
    }
    group.finish();
}

fn fp8_quantization(c: &mut Criterion) {
    // conv2's im2col matrix of one group of 4 images: 800 taps x 256 positions.
    let (rows, cols) = (CONV2.col_rows(), 4 * CONV2.out_plane());
    let src: Vec<f32> = data(rows * cols, 41).into_iter().map(|v| v * 3.0).collect();
    let mut buf = src.clone();
    let mut group = c.benchmark_group("fp8_quantize_conv2_col");
    group.throughput(Throughput::Elements((rows * cols) as u64));
    group.bench_function("per_tensor_e4m3", |b| {
        b.iter(|| {
            buf.copy_from_slice(&src);
            let amax = quantize::amax(&buf);
            black_box(quantize::quantize_tensor(
                &mut buf,
                Fp8Element::E4M3,
                448.0 / amax,
                amax / 448.0,
            ))
        })
    });
    for (name, axis) in [("mx_e4m3_rows", Axis::Rows), ("mx_e4m3_cols", Axis::Cols)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                buf.copy_from_slice(&src);
                black_box(quantize::quantize_mx(
                    &mut buf,
                    rows,
                    cols,
                    axis,
                    Fp8Element::E4M3,
                    ScaleMode::Floor,
                ))
            })
        });
    }
    group.bench_function("anchor_copy", |b| {
        b.iter(|| {
            buf.copy_from_slice(&src);
            black_box(&buf);
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = gemm_kernels, layers, training_step, fp8_quantization
}
criterion_main!(benches);
