//! The fate census of a buffer at a scale: how many of `x * scale` would be stored exactly,
//! rounded, as subnormals, flushed to zero or overflow in binary16/bfloat16 (nearest-even).

use halfscale_core::census;
use halfscale_core::format::Format;
use halfscale_core::half::{bf16, f16};

use crate::guard::{guarded, slice, write};
use crate::status::HsStatus;

/// Counts per fate of `values[i] * scale` (product exact) stored in a 16-bit format.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HsCensus {
    /// Zero before and after.
    pub zero: u64,
    /// Normal, stored exactly.
    pub exact: u64,
    /// Normal, rounded.
    pub rounded: u64,
    /// Non-zero subnormal results, exact or not.
    pub subnormal: u64,
    /// Of `subnormal`, those that lost bits.
    pub subnormal_inexact: u64,
    /// Non-zero values that became zero.
    pub flushed_to_zero: u64,
    /// Finite values that became inf.
    pub overflow: u64,
    /// NaN inputs (or inf * 0).
    pub nan: u64,
    /// Infinite inputs.
    pub inf: u64,
    /// Largest finite |x| (unscaled); 0 when there is none.
    pub max_abs: f64,
    /// Smallest non-zero finite |x| (unscaled); +inf when there is none.
    pub min_nonzero_abs: f64,
}

unsafe fn run<F: Format>(values: *const f32, n: usize, scale: f32, out: *mut HsCensus) -> HsStatus {
    guarded(|| {
        // SAFETY: the caller's contract.
        let (values, out) = unsafe { (slice(values, n)?, write(out)?) };
        let c = census::<F>(values, scale);
        *out = HsCensus {
            zero: c.zero,
            exact: c.exact,
            rounded: c.rounded,
            subnormal: c.subnormal,
            subnormal_inexact: c.subnormal_inexact,
            flushed_to_zero: c.flushed_to_zero,
            overflow: c.overflow,
            nan: c.nan,
            inf: c.inf,
            max_abs: c.max_abs,
            min_nonzero_abs: c.min_nonzero_abs,
        };
        Ok(())
    })
}

/// The census of `values[0..n] * scale` stored in binary16.
///
/// # Safety
/// `values` readable for `n` floats (NULL only with `n == 0`); `out` NULL (an error) or writable.
#[no_mangle]
pub unsafe extern "C" fn hs_census_f16(
    values: *const f32,
    n: usize,
    scale: f32,
    out: *mut HsCensus,
) -> HsStatus {
    // SAFETY: forwarded contract.
    unsafe { run::<f16>(values, n, scale, out) }
}

/// The census of `values[0..n] * scale` stored in bfloat16.
///
/// # Safety
/// As [`hs_census_f16`].
#[no_mangle]
pub unsafe extern "C" fn hs_census_bf16(
    values: *const f32,
    n: usize,
    scale: f32,
    out: *mut HsCensus,
) -> HsStatus {
    // SAFETY: forwarded contract.
    unsafe { run::<bf16>(values, n, scale, out) }
}
