//! Dense matrix products for the layers, over f32 (training) and f64 (the finite-difference
//! tests).
//!
//! f32 runs on this crate's own packed micro-kernels ([`Kernel`]: AVX-512, AVX2 + FMA or
//! portable, chosen once at run time), which keep `matrixmultiply::sgemm`'s accumulation order
//! bit for bit (blocks of [`KC`] = 256 along the inner dimension, an FMA chain from +0 per
//! element and block, blocks added to `C` in order; see `gemm/sgemm.rs`). That order is what the
//! CUDA kernels mirror, so the simulator's bits did not move when the kernels did.
//! `matrixmultiply` (AVX2/FMA only, about half of Zen 4's per-core FMA peak on these shapes,
//! docs/PERFORMANCE.md) stays as the definition of the order ([`Kernel::Reference`], checked
//! against in the tests) and for f64; this module is the only place that names it.
//!
//! Matrices are strided views checked against their slices before the unsafe call, so the
//! safe wrapper cannot read or write out of bounds whatever the caller passes.

mod sgemm;

pub use sgemm::{Kernel, Unsupported, KC};
use std::fmt::Debug;
use std::ops::{Add, AddAssign, Mul, Neg, Sub};

/// The element types the layers run on: f32 for training, f64 for the reference tests.
pub trait Scalar:
    Copy
    + Debug
    + Default
    + PartialOrd
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Neg<Output = Self>
    + AddAssign
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn is_nan(self) -> bool;
    fn div(self, rhs: Self) -> Self;
    /// [`gemm_bias_rows`] after its bias check: fill each row of `c` with its bias, then
    /// [`gemm`] with `alpha = beta = 1`. f32 overrides it with the kernels' bias epilogue.
    fn gemm_bias_rows(bias: &[Self], a: Mat<'_, Self>, b: Mat<'_, Self>, c: MatMut<'_, Self>) {
        for (i, &v) in bias.iter().enumerate().take(c.rows) {
            for j in 0..c.cols {
                c.data[i * c.row_stride + j * c.col_stride] = v;
            }
        }
        gemm(Self::ONE, a, b, Self::ONE, c);
    }
    /// `c = alpha * a * b + beta * c`, strides in elements.
    ///
    /// # Safety
    /// Every element addressed by the dimensions and strides must lie inside the allocations
    /// `a`, `b`, `c` point into, and `c` must not alias `a` or `b`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

macro_rules! impl_scalar {
    ($t:ty, $gemm:path $(, $extra:item)*) => {
        impl Scalar for $t {
            $($extra)*
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            #[inline]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            #[inline]
            fn div(self, rhs: Self) -> Self {
                self / rhs
            }
            unsafe fn gemm_raw(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                a: *const Self,
                rsa: isize,
                csa: isize,
                b: *const Self,
                rsb: isize,
                csb: isize,
                beta: Self,
                c: *mut Self,
                rsc: isize,
                csc: isize,
            ) {
                // SAFETY: forwarded from this function's contract.
                unsafe { $gemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
            }
        }
    };
}

/// `matrixmultiply::sgemm`'s signature over [`Kernel::active`].
///
/// # Safety
/// As [`Scalar::gemm_raw`].
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm_active(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    csb: isize,
    beta: f32,
    c: *mut f32,
    rsc: isize,
    csc: isize,
) {
    // SAFETY: forwarded from this function's contract; `active` only returns supported kernels.
    unsafe {
        sgemm::sgemm(
            Kernel::active(),
            m,
            k,
            n,
            alpha,
            a,
            rsa,
            csa,
            b,
            rsb,
            csb,
            beta,
            std::ptr::null(),
            c,
            rsc,
            csc,
        )
    }
}

impl_scalar!(
    f32,
    sgemm_active,
    fn gemm_bias_rows(bias: &[f32], a: Mat<'_, f32>, b: Mat<'_, f32>, c: MatMut<'_, f32>) {
        gemm_f32_bias_with(Kernel::active(), 1.0, a, b, 1.0, Some(bias), c)
            .expect("the active kernel is supported");
    }
);
impl_scalar!(f64, matrixmultiply::dgemm);

/// A read-only strided matrix view.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A row-major `rows x cols` matrix over `data`.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// A mutable strided matrix view.
#[derive(Debug)]
pub struct MatMut<'a, T> {
    pub data: &'a mut [T],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a, T> MatMut<'a, T> {
    /// A row-major `rows x cols` matrix over `data`.
    pub fn row_major(data: &'a mut [T], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// `c = alpha * a * b + beta * c`. With `beta == 0`, `c`'s old contents are ignored.
///
/// # Panics
/// When the shapes disagree or a view does not fit its slice: a programming error in the
/// caller, never a property of the data.
pub fn gemm<T: Scalar>(alpha: T, a: Mat<'_, T>, b: Mat<'_, T>, beta: T, c: MatMut<'_, T>) {
    check(&a, &b, &c);
    if c.rows == 0 || c.cols == 0 {
        return;
    }
    // SAFETY: every view was checked to fit its slice above; `c` is a unique borrow, so it
    // cannot alias `a` or `b`, which are shared borrows.
    unsafe {
        T::gemm_raw(
            a.rows,
            a.cols,
            b.cols,
            alpha,
            a.data.as_ptr(),
            a.row_stride as isize,
            a.col_stride as isize,
            b.data.as_ptr(),
            b.row_stride as isize,
            b.col_stride as isize,
            beta,
            c.data.as_mut_ptr(),
            c.row_stride as isize,
            c.col_stride as isize,
        );
    }
}

/// `c[i][j] = bias[i] + (a b)[i][j]`: the same bits as filling row `i` of `c` with `bias[i]`
/// and calling [`gemm`] with `alpha = beta = 1` (the bias is where the first block's FMA chain
/// is added, as PyTorch's `addmm` adds its `input`), without that pass over `c`. f32 takes the
/// bias in the kernels' epilogue; other types fill, then multiply.
///
/// # Panics
/// As [`gemm`], and when the bias is shorter than `c` has rows.
pub fn gemm_bias_rows<T: Scalar>(bias: &[T], a: Mat<'_, T>, b: Mat<'_, T>, c: MatMut<'_, T>) {
    assert!(
        bias.len() >= c.rows,
        "gemm: bias shorter than the output's rows"
    );
    T::gemm_bias_rows(bias, a, b, c);
}

/// The shape and bounds checks of [`gemm`].
fn check<T>(a: &Mat<'_, T>, b: &Mat<'_, T>, c: &MatMut<'_, T>) {
    check_with(a.rows, a.cols, a.fits(), b, c);
}

/// [`check`] for an `A` of `rows x cols` that `a_fits` its storage (a strided or a gathered one).
fn check_with<T>(rows: usize, cols: usize, a_fits: bool, b: &Mat<'_, T>, c: &MatMut<'_, T>) {
    assert_eq!(cols, b.rows, "gemm: inner dimensions differ");
    assert_eq!(rows, c.rows, "gemm: output rows differ");
    assert_eq!(b.cols, c.cols, "gemm: output columns differ");
    assert!(a_fits && b.fits(), "gemm: input view exceeds its slice");
    assert!(c.fits(), "gemm: output view exceeds its slice");
}

/// The f32 [`gemm`] on a chosen kernel instead of [`Kernel::active`]: for the tests that check
/// every path against the others, and the benches that compare them.
///
/// # Errors
/// [`Unsupported`] when this CPU cannot run `kernel`.
///
/// # Panics
/// As [`gemm`]: shapes that disagree or views that do not fit their slices.
pub fn gemm_f32_with(
    kernel: Kernel,
    alpha: f32,
    a: Mat<'_, f32>,
    b: Mat<'_, f32>,
    beta: f32,
    c: MatMut<'_, f32>,
) -> Result<(), Unsupported> {
    gemm_f32_bias_with(kernel, alpha, a, b, beta, None, c)
}

/// [`gemm_f32_with`], and with `Some(bias)` [`gemm_bias_rows`]'s `c = alpha a b + bias[i]`
/// (`beta` ignored).
///
/// # Errors
/// [`Unsupported`] when this CPU cannot run `kernel`.
///
/// # Panics
/// As [`gemm`], and when the bias is shorter than `c` has rows.
pub fn gemm_f32_bias_with(
    kernel: Kernel,
    alpha: f32,
    a: Mat<'_, f32>,
    b: Mat<'_, f32>,
    beta: f32,
    bias: Option<&[f32]>,
    c: MatMut<'_, f32>,
) -> Result<(), Unsupported> {
    if !kernel.supported() {
        return Err(Unsupported(kernel));
    }
    check(&a, &b, &c);
    assert!(
        bias.is_none_or(|b| b.len() >= c.rows),
        "gemm: bias shorter than the output's rows"
    );
    if c.rows == 0 || c.cols == 0 {
        return Ok(());
    }
    // SAFETY: every view was checked to fit its slice; `c` is a unique borrow, so it cannot
    // alias `a` or `b`; `kernel` was checked to be supported.
    unsafe {
        sgemm::sgemm(
            kernel,
            a.rows,
            a.cols,
            b.cols,
            alpha,
            a.data.as_ptr(),
            a.row_stride as isize,
            a.col_stride as isize,
            b.data.as_ptr(),
            b.row_stride as isize,
            b.col_stride as isize,
            beta,
            bias.map_or(std::ptr::null(), <[f32]>::as_ptr),
            c.data.as_mut_ptr(),
            c.row_stride as isize,
            c.col_stride as isize,
        );
    }
    Ok(())
}

/// An f32 `A` operand read through offset tables: `A[i][p] = src[rows[i] + cols[p]]`. A
/// convolution's im2col matrix is one (`rows` from the filter tap, `cols` from the output
/// position; `Conv2d::col_offsets`), so a GEMM can read it from the convolution's input
/// without building it.
#[derive(Clone, Copy, Debug)]
pub struct Gathered<'a> {
    pub src: &'a [f32],
    pub rows: &'a [usize],
    pub cols: &'a [usize],
}

impl Gathered<'_> {
    /// Every addressed element inside `src`.
    fn fits(&self) -> bool {
        match (self.rows.iter().max(), self.cols.iter().max()) {
            (Some(&r), Some(&c)) => r.checked_add(c).is_some_and(|e| e < self.src.len()),
            _ => true,
        }
    }
}

/// `c = alpha * a * b + beta * c` with a gathered `a`, on the active kernel: the same bits as
/// [`gemm`] on the matrix `a` stands for (the same FMA chains, read from elsewhere).
///
/// # Panics
/// As [`gemm`]: tables or shapes that disagree, or an offset past `src`.
pub fn gemm_gathered(alpha: f32, a: Gathered<'_>, b: Mat<'_, f32>, beta: f32, c: MatMut<'_, f32>) {
    gemm_f32_gathered_with(Kernel::active(), alpha, a, b, beta, c)
        .expect("the active kernel is supported");
}

/// [`gemm_gathered`] on a chosen kernel (the tests check each against the built matrix).
///
/// # Errors
/// [`Unsupported`] when this CPU cannot run `kernel`.
///
/// # Panics
/// As [`gemm_gathered`].
pub fn gemm_f32_gathered_with(
    kernel: Kernel,
    alpha: f32,
    a: Gathered<'_>,
    b: Mat<'_, f32>,
    beta: f32,
    c: MatMut<'_, f32>,
) -> Result<(), Unsupported> {
    if !kernel.supported() {
        return Err(Unsupported(kernel));
    }
    check_with(a.rows.len(), a.cols.len(), a.fits(), &b, &c);
    if c.rows == 0 || c.cols == 0 {
        return Ok(());
    }
    // SAFETY: every offset pair and view was checked to fit its slice above (offsets below
    // `src.len() <= isize::MAX`, so a `usize` table reads as the same `isize` values); `c` is a
    // unique borrow, so it aliases neither input; `kernel` was checked to be supported.
    unsafe {
        sgemm::sgemm_gathered(
            kernel,
            c.rows,
            b.rows,
            c.cols,
            alpha,
            a.src.as_ptr(),
            a.rows.as_ptr().cast::<isize>(),
            a.cols.as_ptr().cast::<isize>(),
            b.data.as_ptr(),
            b.row_stride as isize,
            b.col_stride as isize,
            beta,
            c.data.as_mut_ptr(),
            c.row_stride as isize,
            c.col_stride as isize,
        );
    }
    Ok(())
}

/// Sum of a slice in eight interleaved partial sums (element `i` into partial `i % 8`), combined
/// pairwise at the end: a fixed order, so the result is reproducible, and independent chains,
/// so it vectorises instead of waiting on one add at a time.
pub fn sum_lanes<T: Scalar>(values: &[T]) -> T {
    let mut acc = [T::ZERO; 8];
    let mut chunks = values.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
        *a += v;
    }
    combine_lanes(&acc)
}

/// The pairwise combination of [`sum_lanes`]' eight partial sums.
fn combine_lanes<T: Scalar>(acc: &[T; 8]) -> T {
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

/// [`sum_lanes`] of each whole row of `values` (`row_len` elements each), handed to
/// `sink(row, sum)` in row order: four rows at a time, so four rows' chains of adds interleave
/// instead of one waiting on its own adds (a bias gradient sums 32 or 64 rows). Each row keeps
/// its own eight partial sums in the same order: the same bits as [`sum_lanes`] row by row.
pub fn sum_lanes_rows<T: Scalar>(values: &[T], row_len: usize, mut sink: impl FnMut(usize, T)) {
    if row_len == 0 {
        return;
    }
    let mut quads = values.chunks_exact(4 * row_len);
    for (q, quad) in (&mut quads).enumerate() {
        let (r01, r23) = quad.split_at(2 * row_len);
        let (r0, r1) = r01.split_at(row_len);
        let (r2, r3) = r23.split_at(row_len);
        let mut acc = [[T::ZERO; 8]; 4];
        for (((a, b), c), d) in r0
            .chunks_exact(8)
            .zip(r1.chunks_exact(8))
            .zip(r2.chunks_exact(8))
            .zip(r3.chunks_exact(8))
        {
            for l in 0..8 {
                acc[0][l] += a[l];
                acc[1][l] += b[l];
                acc[2][l] += c[l];
                acc[3][l] += d[l];
            }
        }
        let tail = row_len / 8 * 8;
        for (acc, row) in acc.iter_mut().zip([r0, r1, r2, r3]) {
            for (a, &v) in acc.iter_mut().zip(&row[tail..]) {
                *a += v;
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            sink(4 * q + r, combine_lanes(acc));
        }
    }
    let done = values.len() / (4 * row_len) * 4;
    for (r, row) in quads.remainder().chunks_exact(row_len).enumerate() {
        sink(done + r, sum_lanes(row));
    }
}
