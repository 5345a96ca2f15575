//! Kernel arguments as both drivers pass them (cuLaunchKernel's and the host emulation's
//! `kernelParams`: one pointer per parameter, to its value), and the 1-D launch shape.

use std::ffi::c_void;

/// A kernel argument.
#[derive(Clone, Copy, Debug)]
pub enum Arg {
    /// A device address (0 for a null pointer).
    Ptr(u64),
    I32(i32),
    U32(u32),
    F32(f32),
    F64(f64),
}

/// A null device pointer argument.
pub const NULL: Arg = Arg::Ptr(0);

/// Pointers to each value in `vals`, in order: the `kernelParams` array of a launch (valid while
/// `vals` is).
pub(crate) fn param_pointers(vals: &mut [Arg]) -> Vec<*mut c_void> {
    vals.iter_mut()
        .map(|a| match a {
            Arg::Ptr(v) => (v as *mut u64).cast::<c_void>(),
            Arg::I32(v) => (v as *mut i32).cast::<c_void>(),
            Arg::U32(v) => (v as *mut u32).cast::<c_void>(),
            Arg::F32(v) => (v as *mut f32).cast::<c_void>(),
            Arg::F64(v) => (v as *mut f64).cast::<c_void>(),
        })
        .collect()
}

/// Threads a block of a 1-D grid-stride launch.
pub(crate) const BLOCK_1D: u32 = 256;

/// Blocks of a 1-D grid-stride launch over `len` elements (at most 8192: the kernels stride).
pub(crate) fn blocks_1d(len: usize) -> u32 {
    len.div_ceil(BLOCK_1D as usize).clamp(1, 8192) as u32
}
