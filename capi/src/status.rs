//! Status codes: `HS_OK` or what went wrong, each with a message.

use core::ffi::c_char;

/// The result of every fallible call: `HS_OK` (0) or one of the `HS_ERR_*` codes.
pub type HsStatus = i32;

/// Success.
pub const HS_OK: HsStatus = 0;
/// A required pointer argument was NULL.
pub const HS_ERR_NULL_POINTER: HsStatus = 1;
/// An enumeration argument (rounding mode, tininess, NaN style, found, policy) is out of range.
pub const HS_ERR_INVALID_ARGUMENT: HsStatus = 2;
/// A buffer pointer is misaligned for its element type, or its length overflows the address space.
pub const HS_ERR_INVALID_BUFFER: HsStatus = 3;
/// Source and destination buffers overlap.
pub const HS_ERR_OVERLAPPING_BUFFERS: HsStatus = 4;
/// The scaler configuration is invalid (growth_factor <= 1, backoff_factor outside (0, 1),
/// growth_interval < 1, init_scale not finite and > 0 in the scale's precision, bad bounds).
pub const HS_ERR_INVALID_CONFIG: HsStatus = 5;
/// A NaN gradient was reported and the configuration's NaN policy is `HS_NAN_IS_ERROR`; the
/// scaler is unchanged.
pub const HS_ERR_NAN_GRADIENT: HsStatus = 6;
/// An overflow at the floor with `HS_FLOOR_ERROR`; the scaler is unchanged.
pub const HS_ERR_SCALE_AT_FLOOR: HsStatus = 7;
/// A Rust panic was caught at the boundary (a bug in halfscale; please report it).
pub const HS_ERR_INTERNAL: HsStatus = 8;

/// A static, NUL-terminated English message for a status; never NULL (unknown codes get
/// "unknown halfscale status"). The caller must not free it.
#[no_mangle]
pub extern "C" fn hs_status_message(status: HsStatus) -> *const c_char {
    let message: &'static core::ffi::CStr = match status {
        HS_OK => c"ok",
        HS_ERR_NULL_POINTER => c"a required pointer argument is NULL",
        HS_ERR_INVALID_ARGUMENT => c"an enumeration argument is out of range",
        HS_ERR_INVALID_BUFFER => {
            c"a buffer is misaligned for its element type or too long for the address space"
        }
        HS_ERR_OVERLAPPING_BUFFERS => c"source and destination buffers overlap",
        HS_ERR_INVALID_CONFIG => c"invalid scaler configuration",
        HS_ERR_NAN_GRADIENT => c"NaN gradient (nan policy: error); the scaler is unchanged",
        HS_ERR_SCALE_AT_FLOOR => {
            c"loss scale already at its minimum - cannot decrease scale anymore"
        }
        HS_ERR_INTERNAL => c"internal error: a panic was caught at the C boundary",
        _ => c"unknown halfscale status",
    };
    message.as_ptr()
}
