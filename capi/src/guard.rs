//! The checks every entry point makes before it touches caller memory, and the panic guard.

use core::mem::size_of;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::status::{
    HsStatus, HS_ERR_INTERNAL, HS_ERR_INVALID_BUFFER, HS_ERR_NULL_POINTER,
    HS_ERR_OVERLAPPING_BUFFERS, HS_OK,
};

/// Runs `body`, turning a panic into `HS_ERR_INTERNAL` so that none crosses the boundary.
pub(crate) fn guarded(body: impl FnOnce() -> Result<(), HsStatus>) -> HsStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => HS_OK,
        Ok(Err(status)) => status,
        Err(_) => HS_ERR_INTERNAL,
    }
}

/// The same for a call that returns a value; `fallback` on a panic.
pub(crate) fn guarded_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// `ptr` as a reference, or `HS_ERR_NULL_POINTER`.
///
/// # Safety
/// A non-null `ptr` must point to a valid, initialised `T` for `'a`, not mutated meanwhile.
pub(crate) unsafe fn read<'a, T>(ptr: *const T) -> Result<&'a T, HsStatus> {
    // SAFETY: the caller guarantees a non-null ptr is valid; `as_ref` handles null.
    unsafe { ptr.as_ref() }.ok_or(HS_ERR_NULL_POINTER)
}

/// `ptr` as a mutable reference, or `HS_ERR_NULL_POINTER`.
///
/// # Safety
/// A non-null `ptr` must point to a valid `T` for `'a`, not accessed through another path
/// meanwhile.
pub(crate) unsafe fn write<'a, T>(ptr: *mut T) -> Result<&'a mut T, HsStatus> {
    // SAFETY: as for `read`.
    unsafe { ptr.as_mut() }.ok_or(HS_ERR_NULL_POINTER)
}

/// Checks a buffer's pointer and length: NULL is allowed only with `n == 0`; the pointer must be
/// aligned and `n` elements must fit in `isize::MAX` bytes (what `slice::from_raw_parts` needs).
fn check_buffer<T>(ptr: *const T, n: usize) -> Result<(), HsStatus> {
    if ptr.is_null() {
        return if n == 0 {
            Ok(())
        } else {
            Err(HS_ERR_NULL_POINTER)
        };
    }
    if !ptr.is_aligned() || n > isize::MAX as usize / size_of::<T>().max(1) {
        return Err(HS_ERR_INVALID_BUFFER);
    }
    Ok(())
}

/// `n` elements at `ptr` as a slice (empty for `NULL, 0`).
///
/// # Safety
/// A non-null `ptr` must point to `n` initialised `T`s, valid and not mutated for `'a`.
pub(crate) unsafe fn slice<'a, T>(ptr: *const T, n: usize) -> Result<&'a [T], HsStatus> {
    check_buffer(ptr, n)?;
    if n == 0 {
        return Ok(&[]);
    }
    // SAFETY: non-null, aligned, size checked above; validity is the caller's contract.
    Ok(unsafe { core::slice::from_raw_parts(ptr, n) })
}

/// `n` elements at `ptr` as a mutable slice (empty for `NULL, 0`).
///
/// # Safety
/// A non-null `ptr` must point to `n` initialised `T`s, valid and not otherwise accessed for `'a`.
pub(crate) unsafe fn slice_mut<'a, T>(ptr: *mut T, n: usize) -> Result<&'a mut [T], HsStatus> {
    check_buffer(ptr, n)?;
    if n == 0 {
        return Ok(&mut []);
    }
    // SAFETY: as for `slice`, and the caller gives exclusive access.
    Ok(unsafe { core::slice::from_raw_parts_mut(ptr, n) })
}

/// Refuses two buffers whose byte ranges overlap (a `&` and a `&mut` to the same memory would be
/// undefined behaviour in Rust).
pub(crate) fn disjoint<S, D>(
    src: *const S,
    n_src: usize,
    dst: *const D,
    n_dst: usize,
) -> Result<(), HsStatus> {
    let (a, b) = (src as usize, dst as usize);
    let a_end = a.saturating_add(n_src.saturating_mul(size_of::<S>()));
    let b_end = b.saturating_add(n_dst.saturating_mul(size_of::<D>()));
    if n_src == 0 || n_dst == 0 || a_end <= b || b_end <= a {
        Ok(())
    } else {
        Err(HS_ERR_OVERLAPPING_BUFFERS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_status_not_an_unwind() {
        assert_eq!(guarded(|| panic!("a bug")), HS_ERR_INTERNAL);
        assert_eq!(guarded_value(-1, || -> i32 { panic!("a bug") }), -1);
        assert_eq!(guarded(|| Err(HS_ERR_NULL_POINTER)), HS_ERR_NULL_POINTER);
    }

    #[test]
    fn buffers_are_checked_before_use() {
        let v = [1.0f32; 4];
        let p = v.as_ptr();
        // SAFETY: valid pointers, or ones refused before any dereference.
        unsafe {
            assert_eq!(slice(p, 4).unwrap().len(), 4);
            assert_eq!(slice::<f32>(core::ptr::null(), 0).unwrap().len(), 0);
            assert_eq!(slice::<f32>(core::ptr::null(), 1), Err(HS_ERR_NULL_POINTER));
            let odd = p.cast::<u8>().add(1).cast::<f32>();
            assert_eq!(slice(odd, 1), Err(HS_ERR_INVALID_BUFFER));
            assert_eq!(slice(p, usize::MAX / 2), Err(HS_ERR_INVALID_BUFFER));
        }
        assert_eq!(
            disjoint(p, 4, p.cast::<u16>(), 8),
            Err(HS_ERR_OVERLAPPING_BUFFERS)
        );
        assert_eq!(disjoint(p, 2, p.wrapping_add(2), 2), Ok(()));
    }
}
