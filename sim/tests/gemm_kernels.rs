//! The f32 GEMM kernels (AVX-512, AVX2 + FMA, portable) against `matrixmultiply::sgemm` (the
//! reference path) and against a scalar statement of the accumulation order the CUDA kernels
//! mirror (gpu-shim/README.md): blocks of `KC` along the inner dimension, an FMA chain from +0
//! per element and block, blocks added to `C` in order. Equality is bit for bit, on the model's
//! GEMM shapes (per group of 4 images and per batch of 64) and on ragged ones, with every
//! layout the layers use (transposed `A`, transposed `B`, column-major `C`).

use halfscale_sim::gemm::{
    gemm_bias_rows, gemm_f32_bias_with, gemm_f32_with, Kernel, Mat, MatMut, Unsupported, KC,
};

/// xorshift64*: values spread over several binades, both signs, some exact zeros.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn value(&mut self) -> f32 {
        let r = self.next();
        if r.is_multiple_of(17) {
            return 0.0;
        }
        let unit = (r >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
        unit * f32::powi(2.0, (r % 9) as i32 - 4)
    }
    fn vec(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.value()).collect()
    }
}

/// A GEMM problem: `C[m][n] (+)= A[m][k] B[k][n]` with the given layouts.
#[derive(Clone, Copy, Debug)]
struct Shape {
    m: usize,
    k: usize,
    n: usize,
    /// `A` stored as its transpose (`[k][m]`), as `W^T` in the input gradients.
    a_t: bool,
    /// `B` stored as its transpose (`[n][k]`), as `col^T` and `W^T` in the layers.
    b_t: bool,
    /// `C` column-major.
    c_t: bool,
}

const fn s(m: usize, k: usize, n: usize, a_t: bool, b_t: bool) -> Shape {
    Shape {
        m,
        k,
        n,
        a_t,
        b_t,
        c_t: false,
    }
}

/// The layers' GEMMs (conv per group of 4 images, as `CpuBackend` runs them, and per batch of
/// 64 as the layer benches do; fc per half batch and whole batch), then ragged shapes.
const SHAPES: &[Shape] = &[
    s(32, 25, 4 * 576, false, false),  // conv1 forward
    s(32, 4 * 576, 25, false, true),   // conv1 dW = dY col^T
    s(64, 800, 4 * 64, false, false),  // conv2 forward
    s(64, 4 * 64, 800, false, true),   // conv2 dW
    s(800, 64, 4 * 64, true, false),   // conv2 dcol = W^T dY
    s(64, 800, 64 * 64, false, false), // conv2 forward, batch 64
    s(32, 1024, 128, false, true),     // fc1 forward, half batch
    s(64, 64, 1024, true, false),      // fc1 dW rows = dY[:, rows]^T x
    s(32, 128, 1024, false, false),    // fc1 dx
    s(64, 128, 10, false, true),       // fc2 forward
    s(10, 64, 128, true, false),       // fc2 dW
    s(64, 10, 128, false, false),      // fc2 dx
    s(1, 1, 1, false, false),
    s(7, 513, 19, true, true),
    s(9, 257, 33, false, true),
    s(17, 255, 47, true, false),
    Shape {
        m: 13,
        k: 300,
        n: 21,
        a_t: false,
        b_t: false,
        c_t: true,
    },
    s(3, 0, 5, false, false),
];

struct Problem {
    shape: Shape,
    a: Vec<f32>,
    b: Vec<f32>,
    c0: Vec<f32>,
}

impl Problem {
    fn new(shape: Shape, seed: u64) -> Self {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        Self {
            shape,
            a: rng.vec(shape.m * shape.k),
            b: rng.vec(shape.k * shape.n),
            c0: rng.vec(shape.m * shape.n),
        }
    }
    fn a(&self) -> Mat<'_, f32> {
        let Shape { m, k, a_t, .. } = self.shape;
        if a_t {
            Mat::row_major(&self.a, k, m).t()
        } else {
            Mat::row_major(&self.a, m, k)
        }
    }
    fn b(&self) -> Mat<'_, f32> {
        let Shape { k, n, b_t, .. } = self.shape;
        if b_t {
            Mat::row_major(&self.b, n, k).t()
        } else {
            Mat::row_major(&self.b, k, n)
        }
    }
    fn run(&self, kernel: Kernel, beta: f32) -> Result<Vec<f32>, Unsupported> {
        let Shape { m, n, c_t, .. } = self.shape;
        let mut c = self.c0.clone();
        let view = if c_t {
            MatMut {
                data: &mut c,
                rows: m,
                cols: n,
                row_stride: 1,
                col_stride: m,
            }
        } else {
            MatMut::row_major(&mut c, m, n)
        };
        gemm_f32_with(kernel, 1.0, self.a(), self.b(), beta, view)?;
        Ok(c)
    }
    /// The order written out: per element, per block of `KC`, `ab = fma(a, b, ab)` from +0,
    /// then `c = ab + c` (`c = ab` for the first block when `beta == 0`).
    fn definition(&self, beta: f32) -> Vec<f32> {
        let Shape { m, k, n, c_t, .. } = self.shape;
        let (a, b) = (self.a(), self.b());
        let at = |i: usize, p: usize| a.data[i * a.row_stride + p * a.col_stride];
        let bt = |p: usize, j: usize| b.data[p * b.row_stride + j * b.col_stride];
        let mut c = self.c0.clone();
        for i in 0..m {
            for j in 0..n {
                let idx = if c_t { i + j * m } else { i * n + j };
                if k == 0 {
                    c[idx] = if beta == 0.0 { 0.0 } else { c[idx] * beta };
                }
                for (block, p0) in (0..k).step_by(KC).enumerate() {
                    let mut ab = 0.0f32;
                    for p in p0..(p0 + KC).min(k) {
                        ab = at(i, p).mul_add(bt(p, j), ab);
                    }
                    let beta_block = if block == 0 { beta } else { 1.0 };
                    let cv = if beta_block == 0.0 {
                        0.0
                    } else {
                        c[idx] * beta_block
                    };
                    c[idx] = 1.0f32.mul_add(ab, cv);
                }
            }
        }
        c
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn kernels_match_matrixmultiply_bit_for_bit() {
    let kernels: Vec<Kernel> = Kernel::ALL.into_iter().filter(|k| k.supported()).collect();
    assert!(kernels.contains(&Kernel::Portable) && kernels.contains(&Kernel::Reference));
    println!("kernels on this CPU: {kernels:?}");
    for (seed, &shape) in SHAPES.iter().enumerate() {
        let problem = Problem::new(shape, seed as u64 + 1);
        for beta in [0.0f32, 1.0] {
            let reference = problem.run(Kernel::Reference, beta).unwrap();
            // The reference is the order it is said to be, so the GPU's mirror of it holds.
            if shape.m * shape.n * shape.k <= 1 << 22 {
                assert_eq!(
                    bits(&reference),
                    bits(&problem.definition(beta)),
                    "matrixmultiply vs the written-out order, {shape:?}, beta {beta}"
                );
            }
            for &kernel in &kernels {
                let got = problem.run(kernel, beta).unwrap();
                let diff = got
                    .iter()
                    .zip(&reference)
                    .position(|(x, y)| x.to_bits() != y.to_bits());
                assert_eq!(
                    diff, None,
                    "{kernel:?} vs matrixmultiply, {shape:?}, beta {beta}: first difference at {diff:?}"
                );
            }
        }
    }
}

/// The bias mode (`c = a b + bias[i]`, the convolutions' forward) is the same bits as filling
/// each row of `c` with its bias and multiplying with `beta = 1`, on every kernel, without
/// reading `c`.
#[test]
fn bias_rows_equal_fill_then_gemm() {
    for (seed, &shape) in SHAPES.iter().enumerate() {
        if shape.c_t {
            continue;
        }
        let problem = Problem::new(shape, seed as u64 + 50);
        let bias: Vec<f32> = Rng(seed as u64 + 7).vec(shape.m);
        let mut filled = problem.c0.clone();
        for (i, row) in filled
            .chunks_exact_mut(shape.n.max(1))
            .enumerate()
            .take(shape.m)
        {
            row.fill(bias[i]);
        }
        let expected = {
            let mut c = filled.clone();
            gemm_f32_with(
                Kernel::Reference,
                1.0,
                problem.a(),
                problem.b(),
                1.0,
                MatMut::row_major(&mut c, shape.m, shape.n),
            )
            .unwrap();
            c
        };
        for kernel in Kernel::ALL.into_iter().filter(|k| k.supported()) {
            let mut c = vec![f32::NAN; shape.m * shape.n];
            gemm_f32_bias_with(
                kernel,
                1.0,
                problem.a(),
                problem.b(),
                0.0,
                Some(&bias),
                MatMut::row_major(&mut c, shape.m, shape.n),
            )
            .unwrap();
            assert_eq!(bits(&c), bits(&expected), "{kernel:?}, {shape:?}");
        }
        let mut c = vec![f32::NAN; shape.m * shape.n];
        gemm_bias_rows(
            &bias,
            problem.a(),
            problem.b(),
            MatMut::row_major(&mut c, shape.m, shape.n),
        );
        assert_eq!(bits(&c), bits(&expected), "active kernel, {shape:?}");
    }
}

/// With `beta == 0`, `C`'s old contents are not read: NaN there must not leak into the result.
#[test]
fn beta_zero_ignores_old_output() {
    for kernel in Kernel::ALL.into_iter().filter(|k| k.supported()) {
        let problem = Problem::new(s(9, 300, 37, false, false), 99);
        let mut c = vec![f32::NAN; 9 * 37];
        gemm_f32_with(
            kernel,
            1.0,
            problem.a(),
            problem.b(),
            0.0,
            MatMut::row_major(&mut c, 9, 37),
        )
        .unwrap();
        assert_eq!(
            bits(&c),
            bits(&problem.definition(0.0)),
            "{kernel:?}: beta 0 read C"
        );
    }
}

/// The detected kernel is the fastest supported one, and the active one is supported.
#[test]
fn dispatch_picks_a_supported_kernel() {
    let detected = Kernel::detect();
    assert!(detected.supported());
    assert!(Kernel::active().supported());
    let first = Kernel::ALL.into_iter().find(|k| k.supported()).unwrap();
    assert_eq!(detected, first);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        assert_eq!(detected, Kernel::Avx512);
    }
    for kernel in Kernel::ALL.into_iter().filter(|k| !k.supported()) {
        let problem = Problem::new(s(2, 2, 2, false, false), 1);
        assert_eq!(problem.run(kernel, 0.0), Err(Unsupported(kernel)));
    }
}

/// A gathered `A` (`A[i][p] = src[rows[i] + cols[p]]`, as a convolution's im2col matrix is
/// read from its input) gives the bits of the same GEMM on the built matrix, on every kernel,
/// with `C` row- and column-major, `beta` 0 and 1, and inner dimensions of one and several
/// `KC` blocks (ragged edges included). A kernel that read the wrong element, or summed in
/// another order, would differ.
#[test]
fn gathered_a_matches_the_built_matrix() {
    use halfscale_sim::gemm::{gemm_f32_gathered_with, Gathered};
    let mut rng = Rng(0x005e_ed0f_9a7e);
    for &(m, k, n) in &[
        (25, 2304, 32),
        (800, 256, 64),
        (13, 300, 21),
        (1, 1, 1),
        (9, 513, 17),
    ] {
        let src = rng.vec(m * 3 + k * 2 + 7);
        // Overlapping, out-of-order reads: every row shares elements with its neighbours.
        let rows: Vec<usize> = (0..m).map(|i| (i * 7) % (m * 3)).collect();
        let cols: Vec<usize> = (0..k).map(|p| (p * 5 + p / 3) % (k * 2)).collect();
        let built: Vec<f32> = (0..m * k).map(|e| src[rows[e / k] + cols[e % k]]).collect();
        let b = rng.vec(k * n);
        let c0 = rng.vec(m * n);
        for c_t in [false, true] {
            for beta in [0.0f32, 1.0] {
                let mut want = c0.clone();
                gemm_f32_with(
                    Kernel::Reference,
                    1.0,
                    Mat::row_major(&built, m, k),
                    Mat::row_major(&b, k, n),
                    beta,
                    view(&mut want, m, n, c_t),
                )
                .unwrap();
                for kernel in Kernel::ALL.into_iter().filter(|k| k.supported()) {
                    let mut got = c0.clone();
                    gemm_f32_gathered_with(
                        kernel,
                        1.0,
                        Gathered {
                            src: &src,
                            rows: &rows,
                            cols: &cols,
                        },
                        Mat::row_major(&b, k, n),
                        beta,
                        view(&mut got, m, n, c_t),
                    )
                    .unwrap();
                    assert_eq!(
                        bits(&got),
                        bits(&want),
                        "{kernel:?} {m}x{k}x{n} c_t={c_t} beta={beta}"
                    );
                }
            }
        }
    }
}

/// `C` as an `m x n` view of `data`, row- or column-major.
fn view(data: &mut [f32], m: usize, n: usize, col_major: bool) -> MatMut<'_, f32> {
    let (row_stride, col_stride) = if col_major { (1, m) } else { (n, 1) };
    MatMut {
        data,
        rows: m,
        cols: n,
        row_stride,
        col_stride,
    }
}

/// An offset past the source is a programming error caught before any read.
#[test]
#[should_panic(expected = "input view exceeds its slice")]
fn gathered_offsets_past_the_source_panic() {
    use halfscale_sim::gemm::{gemm_gathered, Gathered};
    let src = [1.0f32; 10];
    let b = [1.0f32; 2];
    let mut c = [0.0f32; 2];
    gemm_gathered(
        1.0,
        Gathered {
            src: &src,
            rows: &[0, 8],
            cols: &[1, 2],
        },
        Mat::row_major(&b, 2, 1),
        0.0,
        MatMut::row_major(&mut c, 2, 1),
    );
}
