//! f32 <-> binary16/bfloat16 conversions, one value or a buffer, under an explicit environment
//! (one IEEE rounding per element, in the environment's mode; flags accumulate over the buffer).

use halfscale_core::format::Format;
use halfscale_core::half::{bf16, f16};
use halfscale_core::{convert, FpEnv};

use crate::env::HsEnv;
use crate::guard::{disjoint, guarded, slice, slice_mut, write};
use crate::status::HsStatus;

/// Narrows `n` floats into 16-bit patterns of `F`.
///
/// # Safety
/// `env` valid or NULL; `src` readable for `n` floats and `dst` writable for `n` `uint16_t`, or
/// NULL with `n == 0`.
unsafe fn narrow<F: Format>(env: *mut HsEnv, src: *const f32, dst: *mut u16, n: usize) -> HsStatus {
    guarded(|| {
        disjoint(src, n, dst, n)?;
        // SAFETY: the caller's contract; the buffers are disjoint (checked).
        let (env, src, dst) = unsafe { (write(env)?, slice(src, n)?, slice_mut(dst, n)?) };
        let mut core = env.to_core()?;
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = convert::<f32, F>(s, &mut core).to_bits() as u16;
        }
        env.absorb(&core);
        Ok(())
    })
}

/// Widens `n` 16-bit patterns of `F` into floats (exact; a signalling NaN raises invalid and is
/// quieted).
///
/// # Safety
/// As [`narrow`], with the element types swapped.
unsafe fn widen<F: Format>(env: *mut HsEnv, src: *const u16, dst: *mut f32, n: usize) -> HsStatus {
    guarded(|| {
        disjoint(src, n, dst, n)?;
        // SAFETY: the caller's contract; the buffers are disjoint (checked).
        let (env, src, dst) = unsafe { (write(env)?, slice(src, n)?, slice_mut(dst, n)?) };
        let mut core: FpEnv = env.to_core()?;
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = convert::<F, f32>(F::from_bits(s.into()), &mut core);
        }
        env.absorb(&core);
        Ok(())
    })
}

/// `dst[i] = (binary16) src[i]` for `i < n`, rounded in `env->rounding`, flags added.
///
/// # Safety
/// `env` must be NULL (an error) or valid; `src` readable for `n` floats and `dst` writable for
/// `n` `uint16_t` (either may be NULL only when `n == 0`); the buffers must not overlap (checked:
/// `HS_ERR_OVERLAPPING_BUFFERS`).
#[no_mangle]
pub unsafe extern "C" fn hs_f32_to_f16(
    env: *mut HsEnv,
    src: *const f32,
    dst: *mut u16,
    n: usize,
) -> HsStatus {
    // SAFETY: forwarded contract.
    unsafe { narrow::<f16>(env, src, dst, n) }
}

/// `dst[i] = (bfloat16) src[i]` for `i < n`, rounded in `env->rounding`, flags added.
///
/// # Safety
/// As [`hs_f32_to_f16`].
#[no_mangle]
pub unsafe extern "C" fn hs_f32_to_bf16(
    env: *mut HsEnv,
    src: *const f32,
    dst: *mut u16,
    n: usize,
) -> HsStatus {
    // SAFETY: forwarded contract.
    unsafe { narrow::<bf16>(env, src, dst, n) }
}

/// `dst[i] = (float) src[i]` for `n` binary16 patterns (exact).
///
/// # Safety
/// As [`hs_f32_to_f16`], with `src` holding `uint16_t` and `dst` floats.
#[no_mangle]
pub unsafe extern "C" fn hs_f16_to_f32(
    env: *mut HsEnv,
    src: *const u16,
    dst: *mut f32,
    n: usize,
) -> HsStatus {
    // SAFETY: forwarded contract.
    unsafe { widen::<f16>(env, src, dst, n) }
}

/// `dst[i] = (float) src[i]` for `n` bfloat16 patterns (exact).
///
/// # Safety
/// As [`hs_f16_to_f32`].
#[no_mangle]
pub unsafe extern "C" fn hs_bf16_to_f32(
    env: *mut HsEnv,
    src: *const u16,
    dst: *mut f32,
    n: usize,
) -> HsStatus {
    // SAFETY: forwarded contract.
    unsafe { widen::<bf16>(env, src, dst, n) }
}
