//! Time per group of four images of each stage of the convolutional trunk as `CpuBackend` runs
//! it (one thread, buffers aligned as the backend's), and what it comes to per epoch per
//! thread (938 steps x 8 groups per thread with 2 threads). The figures in
//! docs/PERFORMANCE.md, section "The trunk's stages".
//!
//! `cargo run --release -p halfscale-sim --example trunk_stages`

use halfscale_sim::aligned::AlignedVec;
use halfscale_sim::model::{CONV1, CONV2};
use halfscale_sim::{pool, relu};
use std::time::Instant;

fn time(name: &str, flop: f64, mut f: impl FnMut()) {
    for _ in 0..50 {
        f();
    }
    let iters = 2000;
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / f64::from(iters);
    let rate = if flop > 0.0 {
        format!("  {:6.1} GFLOP/s", flop / us / 1e3)
    } else {
        String::new()
    };
    println!(
        "{name:17} {us:8.1} us/group {:7.3} s/epoch/thread{rate}",
        us * 938.0 * 8.0 / 1e6
    );
}

fn filled(len: usize, seed: &mut u32) -> AlignedVec {
    let mut v = AlignedVec::zeroed(len);
    for x in v.iter_mut() {
        *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *x = (*seed >> 8) as f32 / 16_777_216.0 - 0.5;
    }
    v
}

fn main() {
    let n = 4;
    let seed = &mut 1u32;
    let x = filled(n * 784, seed);
    let mut col1 = AlignedVec::zeroed(CONV1.col_len(n));
    let w1 = filled(CONV1.weight_len(), seed);
    let b1 = filled(CONV1.out_channels, seed);
    let mut a1 = filled(CONV1.output_len(n), seed);
    let mut p1 = AlignedVec::zeroed(CONV2.input_len(n));
    let mut arg1 = vec![0u8; p1.len()];
    let mut col2 = AlignedVec::zeroed(CONV2.col_len(n));
    let w2 = filled(CONV2.weight_len(), seed);
    let b2 = filled(CONV2.out_channels, seed);
    let mut a2 = filled(CONV2.output_len(n), seed);
    let mut p2 = AlignedVec::zeroed(CONV2.out_channels * n * 16);
    let mut arg2 = vec![0u8; p2.len()];
    let (mut dw1, mut db1) = (AlignedVec::zeroed(w1.len()), vec![0.0f32; b1.len()]);
    let (mut dw2, mut db2) = (AlignedVec::zeroed(w2.len()), vec![0.0f32; b2.len()]);
    let dp2 = filled(p2.len(), seed);
    let mut da2 = AlignedVec::zeroed(a2.len());
    let mut dp1 = AlignedVec::zeroed(p1.len());
    let mut da1 = AlignedVec::zeroed(a1.len());
    let f1 = 2.0 * (CONV1.weight_len() * n * CONV1.out_plane()) as f64;
    let f2 = 2.0 * (CONV2.weight_len() * n * CONV2.out_plane()) as f64;

    println!("forward");
    time("im2col1", 0.0, || CONV1.im2col(n, &x, &mut col1));
    time("conv1", f1, || CONV1.forward(n, &col1, &w1, &b1, &mut a1));
    time("pool1", 0.0, || {
        pool::forward(32 * n, 24, 24, &a1, &mut p1, &mut arg1)
    });
    time("relu1", 0.0, || relu::forward(&mut p1));
    time("im2col2", 0.0, || CONV2.im2col(n, &p1, &mut col2));
    time("conv2", f2, || CONV2.forward(n, &col2, &w2, &b2, &mut a2));
    // The fused forward's: im2col2 and conv2 together, a block of KC taps at a time.
    let mut block = AlignedVec::zeroed(CONV2.col_len(n));
    time("im2col2+conv2 blk", f2, || {
        CONV2.forward_by_tap_blocks(n, &p1, &w2, &b2, &mut block, &mut a2)
    });
    time("pool2", 0.0, || {
        pool::forward(64 * n, 8, 8, &a2, &mut p2, &mut arg2)
    });
    println!("backward");
    time("pool2", 0.0, || {
        pool::backward(64 * n, 8, 8, &dp2, &arg2, &mut da2)
    });
    time("conv2 dW", f2, || {
        CONV2.backward_params(n, &da2, &col2, &mut dw2, &mut db2, false)
    });
    // The fused backward's: the im2col matrix read from `p1` through offsets, not rebuilt.
    let offsets2 = CONV2.col_offsets(n);
    time("conv2 dW gath", f2, || {
        CONV2.backward_params_gathered(n, &da2, &p1, &offsets2, &mut dw2, &mut db2, false)
    });
    // dcol into col2's buffer, as the backend does once dW has read it.
    time("conv2 dX", f2, || {
        CONV2.backward_input(n, &da2, &w2, &mut col2, &mut dp1)
    });
    time("col2im2 alone", 0.0, || CONV2.col2im(n, &col2, &mut dp1));
    time("relu1", 0.0, || relu::backward(&p1, &mut dp1));
    time("pool1", 0.0, || {
        pool::backward(32 * n, 24, 24, &dp1, &arg1, &mut da1)
    });
    time("conv1 dW", f1, || {
        CONV1.backward_params(n, &da1, &col1, &mut dw1, &mut db1, false)
    });
    let offsets1 = CONV1.col_offsets(n);
    time("conv1 dW gath", f1, || {
        CONV1.backward_params_gathered(n, &da1, &x, &offsets1, &mut dw1, &mut db1, false)
    });
}
