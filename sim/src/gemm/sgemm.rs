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

use crate::aligned::AlignedVec;
use std::cell::RefCell;
use std::sync::OnceLock;

/// Inner-dimension block: the length of one FMA chain before it is added to `C`. Part of the
/// numerics (the CUDA kernels mirror it), not a tuning knob.
pub const KC: usize = 256;

/// One f32 GEMM implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// AVX-512F micro-kernel, 8 x 32 tile (16 zmm accumulators), or 5 to 7 rows where that pads
    /// `m` less.
    Avx512,
    /// AVX2 + FMA micro-kernel, 6 x 16 tile (12 ymm accumulators of the 16 registers).
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

/// One micro-tile's operands: `C[..rows][..cols] = fma(alpha, ab, beta * C)` (`C` not read
/// when `beta == 0`), `ab[i][j]` the FMA chain from +0 over `p < kc` of `A[i][p] * B[p][j]`.
#[derive(Clone, Copy)]
struct Tile {
    kc: usize,
    /// `A[i][p]` at `a + i * ars + p * acs`, for `i < rows`; when `gather` is non-null, at
    /// `a + gather.rows[i] + gather.cols[p]` instead (`ars`, `acs` unused).
    a: *const f32,
    ars: isize,
    acs: isize,
    rows: usize,
    gather: Gather,
    /// `B[p][j]` at `b + p * ldb + j`, for all `j < NR` (packed or padded past `cols`).
    b: *const f32,
    ldb: isize,
    c: *mut f32,
    rsc: isize,
    csc: isize,
    cols: usize,
    alpha: f32,
    beta: f32,
    /// Non-null: `C` starts as `bias[i]` in row `i` instead of `beta * C` (and is not read).
    bias: *const f32,
}

/// An `A` read through offset tables: `A[i][p] = a[rows[i] + cols[p]]` (an im2col matrix
/// read from the convolution's input: the tap gives the row offset, the output position the
/// column offset). Null tables: `A` is strided.
#[derive(Clone, Copy)]
pub(crate) struct Gather {
    pub(crate) rows: *const isize,
    pub(crate) cols: *const isize,
}

impl Gather {
    /// No gather: `A` strided.
    pub(crate) const NONE: Gather = Gather {
        rows: std::ptr::null(),
        cols: std::ptr::null(),
    };

    fn is_some(&self) -> bool {
        !self.cols.is_null()
    }
}

/// The largest `MR * NR` of any kernel (the scalar epilogue's buffer).
const MAX_TILE: usize = 1024;

/// A micro-kernel: an `MR x NR` tile of `C`.
trait Micro {
    const MR: usize;
    const NR: usize;
    /// # Safety
    /// `1 <= t.rows <= MR`, `1 <= t.cols <= NR`; every element of `A` and `B` the tile
    /// addresses (`i < rows`, `p < kc`, `j < NR`) is readable; every `c + i * rsc + j * csc`
    /// with `i < rows`, `j < cols` is inside `C`'s allocation and aliases neither.
    unsafe fn tile(t: &Tile);

    /// [`pack_b`]: packs `B[..kc][..cols]` as `bp[p][j]` (row stride `NR`), zero past `cols`.
    ///
    /// # Safety
    /// As [`pack_b`].
    unsafe fn pack(bp: &mut [f32], kc: usize, cols: usize, b: *const f32, rsb: isize, csb: isize) {
        // SAFETY: forwarded.
        unsafe { pack_b(bp, Self::NR, kc, cols, b, rsb, csb) }
    }
}

/// The scalar epilogue for a tile of any strides: the same `fma(alpha, ab, beta * c)`.
///
/// # Safety
/// As [`Micro::tile`]'s `c` contract; `ab` is `rows x nr` row-major (row stride `nr`).
#[inline(always)]
unsafe fn store_scalar(ab: &[f32], nr: usize, t: &Tile) {
    // Along C's contiguous direction innermost (a column-major C is the transposed product's).
    let (outer, inner) = if t.rsc == 1 {
        (t.cols, t.rows)
    } else {
        (t.rows, t.cols)
    };
    for o in 0..outer {
        for q in 0..inner {
            let (i, j) = if t.rsc == 1 { (q, o) } else { (o, q) };
            // SAFETY: `i < rows`, `j < cols`: inside C by the caller's contract.
            let p = unsafe { t.c.offset(i as isize * t.rsc + j as isize * t.csc) };
            // SAFETY: as above.
            let cv = if !t.bias.is_null() {
                // SAFETY: `i < rows`: the bias holds the tile's rows (the contract).
                unsafe { *t.bias.add(i) }
            } else if t.beta != 0.0 {
                (unsafe { *p }) * t.beta
            } else {
                0.0
            };
            // SAFETY: as above.
            unsafe { *p = t.alpha.mul_add(ab[i * nr + j], cv) };
        }
    }
}

/// Row pointers of `A` for a tile, rows past `rows` clamped to the last one (computed, never
/// stored), so the kernel's loop has no edge case; with `GATHER`, from the row offset table.
///
/// # Safety
/// With `GATHER`, `t.gather.rows` holds `t.rows` offsets.
#[inline(always)]
unsafe fn a_rows<const MR: usize, const GATHER: bool>(t: &Tile) -> [*const f32; MR] {
    std::array::from_fn(|i| {
        let i = i.min(t.rows - 1);
        if GATHER {
            // SAFETY: `i < rows` offsets are readable (the contract).
            t.a.wrapping_offset(unsafe { *t.gather.rows.add(i) })
        } else {
            t.a.wrapping_offset(i as isize * t.ars)
        }
    })
}

/// The offset of `A[.][p]` from its row pointer: `p * acs`, or with `GATHER` the column offset
/// table's entry.
///
/// # Safety
/// With `GATHER`, `t.gather.cols` holds `t.kc` offsets and `p < kc`.
#[inline(always)]
unsafe fn a_col<const GATHER: bool>(t: &Tile, p: usize) -> isize {
    if GATHER {
        // SAFETY: `p < kc` (the contract).
        unsafe { *t.gather.cols.add(p) }
    } else {
        p as isize * t.acs
    }
}

struct Portable;

impl Micro for Portable {
    const MR: usize = 4;
    const NR: usize = 16;
    unsafe fn tile(t: &Tile) {
        // SAFETY (both): forwarded; the tables are read only when present.
        if t.gather.is_some() {
            unsafe { portable_tile::<true>(t) }
        } else {
            unsafe { portable_tile::<false>(t) }
        }
    }
}

/// [`Portable`]'s tile, `A` strided or gathered.
///
/// # Safety
/// As [`Micro::tile`].
unsafe fn portable_tile<const GATHER: bool>(t: &Tile) {
    const MR: usize = Portable::MR;
    const NR: usize = Portable::NR;
    // SAFETY: forwarded.
    let rows = unsafe { a_rows::<MR, GATHER>(t) };
    let mut ab = [0.0f32; MR * NR];
    for p in 0..t.kc {
        // SAFETY: `p < kc`.
        let pa = unsafe { a_col::<GATHER>(t, p) };
        // SAFETY: row `p < kc` of B has `NR` readable elements (the contract).
        let bv = unsafe { std::slice::from_raw_parts(t.b.offset(p as isize * t.ldb), NR) };
        for (i, row) in rows.iter().enumerate() {
            // SAFETY: `A[min(i, rows - 1)][p]` is readable.
            let a = unsafe { *row.offset(pa) };
            for j in 0..NR {
                ab[i * NR + j] = a.mul_add(bv[j], ab[i * NR + j]);
            }
        }
    }
    // SAFETY: forwarded from this function's contract.
    unsafe { store_scalar(&ab, NR, t) }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{a_col, a_rows, store_scalar, Micro, Tile, MAX_TILE};
    use std::arch::x86_64::*;

    /// AVX-512F: `MR` rows x `NV` vectors of 16.
    pub(super) struct Avx512<const MR: usize, const NV: usize>;

    impl<const MR: usize, const NV: usize> Micro for Avx512<MR, NV> {
        const MR: usize = MR;
        const NR: usize = 16 * NV;
        unsafe fn tile(t: &Tile) {
            // SAFETY (both): this kernel is only selected when `avx512f` was detected
            // (`Kernel::supported`); the memory contract is forwarded.
            if t.gather.is_some() {
                unsafe { tile_avx512::<MR, NV, true>(t) }
            } else {
                unsafe { tile_avx512::<MR, NV, false>(t) }
            }
        }

        unsafe fn pack(
            bp: &mut [f32],
            kc: usize,
            cols: usize,
            b: *const f32,
            rsb: isize,
            csb: isize,
        ) {
            if rsb == 1 && bp.len() >= kc * 16 * NV {
                // SAFETY: `avx512f` was detected (`Kernel::supported`); `bp` holds the panel
                // (checked above) and the columns of B are inside B (the contract).
                unsafe { pack_t_avx512(bp, 16 * NV, kc, cols, b, csb) }
            } else {
                // SAFETY: forwarded.
                unsafe { super::pack_b(bp, 16 * NV, kc, cols, b, rsb, csb) }
            }
        }
    }

    /// Packs a `B` stored transposed (column `j` contiguous along `p` at `b + j * csb`) into
    /// `bp[p][j]`, row stride `nr` (a multiple of 16), through 16 x 16 in-register transposes:
    /// a quarter of the scalar copy's cost on the weight-gradient shapes. Data movement only.
    ///
    /// # Safety
    /// `avx512f` is available; `bp.len() >= kc * nr`; `b + j * csb + p` is inside B for
    /// `j < cols <= nr`, `p < kc`.
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn pack_t_avx512(
        bp: &mut [f32],
        nr: usize,
        kc: usize,
        cols: usize,
        b: *const f32,
        csb: isize,
    ) {
        debug_assert!(nr.is_multiple_of(16) && bp.len() >= kc * nr && cols <= nr);
        for j0 in (0..nr).step_by(16) {
            for p0 in (0..kc).step_by(16) {
                let plen = (kc - p0).min(16);
                let pmask: __mmask16 = ((1u32 << plen) - 1) as __mmask16;
                let r: [__m512; 16] = std::array::from_fn(|j| {
                    if j0 + j < cols {
                        // SAFETY: column `j0 + j < cols`, rows `p0 .. p0 + plen <= kc` are
                        // inside B; masked lanes are not read.
                        unsafe {
                            _mm512_maskz_loadu_ps(
                                pmask,
                                b.offset((j0 + j) as isize * csb + p0 as isize),
                            )
                        }
                    } else {
                        _mm512_setzero_ps()
                    }
                });
                let out = transpose16(r);
                for (q, v) in out.iter().enumerate().take(plen) {
                    // SAFETY: `(p0 + q) * nr + j0 + 16 <= kc * nr <= bp.len()`.
                    unsafe { _mm512_storeu_ps(bp.as_mut_ptr().add((p0 + q) * nr + j0), *v) };
                }
            }
        }
    }

    /// `out[q]` lane `j` = `r[j]` lane `q`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
        // Pairs of rows interleaved by 32 bits, then by 64 bits: each 128-bit block of `u[4 g + h]`
        // holds elements `h, h + 4, h + 8, h + 12` (one per block) of rows `4 g .. 4 g + 4`.
        let t: [__m512; 16] = std::array::from_fn(|i| {
            let (a, b) = (r[2 * (i / 2)], r[2 * (i / 2) + 1]);
            if i % 2 == 0 {
                _mm512_unpacklo_ps(a, b)
            } else {
                _mm512_unpackhi_ps(a, b)
            }
        });
        let u: [__m512; 16] = std::array::from_fn(|i| {
            let g = i / 4;
            let (x, y) = (
                _mm512_castps_pd(t[4 * g + (i % 4) / 2]),
                _mm512_castps_pd(t[4 * g + 2 + (i % 4) / 2]),
            );
            _mm512_castpd_ps(if i % 2 == 0 {
                _mm512_unpacklo_pd(x, y)
            } else {
                _mm512_unpackhi_pd(x, y)
            })
        });
        // u[4 g + h]: 128-bit block `blk` = element `h + 4 blk` of rows 4g..4g+4.
        // Gather block `blk` of u[h], u[4 + h], u[8 + h], u[12 + h] into out[h + 4 blk].
        let mut out = [_mm512_setzero_ps(); 16];
        for h in 0..4 {
            let lo02 = _mm512_shuffle_f32x4::<0x88>(u[h], u[4 + h]);
            let hi02 = _mm512_shuffle_f32x4::<0x88>(u[8 + h], u[12 + h]);
            let lo13 = _mm512_shuffle_f32x4::<0xDD>(u[h], u[4 + h]);
            let hi13 = _mm512_shuffle_f32x4::<0xDD>(u[8 + h], u[12 + h]);
            out[h] = _mm512_shuffle_f32x4::<0x88>(lo02, hi02);
            out[h + 8] = _mm512_shuffle_f32x4::<0xDD>(lo02, hi02);
            out[h + 4] = _mm512_shuffle_f32x4::<0x88>(lo13, hi13);
            out[h + 12] = _mm512_shuffle_f32x4::<0xDD>(lo13, hi13);
        }
        out
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn tile_avx512<const MR: usize, const NV: usize, const GATHER: bool>(t: &Tile) {
        // SAFETY: forwarded (the tables hold the tile's rows and `kc` columns).
        let rows = unsafe { a_rows::<MR, GATHER>(t) };
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        let mut b = t.b;
        for p in 0..t.kc {
            // SAFETY: `p < kc`.
            let pa = unsafe { a_col::<GATHER>(t, p) };
            // SAFETY: row `p < kc` of B has `16 NV` readable elements (the contract).
            let bv: [__m512; NV] =
                std::array::from_fn(|v| unsafe { _mm512_loadu_ps(b.add(16 * v)) });
            for (row, a) in acc.iter_mut().zip(&rows) {
                // SAFETY: `A[min(i, rows - 1)][p]` is readable.
                let a = _mm512_set1_ps(unsafe { *a.offset(pa) });
                for (acc, &b) in row.iter_mut().zip(&bv) {
                    *acc = _mm512_fmadd_ps(a, b, *acc);
                }
            }
            b = b.wrapping_offset(t.ldb);
        }
        if t.csc == 1 {
            let alphav = _mm512_set1_ps(t.alpha);
            for (i, row) in acc.iter().enumerate().take(t.rows) {
                for (v, &ab) in row.iter().enumerate() {
                    let lanes = t.cols.saturating_sub(16 * v).min(16);
                    if lanes == 0 {
                        break;
                    }
                    let mask: __mmask16 = ((1u32 << lanes) - 1) as __mmask16;
                    // SAFETY: row `i < rows` and lanes `16 v .. 16 v + lanes <= cols` of C are
                    // inside C (the contract); masked lanes are neither read nor written.
                    unsafe {
                        let p = t.c.offset(i as isize * t.rsc + 16 * v as isize);
                        let cv = if !t.bias.is_null() {
                            _mm512_set1_ps(*t.bias.add(i))
                        } else if t.beta != 0.0 {
                            _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, p), _mm512_set1_ps(t.beta))
                        } else {
                            _mm512_setzero_ps()
                        };
                        _mm512_mask_storeu_ps(p, mask, _mm512_fmadd_ps(alphav, ab, cv));
                    }
                }
            }
        } else {
            // Uninitialised: every element of the `MR x 16 NV` prefix is written just below
            // (zeroing all of `MAX_TILE` was a 4 KB memset per tile).
            let mut buf = [std::mem::MaybeUninit::<__m512>::uninit(); MAX_TILE / 16];
            for (i, row) in acc.iter().enumerate() {
                for (v, &x) in row.iter().enumerate() {
                    buf[i * NV + v].write(x);
                }
            }
            // SAFETY: the first `MR * NV` vectors were written above (`MR * NV * 16 <=
            // MAX_TILE`); `__m512` is sixteen f32.
            let ab =
                unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<f32>(), MR * NV * 16) };
            if t.rsc == 1 && t.bias.is_null() && MR <= 16 {
                // SAFETY: forwarded from this function's contract; `ab` is `MR x 16 NV`.
                unsafe { store_transposed_avx512(ab, MR, NV, t) }
            } else {
                // SAFETY: forwarded from this function's contract.
                unsafe { store_scalar(ab, 16 * NV, t) }
            }
        }
    }

    /// The epilogue of a transposed product's tile (C column-major, `rsc == 1`, no bias): each
    /// of the tile's columns `j` is `rows` contiguous elements of C. A 16 x 16 in-register
    /// transpose of each 16-column block of `ab` gives them as vectors; the same `fma(alpha,
    /// ab, beta * c)` per element as the other epilogues, then one masked store per column.
    /// Out of line: inlined, it made the compiler spill the kernel's accumulators.
    ///
    /// # Safety
    /// As [`Micro::tile`]'s `c` contract, with `t.rsc == 1` and a null bias; `ab` is `rows x
    /// 16 nv` row-major with `mr >= rows` rows, `mr <= 16`.
    #[inline(never)]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn store_transposed_avx512(ab: &[f32], mr: usize, nv: usize, t: &Tile) {
        let alphav = _mm512_set1_ps(t.alpha);
        let betav = _mm512_set1_ps(t.beta);
        let rows_mask: __mmask16 = ((1u32 << t.rows) - 1) as __mmask16;
        for v in 0..nv {
            let block: [__m512; 16] = std::array::from_fn(|i| {
                if i < mr {
                    // SAFETY: row `i < mr` of `ab` holds `16 nv` elements (the contract).
                    unsafe { _mm512_loadu_ps(ab.as_ptr().add((i * nv + v) * 16)) }
                } else {
                    _mm512_setzero_ps()
                }
            });
            let cols = transpose16(block);
            for (q, &x) in cols.iter().enumerate().take(t.cols.saturating_sub(16 * v)) {
                // SAFETY: column `j = 16 v + q < cols`, rows `..rows` of C are inside C (the
                // contract; `rsc == 1`); masked lanes are neither read nor written.
                unsafe {
                    let p = t.c.offset((16 * v + q) as isize * t.csc);
                    let cv = if t.beta != 0.0 {
                        _mm512_mul_ps(_mm512_maskz_loadu_ps(rows_mask, p), betav)
                    } else {
                        _mm512_setzero_ps()
                    };
                    _mm512_mask_storeu_ps(p, rows_mask, _mm512_fmadd_ps(alphav, x, cv));
                }
            }
        }
    }

    /// AVX2 + FMA: `MR` rows x `NV` vectors of 8.
    pub(super) struct Avx2Fma<const MR: usize, const NV: usize>;

    impl<const MR: usize, const NV: usize> Micro for Avx2Fma<MR, NV> {
        const MR: usize = MR;
        const NR: usize = 8 * NV;
        unsafe fn tile(t: &Tile) {
            // SAFETY (both): this kernel is only selected when `avx2` and `fma` were detected
            // (`Kernel::supported`); the memory contract is forwarded.
            if t.gather.is_some() {
                unsafe { tile_avx2::<MR, NV, true>(t) }
            } else {
                unsafe { tile_avx2::<MR, NV, false>(t) }
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile_avx2<const MR: usize, const NV: usize, const GATHER: bool>(t: &Tile) {
        // SAFETY: forwarded (the tables hold the tile's rows and `kc` columns).
        let rows = unsafe { a_rows::<MR, GATHER>(t) };
        let mut acc = [[_mm256_setzero_ps(); NV]; MR];
        let mut b = t.b;
        for p in 0..t.kc {
            // SAFETY: `p < kc`.
            let pa = unsafe { a_col::<GATHER>(t, p) };
            // SAFETY: row `p < kc` of B has `8 NV` readable elements (the contract).
            let bv: [__m256; NV] =
                std::array::from_fn(|v| unsafe { _mm256_loadu_ps(b.add(8 * v)) });
            for (row, a) in acc.iter_mut().zip(&rows) {
                // SAFETY: `A[min(i, rows - 1)][p]` is readable.
                let a = _mm256_set1_ps(unsafe { *a.offset(pa) });
                for (acc, &b) in row.iter_mut().zip(&bv) {
                    *acc = _mm256_fmadd_ps(a, b, *acc);
                }
            }
            b = b.wrapping_offset(t.ldb);
        }
        if t.csc == 1 && t.cols == 8 * NV {
            let alphav = _mm256_set1_ps(t.alpha);
            for (i, row) in acc.iter().enumerate().take(t.rows) {
                for (v, &ab) in row.iter().enumerate() {
                    // SAFETY: row `i < rows`, columns `8 v .. 8 v + 8 <= cols` are inside C.
                    unsafe {
                        let p = t.c.offset(i as isize * t.rsc + 8 * v as isize);
                        let cv = if !t.bias.is_null() {
                            _mm256_set1_ps(*t.bias.add(i))
                        } else if t.beta != 0.0 {
                            _mm256_mul_ps(_mm256_loadu_ps(p), _mm256_set1_ps(t.beta))
                        } else {
                            _mm256_setzero_ps()
                        };
                        _mm256_storeu_ps(p, _mm256_fmadd_ps(alphav, ab, cv));
                    }
                }
            }
        } else {
            let mut ab = [0.0f32; MAX_TILE];
            for (i, row) in acc.iter().enumerate() {
                for (v, &x) in row.iter().enumerate() {
                    // SAFETY: `(i * NV + v) * 8 + 8 <= MR * NV * 8`.
                    unsafe { _mm256_storeu_ps(ab.as_mut_ptr().add((i * NV + v) * 8), x) };
                }
            }
            // SAFETY: forwarded from this function's contract.
            unsafe { store_scalar(&ab, 8 * NV, t) }
        }
    }
}

thread_local! {
    /// The packing buffer of `B`, one per thread, reused across calls (the layers call small
    /// GEMMs thousands of times per epoch).
    static PACK: RefCell<AlignedVec> = RefCell::new(AlignedVec::default());
}

/// `c = alpha * a * b + beta * c` with the given kernel, in `matrixmultiply`'s order; with a
/// non-null `bias`, `c = alpha * a * b + bias[i]` instead (`beta` ignored, `c` not read): the
/// same bits as filling row `i` of `c` with `bias[i]` and calling with `beta = 1`, without the
/// pass over `c` (the convolutions' forward).
///
/// # Safety
/// As `Scalar::gemm_raw`: every element addressed by the dimensions and strides lies inside the
/// allocations `a`, `b`, `c` point into, `c` does not alias `a` or `b`, a non-null `bias` holds
/// `m` elements, and `kernel` is supported by this CPU.
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
    bias: *const f32,
    c: *mut f32,
    rsc: isize,
    csc: isize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if !bias.is_null() && (k == 0 || kernel == Kernel::Reference) {
        // Fill, then `beta = 1`: what the bias mode is defined as.
        for i in 0..m {
            for j in 0..n {
                // SAFETY: `i < m`, `j < n`: inside C; the bias holds `m` elements.
                unsafe { *c.offset(i as isize * rsc + j as isize * csc) = *bias.add(i) };
            }
        }
        // SAFETY: forwarded, without the bias.
        return unsafe {
            sgemm(
                kernel,
                m,
                k,
                n,
                alpha,
                a,
                rsa,
                csa,
                b,
                rsb,
                csb,
                1.0,
                std::ptr::null(),
                c,
                rsc,
                csc,
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
    if kernel == Kernel::Reference {
        // SAFETY: forwarded from this function's contract.
        return unsafe {
            matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
        };
    }
    let p = Problem {
        m,
        k,
        n,
        alpha,
        a,
        rsa,
        csa,
        gather: Gather::NONE,
        b,
        rsb,
        csb,
        beta,
        bias,
        c,
        rsc,
        csc,
    };
    // The micro-kernels vectorise along `j`, so `B` must be read along its columns: a `B`
    // stored transposed is transposed into the packing buffer. The transposed product
    // (`C^T = B^T A^T`, the same FMA chains: a product is commutative and exact) may need less of
    // that, at the price of a scalar store of `C`: pick the cheaper (counted in elements moved).
    // The AVX-512 kernel transposes 16 x 16 blocks in registers, about 4 times the scalar rate.
    // It also stores a column-major C through the same transposes; the other kernels store it
    // element by element.
    let transpose_cost = if kernel == Kernel::Avx512 { 1 } else { 4 };
    let cost = |p: &Problem| {
        let transpose_b = if p.csb == 1 {
            0
        } else {
            p.k * p.n * transpose_cost
        };
        let strided_c = if p.csc == 1 {
            0
        } else {
            p.m * p.n * p.k.div_ceil(KC) * transpose_cost
        };
        transpose_b + strided_c
    };
    let t = p.transposed();
    // A bias runs along rows: keep the orientation then.
    let p = if bias.is_null() && cost(&t) < cost(&p) {
        t
    } else {
        p
    };
    // SAFETY: forwarded from this function's contract; the kernel is supported.
    unsafe { run(kernel, &p) }
}

/// [`drive`] on `kernel`'s micro-kernel.
///
/// # Safety
/// As [`drive`]; `kernel` is supported by this CPU and is not [`Kernel::Reference`] when `A`
/// is gathered.
unsafe fn run(kernel: Kernel, p: &Problem) {
    // SAFETY (all arms): forwarded from this function's contract; the kernel is supported.
    match kernel {
        Kernel::Reference | Kernel::Portable => unsafe { drive::<Portable>(p) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => match avx512_rows(p.m) {
            5 => unsafe { drive::<x86::Avx512<5, 2>>(p) },
            6 => unsafe { drive::<x86::Avx512<6, 2>>(p) },
            7 => unsafe { drive::<x86::Avx512<7, 2>>(p) },
            _ => unsafe { drive::<x86::Avx512<8, 2>>(p) },
        },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2Fma => unsafe { drive::<x86::Avx2Fma<6, 2>>(p) },
        #[cfg(not(target_arch = "x86_64"))]
        Kernel::Avx512 | Kernel::Avx2Fma => unsafe { drive::<Portable>(p) },
    }
}

/// The AVX-512 tile's rows for an `m`-row product: of 8, 7, 6 and 5 (10 to 16 accumulators,
/// enough to cover the FMA latency on two ports), the one that pads `m` least, the largest on a
/// tie. A tile's padding rows are computed and thrown away: conv1's weight gradient (`m = 25`,
/// the taps) in tiles of 8 computed 32 rows, 22 % of it wasted; in tiles of 5 none. Tiling only:
/// every element's FMA chain is the same.
fn avx512_rows(m: usize) -> usize {
    (5..=8)
        .rev()
        .min_by_key(|&mr| m.div_ceil(mr) * mr)
        .unwrap_or(8)
}

/// [`sgemm`] (no bias) with `A[i][p] = a[rows[i] + cols[p]]`: an im2col matrix read from the
/// convolution's input through two offset tables instead of being built. The micro-kernels
/// broadcast `A`'s elements one at a time, so where they are read from changes nothing else:
/// the same FMA chains in the same order, the same bits as [`sgemm`] on the built matrix (no
/// transposed product: `A` stays `A`). [`Kernel::Reference`] builds the matrix and calls
/// `matrixmultiply`.
///
/// # Safety
/// `rows` holds `m` and `cols` `k` offsets, and `a + rows[i] + cols[p]` is inside `A`'s
/// allocation for all of them; the rest as [`sgemm`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm_gathered(
    kernel: Kernel,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: *const f32,
    rows: *const isize,
    cols: *const isize,
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
    if k == 0 || kernel == Kernel::Reference {
        // The matrix itself (empty when `k == 0`: `sgemm`'s `c_to_beta_c`).
        let built: Vec<f32> = (0..m * k)
            .map(|e| {
                // SAFETY: `e / k < m`, `e % k < k`: inside the tables, and the element inside A.
                unsafe { *a.offset(*rows.add(e / k) + *cols.add(e % k)) }
            })
            .collect();
        // SAFETY: `built` is `m x k` row-major; the rest forwarded.
        return unsafe {
            sgemm(
                kernel,
                m,
                k,
                n,
                alpha,
                built.as_ptr(),
                k as isize,
                1,
                b,
                rsb,
                csb,
                beta,
                std::ptr::null(),
                c,
                rsc,
                csc,
            )
        };
    }
    let p = Problem {
        m,
        k,
        n,
        alpha,
        a,
        rsa: 0,
        csa: 0,
        gather: Gather { rows, cols },
        b,
        rsb,
        csb,
        beta,
        bias: std::ptr::null(),
        c,
        rsc,
        csc,
    };
    // SAFETY: forwarded from this function's contract; the kernel is supported and not the
    // reference.
    unsafe { run(kernel, &p) }
}

/// A GEMM's operands, as [`sgemm`] takes them.
#[derive(Clone, Copy)]
struct Problem {
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: *const f32,
    rsa: isize,
    csa: isize,
    /// Non-null tables: `A` gathered from `a` (`rsa`, `csa` unused); never transposed then.
    gather: Gather,
    b: *const f32,
    rsb: isize,
    csb: isize,
    beta: f32,
    bias: *const f32,
    c: *mut f32,
    rsc: isize,
    csc: isize,
}

impl Problem {
    /// `C^T = B^T A^T`: the same elements through transposed views.
    fn transposed(&self) -> Self {
        debug_assert!(!self.gather.is_some(), "a gathered A stays A");
        Self {
            m: self.n,
            n: self.m,
            a: self.b,
            rsa: self.csb,
            csa: self.rsb,
            b: self.a,
            rsb: self.csa,
            csb: self.rsa,
            rsc: self.csc,
            csc: self.rsc,
            ..*self
        }
    }
}

/// Packs `B[..kc][j0 .. j0 + cols]` as `bp[p][j]` (row stride `nr`), zero past `cols`.
///
/// # Safety
/// The addressed elements of `B` are inside its allocation.
unsafe fn pack_b(
    bp: &mut [f32],
    nr: usize,
    kc: usize,
    cols: usize,
    b: *const f32,
    rsb: isize,
    csb: isize,
) {
    if cols < nr {
        bp.fill(0.0);
    }
    if csb == 1 {
        for (p, row) in bp.chunks_exact_mut(nr).enumerate().take(kc) {
            // SAFETY: row `p < kc`, columns `..cols` are inside B.
            let src = unsafe { std::slice::from_raw_parts(b.offset(p as isize * rsb), cols) };
            row[..cols].copy_from_slice(src);
        }
    } else {
        for j in 0..cols {
            let col = b.wrapping_offset(j as isize * csb);
            for p in 0..kc {
                // SAFETY: `p < kc`, `j < cols`: inside B.
                bp[p * nr + j] = unsafe { *col.offset(p as isize * rsb) };
            }
        }
    }
}

/// Columns of `B` per block (`KC * NC * 4` bytes = 1 MiB at most packed, within L2). Tiling
/// only: it changes no rounding.
const NC: usize = 1024;

/// The blocked loops around a micro-kernel: `n` in blocks of [`NC`], `k` in blocks of [`KC`]
/// (in order: the order of the block adds), `m` in tiles of `MR` (`A` read in place, the
/// tile's rows staying in L1 while the loop runs along `n`), `n` in panels of `NR` (packed
/// when `B` is not stored along `j`, or for a ragged last panel; read in place otherwise).
///
/// # Safety
/// As [`sgemm`], with `m, n, k > 0`.
unsafe fn drive<K: Micro>(p: &Problem) {
    let (mr, nr) = (K::MR, K::NR);
    debug_assert!(mr * nr <= MAX_TILE);
    let pack_all = p.csb != 1;
    PACK.with_borrow_mut(|bp| {
        let panels_max = p.n.min(NC).div_ceil(nr);
        let need = p.k.min(KC) * nr * if pack_all { panels_max } else { 1 };
        // Grown only: a resize to each GEMM's size re-zeroed the buffer every time it grew back
        // (a memset per call, 1-2 % of a step); every panel is written before it is read.
        bp.ensure_len(need);
        for j0 in (0..p.n).step_by(NC) {
            let nc = (p.n - j0).min(NC);
            let panels = nc.div_ceil(nr);
            for (block, p0) in (0..p.k).step_by(KC).enumerate() {
                let kc = (p.k - p0).min(KC);
                let beta = if block == 0 { p.beta } else { 1.0 };
                let (a, gather_cols) = if p.gather.is_some() {
                    (p.a, p.gather.cols.wrapping_add(p0))
                } else {
                    (p.a.wrapping_offset(p0 as isize * p.csa), std::ptr::null())
                };
                let b =
                    p.b.wrapping_offset(p0 as isize * p.rsb + j0 as isize * p.csb);
                let c = p.c.wrapping_offset(j0 as isize * p.csc);
                // Pack what is packed: every panel, or only a ragged last one.
                for panel in 0..panels {
                    let cols = (nc - panel * nr).min(nr);
                    if pack_all || cols < nr {
                        let at = if pack_all { panel } else { 0 };
                        let dst = &mut bp[at * kc * nr..(at + 1) * kc * nr];
                        let src = b.wrapping_offset((panel * nr) as isize * p.csb);
                        // SAFETY: rows `p0 .. p0 + kc` and the panel's columns are inside B.
                        unsafe { K::pack(dst, kc, cols, src, p.rsb, p.csb) };
                    }
                }
                let tiles = p.m.div_ceil(mr);
                // Packed B: each panel (`kc x NR`) stays in L1 while the tiles of A pass;
                // B read in place: each tile of A stays in L1 while the panels pass.
                for step in 0..tiles * panels {
                    let (i0, panel) = if pack_all {
                        (step % tiles * mr, step / tiles)
                    } else {
                        (step / panels * mr, step % panels)
                    };
                    {
                        let jp = panel * nr;
                        let cols = (nc - jp).min(nr);
                        let (b_tile, ldb) = if pack_all {
                            (bp[panel * kc * nr..].as_ptr(), nr as isize)
                        } else if cols < nr {
                            (bp.as_ptr(), nr as isize)
                        } else {
                            (b.wrapping_add(jp), p.rsb)
                        };
                        let t = Tile {
                            kc,
                            a: if p.gather.is_some() {
                                a
                            } else {
                                a.wrapping_offset(i0 as isize * p.rsa)
                            },
                            ars: p.rsa,
                            acs: p.csa,
                            rows: (p.m - i0).min(mr),
                            gather: if p.gather.is_some() {
                                Gather {
                                    rows: p.gather.rows.wrapping_add(i0),
                                    cols: gather_cols,
                                }
                            } else {
                                Gather::NONE
                            },
                            b: b_tile,
                            ldb,
                            c: c.wrapping_offset(i0 as isize * p.rsc + jp as isize * p.csc),
                            rsc: p.rsc,
                            csc: p.csc,
                            cols,
                            alpha: p.alpha,
                            beta,
                            bias: if block == 0 && !p.bias.is_null() {
                                p.bias.wrapping_add(i0)
                            } else {
                                std::ptr::null()
                            },
                        };
                        // SAFETY: the tile's rows of A, its `kc` rows of B (all `NR` columns:
                        // read in place only for a full panel) and its corner of C are inside
                        // their allocations by this function's contract.
                        unsafe { K::tile(&t) };
                    }
                }
            }
        }
    });
}
