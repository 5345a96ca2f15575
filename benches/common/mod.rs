//! What every bench shares: one short criterion configuration (so `cargo bench` runs whole in a
//! few minutes on 2 cores), deterministic inputs, and the machine's f32 FMA peak.
#![allow(dead_code)]

use criterion::Criterion;
use std::time::{Duration, Instant};

/// Short runs: the figures are for tables and ratios, not for detecting 1 % changes.
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10)
        .without_plots()
}

/// xorshift64*: the same inputs on every run and machine.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[-1, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// A gradient-like value: sign and magnitude spread over `2^-lo ..= 2^hi`.
    pub fn spread(&mut self, lo: i32, hi: i32) -> f32 {
        let r = self.next_u64();
        let e = lo + (r % (hi - lo + 1) as u64) as i32;
        let m = 1.0 + (r >> 32) as f32 / 4_294_967_296.0;
        let v = m * 2f32.powi(e);
        if r >> 63 == 1 {
            -v
        } else {
            v
        }
    }
}

/// The CPU as the benches see it, and its f32 FMA peak.
pub struct Machine {
    pub model: String,
    pub cores: usize,
    pub isa: &'static str,
    /// f32 flops per cycle per core: vector lanes x 2 (an FMA is two flops) x FMA units.
    pub flops_per_cycle: f64,
    pub clock_hz: f64,
    pub clock_source: &'static str,
}

impl Machine {
    pub fn detect() -> Machine {
        let model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Two FMA units per core, as on every x86 core since Haswell/Zen 2 with AVX2 or AVX-512.
        let (isa, flops_per_cycle) = isa();
        let (clock_hz, clock_source) = match measured_clock_hz() {
            Some(hz) => (hz, "measured (dependent integer adds, 1 cycle each)"),
            None => (
                cpuinfo_mhz().unwrap_or(2.0e3) * 1e6,
                "/proc/cpuinfo cpu MHz",
            ),
        };
        Machine {
            model,
            cores,
            isa,
            flops_per_cycle,
            clock_hz,
            clock_source,
        }
    }

    /// f32 FMA peak of all cores, in FLOP/s.
    pub fn peak_flops(&self) -> f64 {
        self.cores as f64 * self.flops_per_cycle * self.clock_hz
    }

    pub fn describe(&self) -> String {
        format!(
            "{}, {} cores, {}, {:.2} GHz ({}): f32 FMA peak {:.0} GFLOP/s \
             ({} cores x {} flop/cycle x {:.2} GHz)",
            self.model,
            self.cores,
            self.isa,
            self.clock_hz / 1e9,
            self.clock_source,
            self.peak_flops() / 1e9,
            self.cores,
            self.flops_per_cycle,
            self.clock_hz / 1e9
        )
    }
}

#[cfg(target_arch = "x86_64")]
fn isa() -> (&'static str, f64) {
    if is_x86_feature_detected!("avx512f") {
        ("AVX-512F (16 f32 lanes, 2 FMA units)", 64.0)
    } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        ("AVX2+FMA (8 f32 lanes, 2 FMA units)", 32.0)
    } else if is_x86_feature_detected!("avx") {
        ("AVX without FMA (8 lanes, mul + add)", 16.0)
    } else {
        ("SSE2 (4 lanes, mul + add)", 8.0)
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn isa() -> (&'static str, f64) {
    ("non-x86 (assumed 4 lanes, 2 FMA units)", 16.0)
}

fn cpuinfo_mhz() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("cpu MHz"))?;
    line.split(':').nth(1)?.trim().parse().ok()
}

/// The clock the core actually runs at: a chain of dependent integer adds retires one per cycle
/// on every x86 core, so adds per second is cycles per second. Best of five runs of 2e7 adds (about 8 ms each).
#[cfg(target_arch = "x86_64")]
fn measured_clock_hz() -> Option<f64> {
    const LOOPS: u64 = 200_000;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let mut x = 0u64;
        let mut n = LOOPS;
        let t = Instant::now();
        // SAFETY: register-only arithmetic and a loop on a counter; no memory is touched.
        unsafe {
            std::arch::asm!(
                "2:",
                ".rept 100",
                "add {x}, 1",
                ".endr",
                "dec {n}",
                "jnz 2b",
                x = inout(reg) x,
                n = inout(reg) n,
                options(nomem, nostack),
            );
        }
        best = best.min(t.elapsed().as_secs_f64());
        std::hint::black_box((x, n));
    }
    Some(100.0 * LOOPS as f64 / best)
}

#[cfg(not(target_arch = "x86_64"))]
fn measured_clock_hz() -> Option<f64> {
    None
}
