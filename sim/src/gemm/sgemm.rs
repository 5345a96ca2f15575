//! The f32 GEMM of training: packed, register-blocked micro-kernels (AVX-512, AVX2 + FMA,
//! portable) that keep `matrixmultiply::sgemm`'s accumulation order exactly, so the simulator's
//! bits, and the CUDA kernels that mirror them (gpu-shim/README.md, "Kernels, accumulation
//! order"), do not move.
//!
//! # The order, and why these kernels keep it
//! `matrixmultiply` 0.3 (FMA kernel) splits the inner dimension into blocks of [`KC`] = 256. In
//! a block, every output element is one fused multiply-add chain from +0 in index order,
//! `ab = fma(a[i][p], b[p][j], ab)` for `p` ascending; the block's `ab` then goes into `C` as
//! `c = fma(alpha, ab, beta' * c)` (IEEE 754-2019 clause 5.4.1 `fusedMultiplyAdd`), with
//! `beta' = beta` for the first block (and `C` not read when it is 0) and 1 for the others. The
//! micro-kernels here broadcast one element of `A`, load a vector of `B` along `j`, and
//! `vfmadd` it into an accumulator: each accumulator lane is element `(i, j)`'s own chain over
//! `p` in ascending order, the same rounding sequence; the blocks are added to `C` in the same
//! order by the same epilogue. Packing (copying panels of `A` and `B` into contiguous buffers)
//! and the tiling of `m` and `n` only move data: they change no element's sequence of roundings.
//! A chain from +0 is never -0 (round-to-nearest gives +0 for an exact zero sum), so
//! `fma(1, ab, +0) = ab` and the `beta == 0` store of `ab` is the same bits as
//! `matrixmultiply`'s. The test `kernels_match_matrixmultiply_bit_for_bit` checks every path
//! against `matrixmultiply` on the model's shapes.
//!
//! # Dispatch
//! The kernel is chosen once per process, like the `half` crate's runtime detection: AVX-512F,
//! else AVX2 + FMA, else the portable kernel (`f32::mul_add`, an FMA wherever the target has
//! one). `HALFSCALE_GEMM=avx512|avx2|portable|reference` forces one (read once, at the first
//! GEMM), for benchmarks and for checking one path on a machine that has a faster one;
//! `reference` is `matrixmultiply` itself. Each call is single-threaded: the layers parallelise
//! over groups of images, so no result depends on the thread count.

use std::cell::RefCell;
use std::sync::OnceLock;

/// Inner-dimension block: the length of one FMA chain before it is added to `C`. Part of the
/// numerics (the CUDA kernels mirror it), not a tuning knob.
pub const KC: usize = 256;
/// Columns of `B` packed at a time (`KC * NC * 4` bytes = 512 KiB, within a Zen 4 core's L2).
/// Tiling only: it changes no rounding.
const NC: usize = 512;

/// One f32 GEMM implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// AVX-512F micro-kernel, 8 x 32 tile (16 zmm accumulators).
    Avx512,
    /// AVX2 + FMA micro-kernel, 8 x 16 tile (16 ymm accumulators).
    Avx2Fma,
    /// Plain Rust with `f32::mul_add`, 4 x 16 tile: any target.
    Portable,
    /// `matrixmultiply::sgemm`: the order's definition, kept as the reference.
    Reference,
}

/// A forced kernel the CPU cannot run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("GEMM kernel {0:?} is not supported by this CPU")]
pub struct Unsupported(pub Kernel);

impl Kernel {
    /// Every kernel, fastest first.
    pub const ALL: [Kernel; 4] = [
        Kernel::Avx512,
        Kernel::Avx2Fma,
        Kernel::Portable,
        Kernel::Reference,
    ];

    /// Whether this CPU can run the kernel (runtime detection).
    pub fn supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx512 | Kernel::Avx2Fma => false,
            Kernel::Portable | Kernel::Reference => true,
        }
    }

    /// The name `HALFSCALE_GEMM` takes.
    pub const fn name(self) -> &'static str {
        match self {
            Kernel::Avx512 => "avx512",
            Kernel::Avx2Fma => "avx2",
            Kernel::Portable => "portable",
            Kernel::Reference => "reference",
        }
    }

    /// The fastest kernel this CPU supports.
    pub fn detect() -> Kernel {
        Kernel::ALL
            .into_iter()
            .find(|k| k.supported())
            .unwrap_or(Kernel::Portable)
    }

    /// The kernel every f32 GEMM of this process uses: `HALFSCALE_GEMM` if it names a supported
    /// kernel, else [`Kernel::detect`]. Decided once.
    pub fn active() -> Kernel {
        static ACTIVE: OnceLock<Kernel> = OnceLock::new();
        *ACTIVE.get_or_init(|| {
            let detected = Kernel::detect();
            let Ok(name) = std::env::var("HALFSCALE_GEMM") else {
                return detected;
            };
            match Kernel::ALL.into_iter().find(|k| k.name() == name) {
                Some(k) if k.supported() => k,
                _ => {
                    eprintln!(
                        "HALFSCALE_GEMM={name}: not a kernel this CPU runs \
                         (avx512, avx2, portable, reference); using {}",
                        detected.name()
                    );
                    detected
                }
            }
        })
    }
}

/// A micro-kernel: an `MR x NR` tile of `C` from packed panels.
trait Micro {
    const MR: usize;
    const NR: usize;
    /// `C[..rows][..cols] = fma(alpha, ab, beta * C)` (C not read when `beta == 0`), where
    /// `ab[i][j]` is the FMA chain over `p < kc` of `ap[p * MR + i] * bp[p * NR + j]`.
    ///
    /// # Safety
    /// `ap` holds `kc * MR` and `bp` `kc * NR` elements; `rows <= MR`, `cols <= NR`; every
    /// `c + i * rsc + j * csc` with `i < rows`, `j < cols` is inside `C`'s allocation.
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        kc: usize,
        ap: *const f32,
        bp: *const f32,
        c: *mut f32,
        rsc: isize,
        csc: isize,
        rows: usize,
        cols: usize,
        alpha: f32,
        beta: f32,
    );
}

/// The scalar epilogue for a tile of any strides: the same `fma(alpha, ab, beta * c)`.
///
/// # Safety
/// As [`Micro::tile`]'s `c` contract; `ab` is `rows x nr` row-major (row stride `nr`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn store_scalar(
    ab: &[f32],
    nr: usize,
    c: *mut f32,
    rsc: isize,
    csc: isize,
    rows: usize,
    cols: usize,
    alpha: f32,
    beta: f32,
) {
    for i in 0..rows {
        for j in 0..cols {
            // SAFETY: `i < rows`, `j < cols`: inside C by the caller's contract.
            let p = unsafe { c.offset(i as isize * rsc + j as isize * csc) };
            // SAFETY: as above.
            let cv = if beta != 0.0 {
                (unsafe { *p }) * beta
            } else {
                0.0
            };
            // SAFETY: as above.
            unsafe { *p = alpha.mul_add(ab[i * nr + j], cv) };
        }
    }
}

struct Portable;

impl Micro for Portable {
    const MR: usize = 4;
    const NR: usize = 16;
    unsafe fn tile(
        kc: usize,
        ap: *const f32,
        bp: *const f32,
        c: *mut f32,
        rsc: isize,
        csc: isize,
        rows: usize,
        cols: usize,
        alpha: f32,
        beta: f32,
    ) {
        const MR: usize = Portable::MR;
        const NR: usize = Portable::NR;
        // SAFETY: the caller guarantees `kc * MR` and `kc * NR` elements behind the pointers.
        let (a, b) = unsafe {
            (
                std::slice::from_raw_parts(ap, kc * MR),
                std::slice::from_raw_parts(bp, kc * NR),
            )
        };
        let mut ab = [0.0f32; MR * NR];
        for (av, bv) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
            for i in 0..MR {
                for j in 0..NR {
                    ab[i * NR + j] = av[i].mul_add(bv[j], ab[i * NR + j]);
                }
            }
        }
        // SAFETY: forwarded from this function's contract.
        unsafe { store_scalar(&ab, NR, c, rsc, csc, rows, cols, alpha, beta) }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{store_scalar, Micro};
    use std::arch::x86_64::*;

    pub(super) struct Avx512;

    impl Micro for Avx512 {
        const MR: usize = 8;
        const NR: usize = 32;
        unsafe fn tile(
            kc: usize,
            ap: *const f32,
            bp: *const f32,
            c: *mut f32,
            rsc: isize,
            csc: isize,
            rows: usize,
            cols: usize,
            alpha: f32,
            beta: f32,
        ) {
            // SAFETY: this kernel is only selected when `avx512f` was detected
            // (`Kernel::supported`); the memory contract is forwarded.
            unsafe { tile_avx512(kc, ap, bp, c, rsc, csc, rows, cols, alpha, beta) }
        }
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_avx512(
        kc: usize,
        ap: *const f32,
        bp: *const f32,
        c: *mut f32,
        rsc: isize,
        csc: isize,
        rows: usize,
        cols: usize,
        alpha: f32,
        beta: f32,
    ) {
        const MR: usize = Avx512::MR;
        const NR: usize = Avx512::NR;
        const NV: usize = NR / 16;
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        let (mut ap, mut bp) = (ap, bp);
        for _ in 0..kc {
            // SAFETY: `p < kc`: row `p` of the packed panels is in bounds.
            let bv: [__m512; NV] =
                std::array::from_fn(|v| unsafe { _mm512_loadu_ps(bp.add(16 * v)) });
            for (i, row) in acc.iter_mut().enumerate() {
                // SAFETY: as above.
                let a = _mm512_set1_ps(unsafe { *ap.add(i) });
                for (acc, &b) in row.iter_mut().zip(&bv) {
                    *acc = _mm512_fmadd_ps(a, b, *acc);
                }
            }
            // SAFETY: one packed row on; the last step points one past the panels.
            unsafe {
                ap = ap.add(MR);
                bp = bp.add(NR);
            }
        }
        let alphav = _mm512_set1_ps(alpha);
        if csc == 1 {
            for (i, row) in acc.iter().enumerate().take(rows) {
                for (v, &ab) in row.iter().enumerate() {
                    let lanes = cols.saturating_sub(16 * v).min(16);
                    if lanes == 0 {
                        break;
                    }
                    let mask: __mmask16 = ((1u32 << lanes) - 1) as __mmask16;
                    // SAFETY: row `i < rows` and lanes `16 v .. 16 v + lanes < cols` of C are
                    // inside C (caller's contract); masked lanes are neither read nor written.
                    unsafe {
                        let p = c.offset(i as isize * rsc + 16 * v as isize);
                        let cv = if beta != 0.0 {
                            _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, p), _mm512_set1_ps(beta))
                        } else {
                            _mm512_setzero_ps()
                        };
                        _mm512_mask_storeu_ps(p, mask, _mm512_fmadd_ps(alphav, ab, cv));
                    }
                }
            }
        } else {
            let mut ab = [0.0f32; MR * NR];
            for (i, row) in acc.iter().enumerate() {
                for (v, &x) in row.iter().enumerate() {
                    // SAFETY: `i * NR + 16 v + 16 <= MR * NR`.
                    unsafe { _mm512_storeu_ps(ab.as_mut_ptr().add(i * NR + 16 * v), x) };
                }
            }
            // SAFETY: forwarded from this function's contract.
            unsafe { store_scalar(&ab, NR, c, rsc, csc, rows, cols, alpha, beta) }
        }
    }

    pub(super) struct Avx2Fma;

    impl Micro for Avx2Fma {
        const MR: usize = 8;
        const NR: usize = 16;
        unsafe fn tile(
            kc: usize,
            ap: *const f32,
            bp: *const f32,
            c: *mut f32,
            rsc: isize,
            csc: isize,
            rows: usize,
            cols: usize,
            alpha: f32,
            beta: f32,
        ) {
            // SAFETY: this kernel is only selected when `avx2` and `fma` were detected
            // (`Kernel::supported`); the memory contract is forwarded.
            unsafe { tile_avx2(kc, ap, bp, c, rsc, csc, rows, cols, alpha, beta) }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_avx2(
        kc: usize,
        ap: *const f32,
        bp: *const f32,
        c: *mut f32,
        rsc: isize,
        csc: isize,
        rows: usize,
        cols: usize,
        alpha: f32,
        beta: f32,
    ) {
        const MR: usize = Avx2Fma::MR;
        const NR: usize = Avx2Fma::NR;
        const NV: usize = NR / 8;
        let mut acc = [[_mm256_setzero_ps(); NV]; MR];
        let (mut ap, mut bp) = (ap, bp);
        for _ in 0..kc {
            // SAFETY: `p < kc`: row `p` of the packed panels is in bounds.
            let bv: [__m256; NV] =
                std::array::from_fn(|v| unsafe { _mm256_loadu_ps(bp.add(8 * v)) });
            for (i, row) in acc.iter_mut().enumerate() {
                // SAFETY: as above.
                let a = _mm256_set1_ps(unsafe { *ap.add(i) });
                for (acc, &b) in row.iter_mut().zip(&bv) {
                    *acc = _mm256_fmadd_ps(a, b, *acc);
                }
            }
            // SAFETY: one packed row on; the last step points one past the panels.
            unsafe {
                ap = ap.add(MR);
                bp = bp.add(NR);
            }
        }
        if csc == 1 && cols == NR {
            let alphav = _mm256_set1_ps(alpha);
            for (i, row) in acc.iter().enumerate().take(rows) {
                for (v, &ab) in row.iter().enumerate() {
                    // SAFETY: row `i < rows`, columns `8 v .. 8 v + 8 <= cols` are inside C.
                    unsafe {
                        let p = c.offset(i as isize * rsc + 8 * v as isize);
                        let cv = if beta != 0.0 {
                            _mm256_mul_ps(_mm256_loadu_ps(p), _mm256_set1_ps(beta))
                        } else {
                            _mm256_setzero_ps()
                        };
                        _mm256_storeu_ps(p, _mm256_fmadd_ps(alphav, ab, cv));
                    }
                }
            }
        } else {
            let mut ab = [0.0f32; MR * NR];
            for (i, row) in acc.iter().enumerate() {
                for (v, &x) in row.iter().enumerate() {
                    // SAFETY: `i * NR + 8 v + 8 <= MR * NR`.
                    unsafe { _mm256_storeu_ps(ab.as_mut_ptr().add(i * NR + 8 * v), x) };
                }
            }
            // SAFETY: forwarded from this function's contract.
            unsafe { store_scalar(&ab, NR, c, rsc, csc, rows, cols, alpha, beta) }
        }
    }
}

thread_local! {
    /// Packing buffers, one pair per thread, reused across calls (the layers call small GEMMs
    /// thousands of times per epoch).
    static PACK: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `c = alpha * a * b + beta * c` with the given kernel, in `matrixmultiply`'s order.
///
/// # Safety
/// As `Scalar::gemm_raw`: every element addressed by the dimensions and strides lies inside the
/// allocations `a`, `b`, `c` point into, `c` does not alias `a` or `b`, and `kernel` is
/// supported by this CPU.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm(
    kernel: Kernel,
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
    if m == 0 || n == 0 {
        return;
    }
    // The micro-kernels store rows of C along j: a column-major C is the transposed product
    // (`C^T = B^T A^T`), which has the same chains (an FMA's product is commutative and exact).
    if csc != 1 && rsc == 1 {
        // SAFETY: the same elements, addressed through transposed views.
        return unsafe {
            sgemm(
                kernel, n, k, m, alpha, b, csb, rsb, a, csa, rsa, beta, c, csc, rsc,
            )
        };
    }
    if k == 0 {
        // matrixmultiply's `c_to_beta_c`.
        for i in 0..m {
            for j in 0..n {
                // SAFETY: `i < m`, `j < n`: inside C.
                unsafe {
                    let p = c.offset(i as isize * rsc + j as isize * csc);
                    *p = if beta == 0.0 { 0.0 } else { *p * beta };
                }
            }
        }
        return;
    }
    // SAFETY (all arms): forwarded from this function's contract; the kernel is supported.
    match kernel {
        Kernel::Reference => unsafe {
            matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
        },
        Kernel::Portable => unsafe {
            drive::<Portable>(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
        },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe {
            drive::<x86::Avx512>(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
        },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2Fma => unsafe {
            drive::<x86::Avx2Fma>(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
        },
        #[cfg(not(target_arch = "x86_64"))]
        Kernel::Avx512 | Kernel::Avx2Fma => unsafe {
            drive::<Portable>(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
        },
    }
}

/// Packs `B[p0 .. p0 + kc][j0 .. j0 + nc]` into panels of `NR` columns, `bp[panel][p][j]`,
/// zero-filled past column `nc`.
///
/// # Safety
/// The addressed elements of `B` are inside its allocation.
#[allow(clippy::too_many_arguments)]
unsafe fn pack_b(
    bp: &mut [f32],
    nr: usize,
    kc: usize,
    nc: usize,
    b: *const f32,
    rsb: isize,
    csb: isize,
) {
    for (panel, dst) in bp.chunks_exact_mut(kc * nr).enumerate() {
        let j0 = panel * nr;
        if j0 >= nc {
            break;
        }
        let cols = (nc - j0).min(nr);
        if csb == 1 {
            for (p, row) in dst.chunks_exact_mut(nr).enumerate() {
                // SAFETY: row `p < kc`, columns `j0 .. j0 + cols` of the block are inside B.
                let src = unsafe {
                    std::slice::from_raw_parts(b.offset(p as isize * rsb + j0 as isize), cols)
                };
                row[..cols].copy_from_slice(src);
                row[cols..].fill(0.0);
            }
        } else {
            if cols < nr {
                dst.fill(0.0);
            }
            for j in 0..cols {
                let col = b.wrapping_offset((j0 + j) as isize * csb);
                for p in 0..kc {
                    // SAFETY: `p < kc`, `j0 + j < nc`: inside B.
                    dst[p * nr + j] = unsafe { *col.offset(p as isize * rsb) };
                }
            }
        }
    }
}

/// Packs `A[i0 .. i0 + rows][p0 .. p0 + kc]` as `ap[p][i]`, zero-filled past row `rows`.
///
/// # Safety
/// The addressed elements of `A` are inside its allocation.
unsafe fn pack_a(
    ap: &mut [f32],
    mr: usize,
    kc: usize,
    rows: usize,
    a: *const f32,
    rsa: isize,
    csa: isize,
) {
    if rows < mr {
        ap.fill(0.0);
    }
    if rsa == 1 {
        for (p, dst) in ap.chunks_exact_mut(mr).enumerate().take(kc) {
            // SAFETY: column `p < kc`, rows `..rows` of the block are inside A.
            let src = unsafe { std::slice::from_raw_parts(a.offset(p as isize * csa), rows) };
            dst[..rows].copy_from_slice(src);
        }
    } else {
        for i in 0..rows {
            let row = a.wrapping_offset(i as isize * rsa);
            for p in 0..kc {
                // SAFETY: `i < rows`, `p < kc`: inside A.
                ap[p * mr + i] = unsafe { *row.offset(p as isize * csa) };
            }
        }
    }
}

/// The blocked loops around a micro-kernel: `n` in blocks of [`NC`], `k` in blocks of [`KC`]
/// (in order: the order of the block adds), `m` in panels of `MR`, `n` in panels of `NR`.
///
/// # Safety
/// As [`sgemm`], with `m, n, k > 0`.
#[allow(clippy::too_many_arguments)]
unsafe fn drive<K: Micro>(
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
    let (mr, nr) = (K::MR, K::NR);
    let kc_max = k.min(KC);
    let nc_max = n.min(NC).div_ceil(nr) * nr;
    PACK.with_borrow_mut(|(ap, bp)| {
        ap.resize(kc_max * mr, 0.0);
        bp.resize(kc_max * nc_max, 0.0);
        for j0 in (0..n).step_by(NC) {
            let nc = (n - j0).min(NC);
            let panels = nc.div_ceil(nr);
            for (block, p0) in (0..k).step_by(KC).enumerate() {
                let kc = (k - p0).min(KC);
                let beta_block = if block == 0 { beta } else { 1.0 };
                let bp = &mut bp[..panels * kc * nr];
                // SAFETY: rows `p0 .. p0 + kc` and columns `j0 .. j0 + nc` are inside B.
                unsafe {
                    pack_b(
                        bp,
                        nr,
                        kc,
                        nc,
                        b.wrapping_offset(p0 as isize * rsb + j0 as isize * csb),
                        rsb,
                        csb,
                    )
                };
                for i0 in (0..m).step_by(mr) {
                    let rows = (m - i0).min(mr);
                    let ap = &mut ap[..kc * mr];
                    // SAFETY: rows `i0 .. i0 + rows`, columns `p0 .. p0 + kc` are inside A.
                    unsafe {
                        pack_a(
                            ap,
                            mr,
                            kc,
                            rows,
                            a.wrapping_offset(i0 as isize * rsa + p0 as isize * csa),
                            rsa,
                            csa,
                        )
                    };
                    for panel in 0..panels {
                        let jp = panel * nr;
                        // SAFETY: the packed panels hold `kc * MR` and `kc * NR` elements; the
                        // tile's `rows x cols` corner of C, at `(i0, j0 + jp)`, is inside C.
                        unsafe {
                            K::tile(
                                kc,
                                ap.as_ptr(),
                                bp.as_ptr().add(panel * kc * nr),
                                c.wrapping_offset(i0 as isize * rsc + (j0 + jp) as isize * csc),
                                rsc,
                                csc,
                                rows,
                                (nc - jp).min(nr),
                                alpha,
                                beta_block,
                            )
                        };
                    }
                }
            }
        }
    });
}
