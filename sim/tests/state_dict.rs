//! A backend's state by name: export and import round-trip bit for bit (NaN payloads, signed
//! zeros, infinities, a step beyond f32's integers), a partial import replaces only what it
//! names, and an unknown name, another length or another element type is a typed error that
//! changes nothing.

use halfscale_sim::adam::AdamState;
use halfscale_sim::cpu::CpuBackend;
use halfscale_sim::model::{Params, PARAM_COUNT};
use halfscale_sim::rng::SeededRng;
use halfscale_sim::state_dict::{ADAM_STEP, EXP_AVG, EXP_AVG_SQ};
use halfscale_sim::weights::tensor_layout;
use halfscale_sim::{Backend, Recipe, SimError, StateDict, Values};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Weights and moments with every kind of value a state may hold.
fn odd_state() -> (Params, AdamState) {
    let mut rng = SeededRng::new(41);
    let mut params = Params::init(41);
    let specials = [
        f32::from_bits(0x7fc0_1234), // a quiet NaN with a payload
        f32::from_bits(0xffa0_0001), // a signalling NaN pattern, negative
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::from_bits(1), // the smallest subnormal
    ];
    for (k, &v) in specials.iter().enumerate() {
        params.data[k * 30_001] = v;
    }
    let mut adam = AdamState::new(PARAM_COUNT);
    for (m, v) in adam.exp_avg.iter_mut().zip(adam.exp_avg_sq.iter_mut()) {
        *m = rng.uniform(-1e-3, 1e-3);
        *v = rng.uniform(0.0, 1e-6);
    }
    adam.exp_avg[7] = -0.0;
    adam.exp_avg_sq[PARAM_COUNT - 1] = f32::from_bits(0x7f80_0001);
    // Beyond 2^24, where an f32 step (PyTorch's) would round.
    adam.step = (1 << 24) + 1;
    (params, adam)
}

fn exported(backend: &dyn Backend) -> (Params, AdamState) {
    let state = backend.export_state().unwrap();
    let mut params = Params::zeros();
    let mut adam = AdamState::new(0);
    state.copy_params_into(&mut params).unwrap();
    state.copy_adam_into(&mut adam).unwrap();
    (params, adam)
}

/// `a` and `b` name the same tensors in the same order, with the same values: f32 bit for bit
/// (NaN payloads, signed zeros), the others equal.
fn assert_same_tensors(a: &StateDict, b: &StateDict) {
    assert_eq!(a.names().collect::<Vec<_>>(), b.names().collect::<Vec<_>>());
    for ((name, x), (_, y)) in a.iter().zip(b.iter()) {
        match (x, y) {
            (Values::F32(x), Values::F32(y)) => assert_eq!(bits(x), bits(y), "{name}"),
            (x, y) => assert_eq!(x, y, "{name}"),
        }
    }
}

#[test]
fn export_after_import_gives_back_every_bit_under_pytorch_names() {
    let (params, adam) = odd_state();
    let dict = StateDict::from_training(&params, &adam).unwrap();
    let mut be = CpuBackend::new(Recipe::mixed_fp16(), 8);
    be.import_state(&dict).unwrap();
    let out = be.export_state().unwrap();
    // The names: the state_dict's eight, each moment under the checkpoint's prefix, the step.
    let weights: Vec<String> = tensor_layout().into_iter().map(|(n, _, _)| n).collect();
    let mut names = weights.clone();
    names.extend(weights.iter().map(|n| format!("{EXP_AVG}{n}")));
    names.extend(weights.iter().map(|n| format!("{EXP_AVG_SQ}{n}")));
    names.push(ADAM_STEP.to_string());
    assert_eq!(out.names().collect::<Vec<_>>(), names);
    assert_eq!(names[0], "conv1.weight");
    assert_eq!(names[8], "optimizer.exp_avg.conv1.weight");
    // Bit for bit, tensor by tensor and through the flat views.
    assert_same_tensors(&dict, &out);
    let (p, a) = exported(&be);
    assert_eq!(bits(&p.data), bits(&params.data));
    assert_eq!(bits(&a.exp_avg), bits(&adam.exp_avg));
    assert_eq!(bits(&a.exp_avg_sq), bits(&adam.exp_avg_sq));
    assert_eq!(a.step, (1 << 24) + 1);
    // Into a second backend of another recipe: the same state.
    let mut other = CpuBackend::new(Recipe::fp32(), 3);
    other.import_state(&out).unwrap();
    let (p2, a2) = exported(&other);
    assert_eq!(bits(&p2.data), bits(&params.data));
    assert_eq!(
        (bits(&a2.exp_avg), a2.step),
        (bits(&adam.exp_avg), adam.step)
    );
}

#[test]
fn exported_weights_are_the_exported_state_without_the_optimizer() {
    let (params, adam) = odd_state();
    let mut be = CpuBackend::new(Recipe::mixed_bf16(), 8);
    be.import_state(&StateDict::from_training(&params, &adam).unwrap())
        .unwrap();
    let mut expected = be.export_state().unwrap();
    expected.retain(|name| !name.starts_with("optimizer."));
    let weights = be.export_weights().unwrap();
    assert_eq!(weights.len(), 8);
    assert!(weights.iter().all(|(_, v)| matches!(v, Values::F32(_))));
    assert_same_tensors(&weights, &expected);
}

#[test]
fn a_partial_import_replaces_what_it_names_and_nothing_else() {
    let (params, adam) = odd_state();
    let mut be = CpuBackend::new(Recipe::fp32(), 8);
    be.import_state(&StateDict::from_training(&params, &adam).unwrap())
        .unwrap();
    let mut fc2_bias = StateDict::new();
    fc2_bias.insert("fc2.bias", Values::F32(vec![0.25; 10]));
    fc2_bias.insert(ADAM_STEP, Values::U64(vec![3]));
    be.import_state(&fc2_bias).unwrap();
    let (p, a) = exported(&be);
    let range = tensor_layout()[7].2.clone();
    assert_eq!(&p.data[range.clone()], &[0.25; 10]);
    assert_eq!(
        bits(&p.data[..range.start]),
        bits(&params.data[..range.start])
    );
    assert_eq!(bits(&a.exp_avg), bits(&adam.exp_avg));
    assert_eq!(a.step, 3);
    // The weights alone (as the cross-check's reference takes them) leave the optimizer be.
    be.import_state(&StateDict::from_params(&Params::init(2)).unwrap())
        .unwrap();
    let (p, a) = exported(&be);
    assert_eq!(bits(&p.data), bits(&Params::init(2).data));
    assert_eq!((bits(&a.exp_avg_sq), a.step), (bits(&adam.exp_avg_sq), 3));
}

#[test]
fn unknown_names_other_lengths_and_types_are_typed_errors_that_change_nothing() {
    let (params, adam) = odd_state();
    let mut be = CpuBackend::new(Recipe::mixed_bf16(), 8);
    be.import_state(&StateDict::from_training(&params, &adam).unwrap())
        .unwrap();
    let refused = |be: &mut CpuBackend, tensors: &[(&str, Values)]| {
        let mut d = StateDict::new();
        // A valid tensor first: a refused import must not apply it either.
        d.insert("conv1.bias", Values::F32(vec![9.0; 32]));
        for (n, v) in tensors {
            d.insert(*n, v.clone());
        }
        let err = be.import_state(&d).unwrap_err();
        let (p, a) = exported(be);
        assert_eq!(bits(&p.data), bits(&params.data), "{err}");
        assert_eq!((bits(&a.exp_avg), a.step), (bits(&adam.exp_avg), adam.step));
        err
    };
    let err = refused(&mut be, &[("conv3.weight", Values::F32(vec![0.0; 4]))]);
    assert!(
        matches!(&err, SimError::UnknownTensor { name } if name == "conv3.weight"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "state tensor `conv3.weight`: the backend holds no tensor of that name"
    );
    let err = refused(
        &mut be,
        &[("optimizer.exp_avg.fc9.bias", Values::F32(vec![]))],
    );
    assert!(matches!(err, SimError::UnknownTensor { .. }), "{err}");
    let err = refused(&mut be, &[("fc2.bias", Values::F32(vec![0.0; 9]))]);
    assert!(
        matches!(
            &err,
            SimError::TensorLength { name, expected: 10, found: 9 } if name == "fc2.bias"
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "state tensor `fc2.bias`: 9 values, but the backend's has 10"
    );
    let long = CpuBackend::new(Recipe::fp32(), 1)
        .export_state()
        .unwrap()
        .get("optimizer.exp_avg_sq.fc1.weight")
        .unwrap()
        .len()
        + 1;
    let err = refused(
        &mut be,
        &[(
            "optimizer.exp_avg_sq.fc1.weight",
            Values::F32(vec![0.0; long]),
        )],
    );
    assert!(
        matches!(&err, SimError::TensorLength { expected: 131072, found, .. } if *found == long),
        "{err}"
    );
    let err = refused(&mut be, &[(ADAM_STEP, Values::U64(vec![1, 2]))]);
    assert!(
        matches!(
            &err,
            SimError::TensorLength {
                expected: 1,
                found: 2,
                ..
            }
        ),
        "{err}"
    );
    let err = refused(&mut be, &[(ADAM_STEP, Values::F32(vec![1.0]))]);
    assert!(
        matches!(
            &err,
            SimError::TensorType {
                expected: "u64",
                found: "f32",
                ..
            }
        ),
        "{err}"
    );
    let err = refused(&mut be, &[("conv2.bias", Values::U64(vec![0; 64]))]);
    assert!(
        matches!(
            &err,
            SimError::TensorType {
                expected: "f32",
                found: "u64",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_dictionary_that_lacks_a_tensor_does_not_fill_a_run_state() {
    let mut d = CpuBackend::new(Recipe::fp32(), 1).export_state().unwrap();
    assert!(d.remove("fc1.bias").is_some());
    let mut params = Params::zeros();
    let err = d.copy_params_into(&mut params).unwrap_err();
    assert!(
        matches!(&err, SimError::MissingTensor { name } if name == "fc1.bias"),
        "{err}"
    );
    d.remove(ADAM_STEP);
    let err = d.copy_adam_into(&mut AdamState::new(0)).unwrap_err();
    assert!(
        matches!(&err, SimError::MissingTensor { name } if name == ADAM_STEP),
        "{err}"
    );
}
