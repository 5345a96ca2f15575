//! Weights in PyTorch's safetensors layout: the file PyTorch wrote for a trained SimpleCNN
//! (tests/fixtures/pytorch_simplecnn.*, recorded by scripts/fixtures/record_simplecnn.py with
//! torch 2.15) gives PyTorch's logits and test count here; what halfscale writes reads back bit
//! for bit; every kind of bad file is refused naming the file and the tensor.

use halfscale_sim::backend::{Backend, Batch};
use halfscale_sim::cpu::CpuBackend;
use halfscale_sim::dataset::{Dataset, IMAGE_PIXELS};
use halfscale_sim::model::{Params, PARAM_COUNT};
use halfscale_sim::recipe::Recipe;
use halfscale_sim::train;
use halfscale_sim::weights::{self, tensor_layout, WeightsError};
use halfscale_sim::StateDict;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture() -> (Params, serde_json::Value) {
    let dir = root().join("tests/fixtures");
    let params = weights::load(&dir.join("pytorch_simplecnn.safetensors")).unwrap();
    let json = std::fs::read_to_string(dir.join("pytorch_simplecnn.json")).unwrap();
    (params, serde_json::from_str(&json).unwrap())
}

#[test]
fn pytorch_weights_give_pytorchs_logits_in_fp32() {
    let (params, record) = fixture();
    let data = Dataset::load(&root().join("data/MNIST/raw")).unwrap();
    let expected: Vec<f32> = record["logits_f32_bits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| f32::from_bits(u32::from_str_radix(h.as_str().unwrap(), 16).unwrap()))
        .collect();
    assert_eq!(expected.len(), 64 * 10);
    let mut cpu = CpuBackend::new(Recipe::fp32(), 64);
    cpu.import_state(&StateDict::from_params(&params).unwrap())
        .unwrap();
    let batch = Batch {
        images: &data.test.images[..64 * IMAGE_PIXELS],
        labels: &data.test.labels[..64],
    };
    cpu.forward_backward(batch, 1.0).unwrap();
    let mut logits = Vec::new();
    cpu.read_logits(&mut logits).unwrap();
    assert_eq!(logits.len(), expected.len());
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (k, (a, b)) in logits.iter().zip(&expected).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * b.abs().max(1.0),
            "logit {k}: halfscale {a} pytorch {b}"
        );
    }
    // Not vacuous: the logits are those of a trained model, far from zero.
    assert!(scale > 5.0, "largest |logit| {scale}");
}

#[test]
fn pytorch_weights_give_pytorchs_test_count_in_fp32() {
    let (params, record) = fixture();
    let data = Dataset::load(&root().join("data/MNIST/raw")).unwrap();
    let mut cpu = CpuBackend::new(Recipe::fp32(), 1000);
    cpu.import_state(&StateDict::from_params(&params).unwrap())
        .unwrap();
    let result = train::evaluate(&mut cpu, &data.test, 1000).unwrap();
    let correct = record["test_correct"].as_u64().unwrap() as i64;
    let loss = record["test_average_loss"].as_f64().unwrap();
    assert!(
        (result.correct as i64 - correct).abs() <= 2,
        "halfscale {} pytorch {correct}",
        result.correct
    );
    assert!(
        (result.average_loss - loss).abs() <= 1e-4,
        "halfscale {} pytorch {loss}",
        result.average_loss
    );
}

#[test]
fn what_halfscale_writes_reads_back_bit_for_bit_with_pytorchs_names_and_shapes() {
    let params = Params::init(7);
    let bytes = weights::to_bytes(&params);
    let back = weights::from_bytes(&bytes, Path::new("mem")).unwrap();
    assert!(params
        .data
        .iter()
        .zip(&back.data)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    // Same tensors, shapes and dtype as the file PyTorch's save_file wrote.
    let ours = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let torch_bytes =
        std::fs::read(root().join("tests/fixtures/pytorch_simplecnn.safetensors")).unwrap();
    let theirs = safetensors::SafeTensors::deserialize(&torch_bytes).unwrap();
    let mut a = ours.names();
    let mut b = theirs.names();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);
    for name in a {
        let (x, y) = (ours.tensor(name).unwrap(), theirs.tensor(name).unwrap());
        assert_eq!((x.dtype(), x.shape()), (y.dtype(), y.shape()), "{name}");
    }
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(
        meta.metadata()
            .as_ref()
            .and_then(|m| m.get("format"))
            .map(String::as_str),
        Some("pt")
    );
}

#[test]
fn saving_replaces_the_file_whole() {
    let dir = std::env::temp_dir().join(format!("hs-weights-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("w.safetensors");
    weights::save(&Params::init(1), &path).unwrap();
    weights::save(&Params::init(2), &path).unwrap();
    let back = weights::load(&path).unwrap();
    assert_eq!(back.data, Params::init(2).data);
    // No temporary file left beside it.
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(left.len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A file built tensor by tensor from `params`, with `edit` changing the list first.
fn file_with(
    params: &Params,
    edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>),
) -> Vec<u8> {
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensor_layout()
        .into_iter()
        .map(|(name, shape, range)| {
            let bytes = params.data[range]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            (name, Dtype::F32, shape, bytes)
        })
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, None).unwrap()
}

fn error_of(bytes: &[u8]) -> WeightsError {
    weights::from_bytes(bytes, Path::new("model.safetensors")).unwrap_err()
}

#[test]
fn f16_and_bf16_weights_widen_exactly() {
    let params = Params::init(3);
    for dtype in [Dtype::F16, Dtype::BF16] {
        let bytes = file_with(&params, |ts| {
            for t in ts.iter_mut() {
                let values: Vec<f32> =
                    t.3.chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect();
                t.1 = dtype;
                t.3 = values
                    .iter()
                    .flat_map(|&v| match dtype {
                        Dtype::F16 => half::f16::from_f32(v).to_le_bytes(),
                        _ => half::bf16::from_f32(v).to_le_bytes(),
                    })
                    .collect();
            }
        });
        let back = weights::from_bytes(&bytes, Path::new("m")).unwrap();
        for (k, (&orig, &got)) in params.data.iter().zip(&back.data).enumerate() {
            let want = match dtype {
                Dtype::F16 => half::f16::from_f32(orig).to_f32(),
                _ => half::bf16::from_f32(orig).to_f32(),
            };
            assert_eq!(got.to_bits(), want.to_bits(), "{dtype:?} element {k}");
        }
    }
}

#[test]
fn bad_files_are_refused_naming_the_file_and_the_tensor() {
    let p = Params::init(1);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "missing",
            file_with(&p, |t| {
                t.remove(3);
            }),
            "tensor `conv2.bias` is missing",
        ),
        (
            "extra",
            file_with(&p, |t| {
                t.push(("fc3.weight".into(), Dtype::F32, vec![1], vec![0; 4]))
            }),
            "unexpected tensor `fc3.weight`",
        ),
        (
            "shape",
            file_with(&p, |t| t[6].2 = vec![128, 10]),
            "tensor `fc2.weight` has shape [128, 10], but the model's is [10, 128]",
        ),
        (
            "dtype",
            file_with(&p, |t| t[1].1 = Dtype::I32),
            "tensor `conv1.bias` is I32; weights must be F32, F16 or BF16",
        ),
        (
            "nan",
            file_with(&p, |t| {
                t[4].3[8..12].copy_from_slice(&f32::NAN.to_le_bytes())
            }),
            "tensor `fc1.weight` holds NaN at element 2; weights must be finite",
        ),
        (
            "inf",
            file_with(&p, |t| {
                t[7].3[0..4].copy_from_slice(&f32::NEG_INFINITY.to_le_bytes())
            }),
            "tensor `fc2.bias` holds -inf at element 0",
        ),
        (
            "garbage",
            b"not a safetensors file at all".to_vec(),
            "not a valid safetensors file",
        ),
    ];
    for (what, bytes, needle) in cases {
        let e = error_of(&bytes).to_string();
        assert!(e.starts_with("model.safetensors: "), "{what}: {e}");
        assert!(e.contains(needle), "{what}: {e}");
    }
}

#[test]
fn every_truncation_of_a_good_file_is_an_error_not_a_panic() {
    let bytes = weights::to_bytes(&Params::init(1));
    let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let cuts = (0..header + 64)
        .chain((header..bytes.len()).step_by(4099))
        .chain([bytes.len() - 1]);
    for cut in cuts {
        assert!(
            matches!(error_of(&bytes[..cut]), WeightsError::Corrupt { .. }),
            "cut at {cut}"
        );
    }
}

#[test]
fn a_path_that_does_not_exist_is_an_io_error_naming_it() {
    let e = weights::load(Path::new("/no/such/dir/w.safetensors")).unwrap_err();
    assert!(matches!(e, WeightsError::Io { .. }));
    assert!(
        e.to_string().starts_with("/no/such/dir/w.safetensors: "),
        "{e}"
    );
    assert_eq!(
        PARAM_COUNT,
        tensor_layout().iter().map(|t| t.2.len()).sum::<usize>()
    );
}
