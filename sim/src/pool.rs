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

/// The element types max-pooling runs on, with their row kernel: the portable one, and for f32
/// the AVX2 one where the CPU has AVX2 (identical results). The dispatch lives here, beside
/// the kernels, so the GEMM's `Scalar` needs nothing of pooling.
pub trait PoolScalar: Scalar {
    /// 2x2 max-pool of a pair of NaN-free rows: see [`max_pool_rows_portable`].
    fn max_pool_rows(top: &[Self], bot: &[Self], out: &mut [Self], idx: &mut [u8]) {
        max_pool_rows_portable(top, bot, out, idx)
    }
}

impl PoolScalar for f64 {}

impl PoolScalar for f32 {
    fn max_pool_rows(top: &[f32], bot: &[f32], out: &mut [f32], idx: &mut [u8]) {
        #[cfg(target_arch = "x86_64")]
        let done = if std::arch::is_x86_feature_detected!("avx2")
            && top.len() >= 2 * out.len()
            && bot.len() >= 2 * out.len()
            && idx.len() >= out.len()
        {
            // SAFETY: AVX2 is present and the lengths were checked just above.
            unsafe { max_pool_rows_avx2(top, bot, out, idx) }
        } else {
            0
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = 0;
        max_pool_rows_portable(
            &top[2 * done..],
            &bot[2 * done..],
            &mut out[done..],
            &mut idx[done..],
        );
    }
}

/// Forward over `planes` planes of `h x w` (`h`, `w` even): `y` gets `planes * h/2 * w/2`
/// maxima, `argmax` the winner's position in its window (`2*dy + dx`).
///
/// A plane without NaN takes a branch-free path (the winner is the first element equal to the
/// maximum, which is what the sequential `>` scan selects); a plane with a NaN takes the
/// sequential scan itself.
pub fn forward<T: PoolScalar>(
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
                T::max_pool_rows(r0, r1, d, g);
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
    if h.is_multiple_of(2) && w.is_multiple_of(2) {
        // Windows tile the plane: each window's four elements are written once (the winner's
        // gradient or zero), instead of a fill of the whole plane followed by a scatter.
        for ((d, g), arg) in dx
            .chunks_exact_mut(h * w)
            .zip(dy[..planes * oh * ow].chunks_exact(oh * ow))
            .zip(argmax[..planes * oh * ow].chunks_exact(oh * ow))
        {
            for (oy, rows) in d.chunks_exact_mut(2 * w).enumerate() {
                let (top, bot) = rows.split_at_mut(w);
                let (g, arg) = (&g[oy * ow..(oy + 1) * ow], &arg[oy * ow..(oy + 1) * ow]);
                for ox in 0..ow {
                    let (v, a) = (g[ox], arg[ox]);
                    let pick = |k: u8| if a == k { v } else { T::ZERO };
                    top[2 * ox] = pick(0);
                    top[2 * ox + 1] = pick(1);
                    bot[2 * ox] = pick(2);
                    bot[2 * ox + 1] = pick(3);
                }
            }
        }
        return;
    }
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

/// 2x2 max-pool of one pair of rows free of NaN (`out.len() == idx.len() == top.len() / 2`),
/// the portable version of [`PoolScalar::max_pool_rows`]. The maximum of a window is taken as
/// `m1 = b > a ? b : a`, `m2 = e > c ? e : c`, `m = m2 > m1 ? m2 : m1`, which is always the
/// first maximal element in scan order (`a, b, c, e`), so it is what the sequential scan keeps,
/// signed zeros included; its index is the first element equal to `m`.
pub fn max_pool_rows_portable<T: Scalar>(top: &[T], bot: &[T], out: &mut [T], idx: &mut [u8]) {
    for (((t, b), o), i) in top
        .chunks_exact(2)
        .zip(bot.chunks_exact(2))
        .zip(out.iter_mut())
        .zip(idx.iter_mut())
    {
        let (a, b_, c, e) = (t[0], t[1], b[0], b[1]);
        let m1 = if b_ > a { b_ } else { a };
        let m2 = if e > c { e } else { c };
        let m = if m2 > m1 { m2 } else { m1 };
        *i = if a == m {
            0
        } else if b_ == m {
            1
        } else if c == m {
            2
        } else {
            3
        };
        *o = m;
    }
}

/// The same for f32 with AVX2, eight windows at a time: the same comparisons and selections,
/// lane by lane, so the results are identical. Returns how many outputs it wrote (a multiple
/// of 8); the caller finishes the row with the portable version.
///
/// # Safety
/// The CPU must support AVX2, and `top.len() >= 2 * out.len()`, `bot.len() >= 2 * out.len()`,
/// `idx.len() >= out.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn max_pool_rows_avx2(top: &[f32], bot: &[f32], out: &mut [f32], idx: &mut [u8]) -> usize {
    use std::arch::x86_64::*;
    let n = out.len() / 8 * 8;
    let mut o = 0;
    while o < n {
        // SAFETY: o + 8 <= out.len(), so the 16 floats from 2*o lie inside `top` and `bot`
        // (caller's contract) and the 8 outputs inside `out`; unaligned loads and stores.
        unsafe {
            // Even and odd columns of 16 consecutive floats, in order.
            let split = |p: *const f32| {
                let x0 = _mm256_loadu_ps(p);
                let x1 = _mm256_loadu_ps(p.add(8));
                let ev = _mm256_shuffle_ps::<0x88>(x0, x1);
                let od = _mm256_shuffle_ps::<0xDD>(x0, x1);
                (
                    _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(ev))),
                    _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(od))),
                )
            };
            let (a, b) = split(top.as_ptr().add(2 * o));
            let (c, e) = split(bot.as_ptr().add(2 * o));
            let m1 = _mm256_blendv_ps(a, b, _mm256_cmp_ps::<_CMP_GT_OQ>(b, a));
            let m2 = _mm256_blendv_ps(c, e, _mm256_cmp_ps::<_CMP_GT_OQ>(e, c));
            let m = _mm256_blendv_ps(m1, m2, _mm256_cmp_ps::<_CMP_GT_OQ>(m2, m1));
            let k = |v: i32| _mm256_castsi256_ps(_mm256_set1_epi32(v));
            let mut i = k(3);
            i = _mm256_blendv_ps(i, k(2), _mm256_cmp_ps::<_CMP_EQ_OQ>(c, m));
            i = _mm256_blendv_ps(i, k(1), _mm256_cmp_ps::<_CMP_EQ_OQ>(b, m));
            i = _mm256_blendv_ps(i, k(0), _mm256_cmp_ps::<_CMP_EQ_OQ>(a, m));
            _mm256_storeu_ps(out.as_mut_ptr().add(o), m);
            let mut lanes = [0i32; 8];
            _mm256_storeu_si256(lanes.as_mut_ptr().cast(), _mm256_castps_si256(i));
            for (d, l) in idx[o..o + 8].iter_mut().zip(lanes) {
                *d = l as u8;
            }
        }
        o += 8;
    }
    n
}
