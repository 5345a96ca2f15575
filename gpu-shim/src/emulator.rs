//! The driver API of [`crate::driver`] on the host (feature `emulate`, without `cuda`): the same
//! kernels, compiled from `kernels/*.cu` as C++ through `emulator/cuda_host.h`, run on the CPU,
//! a block at a time, its threads as coroutines that switch at `__syncthreads`. So the whole
//! backend (buffers, launch order, arguments, kernel code) runs in CI without a GPU; only what is
//! the GPU's own (CUDA's `expf`/`logf`, real concurrency, the driver) is not exercised.
//!
//! "Device" memory is host memory; a launch runs to completion before it returns, so every copy
//! is ordered after it, as on the blocking stream of the real driver.

use crate::args::{blocks_1d, param_pointers, BLOCK_1D};
use crate::error::{GpuError, Result};
use crate::types::DeviceInfo;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ffi::{c_char, c_int, c_uint, c_void, CString};
use std::marker::PhantomData;
use std::ptr::NonNull;

extern "C" {
    fn hs_emu_launch(
        name: *const c_char,
        gx: c_uint,
        gy: c_uint,
        bx: c_uint,
        shared: c_uint,
        args: *mut *mut c_void,
    ) -> c_int;
}

/// Plain values a kernel may read and write (cust's `DeviceCopy`).
pub trait DeviceCopy: Copy + 'static {}
impl DeviceCopy for u8 {}
impl DeviceCopy for u16 {}
impl DeviceCopy for u32 {}
impl DeviceCopy for u64 {}
impl DeviceCopy for i32 {}
impl DeviceCopy for f32 {}
impl DeviceCopy for f64 {}

/// What the emulation reports as its device.
fn info() -> DeviceInfo {
    DeviceInfo {
        name: "host emulation of the CUDA kernels (CPU)".into(),
        driver_version: crate::ptx::MIN_DRIVER_VERSION,
        compute_capability: (0, 0),
        memory_bytes: 0,
    }
}

/// The emulation's driver version: the minimum the PTX needs (there is no driver).
pub fn driver_version() -> Result<i32> {
    Ok(crate::ptx::MIN_DRIVER_VERSION)
}

/// Always the host emulation.
pub fn probe() -> Result<DeviceInfo> {
    Ok(info())
}

pub use crate::args::{Arg, NULL};

/// A "device" buffer of `T`: zeroed host memory the kernels address directly (freed on drop).
#[derive(Debug)]
pub struct DBuf<T: DeviceCopy> {
    ptr: NonNull<T>,
    len: usize,
    _owns: PhantomData<T>,
}

// SAFETY: the buffer owns its allocation like a Box<[T]>; T is plain data.
unsafe impl<T: DeviceCopy + Send> Send for DBuf<T> {}
// SAFETY: shared access only reads (writes take &mut self, or go through a launch).
unsafe impl<T: DeviceCopy + Sync> Sync for DBuf<T> {}

impl<T: DeviceCopy> DBuf<T> {
    fn layout(len: usize) -> Layout {
        Layout::array::<T>(len.max(1)).expect("buffer size overflows")
    }

    fn zeroed(len: usize) -> Result<Self> {
        // SAFETY: the layout has a non-zero size; zero bytes are a valid value of every DeviceCopy.
        let raw = unsafe { alloc_zeroed(Self::layout(len)) }.cast::<T>();
        let ptr = NonNull::new(raw).ok_or_else(|| GpuError::Driver {
            context: "host allocation",
            message: format!("{len} elements"),
        })?;
        Ok(Self {
            ptr,
            len,
            _owns: PhantomData,
        })
    }

    /// Elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address of element `offset`.
    pub fn at(&self, offset: usize) -> Arg {
        assert!(offset <= self.len(), "DBuf::at: offset out of range");
        Arg::Ptr(self.ptr.as_ptr() as u64 + (offset * std::mem::size_of::<T>()) as u64)
    }

    /// The address of element 0.
    pub fn ptr(&self) -> Arg {
        self.at(0)
    }

    /// Copies `data` to elements `offset..offset + data.len()`.
    pub fn write_at(&mut self, offset: usize, data: &[T]) -> Result<()> {
        assert!(
            offset + data.len() <= self.len(),
            "DBuf::write_at: out of range"
        );
        // SAFETY: the range lies inside the allocation (checked); `data` does not overlap it.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(offset), data.len())
        };
        Ok(())
    }

    /// Copies `data` to the start of the buffer.
    pub fn write(&mut self, data: &[T]) -> Result<()> {
        self.write_at(0, data)
    }

    /// Copies the first `out.len()` elements out.
    pub fn read(&self, out: &mut [T]) -> Result<()> {
        assert!(out.len() <= self.len(), "DBuf::read: out of range");
        // SAFETY: the range lies inside the allocation (checked); `out` is a distinct host slice.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), out.as_mut_ptr(), out.len()) };
        Ok(())
    }
}

impl<T: DeviceCopy + Default + Clone> DBuf<T> {
    /// The first `len` elements as a vector.
    pub fn to_vec(&self, len: usize) -> Result<Vec<T>> {
        let mut v = vec![T::default(); len];
        self.read(&mut v)?;
        Ok(v)
    }
}

impl<T: DeviceCopy> Drop for DBuf<T> {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this layout, freed once.
        unsafe { dealloc(self.ptr.as_ptr().cast::<u8>(), Self::layout(self.len)) };
    }
}

/// The emulated device.
#[derive(Debug)]
pub struct Gpu {
    info: DeviceInfo,
}

impl Gpu {
    /// The host emulation (always available).
    pub fn new() -> Result<Self> {
        Ok(Self { info: info() })
    }

    /// What this device is.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// A buffer of `len` default (zero) elements.
    pub fn alloc<T: DeviceCopy + Default + Clone>(&self, len: usize) -> Result<DBuf<T>> {
        DBuf::zeroed(len.max(1))
    }

    /// A buffer holding a copy of `data`.
    pub fn upload<T: DeviceCopy>(&self, data: &[T]) -> Result<DBuf<T>> {
        let mut b = DBuf::zeroed(data.len())?;
        b.write_at(0, data)?;
        Ok(b)
    }

    /// Runs `kernel` to completion on the host.
    pub fn launch(
        &self,
        kernel: &'static str,
        grid: (u32, u32),
        block: u32,
        shared: u32,
        args: &[Arg],
    ) -> Result<()> {
        let name = CString::new(kernel).expect("kernel names have no NUL");
        let mut vals: Vec<Arg> = args.to_vec();
        let mut ptrs = param_pointers(&mut vals);
        // SAFETY: `ptrs` point into `vals`, alive for the call; the pointers among them address
        // live DBufs of this crate; the kernels' parameter lists are the ones the callers pass
        // (the same contract as cuLaunchKernel).
        let r = unsafe {
            hs_emu_launch(
                name.as_ptr(),
                grid.0.max(1),
                grid.1.max(1),
                block.max(1),
                shared,
                ptrs.as_mut_ptr(),
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(GpuError::Launch {
                kernel,
                message: "no such kernel in the emulation".into(),
            })
        }
    }

    /// Launches a 1-D grid-stride kernel over `len` elements (256 threads a block).
    pub fn launch_1d(&self, kernel: &'static str, len: usize, args: &[Arg]) -> Result<()> {
        self.launch(kernel, (blocks_1d(len), 1), BLOCK_1D, 0, args)
    }

    /// Nothing to wait for: launches run to completion.
    pub fn synchronize(&self) -> Result<()> {
        Ok(())
    }
}
