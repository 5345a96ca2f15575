//! GFLOP/s of each GEMM shape of a training step on each f32 kernel, by the thread's CPU time
//! (`/proc/thread-self/schedstat`, Linux) rather than wall time, so that the figures hold on a
//! machine shared with other jobs (criterion's wall-clock figures in `benches/sim.rs` do not);
//! and one core's AVX-512 FMA throughput (16 independent chains), the peak the GEMMs are
//! measured against. Best of 3 runs of about 16 GFLOP each (about 0.1-0.3 s: the CPU time advances in scheduler ticks, 4 ms here).
//!
//! ```sh
//! cargo run --release -p halfscale-sim --example gemm_cpu_time
//! ```

use halfscale_sim::gemm::{gemm_f32_with, Kernel, Mat, MatMut};

/// This thread's time on a CPU, in ns; `None` off Linux.
fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `(name, m, k, n, A stored transposed, B stored transposed)`, as `CpuBackend` runs them.
const SHAPES: &[(&str, usize, usize, usize, bool, bool)] = &[
    ("conv1 forward 32x25x2304", 32, 25, 2304, false, false),
    ("conv1 dW 32x2304x25", 32, 2304, 25, false, true),
    ("conv2 forward 64x800x256", 64, 800, 256, false, false),
    ("conv2 dW 64x256x800", 64, 256, 800, false, true),
    ("conv2 dcol 800x64x256", 800, 64, 256, true, false),
    ("fc1 forward 32x1024x128", 32, 1024, 128, false, true),
    ("fc1 dW 64x64x1024", 64, 64, 1024, true, false),
    ("fc1 dx 32x128x1024", 32, 128, 1024, false, false),
];

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fma_peak() -> Option<f64> {
    use std::arch::x86_64::*;
    let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    let mut x = [a; 16];
    let iters = 200_000_000u64;
    let t = cpu_ns()?;
    for _ in 0..iters {
        // Sixteen independent chains: enough to cover the FMA latency on two ports.
        x[0] = _mm512_fmadd_ps(x[0], a, b);
        x[1] = _mm512_fmadd_ps(x[1], a, b);
        x[2] = _mm512_fmadd_ps(x[2], a, b);
        x[3] = _mm512_fmadd_ps(x[3], a, b);
        x[4] = _mm512_fmadd_ps(x[4], a, b);
        x[5] = _mm512_fmadd_ps(x[5], a, b);
        x[6] = _mm512_fmadd_ps(x[6], a, b);
        x[7] = _mm512_fmadd_ps(x[7], a, b);
        x[8] = _mm512_fmadd_ps(x[8], a, b);
        x[9] = _mm512_fmadd_ps(x[9], a, b);
        x[10] = _mm512_fmadd_ps(x[10], a, b);
        x[11] = _mm512_fmadd_ps(x[11], a, b);
        x[12] = _mm512_fmadd_ps(x[12], a, b);
        x[13] = _mm512_fmadd_ps(x[13], a, b);
        x[14] = _mm512_fmadd_ps(x[14], a, b);
        x[15] = _mm512_fmadd_ps(x[15], a, b);
    }
    let dt = (cpu_ns()? - t) as f64;
    std::hint::black_box(x);
    Some((iters * 16 * 32) as f64 / dt)
}

fn main() {
    let Some(_) = cpu_ns() else {
        eprintln!("needs /proc/thread-self/schedstat (Linux)");
        return;
    };
    #[cfg(target_arch = "x86_64")]
    if Kernel::Avx512.supported() {
        // SAFETY: avx512f was detected just above.
        let peak = (0..3)
            .filter_map(|_| unsafe { fma_peak() })
            .fold(0.0f64, f64::max);
        println!("one core's AVX-512 FMA throughput: {:.1} GFLOP/s", peak);
    }
    let kernels: Vec<Kernel> = [Kernel::Reference, Kernel::Avx2Fma, Kernel::Avx512]
        .into_iter()
        .filter(|k| k.supported())
        .collect();
    let mut total = vec![0.0f64; kernels.len()];
    println!(
        "{:28} {}",
        "GFLOP/s by CPU time",
        kernels
            .iter()
            .map(|k| format!("{:>10}", k.name()))
            .collect::<String>()
    );
    for &(name, m, k, n, a_t, b_t) in SHAPES {
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104_729) % 1000) as f32 / 1000.0)
            .collect();
        let mut c = vec![0.0f32; m * n];
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
        let flops = 2.0 * (m * k * n) as f64;
        let iters = (1.6e10 / flops) as usize + 1;
        print!("{name:28}");
        for (slot, &kernel) in total.iter_mut().zip(&kernels) {
            let mut best = f64::MAX;
            for _ in 0..3 {
                let t = cpu_ns().unwrap_or(0);
                for _ in 0..iters {
                    gemm_f32_with(kernel, 1.0, av, bv, 0.0, MatMut::row_major(&mut c, m, n))
                        .expect("a supported kernel");
                }
                best = best.min((cpu_ns().unwrap_or(0) - t) as f64 / iters as f64);
            }
            *slot += best;
            print!(" {:10.1}", flops / best);
        }
        println!();
    }
    println!(
        "{:28}{}",
        "all shapes once, us",
        total
            .iter()
            .map(|t| format!(" {:10.1}", t / 1e3))
            .collect::<String>()
    );
}
