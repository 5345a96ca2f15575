//! `F.log_softmax(x, dim=1)` then `F.nll_loss(output, target)` (mean over the batch): the seed's
//! loss. Under autocast both run in f32 (`log_softmax` and `nll_loss` are on the fp32 list of
//! PyTorch's CUDA autocast op reference), so there is no rounding point here.
//!
//! Forward per row (ATen `_log_softmax`): `m = max(x)`, `s = sum(exp(x - m))`,
//! `out = x - m - ln(s)`. Loss: `-sum(out[n][t_n]) / N`.
//! Backward with upstream gradient `g` (the loss scale; 1 without scaling):
//! `nll_loss_backward` puts `-(g / N)` at each target (zero elsewhere) and
//! `_log_softmax_backward_data` gives `dx = dout - exp(out) * sum(dout)` per row.

use crate::gemm::Scalar;

/// Row-wise log-softmax of `x[n][classes]` into `out`.
pub fn log_softmax<T: Scalar>(n: usize, classes: usize, x: &[T], out: &mut [T]) {
    for (row, o) in x[..n * classes]
        .chunks_exact(classes)
        .zip(out[..n * classes].chunks_exact_mut(classes))
    {
        let mut m = T::NEG_INFINITY;
        for &v in row {
            if v > m || v.is_nan() {
                m = v;
            }
        }
        let mut s = T::ZERO;
        for &v in row {
            s += (v - m).exp();
        }
        let ls = s.ln();
        for (oo, &v) in o.iter_mut().zip(row) {
            *oo = v - m - ls;
        }
    }
}

/// Mean negative log-likelihood of the targets.
pub fn nll_loss<T: Scalar>(n: usize, classes: usize, logp: &[T], targets: &[u8]) -> T {
    let mut s = T::ZERO;
    for (row, &t) in logp[..n * classes].chunks_exact(classes).zip(targets) {
        s += -row[usize::from(t)];
    }
    s.div(T::from_f64(n as f64))
}

/// Summed negative log-likelihood (`reduction='sum'`, the seed's test loss), in f64.
pub fn nll_loss_sum<T: Scalar>(n: usize, classes: usize, logp: &[T], targets: &[u8]) -> f64 {
    logp[..n * classes]
        .chunks_exact(classes)
        .zip(targets)
        .map(|(row, &t)| -row[usize::from(t)].to_f64())
        .sum()
}

/// Gradient of `grad_output * nll_loss(log_softmax(x))` with respect to `x`, from the
/// log-softmax output `logp`: `dx = dout - exp(logp) * sum(dout)` with `dout = -(g/N)` at the
/// target.
pub fn backward<T: Scalar>(
    n: usize,
    classes: usize,
    logp: &[T],
    targets: &[u8],
    grad_output: T,
    dx: &mut [T],
) {
    let g = -grad_output.div(T::from_f64(n as f64));
    for ((row, d), &t) in logp[..n * classes]
        .chunks_exact(classes)
        .zip(dx[..n * classes].chunks_exact_mut(classes))
        .zip(targets)
    {
        // sum(dout) over the row is g: one non-zero element.
        for (j, (dd, &lp)) in d.iter_mut().zip(row).enumerate() {
            let dout = if j == usize::from(t) { g } else { T::ZERO };
            *dd = dout - lp.exp() * g;
        }
    }
}

/// Index of the first maximum of each row (`argmax(dim=1)`), the predicted class.
pub fn argmax_row<T: Scalar>(row: &[T]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = j;
        }
    }
    best
}
