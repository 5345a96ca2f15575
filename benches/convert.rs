//! f32 -> binary16 and binary16 -> f32 over whole slices, against `half`'s slice conversion (the
//! library a user would call; F16C where the CPU has it) and against plain memcpys of the f32
//! side's and of the f16 side's bytes: a conversion reads one side and writes the other (6 bytes
//! per element), between the two copies' 8 and 4, so they bracket its memory-bound limit.
//!
//! Sizes: 1M elements (4 MiB of f32, in this machine's 32 MiB L3) and 16M (64 MiB, from DRAM).

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use half::f16;
use half::slice::HalfFloatSliceExt;
use halfscale::core::{self as hc, fast, FpEnv, RoundingMode};
use std::hint::black_box;

const SIZES: [(usize, &str); 2] = [(1 << 20, "1M"), (1 << 24, "16M")];

fn convert(c: &mut Criterion) {
    for (n, size) in SIZES {
        let mut rng = common::Rng(0xF00D_CAFE ^ n as u64);
        // Gradient-like magnitudes: most normal in binary16, some subnormal or flushed.
        let wide: Vec<f32> = (0..n).map(|_| rng.spread(-30, 10)).collect();
        let narrow: Vec<f16> = wide.iter().map(|&x| f16::from_f32(x)).collect();
        let mut out16 = vec![f16::ZERO; n];
        let mut out32 = vec![0.0f32; n];

        let mut group = c.benchmark_group(format!("f32_to_f16_{size}"));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function("halfscale_fast", |b| {
            b.iter(|| {
                fast::f32_slice_to_f16(&wide, &mut out16);
                black_box(&out16);
            })
        });
        group.bench_function("halfscale_generic", |b| {
            let mut env = FpEnv::new(RoundingMode::NearestEven);
            b.iter(|| {
                for (o, &x) in out16.iter_mut().zip(&wide) {
                    *o = hc::from_f32(x, &mut env);
                }
                black_box((&out16, env.flags));
            })
        });
        group.bench_function("anchor_half", |b| {
            b.iter(|| {
                out16.convert_from_f32_slice(&wide);
                black_box(&out16);
            })
        });
        group.bench_function(BenchmarkId::new("anchor_memcpy", "f32_bytes"), |b| {
            b.iter(|| {
                out32.copy_from_slice(&wide);
                black_box(&out32);
            })
        });
        group.bench_function(BenchmarkId::new("anchor_memcpy", "f16_bytes"), |b| {
            b.iter(|| {
                out16.copy_from_slice(&narrow);
                black_box(&out16);
            })
        });
        group.finish();

        let mut group = c.benchmark_group(format!("f16_to_f32_{size}"));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function("halfscale_fast", |b| {
            b.iter(|| {
                fast::f16_slice_to_f32(&narrow, &mut out32);
                black_box(&out32);
            })
        });
        group.bench_function("halfscale_generic", |b| {
            let mut env = FpEnv::new(RoundingMode::NearestEven);
            b.iter(|| {
                for (o, &x) in out32.iter_mut().zip(&narrow) {
                    *o = hc::to_f32(x, &mut env);
                }
                black_box((&out32, env.flags));
            })
        });
        group.bench_function("anchor_half", |b| {
            b.iter(|| {
                narrow.convert_to_f32_slice(&mut out32);
                black_box(&out32);
            })
        });
        group.bench_function(BenchmarkId::new("anchor_memcpy", "f32_bytes"), |b| {
            b.iter(|| {
                out32.copy_from_slice(&wide);
                black_box(&out32);
            })
        });
        group.bench_function(BenchmarkId::new("anchor_memcpy", "f16_bytes"), |b| {
            b.iter(|| {
                out16.copy_from_slice(&narrow);
                black_box(&out16);
            })
        });
        group.finish();

        // What the simulator does to every activation: store as binary16 and read back, in place.
        // After the first pass the values are binary16 already; F16C's conversions take the same
        // time whatever the value, so later passes cost what the first does.
        let mut group = c.benchmark_group(format!("round_through_f16_{size}"));
        group.throughput(Throughput::Elements(n as u64));
        let mut work = wide.clone();
        group.bench_function("halfscale_fast", |b| {
            b.iter(|| {
                fast::round_slice_through_f16(&mut work);
                black_box(&work);
            })
        });
        group.bench_function(BenchmarkId::new("anchor_memcpy", "f32_bytes"), |b| {
            b.iter(|| {
                work.copy_from_slice(&wide);
                black_box(&work);
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = convert
}
criterion_main!(benches);
