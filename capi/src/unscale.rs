//! Unscale and check a gradient buffer in one pass: PyTorch's
//! `_amp_foreach_non_finite_check_and_unscale_`, bit for bit, with NaN and inf counted apart.

use halfscale_core::half::{bf16, f16};
use halfscale_core::scaler::{
    unscale_and_check, unscale_and_check_bf16, unscale_and_check_f16, Found, NonFiniteReport,
};

use crate::guard::{guarded, slice_mut, write};
use crate::scaler::{HsFound, HS_FOUND_FINITE, HS_FOUND_INF, HS_FOUND_NAN};
use crate::status::HsStatus;

/// What a check found in a buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HsNonFinite {
    /// Elements checked.
    pub len: usize,
    /// NaN elements.
    pub nan: usize,
    /// +-inf elements.
    pub inf: usize,
    /// Index of the first NaN, -1 if none.
    pub first_nan: i64,
    /// Index of the first inf, -1 if none.
    pub first_inf: i64,
    /// The verdict to pass to `hs_scaler_update`: NaN if any NaN, else inf if any inf.
    pub found: HsFound,
}

impl From<NonFiniteReport> for HsNonFinite {
    fn from(r: NonFiniteReport) -> Self {
        let index = |i: Option<usize>| i.map_or(-1, |i| i as i64);
        HsNonFinite {
            len: r.len,
            nan: r.nan,
            inf: r.inf,
            first_nan: index(r.first_nan),
            first_inf: index(r.first_inf),
            found: match r.found() {
                Found::Finite => HS_FOUND_FINITE,
                Found::Inf => HS_FOUND_INF,
                Found::Nan => HS_FOUND_NAN,
            },
        }
    }
}

/// Checks `grads[0..n]` for NaN and inf and multiplies each by `inv_scale` in float, in place
/// (left untouched when `inv_scale == 1`). Get `inv_scale` from `hs_scaler_inv_scale`.
///
/// # Safety
/// `grads` readable and writable for `n` floats (NULL only with `n == 0`); `report` NULL (an
/// error) or writable.
#[no_mangle]
pub unsafe extern "C" fn hs_unscale_f32(
    grads: *mut f32,
    n: usize,
    inv_scale: f32,
    report: *mut HsNonFinite,
) -> HsStatus {
    guarded(|| {
        // SAFETY: the caller's contract.
        let (grads, report) = unsafe { (slice_mut(grads, n)?, write(report)?) };
        *report = unscale_and_check(grads, inv_scale).into();
        Ok(())
    })
}

/// The same for `n` binary16 gradients (as `uint16_t` bit patterns): each widened to float,
/// checked, multiplied by `inv_scale` in float and stored back nearest-even, as PyTorch does for
/// `at::Half`.
///
/// # Safety
/// As [`hs_unscale_f32`], for `n` `uint16_t`.
#[no_mangle]
pub unsafe extern "C" fn hs_unscale_f16(
    grads: *mut u16,
    n: usize,
    inv_scale: f32,
    report: *mut HsNonFinite,
) -> HsStatus {
    guarded(|| {
        // SAFETY: the caller's contract; `f16` is `repr(transparent)` over `u16`.
        let (grads, report) = unsafe { (slice_mut(grads.cast::<f16>(), n)?, write(report)?) };
        *report = unscale_and_check_f16(grads, inv_scale).into();
        Ok(())
    })
}

/// The same for `n` bfloat16 gradients (`at::BFloat16`).
///
/// # Safety
/// As [`hs_unscale_f16`].
#[no_mangle]
pub unsafe extern "C" fn hs_unscale_bf16(
    grads: *mut u16,
    n: usize,
    inv_scale: f32,
    report: *mut HsNonFinite,
) -> HsStatus {
    guarded(|| {
        // SAFETY: the caller's contract; `bf16` is `repr(transparent)` over `u16`.
        let (grads, report) = unsafe { (slice_mut(grads.cast::<bf16>(), n)?, write(report)?) };
        *report = unscale_and_check_bf16(grads, inv_scale).into();
        Ok(())
    })
}
