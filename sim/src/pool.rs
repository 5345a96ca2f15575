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

/// The element types max-pooling runs on, with their kernels: the portable ones, and for f32
/// the AVX2 forward and the AVX-512 backward where the CPU has them (identical results). The
/// dispatch lives here, beside the kernels, so the GEMM's `Scalar` needs nothing of pooling.
pub trait PoolScalar: Scalar {
    /// 2x2 max-pool of one `h x w` plane (`h`, `w` even; `y` and `argmax` `h/2 * w/2` long) by
    /// the branch-free rule of [`max_pool_rows_portable`]. Returns `false`, with `y` and
    /// `argmax` unspecified, where the plane holds a NaN: the caller then runs the sequential
    /// scan (see [`max_pool_plane_portable`]).
    fn max_pool_plane(h: usize, w: usize, x: &[Self], y: &mut [Self], argmax: &mut [u8]) -> bool {
        max_pool_plane_portable(h, w, x, y, argmax)
    }

    /// Backward over planes of even width `w` and even height: `dx` holds whole pairs of
    /// rows (`2 w` elements each), `dy` and `argmax` `w / 2` windows per pair; see
    /// [`backward_rows_portable`].
    fn backward_tiled(w: usize, dy: &[Self], argmax: &[u8], dx: &mut [Self]) {
        backward_tiled_portable(w, dy, argmax, dx)
    }
}

impl PoolScalar for f64 {}

impl PoolScalar for f32 {
    fn max_pool_plane(h: usize, w: usize, x: &[f32], y: &mut [f32], argmax: &mut [u8]) -> bool {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2")
            && h.is_multiple_of(2)
            && w.is_multiple_of(2)
            && x.len() == h * w
            && y.len() == x.len() / 4
            && argmax.len() == y.len()
        {
            // SAFETY: AVX2 is present and the shapes were checked just above.
            return unsafe { max_pool_plane_avx2(h, w, x, y, argmax) };
        }
        max_pool_plane_portable(h, w, x, y, argmax)
    }

    fn backward_tiled(w: usize, dy: &[f32], argmax: &[u8], dx: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            let pairs = dx.len() / (2 * w);
            if dx.len() == pairs * 2 * w && dy.len() == pairs * (w / 2) && argmax.len() == dy.len()
            {
                // SAFETY: AVX-512F is present and the lengths were checked just above.
                return unsafe { backward_tiled_avx512(w, dy, argmax, dx) };
            }
        }
        backward_tiled_portable(w, dy, argmax, dx)
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
        if T::max_pool_plane(h, w, src, dst, arg) {
            continue;
        }
        for oy in 0..oh {
            let r0 = &src[2 * oy * w..2 * oy * w + w];
            let r1 = &src[(2 * oy + 1) * w..(2 * oy + 1) * w + w];
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
                dst[oy * ow + ox] = best;
                arg[oy * ow + ox] = idx;
            }
        }
    }
}

/// Backward: `dx` (overwritten, `planes * h * w`) gets each `dy` at its window's winner, zero
/// elsewhere.
pub fn backward<T: PoolScalar>(
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
        T::backward_tiled(w, &dy[..planes * oh * ow], &argmax[..planes * oh * ow], dx);
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

/// Backward of one pair of rows of even width: window `ox` (`top`/`bot` elements `2 ox`,
/// `2 ox + 1`) gets `g[ox]` at its winner `arg[ox]` (`0, 1` on top, `2, 3` below) and `+0`
/// at the other three (one step of [`backward_tiled_portable`]).
pub fn backward_rows_portable<T: Scalar>(g: &[T], arg: &[u8], top: &mut [T], bot: &mut [T]) {
    for (((&v, &a), t), b) in g
        .iter()
        .zip(arg)
        .zip(top.chunks_exact_mut(2))
        .zip(bot.chunks_exact_mut(2))
    {
        let pick = |k: u8| if a == k { v } else { T::ZERO };
        t[0] = pick(0);
        t[1] = pick(1);
        b[0] = pick(2);
        b[1] = pick(3);
    }
}

/// [`backward_rows_portable`] over every pair of rows of `dx` (see
/// [`PoolScalar::backward_tiled`]).
pub fn backward_tiled_portable<T: Scalar>(w: usize, dy: &[T], argmax: &[u8], dx: &mut [T]) {
    for ((rows, g), arg) in dx
        .chunks_exact_mut(2 * w)
        .zip(dy.chunks_exact(w / 2))
        .zip(argmax.chunks_exact(w / 2))
    {
        let (top, bot) = rows.split_at_mut(w);
        backward_rows_portable(g, arg, top, bot);
    }
}

/// [`backward_tiled_portable`] for f32 with AVX-512F, eight windows (sixteen elements of each
/// row) at a time, the last ones of a row masked: each gradient is moved, bits unchanged, to
/// the lanes of its window and kept where the lane is the winner, `+0` elsewhere, so the
/// results are identical.
///
/// # Safety
/// The CPU must support AVX-512F; `w` is even, `dx.len()` a multiple of `2 w`, and
/// `dy.len() == argmax.len() == dx.len() / 4`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn backward_tiled_avx512(w: usize, dy: &[f32], argmax: &[u8], dx: &mut [f32]) {
    use std::arch::x86_64::*;
    // Lane `l` of a row's sixteen elements belongs to window `l / 2`, at position `l % 2`.
    let window = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    let side = _mm512_set_epi32(1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0);
    let below = _mm512_add_epi32(side, _mm512_set1_epi32(2));
    let ow = w / 2;
    for ((rows, g), arg) in dx
        .chunks_exact_mut(2 * w)
        .zip(dy.chunks_exact(ow))
        .zip(argmax.chunks_exact(ow))
    {
        let (top, bot) = rows.split_at_mut(w);
        for ox in (0..ow).step_by(8) {
            let r = (ow - ox).min(8);
            // The window's winners as bytes, in a register (no store to reload): one load for
            // the whole chunks of eight and the fours (conv1's rows end with four windows,
            // conv2's rows are four), byte by byte otherwise.
            let winners = &arg[ox..ox + r];
            let bytes = if let Ok(eight) = <[u8; 8]>::try_from(winners) {
                u64::from_le_bytes(eight)
            } else if let Ok(four) = <[u8; 4]>::try_from(winners) {
                u64::from(u32::from_le_bytes(four))
            } else {
                winners
                    .iter()
                    .rev()
                    .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
            };
            let rows_mask = ((1u32 << (2 * r)) - 1) as __mmask16;
            // SAFETY: lanes `..r` of `g` from `ox` and lanes `..2 r` of both rows from `2 ox`
            // are inside the slices (`ox + r <= ow`); masked lanes are neither read nor written.
            unsafe {
                let v = _mm512_maskz_loadu_ps(((1u32 << r) - 1) as __mmask16, g.as_ptr().add(ox));
                let a = _mm512_cvtepu8_epi32(_mm_cvtsi64_si128(bytes as i64));
                let (v, a) = (
                    _mm512_permutexvar_ps(window, v),
                    _mm512_permutexvar_epi32(window, a),
                );
                let up = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(a, side), v);
                let down = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(a, below), v);
                _mm512_mask_storeu_ps(top.as_mut_ptr().add(2 * ox), rows_mask, up);
                _mm512_mask_storeu_ps(bot.as_mut_ptr().add(2 * ox), rows_mask, down);
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

/// [`PoolScalar::max_pool_plane`], portable: `false` if the plane holds a NaN (the test is
/// `v != v`, branch-free so it vectorises), else [`max_pool_rows_portable`] on each pair of
/// rows. Any `h`, `w`: an odd last row or column is in no window (PyTorch's floor mode).
pub fn max_pool_plane_portable<T: Scalar>(
    h: usize,
    w: usize,
    x: &[T],
    y: &mut [T],
    argmax: &mut [u8],
) -> bool {
    #[allow(clippy::eq_op)]
    let has_nan = x[..h * w].iter().fold(false, |acc, &v| acc | (v != v));
    if has_nan {
        return false;
    }
    let ow = w / 2;
    for oy in 0..h / 2 {
        let top = &x[2 * oy * w..(2 * oy + 1) * w];
        let bot = &x[(2 * oy + 1) * w..(2 * oy + 2) * w];
        let out = oy * ow..(oy + 1) * ow;
        max_pool_rows_portable(top, bot, &mut y[out.clone()], &mut argmax[out]);
    }
    true
}

/// [`PoolScalar::max_pool_plane`] for f32 with AVX2: each pair of rows eight windows at a
/// time, then four (conv1's rows of 12 windows end with four, conv2's rows are four), then
/// [`max_pool_rows_portable`] for the rest. The maxima are the portable rule's selections
/// (`vmaxps x, y` is `x > y ? x : y`), and each winner is read off the comparisons that chose
/// it (`m2 > m1 ? 2 + (e > c) : (b > a)`): every comparison is strict, so that is the first
/// element equal to the maximum, the portable index; the results are identical. The NaN test
/// rides along (an unordered compare of the window's elements, or-ed over the plane) instead
/// of a pass of its own, and the whole plane is one call: dispatching each row pair and
/// storing its winners byte by byte had cost as much as the maxima themselves (5.4 % of a
/// bf16 step, `perf`).
///
/// # Safety
/// The CPU must support AVX2; `h` and `w` are even, `x.len() == h * w` and
/// `y.len() == argmax.len() == h * w / 4`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn max_pool_plane_avx2(
    h: usize,
    w: usize,
    x: &[f32],
    y: &mut [f32],
    argmax: &mut [u8],
) -> bool {
    use std::arch::x86_64::*;
    let ow = w / 2;
    let mut nan8 = _mm256_setzero_ps();
    let mut nan4 = _mm_setzero_ps();
    let mut nan_tail = false;
    for oy in 0..h / 2 {
        let top = &x[2 * oy * w..(2 * oy + 1) * w];
        let bot = &x[(2 * oy + 1) * w..(2 * oy + 2) * w];
        let out = &mut y[oy * ow..(oy + 1) * ow];
        let idx = &mut argmax[oy * ow..(oy + 1) * ow];
        let mut o = 0;
        while o + 8 <= ow {
            // SAFETY: o + 8 <= ow, so the 16 floats from 2 o lie inside `top` and `bot`
            // (`w` long) and the 8 outputs inside `out` and `idx` (`ow` long); unaligned
            // loads and stores.
            unsafe {
                // Even and odd columns of 16 consecutive floats, windows in the order
                // 0 1 4 5 | 2 3 6 7 (the in-lane shuffle's); put back in order at the end.
                let split = |p: *const f32| {
                    let x0 = _mm256_loadu_ps(p);
                    let x1 = _mm256_loadu_ps(p.add(8));
                    (
                        _mm256_shuffle_ps::<0x88>(x0, x1),
                        _mm256_shuffle_ps::<0xDD>(x0, x1),
                    )
                };
                let (a, b) = split(top.as_ptr().add(2 * o));
                let (c, e) = split(bot.as_ptr().add(2 * o));
                nan8 = _mm256_or_ps(nan8, _mm256_cmp_ps::<_CMP_UNORD_Q>(a, b));
                nan8 = _mm256_or_ps(nan8, _mm256_cmp_ps::<_CMP_UNORD_Q>(c, e));
                // `vmaxps x, y` is `x > y ? x : y` on NaN-free lanes: the portable rule.
                let (m1, m2) = (_mm256_max_ps(b, a), _mm256_max_ps(e, c));
                let m = _mm256_max_ps(m2, m1);
                let below = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GT_OQ>(m2, m1));
                let right = _mm256_blendv_ps(
                    _mm256_cmp_ps::<_CMP_GT_OQ>(b, a),
                    _mm256_cmp_ps::<_CMP_GT_OQ>(e, c),
                    _mm256_castsi256_ps(below),
                );
                let i = _mm256_or_si256(
                    _mm256_and_si256(below, _mm256_set1_epi32(2)),
                    _mm256_srli_epi32::<31>(_mm256_castps_si256(right)),
                );
                let order = |v: __m256i| _mm256_permute4x64_epi64::<0xD8>(v);
                _mm256_storeu_si256(
                    out.as_mut_ptr().add(o).cast(),
                    order(_mm256_castps_si256(m)),
                );
                // The eight winners (0..=3) narrowed to bytes in order, one 8-byte store.
                let i = order(i);
                let words =
                    _mm_packs_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256::<1>(i));
                _mm_storel_epi64(
                    idx.as_mut_ptr().add(o).cast(),
                    _mm_packus_epi16(words, words),
                );
            }
            o += 8;
        }
        while o + 4 <= ow {
            // SAFETY: o + 4 <= ow, so the 8 floats from 2 o lie inside `top` and `bot` and
            // the 4 outputs inside `out` and `idx`; unaligned loads and stores.
            unsafe {
                // Even and odd columns of 8 consecutive floats, in order.
                let split = |p: *const f32| {
                    let x0 = _mm_loadu_ps(p);
                    let x1 = _mm_loadu_ps(p.add(4));
                    (
                        _mm_shuffle_ps::<0x88>(x0, x1),
                        _mm_shuffle_ps::<0xDD>(x0, x1),
                    )
                };
                let (a, b) = split(top.as_ptr().add(2 * o));
                let (c, e) = split(bot.as_ptr().add(2 * o));
                nan4 = _mm_or_ps(nan4, _mm_cmp_ps::<_CMP_UNORD_Q>(a, b));
                nan4 = _mm_or_ps(nan4, _mm_cmp_ps::<_CMP_UNORD_Q>(c, e));
                let (m1, m2) = (_mm_max_ps(b, a), _mm_max_ps(e, c));
                let m = _mm_max_ps(m2, m1);
                let below = _mm_castps_si128(_mm_cmp_ps::<_CMP_GT_OQ>(m2, m1));
                let right = _mm_blendv_ps(
                    _mm_cmp_ps::<_CMP_GT_OQ>(b, a),
                    _mm_cmp_ps::<_CMP_GT_OQ>(e, c),
                    _mm_castsi128_ps(below),
                );
                let i = _mm_or_si128(
                    _mm_and_si128(below, _mm_set1_epi32(2)),
                    _mm_srli_epi32::<31>(_mm_castps_si128(right)),
                );
                _mm_storeu_ps(out.as_mut_ptr().add(o), m);
                // The four winners narrowed to bytes in order, one 4-byte store.
                let words = _mm_packs_epi32(i, i);
                let bytes = _mm_cvtsi128_si32(_mm_packus_epi16(words, words));
                idx[o..o + 4].copy_from_slice(&bytes.to_le_bytes());
            }
            o += 4;
        }
        nan_tail |= top[2 * o..].iter().chain(&bot[2 * o..]).any(|v| v.is_nan());
        max_pool_rows_portable(&top[2 * o..], &bot[2 * o..], &mut out[o..], &mut idx[o..]);
    }
    _mm256_movemask_ps(nan8) == 0 && _mm_movemask_ps(nan4) == 0 && !nan_tail
}
