//! `F.max_pool2d(x, 2)`: 2x2 windows, stride 2, on each `H x W` plane (any plane order, so it
//! serves the CNHW layout unchanged).
//!
//! Ties and NaN follow PyTorch's CPU kernel (`max_pool2d_with_indices`): the window is scanned
//! row by row and an element replaces the running maximum when `val > max || isnan(val)`, so the
//! first of equal maxima wins and a NaN always propagates. The index of the winner (0..4 in the
//! window) is kept for the backward pass, which routes each output gradient to it
//! (`max_pool2d_with_indices_backward`); windows do not overlap, so every input gets at most one
//! gradient and no sum is formed: the backward is exact in any precision.

use crate::gemm::Scalar;

/// Forward over `planes` planes of `h x w` (`h`, `w` even): `y` gets `planes * h/2 * w/2`
/// maxima, `argmax` the winner's position in its window (`2*dy + dx`).
///
/// A plane without NaN takes a branch-free path (the winner is the first element equal to the
/// maximum, which is what the sequential `>` scan selects); a plane with a NaN takes the
/// sequential scan itself.
pub fn forward<T: Scalar>(
    planes: usize,
    h: usize,
    w: usize,
    x: &[T],
    y: &mut [T],
    argmax: &mut [u8],
) {
    let (oh, ow) = (h / 2, w / 2);
    let (x, y, argmax) = (
        &x[..planes * h * w],
        &mut y[..planes * oh * ow],
        &mut argmax[..planes * oh * ow],
    );
    for ((src, dst), arg) in x
        .chunks_exact(h * w)
        .zip(y.chunks_exact_mut(oh * ow))
        .zip(argmax.chunks_exact_mut(oh * ow))
    {
        // `v != v` is the NaN test, branch-free so the scan vectorises.
        #[allow(clippy::eq_op)]
        let has_nan = src.iter().fold(false, |acc, &v| acc | (v != v));
        for oy in 0..oh {
            let r0 = &src[2 * oy * w..2 * oy * w + w];
            let r1 = &src[(2 * oy + 1) * w..(2 * oy + 1) * w + w];
            let d = &mut dst[oy * ow..(oy + 1) * ow];
            let g = &mut arg[oy * ow..(oy + 1) * ow];
            if has_nan {
                for ox in 0..ow {
                    let cand = [r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]];
                    let mut best = T::NEG_INFINITY;
                    let mut idx = 0u8;
                    for (i, &v) in cand.iter().enumerate() {
                        if v > best || v.is_nan() {
                            best = v;
                            idx = i as u8;
                        }
                    }
                    d[ox] = best;
                    g[ox] = idx;
                }
            } else {
                for (((top, bot), out), idx) in r0
                    .chunks_exact(2)
                    .zip(r1.chunks_exact(2))
                    .zip(d.iter_mut())
                    .zip(g.iter_mut())
                {
                    let (a, b, c, e) = (top[0], top[1], bot[0], bot[1]);
                    let m1 = if b > a { b } else { a };
                    let m2 = if e > c { e } else { c };
                    let m = if m2 > m1 { m2 } else { m1 };
                    let (ia, ib, ic) = (a == m, b == m, c == m);
                    // The first element equal to the maximum (its own signed zero).
                    *idx = if ia {
                        0
                    } else if ib {
                        1
                    } else if ic {
                        2
                    } else {
                        3
                    };
                    *out = if ia {
                        a
                    } else if ib {
                        b
                    } else if ic {
                        c
                    } else {
                        e
                    };
                }
            }
        }
    }
}

/// Backward: `dx` (overwritten, `planes * h * w`) gets each `dy` at its window's winner, zero
/// elsewhere.
pub fn backward<T: Scalar>(
    planes: usize,
    h: usize,
    w: usize,
    dy: &[T],
    argmax: &[u8],
    dx: &mut [T],
) {
    let (oh, ow) = (h / 2, w / 2);
    let dx = &mut dx[..planes * h * w];
    dx.fill(T::ZERO);
    for ((d, g), arg) in dx
        .chunks_exact_mut(h * w)
        .zip(dy[..planes * oh * ow].chunks_exact(oh * ow))
        .zip(argmax[..planes * oh * ow].chunks_exact(oh * ow))
    {
        for oy in 0..oh {
            for ox in 0..ow {
                let a = usize::from(arg[oy * ow + ox]);
                let (yy, xx) = (2 * oy + a / 2, 2 * ox + a % 2);
                d[yy * w + xx] = g[oy * ow + ox];
            }
        }
    }
}
