//! MX block quantization (torchao 0.18 `to_mx`, blocks of 32) over a slice, single-threaded: the
//! fast slice path `recipe::mx::quantize` in every element format (FLOOR) and every scale mode
//! (E4M3), against the reference transcription `quantize_block` (the generic element rounding) and
//! a memcpy of the f32 input (the memory-bound ceiling). The bar is 0.5 G elements/s per
//! core; torch's `.to(torch.float8_e4m3fn)` and torchao's `to_mx` on this machine are in
//! docs/PERFORMANCE.md (measured by scripts/fixtures/bench_torch_mx.py).
//!
//! Size: 1M elements (4 MiB of f32, in L3).
//!
//! The group `mx_quantize_1M_cpu` repeats the main cases timed by the thread's own CPU time
//! (`/proc/thread-self/schedstat`, nanoseconds on the CPU) instead of the wall clock: on a shared
//! machine it is the figure of one core, without the time the thread spent waiting for one (cache
//! and memory-bandwidth contention from the neighbours still count).

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use halfscale::core::e8m0::E8M0;
use halfscale::core::recipe::mx::{self, Element, ScaleMode, BLOCK_SIZE};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Nanoseconds this thread has run on a CPU (Linux schedstat), if the kernel exposes it.
fn thread_cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Runs `f` `iters` times and returns the CPU time it took (the wall time where schedstat is
/// missing).
fn cpu_timed(iters: u64, mut f: impl FnMut()) -> Duration {
    let (cpu0, wall0) = (thread_cpu_time(), Instant::now());
    for _ in 0..iters {
        f();
    }
    match (cpu0, thread_cpu_time()) {
        (Some(a), Some(b)) => b - a,
        _ => wall0.elapsed(),
    }
}

const N: usize = 1 << 20;

fn quantize(c: &mut Criterion) {
    let mut rng = common::Rng(0x4D58_0018);
    // Activation-like values: magnitudes over 2^-20 .. 2^8, a few blocks much larger than others.
    let input: Vec<f32> = (0..N).map(|_| rng.spread(-20, 8)).collect();
    let mut scales = vec![E8M0::NAN; N / BLOCK_SIZE];
    let mut codes = vec![0u8; N];
    let mut copy = vec![0.0f32; N];

    let mut group = c.benchmark_group("mx_quantize_1M");
    group.throughput(Throughput::Elements(N as u64));
    for elem in Element::ALL {
        group.bench_function(BenchmarkId::new("fast_floor", elem.name()), |b| {
            b.iter(|| {
                mx::quantize(&input, elem, ScaleMode::Floor, &mut scales, &mut codes).unwrap();
                black_box((&scales, &codes));
            })
        });
    }
    for mode in [ScaleMode::Rceil, ScaleMode::Ceil, ScaleMode::Even] {
        group.bench_function(BenchmarkId::new("fast_e4m3", mode.name()), |b| {
            b.iter(|| {
                mx::quantize(&input, Element::E4M3, mode, &mut scales, &mut codes).unwrap();
                black_box((&scales, &codes));
            })
        });
    }
    group.bench_function(BenchmarkId::new("reference_floor", "e4m3"), |b| {
        b.iter(|| {
            for (block, (scale, out)) in input
                .chunks_exact(BLOCK_SIZE)
                .zip(scales.iter_mut().zip(codes.chunks_exact_mut(BLOCK_SIZE)))
            {
                let q =
                    mx::quantize_block(block.try_into().unwrap(), Element::E4M3, ScaleMode::Floor);
                *scale = q.scale;
                out.copy_from_slice(&q.codes);
            }
            black_box((&scales, &codes));
        })
    });
    group.bench_function(BenchmarkId::new("anchor_memcpy", "f32_bytes"), |b| {
        b.iter(|| {
            copy.copy_from_slice(&input);
            black_box(&copy);
        })
    });
    group.finish();

    let mut group = c.benchmark_group("mx_quantize_1M_cpu");
    group.throughput(Throughput::Elements(N as u64));
    for (elem, mode) in [
        (Element::E4M3, ScaleMode::Floor),
        (Element::E4M3, ScaleMode::Rceil),
        (Element::E2M1, ScaleMode::Floor),
    ] {
        let id = BenchmarkId::new(format!("fast_{}", elem.name()), mode.name());
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                cpu_timed(iters, || {
                    mx::quantize(&input, elem, mode, &mut scales, &mut codes).unwrap();
                    black_box((&scales, &codes));
                })
            })
        });
    }
    group.bench_function(BenchmarkId::new("anchor_memcpy", "f32_bytes"), |b| {
        b.iter_custom(|iters| {
            cpu_timed(iters, || {
                copy.copy_from_slice(&input);
                black_box(&copy);
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = quantize
}
criterion_main!(benches);
