//! `F.relu`: `clamp_min(x, 0)`. NaN propagates (PyTorch's `relu` keeps NaN; `x < 0` is false for
//! NaN) and `-0.0` stays `-0.0`. Backward is `threshold_backward(grad, result, 0)`: the gradient
//! passes where the output is positive and is zero elsewhere. Both are exact in any precision.

use crate::gemm::Scalar;

/// In place: `x = max(x, 0)`, NaN kept.
pub fn forward<T: Scalar>(x: &mut [T]) {
    for v in x {
        if *v < T::ZERO {
            *v = T::ZERO;
        }
    }
}

/// In place on the gradient: `dy = if y > 0 { dy } else { 0 }`, with `y` the forward output.
pub fn backward<T: Scalar>(y: &[T], dy: &mut [T]) {
    for (g, &o) in dy.iter_mut().zip(y) {
        // Not `o > 0`: zero, negative or NaN output.
        if o.partial_cmp(&T::ZERO) != Some(std::cmp::Ordering::Greater) {
            *g = T::ZERO;
        }
    }
}
