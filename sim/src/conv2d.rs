//! 2-D convolution, stride 1, no padding (`nn.Conv2d(c_in, c_out, k)` as the seed uses it), by
//! im2col + GEMM.
//!
//! Activations are channel-major within a group of `n` images, `[C][n][H][W]` ("CNHW"): the
//! im2col matrix of the whole group is then `[C*k*k][n*OH*OW]` and the convolution is one GEMM,
//! `Y[C_out][n*OH*OW] = W[C_out][C*k*k] * col + b`, whose output is again CNHW. The weight layout
//! is PyTorch's `[C_out][C_in][k][k]`, so rows of `W` are the flattened filters.
//!
//! Backward (the rules of `convolution_backward`): `dW = dY * col^T`, `db = sum of dY over images
//! and positions`, `dcol = W^T * dY`, and `dX = col2im(dcol)` (scatter-add of the patches).

use crate::gemm::{
    gemm, gemm_bias_rows, gemm_gathered, sum_lanes_rows, Gathered, Mat, MatMut, Scalar, KC,
};
use std::ops::Range;

/// The element types convolutions run on, with their im2col and col2im: the portable loops,
/// and for f32 vector versions where the CPU has AVX-512F and the geometry is one they are
/// written for (identical results: data movement, and col2im's adds in the same order).
pub trait ConvScalar: Scalar {
    /// [`Conv2d::im2col_rows`] by a faster route; returns false (and does nothing) when it has
    /// none for this CPU and geometry.
    fn im2col_fast(
        _conv: &Conv2d,
        _n: usize,
        _x: &[Self],
        _rows: Range<usize>,
        _col: &mut [Self],
    ) -> bool {
        false
    }
    /// [`Conv2d::col2im`] by a faster route; returns false (and does nothing) when it has none.
    fn col2im_fast(_conv: &Conv2d, _n: usize, _dcol: &[Self], _dx: &mut [Self]) -> bool {
        false
    }
}

impl ConvScalar for f64 {}

// Elsewhere than x86-64 both are the defaults' `false`.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
impl ConvScalar for f32 {
    fn im2col_fast(
        conv: &Conv2d,
        n: usize,
        x: &[f32],
        rows: Range<usize>,
        col: &mut [f32],
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f")
            && x.len() >= conv.input_len(n)
            && rows.start <= rows.end
            && rows.end <= conv.col_rows()
            && col.len() >= rows.len() * n * conv.out_plane()
        {
            // SAFETY: AVX-512F is present; the lengths and the range were checked above.
            unsafe { x86::im2col_avx512(conv, n, x, rows, col) };
            return true;
        }
        false
    }

    fn col2im_fast(conv: &Conv2d, n: usize, dcol: &[f32], dx: &mut [f32]) -> bool {
        #[cfg(target_arch = "x86_64")]
        if conv.vector_geometry()
            && std::arch::is_x86_feature_detected!("avx512f")
            && dx.len() >= conv.input_len(n)
            && dcol.len() >= conv.col_len(n)
        {
            // SAFETY: AVX-512F is present; the geometry and the lengths were checked above.
            unsafe { x86::col2im_avx512(conv, n, dcol, dx) };
            return true;
        }
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Conv2d;
    use std::arch::x86_64::*;

    /// Input planes of at most this side are held in registers, one row each, by col2im.
    pub(super) const MAX_SIDE: usize = 16;

    /// im2col with 64-byte stores: output rows of eight two to a vector (conv2), other widths
    /// in pieces of sixteen, the last one masked (conv1's rows of 24: 16 + 8).
    ///
    /// Rows `rows` of the matrix, row `r` at `col[(r - rows.start) * n * oplane ..]`.
    ///
    /// # Safety
    /// AVX-512F is present; `x` holds `n` images, `rows` lies within the matrix's rows and
    /// `col` holds `rows.len()` rows of `n` images.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn im2col_avx512(
        conv: &Conv2d,
        n: usize,
        x: &[f32],
        rows: std::ops::Range<usize>,
        col: &mut [f32],
    ) {
        let (k, w, oh, ow) = (
            conv.kernel,
            conv.in_width,
            conv.out_height(),
            conv.out_width(),
        );
        let (plane, oplane) = (conv.in_plane(), conv.out_plane());
        let np = n * oplane;
        let paired = ow == 8 && oh.is_multiple_of(2);
        let (x, col) = (x.as_ptr(), col.as_mut_ptr());
        let first = rows.start;
        for row in rows {
            let (c, i, j) = (row / (k * k), row / k % k, row % k);
            for img in 0..n {
                // SAFETY: rows `y + i < in_height`, columns `j .. j + ow <= in_width` of
                // the plane are inside `x`; the destination's `oplane` elements are
                // inside `col` (the contract); masked lanes are neither read nor written.
                unsafe {
                    let src = x.add((c * n + img) * plane + i * w + j);
                    let dst = col.add((row - first) * np + img * oplane);
                    if paired {
                        for y in (0..oh).step_by(2) {
                            let lo = _mm512_castps256_ps512(_mm256_loadu_ps(src.add(y * w)));
                            // Lanes 8..16 from the next input row (lanes below masked).
                            let next = src.add((y + 1) * w).wrapping_sub(8);
                            let v = _mm512_mask_loadu_ps(lo, 0xFF00, next);
                            _mm512_storeu_ps(dst.add(y * 8), v);
                        }
                    } else {
                        for y in 0..oh {
                            for x0 in (0..ow).step_by(16) {
                                let m = ((1u32 << (ow - x0).min(16)) - 1) as __mmask16;
                                let v = _mm512_maskz_loadu_ps(m, src.add(y * w + x0));
                                _mm512_mask_storeu_ps(dst.add(y * ow + x0), m, v);
                            }
                        }
                    }
                }
            }
        }
    }

    /// col2im with each input plane's rows in registers: every tap's rows are added where they
    /// land (masked lanes untouched), taps in the order of the portable loop, so every element
    /// gets the same adds in the same order from the same `+0` start; one store per row.
    ///
    /// # Safety
    /// AVX-512F is present; `conv.vector_geometry()`; `dcol` and `dx` hold `n` images.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn col2im_avx512(conv: &Conv2d, n: usize, dcol: &[f32], dx: &mut [f32]) {
        // The model's conv2 (5 x 5 on 12 x 12) with its sizes known to the compiler, so the
        // rows stay in registers; any other geometry the same code with the sizes at run time.
        // SAFETY (both): forwarded from this function's contract.
        match (conv.in_height, conv.kernel) {
            (12, 5) => unsafe { col2im_planes::<12, 5>(conv, n, dcol, dx) },
            _ => unsafe { col2im_planes::<0, 0>(conv, n, dcol, dx) },
        }
    }

    /// [`col2im_avx512`] for input side `H` and kernel `K` (`0, 0`: taken from `conv`).
    ///
    /// # Safety
    /// As [`col2im_avx512`].
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn col2im_planes<const H: usize, const K: usize>(
        conv: &Conv2d,
        n: usize,
        dcol: &[f32],
        dx: &mut [f32],
    ) {
        let (h, k) = if H == 0 {
            (conv.in_height, conv.kernel)
        } else {
            (H, K)
        };
        let w = h;
        let (oh, ow) = (h - k + 1, w - k + 1);
        let (plane, oplane) = (h * w, oh * ow);
        let np = n * oplane;
        let (dcol, dx) = (dcol.as_ptr(), dx.as_mut_ptr());
        let row_mask = ((1u32 << w) - 1) as __mmask16;
        for c in 0..conv.in_channels {
            for img in 0..n {
                let mut acc = [_mm512_setzero_ps(); MAX_SIDE];
                for i in 0..k {
                    for j in 0..k {
                        let tap = (c * k + i) * k + j;
                        let lanes = (((1u32 << ow) - 1) << j) as __mmask16;
                        // SAFETY: the tap's `oh` rows of `ow` are inside `dcol` (the contract);
                        // only lanes `j .. j + ow` are read, i.e. `src[y * ow .. y * ow + ow]`.
                        unsafe {
                            let src = dcol.add(tap * np + img * oplane);
                            for (y, a) in acc[i..i + oh].iter_mut().enumerate() {
                                let v =
                                    _mm512_maskz_loadu_ps(lanes, src.add(y * ow).wrapping_sub(j));
                                *a = _mm512_mask_add_ps(*a, lanes, *a, v);
                            }
                        }
                    }
                }
                // SAFETY: the plane's `h` rows of `w` are inside `dx` (the contract).
                unsafe {
                    let d = dx.add((c * n + img) * plane);
                    for (yy, a) in acc.iter().enumerate().take(h) {
                        _mm512_mask_storeu_ps(d.add(yy * w), row_mask, *a);
                    }
                }
            }
        }
    }
}

/// Copies a short row; the model's widths (24 and 8) get fixed-size copies that compile to a
/// few vector moves instead of a `memmove` call per row.
#[inline(always)]
fn copy_row<T: Scalar>(dst: &mut [T], src: &[T]) {
    match (<&mut [T; 8]>::try_from(&mut *dst), <&[T; 8]>::try_from(src)) {
        (Ok(d), Ok(s)) => *d = *s,
        _ => match (
            <&mut [T; 24]>::try_from(&mut *dst),
            <&[T; 24]>::try_from(src),
        ) {
            (Ok(d), Ok(s)) => *d = *s,
            _ => dst.copy_from_slice(src),
        },
    }
}

/// `dst += src` for a short row, with the same fixed-size fast paths as [`copy_row`].
#[inline(always)]
fn add_row<T: Scalar>(dst: &mut [T], src: &[T]) {
    #[inline(always)]
    fn add<T: Scalar, const N: usize>(d: &mut [T; N], s: &[T; N]) {
        for k in 0..N {
            d[k] += s[k];
        }
    }
    match (<&mut [T; 8]>::try_from(&mut *dst), <&[T; 8]>::try_from(src)) {
        (Ok(d), Ok(s)) => add(d, s),
        _ => match (
            <&mut [T; 24]>::try_from(&mut *dst),
            <&[T; 24]>::try_from(src),
        ) {
            (Ok(d), Ok(s)) => add(d, s),
            _ => {
                for (o, v) in dst.iter_mut().zip(src) {
                    *o += *v;
                }
            }
        },
    }
}

/// Images per partial sum of a convolution's weight and bias gradients: each group of this many
/// images is accumulated in f32 on its own, then the groups are added in group order. The order
/// of a sum decides its last bits, so it is part of the numerics every backend reproduces (the
/// CPU's parallel groups and the CUDA kernel `conv2d_bwd_params_part` alike), not a detail of one.
pub const WEIGHT_GRAD_GROUP: usize = 4;

/// A convolution's im2col matrix as offsets into its input ([`Conv2d::col_offsets`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ColOffsets {
    /// The number of images the tables are for.
    pub n: usize,
    /// Per row of the matrix (filter tap `(c, i, j)`).
    pub taps: Vec<usize>,
    /// Per column (output position `(img, y, x)`).
    pub positions: Vec<usize>,
}

/// The geometry of one convolution layer on `in_height x in_width` inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2d {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub in_height: usize,
    pub in_width: usize,
}

impl Conv2d {
    pub const fn out_height(&self) -> usize {
        self.in_height - self.kernel + 1
    }
    pub const fn out_width(&self) -> usize {
        self.in_width - self.kernel + 1
    }
    /// Output positions per image and channel.
    pub const fn out_plane(&self) -> usize {
        self.out_height() * self.out_width()
    }
    /// Input elements per image and channel.
    pub const fn in_plane(&self) -> usize {
        self.in_height * self.in_width
    }
    /// Rows of the im2col matrix: `in_channels * k * k`, also the fan-in of a filter.
    pub const fn col_rows(&self) -> usize {
        self.in_channels * self.kernel * self.kernel
    }
    /// Elements of the weight tensor.
    pub const fn weight_len(&self) -> usize {
        self.out_channels * self.col_rows()
    }
    /// Elements of the input of `n` images.
    pub const fn input_len(&self, n: usize) -> usize {
        self.in_channels * n * self.in_plane()
    }
    /// Elements of the output of `n` images.
    pub const fn output_len(&self, n: usize) -> usize {
        self.out_channels * n * self.out_plane()
    }
    /// Elements of the im2col matrix of `n` images.
    pub const fn col_len(&self, n: usize) -> usize {
        self.col_rows() * n * self.out_plane()
    }

    /// Whether the vector col2im of [`ConvScalar`] serves this geometry: output rows of eight
    /// in an even number, square input planes of at most 16 x 16.
    #[cfg(target_arch = "x86_64")]
    fn vector_geometry(&self) -> bool {
        self.out_width() == 8
            && self.out_height().is_multiple_of(2)
            && self.in_height == self.in_width
            && self.in_width <= x86::MAX_SIDE
    }

    /// im2col: `col[(c*k + i)*k + j][img*OH*OW + y*OW + x] = x[c][img][y+i][x+j]`.
    pub fn im2col<T: ConvScalar>(&self, n: usize, x: &[T], col: &mut [T]) {
        self.im2col_rows(n, x, 0..self.col_rows(), col);
    }

    /// Rows `rows` of [`Self::im2col`]'s matrix, row `r` at `col[(r - rows.start) * n * OH * OW
    /// ..]`: a block of filter taps, for a GEMM that takes the inner dimension a block at a
    /// time.
    ///
    /// # Panics
    /// When `rows` is not within the matrix's rows, or `x` or `col` is too short.
    pub fn im2col_rows<T: ConvScalar>(&self, n: usize, x: &[T], rows: Range<usize>, col: &mut [T]) {
        if T::im2col_fast(self, n, x, rows.clone(), col) {
            return;
        }
        let (k, w, oh, ow) = (
            self.kernel,
            self.in_width,
            self.out_height(),
            self.out_width(),
        );
        let (plane, oplane) = (self.in_plane(), self.out_plane());
        let np = n * oplane;
        assert!(rows.start <= rows.end && rows.end <= self.col_rows());
        assert!(x.len() >= self.input_len(n) && col.len() >= rows.len() * np);
        let first = rows.start;
        for row in rows {
            let (c, i, j) = (row / (k * k), row / k % k, row % k);
            let dst = &mut col[(row - first) * np..(row - first + 1) * np];
            for img in 0..n {
                let src = &x[(c * n + img) * plane..(c * n + img + 1) * plane];
                let d = &mut dst[img * oplane..(img + 1) * oplane];
                for y in 0..oh {
                    let s = (y + i) * w + j;
                    copy_row(&mut d[y * ow..(y + 1) * ow], &src[s..s + ow]);
                }
            }
        }
    }

    /// col2im: the adjoint of [`Self::im2col`], `dx` overwritten with the scatter-add of `dcol`.
    pub fn col2im<T: ConvScalar>(&self, n: usize, dcol: &[T], dx: &mut [T]) {
        if T::col2im_fast(self, n, dcol, dx) {
            return;
        }
        let (k, w, oh, ow) = (
            self.kernel,
            self.in_width,
            self.out_height(),
            self.out_width(),
        );
        let (plane, oplane) = (self.in_plane(), self.out_plane());
        let np = n * oplane;
        assert!(dx.len() >= self.input_len(n) && dcol.len() >= self.col_len(n));
        dx[..self.input_len(n)].fill(T::ZERO);
        for c in 0..self.in_channels {
            for img in 0..n {
                let d = &mut dx[(c * n + img) * plane..(c * n + img + 1) * plane];
                for i in 0..k {
                    for j in 0..k {
                        let row = (c * k + i) * k + j;
                        let src = &dcol[row * np + img * oplane..row * np + (img + 1) * oplane];
                        for y in 0..oh {
                            let s = (y + i) * w + j;
                            add_row(&mut d[s..s + ow], &src[y * ow..(y + 1) * ow]);
                        }
                    }
                }
            }
        }
    }

    /// Forward from the im2col matrix: `y = W * col + b`, `y` in CNHW.
    pub fn forward<T: Scalar>(&self, n: usize, col: &[T], weight: &[T], bias: &[T], y: &mut [T]) {
        let np = n * self.out_plane();
        let y = &mut y[..self.output_len(n)];
        // The bias enters where the first block's FMA chains are added (`addmm`'s `input`),
        // in the GEMM's epilogue rather than by a fill of `y` first: the same bits.
        gemm_bias_rows(
            &bias[..self.out_channels],
            Mat::row_major(
                &weight[..self.weight_len()],
                self.out_channels,
                self.col_rows(),
            ),
            Mat::row_major(&col[..self.col_len(n)], self.col_rows(), np),
            MatMut::row_major(y, self.out_channels, np),
        );
    }

    /// [`Self::forward`] from the input `x`, the im2col matrix built a block of [`KC`] filter
    /// taps at a time into `col_block` (`KC * n * OH * OW` elements) and each block's product
    /// added to `y` before the next block is built: the same bits as building the whole matrix
    /// and one GEMM, whose inner dimension runs in the same blocks of `KC` (an FMA chain from
    /// +0 per block, the bias added to the first, the blocks to `y` in order), with a block of
    /// the matrix (256 KB for conv2) in cache instead of all of it (819 KB).
    ///
    /// # Panics
    /// When `x`, `col_block` or the outputs are too short.
    pub fn forward_by_tap_blocks(
        &self,
        n: usize,
        x: &[f32],
        weight: &[f32],
        bias: &[f32],
        col_block: &mut [f32],
        y: &mut [f32],
    ) {
        let np = n * self.out_plane();
        let taps = self.col_rows();
        let weight = &weight[..self.weight_len()];
        let y = &mut y[..self.output_len(n)];
        for t0 in (0..taps).step_by(KC) {
            let t1 = (t0 + KC).min(taps);
            let rows = t1 - t0;
            let col = &mut col_block[..rows * np];
            self.im2col_rows(n, x, t0..t1, col);
            let w = Mat {
                data: &weight[t0..],
                rows: self.out_channels,
                cols: rows,
                row_stride: taps,
                col_stride: 1,
            };
            let b = Mat::row_major(col, rows, np);
            let c = MatMut::row_major(&mut *y, self.out_channels, np);
            if t0 == 0 {
                gemm_bias_rows(&bias[..self.out_channels], w, b, c);
            } else {
                gemm(1.0, w, b, 1.0, c);
            }
        }
    }

    /// Weight and bias gradients: `dW (+)= dY * col^T`, `db (+)= row sums of dY`; overwritten
    /// when `accumulate` is false, added to otherwise.
    pub fn backward_params<T: Scalar>(
        &self,
        n: usize,
        dy: &[T],
        col: &[T],
        dweight: &mut [T],
        dbias: &mut [T],
        accumulate: bool,
    ) {
        let np = n * self.out_plane();
        let dy = &dy[..self.output_len(n)];
        gemm(
            T::ONE,
            Mat::row_major(dy, self.out_channels, np),
            Mat::row_major(&col[..self.col_len(n)], self.col_rows(), np).t(),
            if accumulate { T::ONE } else { T::ZERO },
            MatMut::row_major(
                &mut dweight[..self.weight_len()],
                self.out_channels,
                self.col_rows(),
            ),
        );
        bias_grad(dy, np, dbias, accumulate);
    }

    /// The im2col matrix of `n` images as two offset tables into the input:
    /// `col[tap][p] = x[taps[tap] + positions[p]]`, tap `(c, i, j)` at `c*n*H*W + i*W + j`,
    /// position `(img, y, x)` at `img*H*W + y*W + x` (CNHW, as [`Self::im2col`]).
    pub fn col_offsets(&self, n: usize) -> ColOffsets {
        let (k, w) = (self.kernel, self.in_width);
        let plane = self.in_plane();
        let taps = (0..self.in_channels)
            .flat_map(|c| (0..k).flat_map(move |i| (0..k).map(move |j| c * n * plane + i * w + j)))
            .collect();
        let (oh, ow) = (self.out_height(), self.out_width());
        let positions = (0..n)
            .flat_map(|img| {
                (0..oh).flat_map(move |y| (0..ow).map(move |x| img * plane + y * w + x))
            })
            .collect();
        ColOffsets { n, taps, positions }
    }

    /// [`Self::backward_params`] reading the im2col matrix from the input `x` through
    /// `offsets` (from [`Self::col_offsets`] for `n` images) instead of a built one: the same
    /// bits (the GEMM's FMA chains are the same, their operands read from elsewhere), without
    /// the pass that builds the matrix.
    ///
    /// # Panics
    /// When `offsets` are not for `n` images of this layer, or `x` is shorter than `n` images.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_params_gathered(
        &self,
        n: usize,
        dy: &[f32],
        x: &[f32],
        offsets: &ColOffsets,
        dweight: &mut [f32],
        dbias: &mut [f32],
        accumulate: bool,
    ) {
        assert!(
            offsets.n == n && offsets.taps.len() == self.col_rows(),
            "conv2d: offsets for another geometry"
        );
        let np = n * self.out_plane();
        let dy = &dy[..self.output_len(n)];
        let taps = self.col_rows();
        // dW^T = col * dY^T: `col` is the gathered A (it must stay A), dW written transposed.
        gemm_gathered(
            1.0,
            Gathered {
                src: &x[..self.input_len(n)],
                rows: &offsets.taps,
                cols: &offsets.positions,
            },
            Mat::row_major(dy, self.out_channels, np).t(),
            if accumulate { 1.0 } else { 0.0 },
            MatMut {
                data: &mut dweight[..self.weight_len()],
                rows: taps,
                cols: self.out_channels,
                row_stride: 1,
                col_stride: taps,
            },
        );
        bias_grad(dy, np, dbias, accumulate);
    }

    /// Input gradient: `dcol = W^T * dY`, then `dx = col2im(dcol)`, by blocks of
    /// [`DX_CHANNEL_BLOCK`] input channels: a block's rows of `dcol` (its channels' taps) are
    /// computed and scattered into its channels' planes before the next block's, so only the
    /// first block's worth of `dcol` is used and it stays in cache (a quarter of conv2's
    /// 800 x 256 matrix). The same bits as one GEMM and one col2im: each row of `dcol` is its
    /// own FMA chain over the output channels, and each input element gets only its own
    /// channel's taps, in the same order.
    pub fn backward_input<T: ConvScalar>(
        &self,
        n: usize,
        dy: &[T],
        weight: &[T],
        dcol: &mut [T],
        dx: &mut [T],
    ) {
        let np = n * self.out_plane();
        let taps_per_channel = self.kernel * self.kernel;
        let taps = self.col_rows();
        let weight = &weight[..self.weight_len()];
        let dy = Mat::row_major(&dy[..self.output_len(n)], self.out_channels, np);
        for c0 in (0..self.in_channels).step_by(DX_CHANNEL_BLOCK) {
            let block = Conv2d {
                in_channels: (self.in_channels - c0).min(DX_CHANNEL_BLOCK),
                ..*self
            };
            let rows = block.col_rows();
            let t0 = c0 * taps_per_channel;
            // W^T restricted to the block's taps: rows t0 .. t0 + rows of the transposed view.
            let wt = Mat {
                data: &weight[t0..],
                rows,
                cols: self.out_channels,
                row_stride: 1,
                col_stride: taps,
            };
            gemm(
                T::ONE,
                wt,
                dy,
                T::ZERO,
                MatMut::row_major(&mut dcol[..rows * np], rows, np),
            );
            block.col2im(n, dcol, &mut dx[c0 * n * self.in_plane()..]);
        }
    }
}

/// The bias gradient `db (+)= row sums of dY` (`dy`: one row of `np` per output channel), in
/// `sum_lanes` order (the CUDA backend reproduces it); overwritten when `accumulate` is false.
fn bias_grad<T: Scalar>(dy: &[T], np: usize, dbias: &mut [T], accumulate: bool) {
    let dy = &dy[..dy.len().min(dbias.len() * np)];
    sum_lanes_rows(dy, np, |row, s| {
        let db = &mut dbias[row];
        *db = if accumulate { *db + s } else { s };
    });
}

/// Input channels per block of [`Conv2d::backward_input`]: 8 channels of conv2 are 200 taps,
/// whole tiles of the AVX-512 kernel's 8 rows, and a 205 KB block of `dcol`.
pub const DX_CHANNEL_BLOCK: usize = 8;
