use halfscale_sim::model::{CONV1, CONV2};
use halfscale_sim::{pool, relu};
use std::time::Instant;

fn time<F: FnMut()>(name: &str, mut f: F) {
    for _ in 0..50 {
        f();
    }
    let iters = 2000;
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / iters as f64;
    // per-thread epoch seconds: 938 steps x 8 groups per thread
    println!(
        "{name:24} {us:8.2} us/group  {:.3} s/epoch",
        us * 938.0 * 8.0 / 1e6
    );
}

fn main() {
    let n = 4;
    let mut rng = 1u32;
    let mut r = || {
        rng = rng.wrapping_mul(1664525).wrapping_add(1013904223);
        (rng >> 8) as f32 / 16777216.0 - 0.5
    };
    let x: Vec<f32> = (0..n * 784).map(|_| r()).collect();
    let mut col1 = vec![0.0f32; CONV1.col_len(n)];
    time("im2col1", || CONV1.im2col(n, &x, &mut col1));
    let a1: Vec<f32> = (0..CONV1.output_len(n)).map(|_| r()).collect();
    let mut p1 = vec![0.0f32; 32 * n * 144];
    let mut arg1 = vec![0u8; 32 * n * 144];
    time("pool1 fwd", || {
        pool::forward(32 * n, 24, 24, &a1, &mut p1, &mut arg1)
    });
    time("relu1 fwd", || relu::forward(&mut p1));
    let mut col2 = vec![0.0f32; CONV2.col_len(n)];
    time("im2col2", || CONV2.im2col(n, &p1, &mut col2));
    let a2: Vec<f32> = (0..CONV2.output_len(n)).map(|_| r()).collect();
    let mut p2 = vec![0.0f32; 64 * n * 16];
    let mut arg2 = vec![0u8; 64 * n * 16];
    time("pool2 fwd", || {
        pool::forward(64 * n, 8, 8, &a2, &mut p2, &mut arg2)
    });
    let mut da2 = vec![0.0f32; CONV2.output_len(n)];
    let dp2: Vec<f32> = (0..64 * n * 16).map(|_| r()).collect();
    time("pool2 bwd", || {
        pool::backward(64 * n, 8, 8, &dp2, &arg2, &mut da2)
    });
    let dcol2: Vec<f32> = (0..CONV2.col_len(n)).map(|_| r()).collect();
    let mut dp1 = vec![0.0f32; CONV2.input_len(n)];
    time("col2im2", || CONV2.col2im(n, &dcol2, &mut dp1));
    time("relu1 bwd", || relu::backward(&p1, &mut dp1));
    let w2: Vec<f32> = (0..CONV2.weight_len()).map(|_| r()).collect();
    let b2: Vec<f32> = (0..64).map(|_| r()).collect();
    let mut y2 = vec![0.0f32; CONV2.output_len(n)];
    let f = 2.0 * 64.0 * 800.0 * 256.0 / 1e3;
    time("conv2 fwd", || CONV2.forward(n, &col2, &w2, &b2, &mut y2));
    println!("  ({f} MFLOP)");
    let mut dw2 = vec![0.0f32; CONV2.weight_len()];
    let mut db2 = vec![0.0f32; 64];
    time("conv2 dW", || {
        CONV2.backward_params(n, &da2, &col2, &mut dw2, &mut db2, false)
    });
    let mut dcol2b = vec![0.0f32; CONV2.col_len(n)];
    time("conv2 dX", || {
        CONV2.backward_input(n, &da2, &w2, &mut dcol2b, &mut dp1)
    });
    let w1: Vec<f32> = (0..CONV1.weight_len()).map(|_| r()).collect();
    let b1: Vec<f32> = (0..32).map(|_| r()).collect();
    let mut y1 = vec![0.0f32; CONV1.output_len(n)];
    time("conv1 fwd", || CONV1.forward(n, &col1, &w1, &b1, &mut y1));
    let mut dw1 = vec![0.0f32; CONV1.weight_len()];
    let mut db1 = vec![0.0f32; 32];
    time("conv1 dW", || {
        CONV1.backward_params(n, &a1, &col1, &mut dw1, &mut db1, false)
    });
    let mut da1 = vec![0.0f32; CONV1.output_len(n)];
    time("pool1 bwd", || {
        pool::backward(32 * n, 24, 24, &dp1, &arg1, &mut da1)
    });
}
