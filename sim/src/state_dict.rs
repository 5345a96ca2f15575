//! A backend's tensors by name: what [`crate::backend::Backend::export_state`] hands out and
//! [`crate::backend::Backend::import_state`] takes, so the trait says nothing of the model's or
//! the optimizer's Rust types and a backend that keeps its tensors elsewhere (a GPU, another
//! layout) only has to know their names.
//!
//! The names are PyTorch's: the weights as `model.state_dict()` names them (`conv1.weight`,
//! `conv1.bias`, ..., `fc2.bias`, [`crate::weights::tensor_layout`]), Adam's moments under the
//! names the checkpoint file already uses for them (`optimizer.exp_avg.<weight name>`,
//! `optimizer.exp_avg_sq.<weight name>`, `crate::checkpoint`), and Adam's step count as
//! `optimizer.step` (`torch.optim.Adam` keeps one `step` per parameter; every parameter of the
//! seed steps together, so one count stands for all). Tensors are f32, the step a `u64`: PyTorch
//! stores the step as a float32 tensor, exact only to 2^24 steps, and a resumed run must see
//! exactly the count the interrupted one had.
//!
//! [`SimpleCnnAdam`] is the layout of the two backends here, which keep the weights and moments
//! as flat vectors in `named_parameters()` order: it maps each name to its range and checks a
//! whole dictionary before a backend changes anything, so a refused import leaves the backend as
//! it was.

use crate::adam::AdamState;
use crate::error::{Result, SimError};
use crate::model::{Params, PARAM_COUNT};
use std::ops::Range;

/// Prefix of the optimizer's tensors.
pub const OPTIMIZER: &str = "optimizer.";
/// Adam's step count (see the module doc).
pub const ADAM_STEP: &str = "optimizer.step";
/// Prefix of Adam's first moments (`optimizer.exp_avg.conv1.weight`).
pub const EXP_AVG: &str = "optimizer.exp_avg.";
/// Prefix of Adam's second moments (`optimizer.exp_avg_sq.conv1.weight`).
pub const EXP_AVG_SQ: &str = "optimizer.exp_avg_sq.";

/// The values of one named tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    /// Weights, moments: f32 in the tensor's row-major order.
    F32(Vec<f32>),
    /// Counters (Adam's step).
    U64(Vec<u64>),
}

impl Values {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::U64(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type's name, for errors.
    pub fn dtype(&self) -> &'static str {
        match self {
            Values::F32(_) => "f32",
            Values::U64(_) => "u64",
        }
    }
}

/// Named tensors in insertion order; a name occurs at most once (inserting it again replaces
/// its values, as assigning a `state_dict` key does).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateDict {
    tensors: Vec<(String, Values)>,
}

impl StateDict {
    /// An empty dictionary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts (or replaces) `name`.
    pub fn insert(&mut self, name: impl Into<String>, values: Values) {
        let name = name.into();
        match self.tensors.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = values,
            None => self.tensors.push((name, values)),
        }
    }

    /// The values of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Values> {
        self.tensors
            .iter()
            .find_map(|(n, v)| (n == name).then_some(v))
    }

    /// Removes `name`, returning its values.
    pub fn remove(&mut self, name: &str) -> Option<Values> {
        let at = self.tensors.iter().position(|(n, _)| n == name)?;
        Some(self.tensors.remove(at).1)
    }

    /// Keeps the tensors whose name `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.tensors.retain(|(n, _)| keep(n));
    }

    /// The tensors, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Values)> {
        self.tensors.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// The names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|(n, _)| n.as_str())
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The f32 tensor `name`, which must be present with `len` elements.
    fn f32_exact(&self, name: &str, len: usize) -> Result<&[f32]> {
        match self.get(name) {
            None => Err(SimError::MissingTensor { name: name.into() }),
            Some(Values::F32(v)) if v.len() == len => Ok(v),
            Some(Values::F32(v)) => Err(SimError::TensorLength {
                name: name.into(),
                expected: len,
                found: v.len(),
            }),
            Some(v) => Err(SimError::TensorType {
                name: name.into(),
                expected: "f32",
                found: v.dtype(),
            }),
        }
    }

    /// The seed's weights under their `state_dict()` names. Parameters of another length than
    /// the model's are a [`SimError::StateMismatch`] (a mismatched checkpoint or another model).
    pub fn from_params(params: &Params) -> Result<Self> {
        check_state_len("parameters", params.data.len())?;
        let mut d = Self::new();
        for (name, _, range) in crate::weights::tensor_layout() {
            d.insert(name, Values::F32(params.data[range].to_vec()));
        }
        Ok(d)
    }

    /// The weights and Adam's state of the seed's model (the whole state a training backend
    /// holds). Lengths other than the model's are a [`SimError::StateMismatch`].
    pub fn from_training(params: &Params, adam: &AdamState) -> Result<Self> {
        check_state_len("parameters", params.data.len())?;
        check_state_len("Adam exp_avg", adam.exp_avg.len())?;
        check_state_len("Adam exp_avg_sq", adam.exp_avg_sq.len())?;
        Ok(SimpleCnnAdam::export(
            &params.data,
            &adam.exp_avg,
            &adam.exp_avg_sq,
            adam.step,
        ))
    }

    /// Copies the eight weight tensors into `out` (resized to the model's length); a missing
    /// one is a [`SimError::MissingTensor`], another length a [`SimError::TensorLength`].
    pub fn copy_params_into(&self, out: &mut Params) -> Result<()> {
        out.data.resize(PARAM_COUNT, 0.0);
        for (name, _, range) in crate::weights::tensor_layout() {
            let len = range.len();
            out.data[range].copy_from_slice(self.f32_exact(&name, len)?);
        }
        Ok(())
    }

    /// Copies Adam's moments and step into `out` (moments resized to the model's length).
    pub fn copy_adam_into(&self, out: &mut AdamState) -> Result<()> {
        out.exp_avg.resize(PARAM_COUNT, 0.0);
        out.exp_avg_sq.resize(PARAM_COUNT, 0.0);
        for (name, _, range) in crate::weights::tensor_layout() {
            let len = range.len();
            out.exp_avg[range.clone()]
                .copy_from_slice(self.f32_exact(&format!("{EXP_AVG}{name}"), len)?);
            out.exp_avg_sq[range]
                .copy_from_slice(self.f32_exact(&format!("{EXP_AVG_SQ}{name}"), len)?);
        }
        out.step = match self.get(ADAM_STEP) {
            None => {
                return Err(SimError::MissingTensor {
                    name: ADAM_STEP.into(),
                })
            }
            Some(Values::U64(v)) if v.len() == 1 => v[0],
            Some(Values::U64(v)) => {
                return Err(SimError::TensorLength {
                    name: ADAM_STEP.into(),
                    expected: 1,
                    found: v.len(),
                })
            }
            Some(v) => {
                return Err(SimError::TensorType {
                    name: ADAM_STEP.into(),
                    expected: "u64",
                    found: v.dtype(),
                })
            }
        };
        Ok(())
    }
}

/// Checks that model or optimizer state has the model's length ([`SimError::StateMismatch`]
/// naming `what` otherwise).
pub fn check_state_len(what: &'static str, found: usize) -> Result<()> {
    if found == PARAM_COUNT {
        Ok(())
    } else {
        Err(SimError::StateMismatch {
            what,
            expected: PARAM_COUNT,
            found,
        })
    }
}

/// Which flat vector of a [`SimpleCnnAdam`] backend a tensor lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// The f32 master weights.
    Weights,
    /// Adam's first moments.
    ExpAvg,
    /// Adam's second moments.
    ExpAvgSq,
}

/// Where a named tensor lives in a [`SimpleCnnAdam`] backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// A range of one of the flat vectors.
    Flat(Slot, Range<usize>),
    /// Adam's step count.
    AdamStep,
}

/// A checked tensor of a [`StateDict`] and where it goes ([`SimpleCnnAdam::check`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Placed<'a> {
    /// Values for `range` of the flat vector `slot` (of the range's length).
    Flat(Slot, Range<usize>, &'a [f32]),
    /// Adam's step count.
    AdamStep(u64),
}

/// The layout of a backend that keeps the seed's weights and Adam's moments as flat f32 vectors
/// in `named_parameters()` order (both backends here).
pub struct SimpleCnnAdam;

impl SimpleCnnAdam {
    /// Where `name` lives, or `None` for a name this layout does not hold.
    pub fn place(name: &str) -> Option<Place> {
        if name == ADAM_STEP {
            return Some(Place::AdamStep);
        }
        let (slot, weight) = if let Some(w) = name.strip_prefix(EXP_AVG) {
            (Slot::ExpAvg, w)
        } else if let Some(w) = name.strip_prefix(EXP_AVG_SQ) {
            (Slot::ExpAvgSq, w)
        } else {
            (Slot::Weights, name)
        };
        crate::weights::tensor_layout()
            .into_iter()
            .find(|(n, _, _)| n == weight)
            .map(|(_, _, range)| Place::Flat(slot, range))
    }

    /// Checks every tensor of `state` against the layout (a known name, its element type and
    /// length) and returns them placed, in order: [`SimError::UnknownTensor`],
    /// [`SimError::TensorType`] or [`SimError::TensorLength`] for the first that does not fit,
    /// before the caller writes anything.
    pub fn check(state: &StateDict) -> Result<Vec<Placed<'_>>> {
        state
            .iter()
            .map(|(name, values)| {
                let place = Self::place(name)
                    .ok_or_else(|| SimError::UnknownTensor { name: name.into() })?;
                let expected_len = match &place {
                    Place::Flat(_, range) => range.len(),
                    Place::AdamStep => 1,
                };
                if values.len() != expected_len {
                    return Err(SimError::TensorLength {
                        name: name.into(),
                        expected: expected_len,
                        found: values.len(),
                    });
                }
                match (place, values) {
                    (Place::Flat(slot, range), Values::F32(v)) => Ok(Placed::Flat(slot, range, v)),
                    (Place::AdamStep, Values::U64(v)) => Ok(Placed::AdamStep(v[0])),
                    (place, v) => Err(SimError::TensorType {
                        name: name.into(),
                        expected: if place == Place::AdamStep {
                            "u64"
                        } else {
                            "f32"
                        },
                        found: v.dtype(),
                    }),
                }
            })
            .collect()
    }

    /// Every tensor of the layout, read from the flat vectors: weights, first moments, second
    /// moments, step (the order of [`StateDict::from_training`]).
    pub fn export(params: &[f32], exp_avg: &[f32], exp_avg_sq: &[f32], step: u64) -> StateDict {
        let mut d = StateDict::new();
        for (prefix, flat) in [("", params), (EXP_AVG, exp_avg), (EXP_AVG_SQ, exp_avg_sq)] {
            for (name, _, range) in crate::weights::tensor_layout() {
                d.insert(format!("{prefix}{name}"), Values::F32(flat[range].to_vec()));
            }
        }
        d.insert(ADAM_STEP, Values::U64(vec![step]));
        d
    }
}
