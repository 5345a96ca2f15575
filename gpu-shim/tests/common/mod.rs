//! Shared by the GPU tests: device acquisition, random data, comparisons.
#![allow(dead_code)]

use halfscale_gpu::{GpuBackend, GpuError};
use halfscale_sim::rng::SeededRng;
use halfscale_sim::{LowFormat, Recipe};

/// A backend on device 0, or None (the test passes vacuously, saying so) when the machine has
/// no usable GPU, unless HALFSCALE_REQUIRE_GPU is set (scripts/gpu-check sets it).
pub fn backend(capacity: usize) -> Option<GpuBackend> {
    match GpuBackend::new(Recipe::mixed_fp16(), capacity) {
        Ok(b) => Some(b),
        Err(e @ (GpuError::NoDevice { .. } | GpuError::DriverTooOld { .. })) => {
            if std::env::var_os("HALFSCALE_REQUIRE_GPU").is_some() {
                panic!("HALFSCALE_REQUIRE_GPU is set but: {e}");
            }
            eprintln!("skipped: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// Values in [lo, hi) rounded to f16 (what the layers receive in autocast).
pub fn rand_f16(rng: &mut SeededRng, len: usize, lo: f64, hi: f64) -> Vec<f32> {
    let mut v: Vec<f32> = (0..len).map(|_| rng.uniform(lo, hi)).collect();
    LowFormat::F16.round(&mut v);
    v
}

pub fn to_bits(v: &[f32]) -> Vec<u16> {
    v.iter()
        .map(|&x| half::f16::from_f32(x).to_bits())
        .collect()
}

pub fn from_bits(v: &[u16]) -> Vec<f32> {
    v.iter()
        .map(|&h| half::f16::from_bits(h).to_f32())
        .collect()
}

/// f16 NaN with a payload no kernel produces: an unwritten element shows up as this.
pub const POISON16: u16 = 0x7e5a;
/// f32 NaN with a payload no kernel produces.
pub const POISON32: f32 = f32::from_bits(0x7fc0_5a5a);

/// Asserts bit equality (NaN equal to NaN), naming the first difference.
pub fn assert_bits(what: &str, gpu: &[f32], sim: &[f32]) {
    assert_eq!(gpu.len(), sim.len(), "{what}: lengths");
    for (k, (g, s)) in gpu.iter().zip(sim).enumerate() {
        let same = g.to_bits() == s.to_bits()
            || (g.is_nan() && s.is_nan() && g.to_bits() != POISON32.to_bits());
        assert!(
            same,
            "{what}[{k}]: gpu {g:e} ({:#x}) sim {s:e} ({:#x})",
            g.to_bits(),
            s.to_bits()
        );
    }
}

/// The largest |gpu - sim| (inf when one is NaN and the other not).
pub fn max_diff(gpu: &[f32], sim: &[f32]) -> f64 {
    gpu.iter()
        .zip(sim)
        .map(|(&g, &s)| {
            if g.is_nan() || s.is_nan() {
                if g.is_nan() && s.is_nan() {
                    0.0
                } else {
                    f64::INFINITY
                }
            } else {
                (f64::from(g) - f64::from(s)).abs()
            }
        })
        .fold(0.0, f64::max)
}

/// [n][c][plane] -> [c][n][plane] (the simulator's group layout).
pub fn to_cnhw(v: &[f32], n: usize, c: usize, plane: usize) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    for img in 0..n {
        for ch in 0..c {
            out[(ch * n + img) * plane..(ch * n + img + 1) * plane]
                .copy_from_slice(&v[(img * c + ch) * plane..(img * c + ch + 1) * plane]);
        }
    }
    out
}

/// [c][n][plane] -> [n][c][plane].
pub fn from_cnhw(v: &[f32], n: usize, c: usize, plane: usize) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    for img in 0..n {
        for ch in 0..c {
            out[(img * c + ch) * plane..(img * c + ch + 1) * plane]
                .copy_from_slice(&v[(ch * n + img) * plane..(ch * n + img + 1) * plane]);
        }
    }
    out
}
