//! The thin layer over `cust` 0.3.2 (feature `cuda`): driver checks, one context and stream, the
//! embedded PTX modules, RAII device buffers and kernel launches, each returning [`Result`].
//!
//! Ordering: the stream is created blocking (`StreamFlags::DEFAULT`), so the synchronous copies
//! ([`DBuf::write`], [`DBuf::read`], issued on the legacy default stream) are ordered after every
//! kernel launched before them; kernel launches return at once.

use crate::args::{blocks_1d, param_pointers, BLOCK_1D};
use crate::error::{GpuError, Result};
use crate::ptx::{MIN_DRIVER_VERSION, MODULES};
use crate::types::DeviceInfo;
use cust::context::Context;
use cust::device::{Device, DeviceAttribute};
use cust::memory::{DeviceBuffer, DeviceCopy};
use cust::module::Module;
use cust::stream::{Stream, StreamFlags};
use cust::sys;
use std::collections::HashMap;
use std::ffi::c_void;

fn driver(context: &'static str) -> impl FnOnce(cust::error::CudaError) -> GpuError {
    move |e| GpuError::Driver {
        context,
        message: e.to_string(),
    }
}

fn check(context: &'static str, r: sys::CUresult) -> Result<()> {
    if r == sys::CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(GpuError::Driver {
            context,
            message: format!("CUresult {}", r as i32),
        })
    }
}

/// `cuDriverGetVersion`, before anything else: a missing or too old driver gives a clear error
/// (cust reports a PTX ISA the driver cannot JIT only as "unknown error").
pub fn driver_version() -> Result<i32> {
    let mut v = 0i32;
    // SAFETY: writes one int.
    let r = unsafe { sys::cuDriverGetVersion(&mut v) };
    if r != sys::CUresult::CUDA_SUCCESS {
        return Err(GpuError::NoDevice {
            message: format!(
                "cuDriverGetVersion failed (CUresult {}): no usable NVIDIA driver",
                r as i32
            ),
        });
    }
    if v < MIN_DRIVER_VERSION {
        return Err(GpuError::DriverTooOld {
            found: v,
            needed: MIN_DRIVER_VERSION,
        });
    }
    Ok(v)
}

fn init_device() -> Result<(Device, DeviceInfo)> {
    let driver_version = driver_version()?;
    cust::init(cust::CudaFlags::empty()).map_err(|e| GpuError::NoDevice {
        message: format!("cuInit: {e}"),
    })?;
    let count = Device::num_devices().map_err(driver("cuDeviceGetCount"))?;
    if count == 0 {
        return Err(GpuError::NoDevice {
            message: "the driver reports no device".into(),
        });
    }
    let device = Device::get_device(0).map_err(driver("cuDeviceGet"))?;
    let attr = |a| {
        device
            .get_attribute(a)
            .map_err(driver("cuDeviceGetAttribute"))
    };
    let info = DeviceInfo {
        name: device.name().map_err(driver("cuDeviceGetName"))?,
        driver_version,
        compute_capability: (
            attr(DeviceAttribute::ComputeCapabilityMajor)?,
            attr(DeviceAttribute::ComputeCapabilityMinor)?,
        ),
        memory_bytes: device.total_memory().map_err(driver("cuDeviceTotalMem"))?,
    };
    Ok((device, info))
}

/// Device 0, if the driver is recent enough and a device is present (no context is created).
pub fn probe() -> Result<DeviceInfo> {
    init_device().map(|(_, info)| info)
}

pub use crate::args::{Arg, NULL};

/// A device buffer of `T` (freed on drop).
#[derive(Debug)]
pub struct DBuf<T: DeviceCopy> {
    buf: DeviceBuffer<T>,
}

impl<T: DeviceCopy> DBuf<T> {
    /// Elements.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.buf.len() == 0
    }

    /// The device address of element `offset`.
    pub fn at(&self, offset: usize) -> Arg {
        assert!(offset <= self.len(), "DBuf::at: offset out of range");
        Arg::Ptr(self.buf.as_device_ptr().as_raw() + (offset * std::mem::size_of::<T>()) as u64)
    }

    /// The device address of element 0.
    pub fn ptr(&self) -> Arg {
        self.at(0)
    }

    /// Copies `data` to elements `offset..offset + data.len()` (synchronous, ordered after
    /// earlier launches).
    pub fn write_at(&mut self, offset: usize, data: &[T]) -> Result<()> {
        assert!(
            offset + data.len() <= self.len(),
            "DBuf::write_at: out of range"
        );
        if data.is_empty() {
            return Ok(());
        }
        let Arg::Ptr(dst) = self.at(offset) else {
            unreachable!()
        };
        // SAFETY: the range was checked to lie inside the allocation; `data` is a host slice.
        let r = unsafe {
            sys::cuMemcpyHtoD_v2(
                dst,
                data.as_ptr().cast::<c_void>(),
                std::mem::size_of_val(data),
            )
        };
        check("cuMemcpyHtoD", r)
    }

    /// Copies `data` to the start of the buffer.
    pub fn write(&mut self, data: &[T]) -> Result<()> {
        self.write_at(0, data)
    }

    /// Copies the first `out.len()` elements to `out` (waits for earlier launches).
    pub fn read(&self, out: &mut [T]) -> Result<()> {
        assert!(out.len() <= self.len(), "DBuf::read: out of range");
        if out.is_empty() {
            return Ok(());
        }
        let Arg::Ptr(src) = self.ptr() else {
            unreachable!()
        };
        // SAFETY: the range was checked to lie inside the allocation; `out` is a host slice.
        let r = unsafe {
            sys::cuMemcpyDtoH_v2(
                out.as_mut_ptr().cast::<c_void>(),
                src,
                std::mem::size_of_val(out),
            )
        };
        check("cuMemcpyDtoH", r)
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

/// The context, stream and loaded kernels of device 0.
#[derive(Debug)]
pub struct Gpu {
    info: DeviceInfo,
    functions: HashMap<&'static str, sys::CUfunction>,
    // Field order is drop order: the modules and the stream go before the context.
    _modules: Vec<Module>,
    stream: Stream,
    _context: Context,
}

impl Gpu {
    /// Checks the driver, creates the context and a stream on device 0 and loads every PTX module.
    pub fn new() -> Result<Self> {
        let (device, info) = init_device()?;
        let context = Context::new(device).map_err(driver("creating the context"))?;
        let stream =
            Stream::new(StreamFlags::DEFAULT, None).map_err(driver("creating a stream"))?;
        let mut modules = Vec::new();
        let mut functions = HashMap::new();
        for m in MODULES {
            let module = Module::from_ptx(m.ptx, &[]).map_err(|e| GpuError::Load {
                module: m.name,
                message: e.to_string(),
            })?;
            for &k in m.kernels {
                let f = module.get_function(k).map_err(|e| GpuError::Load {
                    module: m.name,
                    message: format!("kernel {k}: {e}"),
                })?;
                functions.insert(k, f.to_raw());
            }
            modules.push(module);
        }
        Ok(Self {
            info,
            functions,
            _modules: modules,
            stream,
            _context: context,
        })
    }

    /// The device.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// A buffer of `len` default (zero) elements.
    pub fn alloc<T: DeviceCopy + Default + Clone>(&self, len: usize) -> Result<DBuf<T>> {
        self.upload(&vec![T::default(); len.max(1)])
    }

    /// A buffer holding a copy of `data`.
    pub fn upload<T: DeviceCopy>(&self, data: &[T]) -> Result<DBuf<T>> {
        Ok(DBuf {
            buf: DeviceBuffer::from_slice(data).map_err(driver("cuMemAlloc/cuMemcpyHtoD"))?,
        })
    }

    /// Launches `kernel` on the stream (returns at once).
    pub fn launch(
        &self,
        kernel: &'static str,
        grid: (u32, u32),
        block: u32,
        shared: u32,
        args: &[Arg],
    ) -> Result<()> {
        let f = *self.functions.get(kernel).ok_or(GpuError::Launch {
            kernel,
            message: "no such kernel in the PTX modules".into(),
        })?;
        let mut vals: Vec<Arg> = args.to_vec();
        let mut ptrs = param_pointers(&mut vals);
        // SAFETY: `f` comes from a loaded module that lives as long as `self`; `ptrs` point into
        // `vals`, alive for the call (the driver copies the parameters at launch); the kernels'
        // parameter lists are the ones the callers in this crate pass (checked by the GPU tests).
        let r = unsafe {
            sys::cuLaunchKernel(
                f,
                grid.0.max(1),
                grid.1.max(1),
                1,
                block.max(1),
                1,
                1,
                shared,
                self.stream.as_inner(),
                ptrs.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        };
        if r == sys::CUresult::CUDA_SUCCESS {
            Ok(())
        } else {
            Err(GpuError::Launch {
                kernel,
                message: format!("CUresult {}", r as i32),
            })
        }
    }

    /// Launches a 1-D grid-stride kernel over `len` elements (256 threads a block).
    pub fn launch_1d(&self, kernel: &'static str, len: usize, args: &[Arg]) -> Result<()> {
        self.launch(kernel, (blocks_1d(len), 1), BLOCK_1D, 0, args)
    }

    /// Waits for everything launched so far.
    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(driver("cuStreamSynchronize"))
    }
}
