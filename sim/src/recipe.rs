//! Recipes: what a training step does at each of its rounding sites, named by the tensor it
//! rounds, and the state a recipe keeps between steps.
//!
//! PyTorch's CUDA autocast (fp16 or bf16) casts the float inputs of the ops on its lower-precision
//! list (`conv2d`, `linear`, ...) to the low type and runs them there; cuDNN/cuBLAS accumulate in
//! f32 and round the result once. Ops on its fp32 list (`log_softmax`, `nll_loss`) upcast their
//! inputs to f32. Ops not listed (`max_pool2d`, `relu`) run in whatever type they receive. The
//! backward pass mirrors the casts: the gradient arriving at a low-precision tensor is in the low
//! type, and the backward of a cast converts the gradient back.
//!
//! So a backend asks its recipe ([`Recipe::cast`]) at exactly these [`Site`]s, and rounds
//! nowhere else:
//!
//! | where                      | forward                                  | backward |
//! |----------------------------|------------------------------------------|----------|
//! | conv1, conv2, fc1, fc2 in  | `Input` (conv1's; the others' inputs are already representable), `Weight`, `Bias` | `InputGrad` (f32 accumulation, rounded once) |
//! | conv1, conv2, fc1, fc2 out | `Output` (f32 accumulation, rounded once) | `WeightGrad`, `BiasGrad` (f32 accumulation, rounded), then upcast exactly to the f32 master gradients |
//! | max_pool, relu             | exact on low-precision values             | exact (selection / masking) |
//! | logits -> log_softmax      | upcast (exact)                            | fc2's `OutputGrad`, `dL/dlogits` times the loss scale: where small gradients underflow without a scaler |
//! | log_softmax, nll_loss      | f32                                        | f32 |
//!
//! Inputs of conv2, fc1 and fc2 are outputs of relu/max_pool on rounded values, already
//! representable, so rounding them again would be the identity and is skipped; the gradient
//! reaching fc1's output is fc2's `InputGrad` after relu's masking, so it is not rounded again.
//!
//! fp32, mixed fp16 and mixed bf16 round every site to one format (or none). A recipe that
//! scales per tensor (FP8 with delayed scaling, Transformer Engine's `DelayedScaling`) keeps its
//! per-site amax histories in its [`RecipeState`], which is part of a run's
//! [`crate::state::TrainState`].

use crate::error::{Result, SimError};
use crate::model::Layer;
use crate::state::f32_bits;
use halfscale_core::fast::{round_slice_through_bf16, round_slice_through_f16};
use std::collections::BTreeMap;

/// A low-precision format a site can round to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LowFormat {
    /// IEEE binary16.
    F16,
    /// bfloat16.
    Bf16,
}

impl LowFormat {
    /// Rounds every element to the format and back (nearest-even, IEEE 754 §4.3.1), in place,
    /// through the core's slice conversions.
    #[inline]
    pub fn round(self, values: &mut [f32]) {
        match self {
            LowFormat::F16 => round_slice_through_f16(values),
            LowFormat::Bf16 => round_slice_through_bf16(values),
        }
    }

    /// Whether `v` is exactly representable in the format (NaN counts as representable).
    pub fn is_representable(self, v: f32) -> bool {
        let mut x = [v];
        self.round(&mut x);
        x[0].to_bits() == v.to_bits() || (v.is_nan() && x[0].is_nan())
    }

    /// `"fp16"` or `"bf16"`.
    pub const fn name(self) -> &'static str {
        match self {
            LowFormat::F16 => "fp16",
            LowFormat::Bf16 => "bf16",
        }
    }
}

/// Which tensor of a layer a site holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The activation entering the layer (a GEMM operand of the forward and of the weight
    /// gradient).
    Input,
    /// The weight (a GEMM operand of the forward and of the input gradient).
    Weight,
    /// The bias (added to the f32 accumulator, not a GEMM operand).
    Bias,
    /// The activation the layer produces (a GEMM result).
    Output,
    /// The gradient arriving at the layer's output (a GEMM operand of both backward products).
    OutputGrad,
    /// The gradient the layer passes to its input (a GEMM result).
    InputGrad,
    /// The weight's gradient (a GEMM result).
    WeightGrad,
    /// The bias's gradient (a sum, not a GEMM operand).
    BiasGrad,
}

/// The kind of tensor a role names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TensorKind {
    Activation,
    Weight,
    Gradient,
}

impl Role {
    /// Activation, weight or gradient.
    pub const fn kind(self) -> TensorKind {
        match self {
            Role::Input | Role::Output => TensorKind::Activation,
            Role::Weight | Role::Bias => TensorKind::Weight,
            Role::OutputGrad | Role::InputGrad | Role::WeightGrad | Role::BiasGrad => {
                TensorKind::Gradient
            }
        }
    }

    /// Whether the tensor enters a GEMM (where an FP8 recipe scales and casts it).
    pub const fn is_gemm_operand(self) -> bool {
        matches!(self, Role::Input | Role::Weight | Role::OutputGrad)
    }
}

/// A rounding site: a layer's tensor in one role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Site {
    pub layer: Layer,
    pub role: Role,
}

impl Site {
    /// `layer`'s tensor in `role`.
    pub const fn new(layer: Layer, role: Role) -> Self {
        Self { layer, role }
    }

    /// The name of the site's tensor (`"fc2.output_grad"`), as a recipe's state names it.
    pub fn name(self) -> String {
        let role = match self.role {
            Role::Input => "input",
            Role::Weight => "weight",
            Role::Bias => "bias",
            Role::Output => "output",
            Role::OutputGrad => "output_grad",
            Role::InputGrad => "input_grad",
            Role::WeightGrad => "weight_grad",
            Role::BiasGrad => "bias_grad",
        };
        format!("{}.{role}", self.layer.name())
    }
}

/// What a recipe does to a site's tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cast {
    /// Left in f32.
    Keep,
    /// Rounded to the format (nearest-even) and kept as f32 values.
    Round(LowFormat),
}

/// The recipes there are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipeKind {
    /// Plain f32 everywhere: the reference.
    Fp32,
    /// Autocast with binary16 (`torch.autocast("cuda", dtype=torch.float16)`).
    MixedFp16,
    /// Autocast with bfloat16.
    MixedBf16,
}

/// A recipe: the per-site casts of a training step and the state they need.
#[derive(Clone, Debug, PartialEq)]
pub struct Recipe {
    kind: RecipeKind,
}

impl Recipe {
    /// The recipe of `kind`, in its initial state.
    pub const fn new(kind: RecipeKind) -> Self {
        Self { kind }
    }

    /// Plain f32.
    pub const fn fp32() -> Self {
        Self::new(RecipeKind::Fp32)
    }

    /// Autocast fp16.
    pub const fn mixed_fp16() -> Self {
        Self::new(RecipeKind::MixedFp16)
    }

    /// Autocast bf16.
    pub const fn mixed_bf16() -> Self {
        Self::new(RecipeKind::MixedBf16)
    }

    /// Which recipe this is.
    pub const fn kind(&self) -> RecipeKind {
        self.kind
    }

    /// Name as the CLI and the summaries spell it.
    pub const fn name(&self) -> &'static str {
        match self.kind {
            RecipeKind::Fp32 => "fp32",
            RecipeKind::MixedFp16 => "mixed fp16",
            RecipeKind::MixedBf16 => "mixed bf16",
        }
    }

    /// True for the recipes that round somewhere.
    pub const fn is_mixed(&self) -> bool {
        !matches!(self.kind, RecipeKind::Fp32)
    }

    /// The one format every site rounds to, when there is one (`None` for fp32): what a
    /// backend that runs a single low-precision type (the CUDA backend: fp16) checks, and the
    /// format the cross-check's census and the CLI's summary speak of.
    pub const fn uniform_format(&self) -> Option<LowFormat> {
        match self.kind {
            RecipeKind::Fp32 => None,
            RecipeKind::MixedFp16 => Some(LowFormat::F16),
            RecipeKind::MixedBf16 => Some(LowFormat::Bf16),
        }
    }

    /// What to do with the tensor at `site`: the one mapping from a recipe to formats.
    #[inline]
    pub fn cast(&self, _site: Site) -> Cast {
        self.uniform_format().map_or(Cast::Keep, Cast::Round)
    }

    /// Applies [`Self::cast`] of `site` to `values`, in place.
    #[inline]
    pub fn round(&self, site: Site, values: &mut [f32]) {
        if let Cast::Round(format) = self.cast(site) {
            format.round(values);
        }
    }

    /// The state to save with a run.
    pub fn state(&self) -> RecipeState {
        RecipeState {
            recipe: self.kind,
            tensors: BTreeMap::new(),
        }
    }

    /// Continues from a saved state; a state of another recipe is refused.
    pub fn load_state(&mut self, state: &RecipeState) -> Result<()> {
        if state.recipe != self.kind {
            return Err(SimError::Config(format!(
                "recipe: the state is {:?}, the run {:?}",
                state.recipe, self.kind
            )));
        }
        if let Some(name) = state.tensors.keys().next() {
            return Err(SimError::Config(format!(
                "recipe {}: unexpected state tensor {name}",
                self.name()
            )));
        }
        Ok(())
    }
}

/// The bits of one f32 tensor of a recipe's state.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StateTensor(#[serde(with = "f32_bits")] pub Vec<f32>);

/// A recipe's state between steps: which recipe, and its tensors by name (a site's name and
/// what it holds, `"fc1.input.amax_history"`); none for fp32, mixed fp16 and mixed bf16.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RecipeState {
    pub recipe: RecipeKind,
    #[serde(default)]
    pub tensors: BTreeMap<String, StateTensor>,
}
