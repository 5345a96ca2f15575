//! `nn.Linear(in, out)`: `y = x W^T + b` with PyTorch's weight layout `[out][in]`, over a batch
//! `x[n][in]`. Backward (`addmm`'s derivative): `dW = dY^T x`, `db = column sums of dY`,
//! `dx = dY W`.

use crate::gemm::{gemm, Mat, MatMut, Scalar};

/// The shape of one linear layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Linear {
    pub in_features: usize,
    pub out_features: usize,
}

impl Linear {
    /// Elements of the weight.
    pub const fn weight_len(&self) -> usize {
        self.in_features * self.out_features
    }

    /// `y[n][out] = x[n][in] * W^T + b`.
    pub fn forward<T: Scalar>(&self, n: usize, x: &[T], weight: &[T], bias: &[T], y: &mut [T]) {
        let (i, o) = (self.in_features, self.out_features);
        let y = &mut y[..n * o];
        for row in y.chunks_exact_mut(o) {
            row.copy_from_slice(&bias[..o]);
        }
        gemm(
            T::ONE,
            Mat::row_major(&x[..n * i], n, i),
            Mat::row_major(&weight[..i * o], o, i).t(),
            T::ONE,
            MatMut::row_major(y, n, o),
        );
    }

    /// `dW = dY^T x` and `db = sum over the batch of dY` (both overwritten).
    pub fn backward_params<T: Scalar>(
        &self,
        n: usize,
        dy: &[T],
        x: &[T],
        dweight: &mut [T],
        dbias: &mut [T],
    ) {
        let (i, o) = (self.in_features, self.out_features);
        gemm(
            T::ONE,
            Mat::row_major(&dy[..n * o], n, o).t(),
            Mat::row_major(&x[..n * i], n, i),
            T::ZERO,
            MatMut::row_major(&mut dweight[..i * o], o, i),
        );
        let dbias = &mut dbias[..o];
        dbias.fill(T::ZERO);
        for row in dy[..n * o].chunks_exact(o) {
            for (b, &g) in dbias.iter_mut().zip(row) {
                *b += g;
            }
        }
    }

    /// `dx[n][in] = dY * W` (overwritten).
    pub fn backward_input<T: Scalar>(&self, n: usize, dy: &[T], weight: &[T], dx: &mut [T]) {
        let (i, o) = (self.in_features, self.out_features);
        gemm(
            T::ONE,
            Mat::row_major(&dy[..n * o], n, o),
            Mat::row_major(&weight[..i * o], o, i),
            T::ZERO,
            MatMut::row_major(&mut dx[..n * i], n, i),
        );
    }
}

impl Linear {
    /// Rows `rows` of the weight gradient only: `dW[rows] = dY[:, rows]^T x`, written to
    /// `dweight_rows` (`rows.len() * in_features`). Lets a caller split `dW` across threads;
    /// each element is the same single GEMM sum as in [`Self::backward_params`].
    pub fn backward_weight_rows<T: Scalar>(
        &self,
        n: usize,
        dy: &[T],
        x: &[T],
        rows: std::ops::Range<usize>,
        dweight_rows: &mut [T],
    ) {
        let (i, o) = (self.in_features, self.out_features);
        let dy_cols = Mat {
            data: &dy[rows.start..n * o],
            rows: n,
            cols: rows.len(),
            row_stride: o,
            col_stride: 1,
        };
        gemm(
            T::ONE,
            dy_cols.t(),
            Mat::row_major(&x[..n * i], n, i),
            T::ZERO,
            MatMut::row_major(&mut dweight_rows[..rows.len() * i], rows.len(), i),
        );
    }

    /// `db = sum over the batch of dY` (overwritten).
    pub fn backward_bias<T: Scalar>(&self, n: usize, dy: &[T], dbias: &mut [T]) {
        let o = self.out_features;
        let dbias = &mut dbias[..o];
        dbias.fill(T::ZERO);
        for row in dy[..n * o].chunks_exact(o) {
            for (b, &g) in dbias.iter_mut().zip(row) {
                *b += g;
            }
        }
    }
}
