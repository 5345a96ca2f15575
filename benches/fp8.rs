//! f32 -> FP8 E4M3 quantisation with a per-tensor scale (what Transformer Engine's and torchao's
//! casts do after the amax step) over whole slices: the bit-trick fast path, the generic
//! correctly rounded conversion, and a memcpy of the f32 bytes as the memory-bound anchor.
//! torch's `(x * scale).to(torch.float8_e4m3fn)` on the same machine is measured by
//! scripts/bench_torch_fp8.py; both figures are in docs/PERFORMANCE.md.
//!
//! Sizes: 1M elements (4 MiB of f32, in cache) and 16M (64 MiB, from DRAM).

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use halfscale::core::{self as hc, fast, FpEnv, Overflow, RoundingMode, E4M3};
use std::hint::black_box;

const SIZES: [(usize, &str); 2] = [(1 << 20, "1M"), (1 << 24, "16M")];

fn quantize(c: &mut Criterion) {
    for (n, size) in SIZES {
        let mut rng = common::Rng(0xE4_3F8 ^ n as u64);
        // Activation-like magnitudes, some beyond 448 after scaling, some subnormal.
        let wide: Vec<f32> = (0..n).map(|_| rng.spread(-14, 12)).collect();
        let scale = 0.25f32;
        let mut out = vec![E4M3::default(); n];
        let mut out32 = vec![0.0f32; n];

        let mut group = c.benchmark_group(format!("f32_to_e4m3_scaled_{size}"));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function("halfscale_fast_saturate", |b| {
            b.iter(|| {
                fast::scaled_f32_slice_to_e4m3(&wide, scale, &mut out, Overflow::Saturate);
                black_box(&out);
            })
        });
        group.bench_function("halfscale_fast_ieee", |b| {
            b.iter(|| {
                fast::scaled_f32_slice_to_e4m3(&wide, scale, &mut out, Overflow::Ieee);
                black_box(&out);
            })
        });
        if n == 1 << 20 {
            group.bench_function("halfscale_generic", |b| {
                let mut env =
                    FpEnv::new(RoundingMode::NearestEven).with_overflow(Overflow::Saturate);
                b.iter(|| {
                    for (o, &x) in out.iter_mut().zip(&wide) {
                        *o = hc::from_f32(x * scale, &mut env);
                    }
                    black_box((&out, env.flags));
                })
            });
        }
        group.bench_function(BenchmarkId::new("anchor_memcpy", "f32_bytes"), |b| {
            b.iter(|| {
                out32.copy_from_slice(&wide);
                black_box(&out32);
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = quantize
}
criterion_main!(benches);
