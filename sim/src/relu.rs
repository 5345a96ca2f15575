//! `F.relu`: `clamp_min(x, 0)`. NaN propagates (PyTorch's `relu` keeps NaN; `x < 0` is false for
//! NaN) and `-0.0` stays `-0.0`. Backward is `threshold_backward(grad, result, 0)`: the gradient
//! passes where the output is positive and is zero elsewhere. Both are exact in any precision.

use crate::gemm::Scalar;

/// In place: `x = max(x, 0)`, NaN kept.
pub fn forward<T: Scalar>(x: &mut [T]) {
    // A select stored every time (not a conditional store), so the loop vectorises.
    for v in x {
        *v = if *v < T::ZERO { T::ZERO } else { *v };
    }
}

/// In place on the gradient: `dy = if y > 0 { dy } else { 0 }`, with `y` the forward output.
pub fn backward<T: Scalar>(y: &[T], dy: &mut [T]) {
    for (g, &o) in dy.iter_mut().zip(y) {
        // Zero where the output is not `> 0`: zero, negative or NaN (a select, as above).
        *g = if o > T::ZERO { *g } else { T::ZERO };
    }
}
