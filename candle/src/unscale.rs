//! One fused unscale + non-finite check per gradient tensor, in place, through halfscale-core's
//! kernels.
//!
//! PyTorch's `_amp_foreach_non_finite_check_and_unscale_` (CPU `AmpGradScalerKernels.cpp`, CUDA
//! `AmpKernels.cu`) computes in `opmath_t` (f32) for every gradient dtype:
//! `static_cast<scalar_t>(inv_scale == 1.f ? val : float(val) * inv_scale)`, flagging any
//! non-finite `val`. halfscale-core has that kernel for f32 ([`unscale_and_check`]), f16
//! ([`unscale_and_check_f16`]) and bf16 ([`unscale_and_check_bf16`]): each element is read,
//! checked, multiplied and written back once.
//!
//! The tensor is changed through candle's [`InplaceOp1`], i.e. under the storage's write lock:
//! no copy, no new tensor, the `GradStore` keeps the same `Tensor`.

use crate::error::AdapterError;
use candle_core::{CpuStorage, DType, InplaceOp1, Layout, Result, Tensor};
use halfscale_core::scaler::{
    unscale_and_check, unscale_and_check_bf16, unscale_and_check_f16, NonFiniteReport,
};
use std::cell::Cell;

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
            CpuStorage::F16(v) => unscale_and_check_f16(&mut v[start..end], self.inv_scale),
            CpuStorage::BF16(v) => unscale_and_check_bf16(&mut v[start..end], self.inv_scale),
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
