//! The loss-scaling passes over a model's worth of gradients, against a plain copy of the same
//! slice (the memory-bound limit of one read-and-write pass): the fused unscale + non-finite
//! check, the check alone, a naive two-pass version for comparison, and the fate census; then
//! the scaler's per-step update cost against PyTorch's bare update kernel.
//!
//! Sizes: 1M elements (4 MiB, in L3) and 16M (64 MiB, from DRAM).

mod common;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use half::{bf16, f16};
use halfscale::core::census;
use halfscale::core::scaler::{
    check_non_finite, pytorch_update_scale, unscale_and_check, Found, GradScaler, LossScaler,
    OptimizerId, ScalerConfig,
};
use std::hint::black_box;

const SIZES: [(usize, &str); 2] = [(1 << 20, "1M"), (1 << 24, "16M")];

fn gradients(n: usize) -> Vec<f32> {
    let mut rng = common::Rng(0x5CA1_AB1E ^ n as u64);
    // Scaled gradients: magnitudes 2^-14 .. 2^14 (a 2^16 scale on typical f32 gradients).
    (0..n).map(|_| rng.spread(-14, 14)).collect()
}

fn passes(c: &mut Criterion) {
    for (n, size) in SIZES {
        let grads = gradients(n);
        let mut work = grads.clone();
        let mut copy = vec![0.0f32; n];

        let mut group = c.benchmark_group(format!("unscale_{size}"));
        group.throughput(Throughput::Elements(n as u64));
        // Alternating 2^-16 and 2^16 keeps the data exactly where it started: every iteration is
        // one in-place pass over the same values.
        group.bench_function("halfscale_fused", |b| {
            let mut flip = false;
            b.iter(|| {
                flip = !flip;
                let inv = if flip { 1.0 / 65536.0 } else { 65536.0 };
                black_box(unscale_and_check(&mut work, inv));
            })
        });
        group.bench_function("halfscale_check_only", |b| {
            b.iter(|| black_box(check_non_finite(&work)))
        });
        group.bench_function("naive_two_pass", |b| {
            let mut flip = false;
            b.iter(|| {
                flip = !flip;
                let inv: f32 = if flip { 1.0 / 65536.0 } else { 65536.0 };
                let found = work.iter().any(|g| !g.is_finite());
                for g in work.iter_mut() {
                    *g *= inv;
                }
                black_box(found)
            })
        });
        group.bench_function(BenchmarkId::new("anchor_copy", "f32"), |b| {
            b.iter(|| {
                copy.copy_from_slice(&grads);
                black_box(&copy);
            })
        });
        group.finish();

        let mut group = c.benchmark_group(format!("census_{size}"));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function("halfscale_f16", |b| {
            b.iter(|| black_box(census::<f16>(&grads, 1.0)))
        });
        group.bench_function("halfscale_bf16", |b| {
            b.iter(|| black_box(census::<bf16>(&grads, 1.0)))
        });
        // A scale that is not a power of two: every element by `Census::add_with` (the
        // power-of-two rows above read most fates off the f32 bits instead).
        group.bench_function("halfscale_f16_scale_3", |b| {
            b.iter(|| black_box(census::<f16>(&grads, 3.0)))
        });
        group.bench_function(BenchmarkId::new("anchor_copy", "f32"), |b| {
            b.iter(|| {
                copy.copy_from_slice(&grads);
                black_box(&copy);
            })
        });
        group.finish();
    }
}

/// One found-inf in every 1000 updates: a realistic mix of clean updates, growths and backoffs.
fn verdict(i: u64) -> Found {
    if i % 1000 == 999 {
        Found::Inf
    } else {
        Found::Finite
    }
}

fn updates(c: &mut Criterion) {
    let mut group = c.benchmark_group("scaler_update");
    group.throughput(Throughput::Elements(1));
    group.bench_function("loss_scaler_pytorch", |b| {
        let mut s = LossScaler::pytorch();
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            black_box(s.update(verdict(i)))
        })
    });
    group.bench_function("loss_scaler_deepspeed", |b| {
        let mut s = LossScaler::deepspeed();
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            black_box(s.update(verdict(i)))
        })
    });
    // The whole per-iteration protocol around a one-element gradient: unscale_, step, update.
    group.bench_function("grad_scaler_iteration", |b| {
        let mut s: GradScaler<1> = GradScaler::new(ScalerConfig::pytorch()).expect("valid");
        let opt = OptimizerId(0);
        b.iter_batched_ref(
            || [1.0f32],
            |g| {
                s.unscale_(opt, g).expect("unscale_");
                s.step(opt).expect("step");
                black_box(s.update().expect("update"))
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("anchor_pytorch_kernel", |b| {
        let (mut scale, mut tracker) = (65536.0f32, 0u32);
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            (scale, tracker) =
                pytorch_update_scale(scale, tracker, verdict(i).is_non_finite(), 2.0, 0.5, 2000);
            black_box((scale, tracker))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = passes, updates
}
criterion_main!(benches);
