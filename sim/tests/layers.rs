//! Every layer's forward against a direct f64 implementation and its backward against central
//! finite differences of that forward, in f64 (the layers are generic over f32/f64).

use halfscale_sim::conv2d::Conv2d;
use halfscale_sim::linear::Linear;
use halfscale_sim::rng::SeededRng;
use halfscale_sim::{loss, pool, relu};

fn rand_vec(rng: &mut SeededRng, len: usize) -> Vec<f64> {
    (0..len)
        .map(|_| f64::from(rng.uniform(-1.0, 1.0)))
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `|a - b| <= tol * max(1, |b|)` elementwise.
fn assert_close(what: &str, a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * y.abs().max(1.0),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

/// Central differences of `f` at `x`, step `h`.
fn finite_diff(x: &[f64], h: f64, mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut xx = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = xx[i];
            xx[i] = orig + h;
            let up = f(&xx);
            xx[i] = orig - h;
            let down = f(&xx);
            xx[i] = orig;
            (up - down) / (2.0 * h)
        })
        .collect()
}

const CONV: Conv2d = Conv2d {
    in_channels: 3,
    out_channels: 4,
    kernel: 3,
    in_height: 7,
    in_width: 6,
};
const N: usize = 3;

/// Direct convolution, CNHW in and out.
fn conv_direct(c: &Conv2d, n: usize, x: &[f64], w: &[f64], b: &[f64]) -> Vec<f64> {
    let (oh, ow, k) = (c.out_height(), c.out_width(), c.kernel);
    let mut y = vec![0.0; c.output_len(n)];
    for o in 0..c.out_channels {
        for img in 0..n {
            for yy in 0..oh {
                for xx in 0..ow {
                    let mut s = b[o];
                    for ci in 0..c.in_channels {
                        for i in 0..k {
                            for j in 0..k {
                                s += w[((o * c.in_channels + ci) * k + i) * k + j]
                                    * x[((ci * n + img) * c.in_height + yy + i) * c.in_width
                                        + xx
                                        + j];
                            }
                        }
                    }
                    y[((o * n + img) * oh + yy) * ow + xx] = s;
                }
            }
        }
    }
    y
}

fn conv_ours(c: &Conv2d, n: usize, x: &[f64], w: &[f64], b: &[f64]) -> Vec<f64> {
    let mut col = vec![0.0; c.col_len(n)];
    let mut y = vec![0.0; c.output_len(n)];
    c.im2col(n, x, &mut col);
    c.forward(n, &col, w, b, &mut y);
    y
}

#[test]
fn conv2d_forward_matches_direct() {
    let mut rng = SeededRng::new(1);
    let x = rand_vec(&mut rng, CONV.input_len(N));
    let w = rand_vec(&mut rng, CONV.weight_len());
    let b = rand_vec(&mut rng, CONV.out_channels);
    assert_close(
        "y",
        &conv_ours(&CONV, N, &x, &w, &b),
        &conv_direct(&CONV, N, &x, &w, &b),
        1e-12,
    );
}

#[test]
fn conv2d_backward_matches_finite_differences() {
    let mut rng = SeededRng::new(2);
    let x = rand_vec(&mut rng, CONV.input_len(N));
    let w = rand_vec(&mut rng, CONV.weight_len());
    let b = rand_vec(&mut rng, CONV.out_channels);
    let r = rand_vec(&mut rng, CONV.output_len(N)); // loss = <r, y>, so dL/dy = r
    let mut col = vec![0.0; CONV.col_len(N)];
    CONV.im2col(N, &x, &mut col);
    let (mut dw, mut db) = (vec![0.0; w.len()], vec![0.0; b.len()]);
    CONV.backward_params(N, &r, &col, &mut dw, &mut db, false);
    let (mut dcol, mut dx) = (vec![0.0; col.len()], vec![0.0; x.len()]);
    CONV.backward_input(N, &r, &w, &mut dcol, &mut dx);
    let h = 1e-6;
    let fd_w = finite_diff(&w, h, |w| dot(&r, &conv_direct(&CONV, N, &x, w, &b)));
    let fd_b = finite_diff(&b, h, |b| dot(&r, &conv_direct(&CONV, N, &x, &w, b)));
    let fd_x = finite_diff(&x, h, |x| dot(&r, &conv_direct(&CONV, N, x, &w, &b)));
    assert_close("dw", &dw, &fd_w, 1e-7);
    assert_close("db", &db, &fd_b, 1e-7);
    assert_close("dx", &dx, &fd_x, 1e-7);
    // Accumulation adds to what is there.
    let (mut dw2, mut db2) = (dw.clone(), db.clone());
    CONV.backward_params(N, &r, &col, &mut dw2, &mut db2, true);
    assert_close(
        "2dw",
        &dw2,
        &dw.iter().map(|v| 2.0 * v).collect::<Vec<_>>(),
        1e-12,
    );
    assert_close(
        "2db",
        &db2,
        &db.iter().map(|v| 2.0 * v).collect::<Vec<_>>(),
        1e-12,
    );
}

fn pool_direct(planes: usize, h: usize, w: usize, x: &[f64]) -> Vec<f64> {
    let mut y = Vec::new();
    for p in 0..planes {
        for oy in 0..h / 2 {
            for ox in 0..w / 2 {
                let at = |dy: usize, dx: usize| x[p * h * w + (2 * oy + dy) * w + 2 * ox + dx];
                y.push(at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1)));
            }
        }
    }
    y
}

#[test]
fn max_pool_forward_and_backward() {
    let (planes, h, w) = (5, 6, 8);
    let mut rng = SeededRng::new(3);
    let x = rand_vec(&mut rng, planes * h * w);
    let mut y = vec![0.0; planes * h * w / 4];
    let mut arg = vec![0u8; y.len()];
    pool::forward(planes, h, w, &x, &mut y, &mut arg);
    assert_close("y", &y, &pool_direct(planes, h, w, &x), 0.0);
    let r = rand_vec(&mut rng, y.len());
    let mut dx = vec![0.0; x.len()];
    pool::backward(planes, h, w, &r, &arg, &mut dx);
    let fd = finite_diff(&x, 1e-7, |x| dot(&r, &pool_direct(planes, h, w, x)));
    assert_close("dx", &dx, &fd, 1e-6);
}

/// Backward overwrites every element of `dx` (the winner's gradient, +0 elsewhere), whatever
/// was there, on even planes (one write per window element) and odd ones (fill, then scatter),
/// bit for bit what a scatter of each gradient to its winner gives.
#[test]
fn max_pool_backward_overwrites_dx() {
    // Even widths 2..=40 cover the vector kernel's full chunks of eight windows and every
    // masked tail; (5, 7) the odd-plane path.
    let sizes = (1..=20)
        .map(|half| (4, 2 * half))
        .chain([(24, 24), (8, 8), (5, 7)]);
    for (h, w) in sizes {
        let planes = 3;
        let mut rng = SeededRng::new(9);
        let x: Vec<f32> = rand_vec(&mut rng, planes * h * w)
            .iter()
            .map(|&v| v as f32)
            .collect();
        let (oh, ow) = (h / 2, w / 2);
        let mut y = vec![0.0f32; planes * oh * ow];
        let mut arg = vec![0u8; y.len()];
        pool::forward(planes, h, w, &x, &mut y, &mut arg);
        let g: Vec<f32> = (0..y.len()).map(|i| i as f32 + 1.0).collect();
        let mut expected = vec![0.0f32; x.len()];
        for p in 0..planes {
            for oy in 0..oh {
                for ox in 0..ow {
                    let o = (p * oh + oy) * ow + ox;
                    let a = usize::from(arg[o]);
                    expected[p * h * w + (2 * oy + a / 2) * w + 2 * ox + a % 2] = g[o];
                }
            }
        }
        let mut dx = vec![f32::NAN; x.len()];
        pool::backward(planes, h, w, &g, &arg, &mut dx);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&dx), bits(&expected), "{h}x{w}");
    }
}

#[test]
fn max_pool_ties_and_nan_follow_pytorch() {
    // First of equal maxima wins; a NaN anywhere wins.
    let x = [1.0f32, 1.0, 0.0, 1.0, 2.0, f32::NAN, 3.0, 0.0];
    let (mut y, mut arg) = ([0.0f32; 2], [0u8; 2]);
    pool::forward(2, 2, 2, &x, &mut y, &mut arg);
    assert_eq!(y[0], 1.0);
    assert_eq!(arg[0], 0);
    assert!(y[1].is_nan());
    assert_eq!(arg[1], 1);
}

#[test]
fn relu_forward_and_backward() {
    let mut rng = SeededRng::new(4);
    // Keep away from the kink for the finite differences.
    let x: Vec<f64> = rand_vec(&mut rng, 64)
        .into_iter()
        .map(|v| if v.abs() < 0.01 { 0.5 } else { v })
        .collect();
    let mut y = x.clone();
    relu::forward(&mut y);
    let r = rand_vec(&mut rng, 64);
    let mut dx = r.clone();
    relu::backward(&y, &mut dx);
    let fd = finite_diff(&x, 1e-7, |x| {
        let mut y = x.to_vec();
        relu::forward(&mut y);
        dot(&r, &y)
    });
    assert_close("dx", &dx, &fd, 1e-7);
    let mut nan = [f32::NAN, -0.0, -1.0];
    relu::forward(&mut nan);
    assert!(nan[0].is_nan());
    assert_eq!(nan[1].to_bits(), (-0.0f32).to_bits());
    assert_eq!(nan[2], 0.0);
}

#[test]
fn linear_forward_and_backward() {
    let lin = Linear {
        in_features: 7,
        out_features: 5,
    };
    let n = 4;
    let mut rng = SeededRng::new(5);
    let x = rand_vec(&mut rng, n * 7);
    let w = rand_vec(&mut rng, 35);
    let b = rand_vec(&mut rng, 5);
    let direct = |x: &[f64], w: &[f64], b: &[f64]| -> Vec<f64> {
        let mut y = vec![0.0; n * 5];
        for i in 0..n {
            for o in 0..5 {
                y[i * 5 + o] = b[o] + (0..7).map(|k| x[i * 7 + k] * w[o * 7 + k]).sum::<f64>();
            }
        }
        y
    };
    let mut y = vec![0.0; n * 5];
    lin.forward(n, &x, &w, &b, &mut y);
    assert_close("y", &y, &direct(&x, &w, &b), 1e-12);
    let r = rand_vec(&mut rng, n * 5);
    let (mut dw, mut db, mut dx) = (vec![0.0; 35], vec![0.0; 5], vec![0.0; n * 7]);
    lin.backward_params(n, &r, &x, &mut dw, &mut db);
    lin.backward_input(n, &r, &w, &mut dx);
    assert_close(
        "dw",
        &dw,
        &finite_diff(&w, 1e-6, |w| dot(&r, &direct(&x, w, &b))),
        1e-7,
    );
    assert_close(
        "db",
        &db,
        &finite_diff(&b, 1e-6, |b| dot(&r, &direct(&x, &w, b))),
        1e-7,
    );
    assert_close(
        "dx",
        &dx,
        &finite_diff(&x, 1e-6, |x| dot(&r, &direct(x, &w, &b))),
        1e-7,
    );
}

#[test]
fn log_softmax_nll_forward_and_backward() {
    let (n, classes) = (4, 10);
    let mut rng = SeededRng::new(6);
    let x: Vec<f64> = rand_vec(&mut rng, n * classes)
        .iter()
        .map(|v| 4.0 * v)
        .collect();
    let targets = [3u8, 0, 9, 3];
    let scale = 1024.0;
    let f = |x: &[f64]| {
        let mut lp = vec![0.0; n * classes];
        loss::log_softmax(n, classes, x, &mut lp);
        scale * loss::nll_loss(n, classes, &lp, &targets)
    };
    // Direct: -mean(x_t - ln(sum(exp(x)))).
    let direct: f64 = -(0..n)
        .map(|i| {
            let row = &x[i * classes..(i + 1) * classes];
            row[targets[i] as usize] - row.iter().map(|v| v.exp()).sum::<f64>().ln()
        })
        .sum::<f64>()
        / n as f64;
    assert!((f(&x) / scale - direct).abs() < 1e-12);
    let mut lp = vec![0.0; n * classes];
    loss::log_softmax(n, classes, &x, &mut lp);
    let mut dx = vec![0.0; n * classes];
    loss::backward(n, classes, &lp, &targets, scale, &mut dx);
    assert_close("dx", &dx, &finite_diff(&x, 1e-6, f), 1e-6);
}

/// PyTorch's sequential scan (`val > maxval || isnan(val)`), the specification.
fn pool_scan(planes: usize, h: usize, w: usize, x: &[f32]) -> (Vec<f32>, Vec<u8>) {
    let (mut y, mut idx) = (Vec::new(), Vec::new());
    for p in 0..planes {
        for oy in 0..h / 2 {
            for ox in 0..w / 2 {
                let mut best = f32::NEG_INFINITY;
                let mut at = 0u8;
                for (i, (dy, dx)) in [(0, 0), (0, 1), (1, 0), (1, 1)].into_iter().enumerate() {
                    let v = x[p * h * w + (2 * oy + dy) * w + 2 * ox + dx];
                    if v > best || v.is_nan() {
                        best = v;
                        at = i as u8;
                    }
                }
                y.push(best);
                idx.push(at);
            }
        }
    }
    (y, idx)
}

#[test]
fn max_pool_matches_the_sequential_scan_bit_for_bit_with_ties_zeros_and_nan() {
    let mut rng = SeededRng::new(13);
    let palette = [-1.0f32, -0.0, 0.0, 1.0, 2.0, f32::NEG_INFINITY, 0.5];
    for (planes, side) in [(6, 24), (9, 8), (3, 16), (4, 12), (2, 28)] {
        for with_nan in [false, true] {
            let mut x: Vec<f32> = (0..planes * side * side)
                .map(|_| palette[rng.below(palette.len() as u32) as usize])
                .collect();
            if with_nan {
                x[5] = f32::NAN;
            }
            let mut y = vec![0.0f32; x.len() / 4];
            let mut arg = vec![0u8; y.len()];
            pool::forward(planes, side, side, &x, &mut y, &mut arg);
            let (ey, earg) = pool_scan(planes, side, side, &x);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            let canon = |v: &[f32]| {
                bits(v)
                    .into_iter()
                    .map(|b| {
                        if f32::from_bits(b).is_nan() {
                            0x7fc0_0000
                        } else {
                            b
                        }
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(canon(&y), canon(&ey), "{planes}x{side} nan={with_nan}");
            assert_eq!(arg, earg, "{planes}x{side} nan={with_nan}");
        }
    }
}

/// The dispatched plane kernel (AVX2 where the CPU has it: eight windows, then four, then the
/// portable rule for the rest of a row) equals the portable one bit for bit on NaN-free planes,
/// ties and signed zeros included, for every even width up to 40 (every mix of the three
/// parts); and both report a NaN wherever it sits: in an eight-wide block, a four-wide block,
/// the scalar rest, the top or the bottom row of a pair.
#[test]
fn max_pool_plane_vector_path_equals_portable_and_finds_every_nan() {
    use halfscale_sim::pool::{max_pool_plane_portable, PoolScalar};
    let mut rng = SeededRng::new(21);
    let palette = [
        -1.0f32,
        -0.0,
        0.0,
        1.0,
        2.0,
        f32::NEG_INFINITY,
        0.5,
        f32::INFINITY,
    ];
    for half in 1..=20 {
        let (h, w) = (6, 2 * half);
        let x: Vec<f32> = (0..h * w)
            .map(|_| palette[rng.below(palette.len() as u32) as usize])
            .collect();
        let run = |x: &[f32], vector: bool| {
            let (mut y, mut arg) = (vec![f32::NAN; h * w / 4], vec![9u8; h * w / 4]);
            let clean = if vector {
                <f32 as PoolScalar>::max_pool_plane(h, w, x, &mut y, &mut arg)
            } else {
                max_pool_plane_portable(h, w, x, &mut y, &mut arg)
            };
            (
                clean,
                y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                arg,
            )
        };
        let portable = run(&x, false);
        assert!(portable.0, "w={w}");
        assert_eq!(run(&x, true), portable, "w={w}");
        for at in 0..h * w {
            let mut x = x.clone();
            x[at] = f32::NAN;
            assert!(!run(&x, true).0, "w={w}: NaN at {at} missed");
            assert!(!run(&x, false).0, "w={w}: NaN at {at} missed (portable)");
        }
    }
}

/// The dispatched backward (AVX-512 where the CPU has it) equals the portable one bit for bit,
/// on gradients with NaN payloads, infinities and negative zeros, for every row width.
#[test]
fn max_pool_backward_vector_path_equals_portable() {
    use halfscale_sim::pool::PoolScalar;
    let specials = [
        f32::from_bits(0x7fc0_1234),
        -0.0,
        f32::INFINITY,
        -1.5e-40,
        3.0,
    ];
    for half in 1..=20 {
        let w = 2 * half;
        let pairs = 3;
        let g: Vec<f32> = (0..pairs * half)
            .map(|i| specials[i % specials.len()] * if i % 7 == 0 { -1.0 } else { 1.0 })
            .collect();
        let arg: Vec<u8> = (0..g.len()).map(|i| ((i * 5 + 3) % 4) as u8).collect();
        let mut fast = vec![f32::NAN; pairs * 2 * w];
        let mut portable = vec![7.0f32; pairs * 2 * w];
        f32::backward_tiled(w, &g, &arg, &mut fast);
        pool::backward_tiled_portable(w, &g, &arg, &mut portable);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&fast), bits(&portable), "width {w}");
    }
}

/// im2col and col2im in f32 on the geometries the vector versions serve (conv2's 5 x 5 on
/// 12 x 12, and others with output rows of eight) and on ones they do not, bit for bit against
/// the definitions written out here: im2col's copy, and col2im's scatter-add from `+0` with
/// the taps in order `(i, j)`; with NaN payloads, infinities, subnormals and signed zeros.
#[test]
fn im2col_and_col2im_f32_equal_their_definitions() {
    let geometries = [
        (3, 12, 5),
        (2, 10, 3),
        (1, 14, 7),
        (2, 9, 2),
        (1, 28, 5),
        (2, 12, 4),
    ];
    let specials = [
        f32::from_bits(0x7fc0_0abc),
        -0.0,
        0.0,
        f32::NEG_INFINITY,
        1e-41,
        -3.5,
        1.0e30,
    ];
    let mut rng = SeededRng::new(17);
    for (channels, side, kernel) in geometries {
        let conv = Conv2d {
            in_channels: channels,
            out_channels: 2,
            kernel,
            in_height: side,
            in_width: side,
        };
        let (n, oh) = (4, conv.out_height());
        let value = |rng: &mut SeededRng, i: usize| {
            if i.is_multiple_of(5) {
                specials[i / 5 % specials.len()]
            } else {
                rng.uniform(-2.0, 2.0)
            }
        };
        let x: Vec<f32> = (0..conv.input_len(n)).map(|i| value(&mut rng, i)).collect();
        let mut col = vec![f32::NAN; conv.col_len(n)];
        conv.im2col(n, &x, &mut col);
        let np = n * oh * oh;
        let mut expected_col = vec![0.0f32; col.len()];
        let mut expected_dx = vec![0.0f32; x.len()];
        let dcol: Vec<f32> = (0..col.len()).map(|i| value(&mut rng, i + 1)).collect();
        for c in 0..channels {
            for img in 0..n {
                for i in 0..kernel {
                    for j in 0..kernel {
                        let row = (c * kernel + i) * kernel + j;
                        for y in 0..oh {
                            for xx in 0..oh {
                                let at = row * np + img * oh * oh + y * oh + xx;
                                let input = ((c * n + img) * side + y + i) * side + xx + j;
                                expected_col[at] = x[input];
                                expected_dx[input] += dcol[at];
                            }
                        }
                    }
                }
            }
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&col),
            bits(&expected_col),
            "im2col {channels}x{side}, k {kernel}"
        );
        let mut dx = vec![f32::NAN; x.len()];
        conv.col2im(n, &dcol, &mut dx);
        assert_eq!(
            bits(&dx),
            bits(&expected_dx),
            "col2im {channels}x{side}, k {kernel}"
        );
    }
}

/// The weight gradient read through the im2col offsets (`backward_params_gathered`, what the
/// fused backward runs) equals the one from the built matrix bit for bit, on the model's two
/// convolutions and a ragged one, for 1 to 4 images, overwriting and accumulating: offsets
/// that named the wrong input element, or a GEMM that summed in another order, would differ.
#[test]
fn conv_weight_gradient_from_offsets_equals_from_the_built_matrix() {
    use halfscale_sim::model::{CONV1, CONV2};
    let ragged = Conv2d {
        in_channels: 3,
        out_channels: 5,
        kernel: 3,
        in_height: 9,
        in_width: 9,
    };
    let mut rng = SeededRng::new(23);
    for conv in [CONV1, CONV2, ragged] {
        for n in 1..=4 {
            let x: Vec<f32> = (0..conv.input_len(n))
                .map(|_| rng.uniform(-2.0, 2.0))
                .collect();
            let dy: Vec<f32> = (0..conv.output_len(n))
                .map(|_| rng.uniform(-1.0, 1.0))
                .collect();
            let mut col = vec![0.0f32; conv.col_len(n)];
            conv.im2col(n, &x, &mut col);
            let offsets = conv.col_offsets(n);
            assert_eq!(offsets.taps.len(), conv.col_rows());
            assert_eq!(offsets.positions.len(), n * conv.out_plane());
            let start: Vec<f32> = (0..conv.weight_len())
                .map(|_| rng.uniform(-1.0, 1.0))
                .collect();
            let bias0: Vec<f32> = (0..conv.out_channels)
                .map(|_| rng.uniform(-1.0, 1.0))
                .collect();
            for accumulate in [false, true] {
                let (mut dw_built, mut db_built) = (start.clone(), bias0.clone());
                conv.backward_params(n, &dy, &col, &mut dw_built, &mut db_built, accumulate);
                let (mut dw, mut db) = (start.clone(), bias0.clone());
                conv.backward_params_gathered(n, &dy, &x, &offsets, &mut dw, &mut db, accumulate);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&dw),
                    bits(&dw_built),
                    "{conv:?} n={n} acc={accumulate}"
                );
                assert_eq!(
                    bits(&db),
                    bits(&db_built),
                    "{conv:?} n={n} acc={accumulate}"
                );
            }
        }
    }
}

/// The input gradient by blocks of input channels (`backward_input`) equals one GEMM over all
/// taps and one col2im bit for bit, on conv2 and on geometries whose channels do not fill the
/// last block: a block that took the wrong taps of `W`, or scattered into the wrong planes,
/// would differ.
#[test]
fn conv_input_gradient_by_channel_blocks_equals_one_gemm_and_col2im() {
    use halfscale_sim::conv2d::DX_CHANNEL_BLOCK;
    use halfscale_sim::gemm::{gemm, Mat, MatMut};
    use halfscale_sim::model::CONV2;
    let odd = |in_channels| Conv2d {
        in_channels,
        out_channels: 6,
        kernel: 3,
        in_height: 10,
        in_width: 10,
    };
    let mut rng = SeededRng::new(29);
    for conv in [
        CONV2,
        odd(DX_CHANNEL_BLOCK + 3),
        odd(2 * DX_CHANNEL_BLOCK + 1),
        odd(1),
    ] {
        let n = 3;
        let np = n * conv.out_plane();
        let w: Vec<f32> = (0..conv.weight_len())
            .map(|_| rng.uniform(-1.0, 1.0))
            .collect();
        let dy: Vec<f32> = (0..conv.output_len(n))
            .map(|_| rng.uniform(-1.0, 1.0))
            .collect();
        let mut dcol_all = vec![0.0f32; conv.col_len(n)];
        gemm(
            1.0,
            Mat::row_major(&w, conv.out_channels, conv.col_rows()).t(),
            Mat::row_major(&dy, conv.out_channels, np),
            0.0,
            MatMut::row_major(&mut dcol_all, conv.col_rows(), np),
        );
        let mut want = vec![f32::NAN; conv.input_len(n)];
        conv.col2im(n, &dcol_all, &mut want);
        let mut dcol = vec![f32::NAN; conv.col_len(n)];
        let mut got = vec![f32::NAN; conv.input_len(n)];
        conv.backward_input(n, &dy, &w, &mut dcol, &mut got);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "{conv:?}");
    }
}

/// conv forward with the im2col matrix built a block of `KC` taps at a time equals the whole
/// matrix and one GEMM bit for bit (the GEMM's inner dimension runs in the same blocks), on
/// one block (conv1), several (conv2: 800 taps) and a ragged count; and `im2col_rows` gives
/// exactly those rows of `im2col`. A block boundary off `KC`, a bias added twice or a row
/// built from the wrong tap would differ.
#[test]
fn conv_forward_by_tap_blocks_equals_the_whole_matrix() {
    use halfscale_sim::gemm::KC;
    use halfscale_sim::model::{CONV1, CONV2};
    let wide = Conv2d {
        in_channels: 23,
        out_channels: 7,
        kernel: 5,
        in_height: 9,
        in_width: 9,
    };
    let mut rng = SeededRng::new(31);
    for conv in [CONV1, CONV2, wide] {
        for n in [1, 4] {
            let np = n * conv.out_plane();
            let x: Vec<f32> = (0..conv.input_len(n))
                .map(|_| rng.uniform(-2.0, 2.0))
                .collect();
            let w: Vec<f32> = (0..conv.weight_len())
                .map(|_| rng.uniform(-1.0, 1.0))
                .collect();
            let b: Vec<f32> = (0..conv.out_channels)
                .map(|_| rng.uniform(-1.0, 1.0))
                .collect();
            let mut col = vec![0.0f32; conv.col_len(n)];
            conv.im2col(n, &x, &mut col);
            let mut want = vec![f32::NAN; conv.output_len(n)];
            conv.forward(n, &col, &w, &b, &mut want);
            let mut block = vec![f32::NAN; KC * np];
            let mut got = vec![f32::NAN; conv.output_len(n)];
            conv.forward_by_tap_blocks(n, &x, &w, &b, &mut block, &mut got);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{conv:?} n={n}");
            let (r0, r1) = (conv.col_rows() / 3, conv.col_rows() - 1);
            let mut rows = vec![f32::NAN; (r1 - r0) * np];
            conv.im2col_rows(n, &x, r0..r1, &mut rows);
            assert_eq!(bits(&rows), bits(&col[r0 * np..r1 * np]), "{conv:?} n={n}");
            // The portable loop (f64 has no vector route) on the same rows.
            let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
            let mut col64 = vec![0.0f64; conv.col_len(n)];
            conv.im2col(n, &x64, &mut col64);
            let mut rows64 = vec![f64::NAN; (r1 - r0) * np];
            conv.im2col_rows(n, &x64, r0..r1, &mut rows64);
            assert_eq!(rows64, col64[r0 * np..r1 * np], "{conv:?} n={n} f64");
            let widened: Vec<f64> = col.iter().map(|&v| f64::from(v)).collect();
            assert_eq!(
                col64, widened,
                "{conv:?} n={n}: the vector im2col against the loop"
            );
        }
    }
}

/// `sum_lanes_rows` (four rows' chains interleaved) is `sum_lanes` row by row, bit for bit, for
/// every row length to 40 (whole chunks of eight and every tail) and row counts that leave 0 to
/// 3 rows after the groups of four, on values of mixed sign and magnitude (so any other order
/// of the adds would round differently).
#[test]
fn sum_lanes_rows_is_sum_lanes_row_by_row() {
    use halfscale_sim::gemm::{sum_lanes, sum_lanes_rows};
    let mut rng = SeededRng::new(31);
    for row_len in 1..=40 {
        for rows in 0..=9 {
            let values: Vec<f32> = (0..rows * row_len)
                .map(|_| rng.uniform(-1.0, 1.0) * 10f32.powi(rng.below(7) as i32 - 3))
                .collect();
            let want: Vec<u32> = values
                .chunks_exact(row_len)
                .map(|r| sum_lanes(r).to_bits())
                .collect();
            let mut got = vec![f32::NAN; rows];
            sum_lanes_rows(&values, row_len, |r, s| got[r] = s);
            let got: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, want, "{rows} rows of {row_len}");
        }
    }
}
