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

use crate::gemm::{gemm, gemm_bias_rows, sum_lanes, Mat, MatMut, Scalar};

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

    /// im2col: `col[(c*k + i)*k + j][img*OH*OW + y*OW + x] = x[c][img][y+i][x+j]`.
    pub fn im2col<T: Scalar>(&self, n: usize, x: &[T], col: &mut [T]) {
        let (k, w, oh, ow) = (
            self.kernel,
            self.in_width,
            self.out_height(),
            self.out_width(),
        );
        let (plane, oplane) = (self.in_plane(), self.out_plane());
        let np = n * oplane;
        assert!(x.len() >= self.input_len(n) && col.len() >= self.col_len(n));
        for c in 0..self.in_channels {
            for i in 0..k {
                for j in 0..k {
                    let row = (c * k + i) * k + j;
                    let dst = &mut col[row * np..(row + 1) * np];
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
        }
    }

    /// col2im: the adjoint of [`Self::im2col`], `dx` overwritten with the scatter-add of `dcol`.
    pub fn col2im<T: Scalar>(&self, n: usize, dcol: &[T], dx: &mut [T]) {
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
        // The bias gradient in `sum_lanes` order (the CUDA backend reproduces it).
        for (db, row) in dbias.iter_mut().zip(dy.chunks_exact(np)) {
            let s = sum_lanes(row);
            *db = if accumulate { *db + s } else { s };
        }
    }

    /// Input gradient: `dcol = W^T * dY`, then `dx = col2im(dcol)`.
    pub fn backward_input<T: Scalar>(
        &self,
        n: usize,
        dy: &[T],
        weight: &[T],
        dcol: &mut [T],
        dx: &mut [T],
    ) {
        let np = n * self.out_plane();
        gemm(
            T::ONE,
            Mat::row_major(
                &weight[..self.weight_len()],
                self.out_channels,
                self.col_rows(),
            )
            .t(),
            Mat::row_major(&dy[..self.output_len(n)], self.out_channels, np),
            T::ZERO,
            MatMut::row_major(&mut dcol[..self.col_len(n)], self.col_rows(), np),
        );
        self.col2im(n, dcol, dx);
    }
}
