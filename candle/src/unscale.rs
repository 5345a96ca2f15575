//! One fused unscale + non-finite check per gradient tensor, in place, through halfscale-core's
//! kernel.
//!
//! PyTorch's `_amp_foreach_non_finite_check_and_unscale_` (CPU `AmpGradScalerKernels.cpp`, CUDA
//! `AmpKernels.cu`) computes in `opmath_t` (f32) for every gradient dtype:
//! `static_cast<scalar_t>(inv_scale == 1.f ? val : float(val) * inv_scale)`, flagging any
//! non-finite `val`. For f32 that is [`unscale_and_check`] itself; for f16 and bf16 the values are
//! widened exactly to f32 a stack chunk at a time, run through the same kernel, and rounded back
//! to nearest-even (the `static_cast`), so each element is read and written once and the chunk
//! never leaves the L1 cache. When `inv_scale == 1` nothing is written back, as in the kernel.
//!
//! The tensor is changed through candle's [`InplaceOp1`], i.e. under the storage's write lock:
//! no copy, no new tensor, the `GradStore` keeps the same `Tensor`.

use crate::error::AdapterError;
use candle_core::{CpuStorage, DType, InplaceOp1, Layout, Result, Tensor};
use half::slice::HalfFloatSliceExt;
use halfscale_core::scaler::{unscale_and_check, NonFiniteReport};
use std::cell::Cell;

/// Elements widened to f32 at a time for f16/bf16 gradients (1 KiB of stack).
const CHUNK: usize = 256;

/// Unscales `grad` in place by `inv_scale` and checks it for NaN and inf, in one pass (see the
/// module docs for the per-dtype rule). The report's indices are flat positions in `grad`.
///
/// Errors: a dtype other than f32/f16/bf16, a non-CPU tensor, or a non-contiguous layout
/// (make it [`contiguous`](Tensor::contiguous) first; gradients from `backward()` always are).
pub fn unscale_grad(grad: &Tensor, inv_scale: f32) -> Result<NonFiniteReport> {
    match grad.dtype() {
        DType::F32 | DType::F16 | DType::BF16 => {}
        dtype => return Err(AdapterError::UnsupportedGradDtype { dtype }.into()),
    }
    if !grad.device().is_cpu() {
        let device = if grad.device().is_cuda() {
            "cuda"
        } else {
            "metal"
        };
        return Err(AdapterError::UnsupportedDevice { device }.into());
    }
    if !grad.is_contiguous() {
        return Err(AdapterError::NonContiguousGradient {
            shape: grad.dims().to_vec(),
        }
        .into());
    }
    let op = UnscaleInPlace {
        inv_scale,
        report: Cell::new(NonFiniteReport::default()),
    };
    grad.inplace_op1(&op)?;
    Ok(op.report.get())
}

/// The in-place op: `inv_scale` in, the report out (candle hands the op `&self`).
struct UnscaleInPlace {
    inv_scale: f32,
    report: Cell<NonFiniteReport>,
}

impl InplaceOp1 for UnscaleInPlace {
    fn name(&self) -> &'static str {
        "halfscale-unscale"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            return Err(AdapterError::NonContiguousGradient {
                shape: layout.dims().to_vec(),
            }
            .into());
        };
        let report = match storage {
            CpuStorage::F32(v) => unscale_and_check(&mut v[start..end], self.inv_scale),
            CpuStorage::F16(v) => unscale_narrow(&mut v[start..end], self.inv_scale),
            CpuStorage::BF16(v) => unscale_narrow(&mut v[start..end], self.inv_scale),
            _ => {
                return Err(AdapterError::UnsupportedGradDtype {
                    dtype: candle_core::backend::BackendStorage::dtype(storage),
                }
                .into())
            }
        };
        self.report.set(report);
        Ok(())
    }
}

/// The f16/bf16 kernel: widen a chunk exactly, run halfscale-core's f32 kernel on it, round it
/// back to nearest-even (only when it changed: `inv_scale != 1`).
fn unscale_narrow<T>(grads: &mut [T], inv_scale: f32) -> NonFiniteReport
where
    [T]: HalfFloatSliceExt,
{
    let mut wide = [0.0f32; CHUNK];
    let mut report = NonFiniteReport::default();
    for chunk in grads.chunks_mut(CHUNK) {
        let wide = &mut wide[..chunk.len()];
        chunk.convert_to_f32_slice(wide);
        let found = unscale_and_check(wide, inv_scale);
        if inv_scale != 1.0 {
            chunk.convert_from_f32_slice(wide);
        }
        report = report.merge(found);
    }
    report
}
