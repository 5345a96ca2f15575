//! The in-place unscale of f32, f16 and bf16 gradient tensors, against halfscale-core's
//! bit-exact soft-float arithmetic (not `half`, which the kernels use to widen and narrow):
//! every one of the 65,536 f16 and bf16 values, at scales that are exact, inexact, underflowing
//! and overflowing, must come out as `f16(f32(x) * inv)` with one nearest-even rounding per
//! operation, as PyTorch's `_amp_foreach_non_finite_check_and_unscale_` computes it.

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Optimizer, SGD};
use halfscale_candle::{unscale_grad, GradScaler};
use halfscale_core::half::{bf16, f16};
use halfscale_core::scaler::{NonFiniteReport, ScalerConfig};
use halfscale_core::{convert, mul, Format, FpEnv, RoundingMode};

type R<T = ()> = candle_core::Result<T>;

const INV_SCALES: [f32; 6] = [
    1.0,            // the kernel leaves the values alone
    1.0 / 65536.0,  // PyTorch's first scale: exact unless the result is subnormal in f16
    1.0 / 3.0,      // a non-power-of-two scale: two roundings, f32 then f16
    5.960_464_5e-8, // 2^-24: most results underflow to subnormals or zero
    1024.0,         // a scale below 1: results overflow to inf
    f32::INFINITY,  // a scale of 0: every finite non-zero value becomes inf
];

/// PyTorch's per-element rule, through halfscale-core's soft float: `x` unchanged when
/// `inv == 1`, else `narrow(widen(x) * inv)`, each operation rounded to nearest-even.
fn expected<F: Format>(x: F, inv: f32) -> F {
    if inv == 1.0 {
        return x;
    }
    let mut env = FpEnv::new(RoundingMode::NearestEven);
    let wide: f32 = convert(x, &mut env);
    let product: f32 = mul(wide, inv, &mut env);
    convert(product, &mut env)
}

/// The report a correct check gives for `values` (positions are indices).
fn expected_report(
    is_nan: impl Fn(usize) -> bool,
    is_inf: impl Fn(usize) -> bool,
    n: usize,
) -> NonFiniteReport {
    let mut r = NonFiniteReport {
        len: n,
        ..NonFiniteReport::default()
    };
    for i in 0..n {
        if is_nan(i) {
            r.nan += 1;
            r.first_nan.get_or_insert(i);
        } else if is_inf(i) {
            r.inf += 1;
            r.first_inf.get_or_insert(i);
        }
    }
    r
}

#[test]
fn every_f16_value_unscales_as_pytorchs_kernel() -> R {
    let all: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
    for inv in INV_SCALES {
        let t = Tensor::from_vec(all.clone(), all.len(), &Device::Cpu)?;
        let report = unscale_grad(&t, inv)?;
        assert_eq!(
            report,
            expected_report(|i| all[i].is_nan(), |i| all[i].is_infinite(), all.len()),
            "inv {inv}"
        );
        assert_eq!((report.nan, report.inf), (2046, 2));
        let got = t.to_vec1::<f16>()?;
        for (x, g) in all.iter().zip(&got) {
            let e = expected(*x, inv);
            if e.is_nan() {
                // c10's f32 -> Half store: the f32 NaN's sign | 0x7E00
                // (`fp16_ieee_from_fp32_value`); the product's sign is the hardware's.
                let product = x.to_f32() * inv;
                let c10 = ((product.to_bits() >> 16) & 0x8000) as u16 | 0x7e00;
                let want = if inv == 1.0 { x.to_bits() } else { c10 };
                assert_eq!(g.to_bits(), want, "inv {inv}: NaN {:#06x}", x.to_bits());
            } else {
                assert_eq!(g.to_bits(), e.to_bits(), "inv {inv}: {:#06x}", x.to_bits());
            }
        }
    }
    Ok(())
}

#[test]
fn every_bf16_value_unscales_as_pytorchs_kernel() -> R {
    let all: Vec<bf16> = (0..=u16::MAX).map(bf16::from_bits).collect();
    for inv in INV_SCALES {
        let t = Tensor::from_vec(all.clone(), all.len(), &Device::Cpu)?;
        let report = unscale_grad(&t, inv)?;
        assert_eq!(
            report,
            expected_report(|i| all[i].is_nan(), |i| all[i].is_infinite(), all.len()),
            "inv {inv}"
        );
        let got = t.to_vec1::<bf16>()?;
        for (x, g) in all.iter().zip(&got) {
            let e = expected(*x, inv);
            if e.is_nan() {
                // c10's f32 -> BFloat16 store: any NaN becomes 0x7FC0 (`round_to_nearest_even`).
                let want = if inv == 1.0 { x.to_bits() } else { 0x7fc0 };
                assert_eq!(g.to_bits(), want, "inv {inv}: NaN {:#06x}", x.to_bits());
            } else {
                assert_eq!(g.to_bits(), e.to_bits(), "inv {inv}: {:#06x}", x.to_bits());
            }
        }
    }
    Ok(())
}

#[test]
fn f32_gradients_unscale_in_place_with_positions() -> R {
    // Every f16 value widened, then a stride through all f32 exponents, in a 2-D tensor.
    let mut values: Vec<f32> = (0..=u16::MAX).map(|b| f16::from_bits(b).to_f32()).collect();
    values.extend((0..65536u32).map(|i| f32::from_bits(i.wrapping_mul(65537))));
    let n = values.len();
    for inv in INV_SCALES {
        let t = Tensor::from_vec(values.clone(), (2, n / 2), &Device::Cpu)?;
        let report = unscale_grad(&t, inv)?;
        assert_eq!(
            report,
            expected_report(|i| values[i].is_nan(), |i| values[i].is_infinite(), n)
        );
        let got = t.flatten_all()?.to_vec1::<f32>()?;
        for (x, g) in values.iter().zip(&got) {
            let e = expected(*x, inv);
            assert!(
                e.to_bits() == g.to_bits() || (e.is_nan() && g.is_nan()),
                "{x} * {inv}"
            );
        }
    }
    Ok(())
}

/// A view with an offset into a larger storage: only its own elements change.
#[test]
fn a_narrowed_gradient_changes_only_its_elements() -> R {
    let base = Tensor::new(&[2.0f32, 4.0, 8.0, 16.0, 32.0], &Device::Cpu)?;
    let view = base.narrow(0, 1, 3)?;
    let report = unscale_grad(&view, 0.5)?;
    assert_eq!(report.len, 3);
    assert_eq!(base.to_vec1::<f32>()?, [2.0, 2.0, 4.0, 8.0, 32.0]);
    Ok(())
}

#[test]
fn bad_gradients_are_typed_errors() -> R {
    let ints = Tensor::new(&[1u32, 2], &Device::Cpu)?;
    let err = unscale_grad(&ints, 0.5).expect_err("u32");
    assert!(err.to_string().contains("U32"), "{err}");
    let strided = Tensor::arange(0f32, 6.0, &Device::Cpu)?
        .reshape((2, 3))?
        .t()?;
    let err = unscale_grad(&strided, 0.5).expect_err("transposed");
    assert!(err.to_string().contains("not contiguous"), "{err}");
    Ok(())
}

/// `GradScaler::unscale` makes a non-contiguous gradient contiguous; `Optimizer::step` through a
/// shared store cannot, and says so.
#[test]
fn a_non_contiguous_gradient_is_made_contiguous_or_refused() -> R {
    let w = Var::zeros((3, 2), DType::F32, &Device::Cpu)?;
    let mut scaler = GradScaler::new(
        SGD::new(vec![w.clone()], 0.1)?,
        vec![w.clone()],
        ScalerConfig::pytorch(),
    )?;
    let scaled = Tensor::arange(0f32, 6.0, &Device::Cpu)?
        .affine(65536.0, 0.0)?
        .reshape((2, 3))?
        .t()?;
    let mut grads = GradStore::default();
    grads.insert(&w, scaled.clone());
    let err = Optimizer::step(&mut scaler, &grads).expect_err("shared store");
    assert!(err.to_string().contains("not contiguous"), "{err}");

    let report = scaler.unscale(&mut grads)?;
    assert_eq!(report.len, 6);
    let g = grads.get(&w).expect("grad");
    assert!(g.is_contiguous());
    assert_eq!(g.to_vec2::<f32>()?, [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]);
    Ok(())
}

/// A pure-f16 parameter (no master): its f16 gradient is unscaled in f16 and the step skipped
/// when it overflowed.
#[test]
fn f16_variables_are_scaled_and_checked() -> R {
    let w = Var::from_tensor(&Tensor::new(&[1.0f32, 2.0], &Device::Cpu)?.to_dtype(DType::F16)?)?;
    let mut scaler = GradScaler::new(
        SGD::new(vec![w.clone()], 0.25)?,
        vec![w.clone()],
        ScalerConfig::pytorch(),
    )?;
    // The loss in f32, as autocast computes it. d/dw sum(w * 0.5) = 0.5: scaled by 2^16 the
    // gradient reaching the f16 variable is 32768, fine in f16.
    let loss = (w.as_tensor().to_dtype(DType::F32)? * 0.5)?.sum_all()?;
    assert!(scaler.backward_step(&loss)?.is_stepped());
    assert_eq!(
        w.as_tensor().to_dtype(DType::F32)?.to_vec1::<f32>()?,
        [0.875, 1.875]
    );
    // d/dw sum(w * 4) = 4: times 2^16 overflows f16 (max 65504), the step is skipped.
    let loss = (w.as_tensor().to_dtype(DType::F32)? * 4.0)?.sum_all()?;
    assert!(!scaler.backward_step(&loss)?.is_stepped());
    assert_eq!(
        w.as_tensor().to_dtype(DType::F32)?.to_vec1::<f32>()?,
        [0.875, 1.875]
    );
    assert_eq!(scaler.scale(), 32768.0);
    Ok(())
}
