//! A few batches of the example's recipe (the seed's SimpleCNN, f16 compute, f32 masters,
//! `GradScaler` around AdamW) on the repository's MNIST: the loss falls, the masters stay f32
//! and move, and the model beats chance by far on held-out images. The full epoch is the
//! example (`cargo run --release -p halfscale-candle --example mnist`), not a test.

#[path = "../examples/mnist/simple_cnn.rs"]
mod simple_cnn;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use halfscale_candle::{GradScaler, MasterWeights};
use halfscale_core::scaler::{ScalerConfig, StepOutcome};
use halfscale_sim::dataset::{Dataset, Split, IMAGE_SIDE};
use simple_cnn::{Kernels, SimpleCnn};
use std::path::Path;

type R<T = ()> = candle_core::Result<T>;

fn batch(split: &Split, start: usize, n: usize, dtype: DType) -> R<(Tensor, Tensor)> {
    let (images, labels) = split.slice(start, start + n);
    let x = Tensor::from_slice(images, (n, 1, IMAGE_SIDE, IMAGE_SIDE), &Device::Cpu)?
        .to_dtype(dtype)?;
    let y = Tensor::from_vec(
        labels.iter().map(|&l| u32::from(l)).collect::<Vec<u32>>(),
        n,
        &Device::Cpu,
    )?;
    Ok((x, y))
}

#[test]
fn f16_training_with_masters_and_scaler_learns() -> R {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/MNIST/raw");
    let data = Dataset::load(&dir).map_err(candle_core::Error::wrap)?;
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    SimpleCnn::new(
        VarBuilder::from_varmap(&varmap, DType::F32, &dev),
        Kernels::Native,
    )?;
    let masters = MasterWeights::from_varmap(&varmap, DType::F16)?;
    assert_eq!(masters.vars().len(), 8);
    let fc2_before = varmap.data().lock().expect("lock")["fc2.weight"]
        .as_tensor()
        .copy()?;
    let adam = AdamW::new(
        masters.vars(),
        ParamsAdamW {
            lr: 1e-3,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )?;
    let mut scaler = GradScaler::new(adam, masters.vars(), ScalerConfig::pytorch())?;

    let (steps, bs) = (60, 64);
    let mut losses = Vec::new();
    let mut stepped = 0;
    for i in 0..steps {
        let (x, y) = batch(&data.train, i * bs, bs, DType::F16)?;
        let model = SimpleCnn::new(masters.var_builder()?, Kernels::AccumulateF32)?;
        let log_probs = model.forward(&x)?;
        assert_eq!(log_probs.dtype(), DType::F32);
        let loss = candle_nn::loss::nll(&log_probs, &y)?;
        if scaler.backward_step(&loss)? == StepOutcome::Stepped {
            stepped += 1;
        }
        losses.push(loss.to_scalar::<f32>()?);
    }
    assert_eq!(
        stepped + scaler.scaler().skipped_steps() as usize,
        steps,
        "every step is stepped or skipped"
    );
    assert!(stepped >= steps - 5, "{stepped} of {steps} stepped");
    let first = losses[..5].iter().sum::<f32>() / 5.0;
    let last = losses[steps - 10..].iter().sum::<f32>() / 10.0;
    assert!(first > 1.5 && last < 0.8, "loss {first} -> {last}");

    // The masters are f32 and moved; the compute copies are f16.
    let fc2 = varmap.data().lock().expect("lock")["fc2.weight"]
        .as_tensor()
        .copy()?;
    assert_eq!(fc2.dtype(), DType::F32);
    let moved = (fc2 - fc2_before)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(moved > 1e-3, "fc2 moved by {moved}");
    let copies = masters.compute_copies()?;
    assert!(copies.values().all(|t| t.dtype() == DType::F16));

    // Held-out images: far above chance (10%) after 60 steps.
    let (x, y) = batch(&data.test, 0, 500, DType::F16)?;
    let model = SimpleCnn::new(masters.var_builder()?, Kernels::AccumulateF32)?;
    let pred = model.forward(&x)?.argmax(D::Minus1)?;
    let correct = pred
        .eq(&y)?
        .to_dtype(DType::U32)?
        .sum_all()?
        .to_scalar::<u32>()?;
    assert!(correct > 400, "{correct}/500 correct");
    Ok(())
}

/// A master that is not f32, or a compute dtype other than f16/bf16/f32, is a typed error.
#[test]
fn master_weights_refuse_bad_dtypes() -> R {
    let dev = Device::Cpu;
    let w16 = candle_core::Var::zeros(3, DType::F16, &dev)?;
    let err = MasterWeights::new([("w".to_string(), w16)], DType::F16).expect_err("f16 master");
    assert!(
        err.to_string().contains("master weight `w` is F16"),
        "{err}"
    );
    let w = candle_core::Var::zeros(3, DType::F32, &dev)?;
    let err = MasterWeights::new([("w".to_string(), w)], DType::U8).expect_err("u8 compute");
    assert!(err.to_string().contains("compute dtype U8"), "{err}");
    Ok(())
}

/// The gradient of an f16 copy reaches its f32 master as the f32 widening of the f16 gradient.
#[test]
fn gradients_flow_from_the_copies_to_the_masters() -> R {
    let dev = Device::Cpu;
    let w = candle_core::Var::new(&[0.1f32, 0.2, 0.3], &dev)?;
    let masters = MasterWeights::new([("w".to_string(), w.clone())], DType::BF16)?;
    let copy = &masters.compute_copies()?["w"];
    assert_eq!(copy.dtype(), DType::BF16);
    let x = Tensor::new(&[3.0f32, -5.0, 7.0], &dev)?.to_dtype(DType::BF16)?;
    let loss = (copy * x)?.sum_all()?.to_dtype(DType::F32)?;
    let grads = loss.backward()?;
    let g = grads.get(&w).expect("the master has a gradient");
    assert_eq!(g.dtype(), DType::F32);
    assert_eq!(g.to_vec1::<f32>()?, [3.0, -5.0, 7.0]);
    Ok(())
}
