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
//! fp32, mixed fp16 and mixed bf16 round every site to one format (or none).
//!
//! ## The FP8 recipes
//!
//! [`RecipeKind::Fp8`] and [`RecipeKind::Mxfp8`] quantize the twelve GEMM operands (the sites
//! whose role [`Role::is_gemm_operand`]: each layer's `Input`, `Weight` and `OutputGrad`; the
//! convolutions through their im2col GEMM) and round every other site to bf16, as
//! `--precision bf16` does; accumulation stays f32, master weights and Adam f32. The GEMMs
//! multiply the dequantized operands ([`crate::quantize`]).
//!
//! | tensor | format (HYBRID) | where its amax is measured | used by |
//! | --- | --- | --- | --- |
//! | `<layer>.input` | E4M3 | the layer's input over the whole batch (conv1: the images; conv2: pool+relu of conv1; fc1: the flattened features; fc2: relu of fc1), before im2col | forward GEMM, weight-gradient GEMM |
//! | `<layer>.weight` | E4M3 | the f32 master weight, each step | forward GEMM, input-gradient GEMM |
//! | `<layer>.output_grad` | E5M2 | the gradient arriving at the layer's output over the batch (after relu/pool backward) | weight-gradient GEMM, input-gradient GEMM |
//!
//! Bias gradients are summed from the unquantized output gradient (TE's fused
//! `cast_transpose_dbias`), and the activations relu's backward reads stay unquantized.
//!
//! Per-tensor scaling ([`Fp8Scaling`]): `Delayed` is TE's `DelayedScaling` — each tensor is
//! cast with the scale the last update left (1 at the first step, as TE initialises it), its
//! amax goes into its history's current slot, and after each backward pass
//! [`Recipe::end_step`] runs `amax_and_scale_update` on every tensor (the core's
//! [`amax_and_scale_update`]): forward tensors get `448 * 2^-margin / amax`, gradients
//! `57344 * 2^-margin / amax`, `amax` the window's max (or the most recent); a zero or
//! non-finite amax keeps the scale. `Current` casts each tensor with the scale from its own
//! amax in the same step (TE's `compute_scale_from_amax`); `None` casts with scale 1.
//! Evaluation casts with the scales as they stand and records nothing. The histories and
//! scales are the recipe's [`RecipeState`], part of a run's [`crate::state::TrainState`], so a
//! resumed run continues them bit for bit.
//!
//! MXFP8 (TE's `MXFP8BlockScaling`): every operand in E4M3 with one E8M0 scale per 32 elements
//! along the reduction dimension of the GEMM it enters (torchao's `to_mx`, scale mode FLOOR by
//! default): an operand that enters two GEMMs along different dimensions is quantized twice
//! (TE's rowwise and columnwise copies). MX keeps no state between steps.

use crate::error::{Result, SimError};
use crate::model::Layer;
use crate::quantize::{Fp8Element, QuantStats};
use crate::round::{round_through_bf16, round_through_f16};
use crate::state::f32_bits;
use halfscale_core::recipe::mx::ScaleMode;
use halfscale_core::recipe::{
    amax_and_scale_update, te_compute_scale_from_amax, te_scale_inv, AmaxComputeAlgo,
    DelayedScaling, Fp8Format, HistoryRoll, Pass,
};
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
    /// with the core's slice conversions' bits ([`crate::round`]).
    #[inline]
    pub fn round(self, values: &mut [f32]) {
        match self {
            LowFormat::F16 => round_through_f16(values),
            LowFormat::Bf16 => round_through_bf16(values),
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
    /// Quantized to 8 bits as a GEMM operand (the FP8 recipes): the backend measures the
    /// tensor's amax, asks [`Recipe::tensor_scale`] for the scale (per-tensor scaling) or
    /// quantizes in MX blocks along each GEMM's reduction axis, and feeds the GEMM the
    /// dequantized values ([`crate::quantize`]).
    Quantize(Quantization),
}

/// How a GEMM operand is quantized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantization {
    /// One scale for the whole tensor (TE's delayed or current scaling, or none: a plain cast).
    PerTensor(Fp8Element),
    /// One E8M0 scale per 32 elements along the reduction axis of the GEMM (MXFP8).
    Mx(Fp8Element, ScaleMode),
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
    /// Transformer Engine's FP8 training with per-tensor scaling ([`Fp8Scaling`]): every GEMM
    /// operand in 8 bits, HYBRID formats by default (E4M3 forward, E5M2 gradients); the rest as
    /// [`RecipeKind::MixedBf16`].
    Fp8,
    /// MXFP8 (TE's `MXFP8BlockScaling`): both operands of every GEMM in E4M3 with one E8M0
    /// scale per 32 elements along the reduction dimension; the rest as
    /// [`RecipeKind::MixedBf16`].
    Mxfp8,
}

/// How the FP8 recipe picks each tensor's scale.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fp8Scaling {
    /// TE's `DelayedScaling`: the scale comes from the amax history of previous steps,
    /// updated after each backward pass (`amax_and_scale_update`).
    Delayed {
        /// `amax_history_len` (TE's default 1024).
        history: usize,
        /// `margin` (TE's default 0).
        margin: i32,
        /// `amax_compute_algo` (TE's default `max`).
        algo: AmaxComputeAlgo,
    },
    /// Current (just-in-time) scaling, TE's `Float8CurrentScaling`: the scale of a tensor from
    /// its own amax (`compute_scale_from_amax`, no power-of-two rounding, epsilon 0).
    Current,
    /// No scale at all: a plain saturating cast (scale 1). Shows what scaling prevents.
    None,
}

impl Default for Fp8Scaling {
    /// TE's `DelayedScaling()` defaults: history 1024, margin 0, `max`.
    fn default() -> Self {
        Fp8Scaling::Delayed {
            history: 1024,
            margin: 0,
            algo: AmaxComputeAlgo::Max,
        }
    }
}

/// The per-tensor state of a scaled GEMM operand, and what the last step did to it.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorScaling {
    /// The operand's site.
    pub site: Site,
    /// Its format (E4M3 forward, E5M2 for gradients under HYBRID).
    pub element: Fp8Element,
    /// Delayed scaling's amax history (`history[0]` the current step's slot); empty otherwise.
    pub history: Vec<f32>,
    /// The scale the next quantization multiplies by (delayed scaling), or the last one used.
    pub scale: f32,
    /// The scale the last step's cast multiplied by.
    pub scale_used: f32,
    /// The amax measured on the tensor in the last step.
    pub amax: f32,
    /// What the last step's cast did to it.
    pub stats: QuantStats,
}

/// A recipe: the per-site casts of a training step and the state they need.
#[derive(Clone, Debug, PartialEq)]
pub struct Recipe {
    kind: RecipeKind,
    scaling: Fp8Scaling,
    mx_mode: ScaleMode,
    /// The GEMM operands' states, in [`Recipe::gemm_sites`] order (FP8 recipes only).
    tensors: Vec<TensorScaling>,
}

impl Recipe {
    /// The recipe of `kind`, in its initial state (FP8: TE's default delayed scaling; MXFP8:
    /// FLOOR scales).
    pub fn new(kind: RecipeKind) -> Self {
        Self::with_settings(kind, Fp8Scaling::default(), ScaleMode::Floor)
    }

    fn with_settings(kind: RecipeKind, scaling: Fp8Scaling, mx_mode: ScaleMode) -> Self {
        let mut r = Self {
            kind,
            scaling,
            mx_mode,
            tensors: Vec::new(),
        };
        if matches!(kind, RecipeKind::Fp8 | RecipeKind::Mxfp8) {
            let history = match scaling {
                Fp8Scaling::Delayed { history, .. } if kind == RecipeKind::Fp8 => history,
                _ => 0,
            };
            r.tensors = Self::gemm_sites()
                .map(|site| TensorScaling {
                    site,
                    element: r.element(site),
                    history: vec![0.0; history],
                    scale: 1.0,
                    scale_used: 1.0,
                    amax: 0.0,
                    stats: QuantStats::default(),
                })
                .collect();
        }
        r
    }

    /// Plain f32.
    pub fn fp32() -> Self {
        Self::new(RecipeKind::Fp32)
    }

    /// Autocast fp16.
    pub fn mixed_fp16() -> Self {
        Self::new(RecipeKind::MixedFp16)
    }

    /// Autocast bf16.
    pub fn mixed_bf16() -> Self {
        Self::new(RecipeKind::MixedBf16)
    }

    /// FP8 with per-tensor `scaling` (HYBRID formats). A delayed history of length 0 is refused
    /// (TE asserts `amax_history_len > 0`).
    pub fn fp8(scaling: Fp8Scaling) -> Result<Self> {
        if let Fp8Scaling::Delayed { history: 0, .. } = scaling {
            return Err(SimError::Config(
                "fp8: the amax history needs at least one entry".into(),
            ));
        }
        Ok(Self::with_settings(
            RecipeKind::Fp8,
            scaling,
            ScaleMode::Floor,
        ))
    }

    /// MXFP8 with scale mode `mode`.
    pub fn mxfp8(mode: ScaleMode) -> Self {
        Self::with_settings(RecipeKind::Mxfp8, Fp8Scaling::None, mode)
    }

    /// Which recipe this is.
    pub const fn kind(&self) -> RecipeKind {
        self.kind
    }

    /// Name as the CLI and the summaries spell it.
    pub fn name(&self) -> String {
        match self.kind {
            RecipeKind::Fp32 => "fp32".into(),
            RecipeKind::MixedFp16 => "mixed fp16".into(),
            RecipeKind::MixedBf16 => "mixed bf16".into(),
            RecipeKind::Fp8 => match self.scaling {
                Fp8Scaling::Delayed {
                    history,
                    margin,
                    algo,
                } => format!(
                    "fp8 (HYBRID, delayed scaling: history {history}, margin {margin}, {})",
                    match algo {
                        AmaxComputeAlgo::Max => "max",
                        AmaxComputeAlgo::MostRecent => "most_recent",
                    }
                ),
                Fp8Scaling::Current => "fp8 (HYBRID, current scaling)".into(),
                Fp8Scaling::None => "fp8 (HYBRID, no scaling)".into(),
            },
            RecipeKind::Mxfp8 => format!("mxfp8 (E4M3, blocks of 32, {})", self.mx_mode.name()),
        }
    }

    /// True for the recipes that round somewhere.
    pub const fn is_mixed(&self) -> bool {
        !matches!(self.kind, RecipeKind::Fp32)
    }

    /// Whether the recipe quantizes GEMM operands to 8 bits.
    pub const fn is_fp8(&self) -> bool {
        matches!(self.kind, RecipeKind::Fp8 | RecipeKind::Mxfp8)
    }

    /// The one format every site rounds to, when there is one (`None` for fp32 and the FP8
    /// recipes): what a backend that runs a single low-precision type (the CUDA backend: fp16)
    /// checks.
    pub const fn uniform_format(&self) -> Option<LowFormat> {
        match self.kind {
            RecipeKind::Fp32 | RecipeKind::Fp8 | RecipeKind::Mxfp8 => None,
            RecipeKind::MixedFp16 => Some(LowFormat::F16),
            RecipeKind::MixedBf16 => Some(LowFormat::Bf16),
        }
    }

    /// The format of the sites an FP8 recipe does not quantize (bf16), or the uniform one.
    pub const fn low_format(&self) -> Option<LowFormat> {
        match self.kind {
            RecipeKind::Fp8 | RecipeKind::Mxfp8 => Some(LowFormat::Bf16),
            _ => self.uniform_format(),
        }
    }

    /// The GEMM operands an FP8 recipe quantizes, in a fixed order: each layer's input,
    /// weight and output gradient.
    pub fn gemm_sites() -> impl Iterator<Item = Site> {
        Layer::ALL.into_iter().flat_map(|layer| {
            [Role::Input, Role::Weight, Role::OutputGrad].map(|role| Site::new(layer, role))
        })
    }

    /// The 8-bit format of a GEMM operand: HYBRID (E4M3 activations and weights, E5M2
    /// gradients) for FP8, E4M3 everywhere for MXFP8 (TE's `MXFP8BlockScaling` default).
    fn element(&self, site: Site) -> Fp8Element {
        match (self.kind, site.role.kind()) {
            (RecipeKind::Fp8, TensorKind::Gradient) => Fp8Element::E5M2,
            _ => Fp8Element::E4M3,
        }
    }

    /// What to do with the tensor at `site`: the one mapping from a recipe to formats.
    #[inline]
    pub fn cast(&self, site: Site) -> Cast {
        match self.kind {
            RecipeKind::Fp8 if site.role.is_gemm_operand() => {
                Cast::Quantize(Quantization::PerTensor(self.element(site)))
            }
            RecipeKind::Mxfp8 if site.role.is_gemm_operand() => {
                Cast::Quantize(Quantization::Mx(self.element(site), self.mx_mode))
            }
            _ => self.low_format().map_or(Cast::Keep, Cast::Round),
        }
    }

    /// Applies [`Self::cast`] of `site` to `values`, in place, where it is a rounding (a GEMM
    /// operand's quantization goes through [`Self::tensor_scale`] and [`crate::quantize`]).
    #[inline]
    pub fn round(&self, site: Site, values: &mut [f32]) {
        if let Cast::Round(format) = self.cast(site) {
            format.round(values);
        }
    }

    fn tensor_index(&self, site: Site) -> Option<usize> {
        self.tensors.iter().position(|t| t.site == site)
    }

    /// The scale `(scale, scale_inv)` a per-tensor site's tensor is cast with this step, given
    /// the tensor's `amax`: delayed scaling records the amax in the history's current slot and
    /// returns the scale its last update computed; current scaling computes TE's
    /// `compute_scale_from_amax(amax, fp8_max)`; no scaling returns 1. `None` for a site the
    /// recipe does not scale per tensor.
    pub fn tensor_scale(&mut self, site: Site, amax: f32) -> Option<(f32, f32)> {
        if self.kind != RecipeKind::Fp8 {
            return None;
        }
        let (scale, scale_inv) = self.peek_scale(site, amax)?;
        let delayed = matches!(self.scaling, Fp8Scaling::Delayed { .. });
        let i = self.tensor_index(site)?;
        let t = &mut self.tensors[i];
        t.amax = amax;
        t.scale = scale;
        t.scale_used = scale;
        if delayed {
            t.history[0] = amax;
        }
        Some((scale, scale_inv))
    }

    /// The scale `(scale, scale_inv)` [`Self::tensor_scale`] would give, changing nothing (an
    /// evaluation pass casts with the scales as they stand and records no amax).
    pub fn peek_scale(&self, site: Site, amax: f32) -> Option<(f32, f32)> {
        if self.kind != RecipeKind::Fp8 {
            return None;
        }
        let t = &self.tensors[self.tensor_index(site)?];
        let scale = match self.scaling {
            Fp8Scaling::Delayed { .. } => t.scale,
            Fp8Scaling::Current => {
                te_compute_scale_from_amax(amax, t.element.max(), false, 0.0, f32::MAX)
            }
            Fp8Scaling::None => 1.0,
        };
        Some((scale, te_scale_inv(scale)))
    }

    /// Records what the cast of `site`'s tensor did this step (and, for MX, its amax).
    pub fn record_stats(&mut self, site: Site, amax: Option<f32>, stats: QuantStats) {
        if let Some(i) = self.tensor_index(site) {
            let t = &mut self.tensors[i];
            t.stats = stats;
            if let Some(a) = amax {
                t.amax = a;
            }
        }
    }

    /// After a step's backward pass: delayed scaling's `amax_and_scale_update` of every
    /// tensor (TE runs it after the forward for the forward tensors and after the backward
    /// for the gradients; either way the next step's casts use the scales from this step's
    /// amaxes and the window before them). A zero or non-finite amax keeps the scale. Nothing
    /// for the other recipes.
    pub fn end_step(&mut self) {
        let Fp8Scaling::Delayed { margin, algo, .. } = self.scaling else {
            return;
        };
        if self.kind != RecipeKind::Fp8 {
            return;
        }
        let te = DelayedScaling {
            margin,
            amax_compute_algo: algo,
            fp8_format: Fp8Format::Hybrid,
            roll: HistoryRoll::Always,
        };
        for t in &mut self.tensors {
            let pass = match t.site.role.kind() {
                TensorKind::Gradient => Pass::Backward,
                _ => Pass::Forward,
            };
            let (_, scale) = amax_and_scale_update(&te, pass, &mut t.history, t.scale);
            t.scale = scale;
        }
    }

    /// The GEMM operands' states (empty for the recipes that do not quantize).
    pub fn tensors(&self) -> &[TensorScaling] {
        &self.tensors
    }

    /// The state to save with a run: per scaled tensor its amax history and scale
    /// (`"fc1.input.amax_history"`, `"fc1.input.scale"`), for delayed scaling only (current
    /// scaling, no scaling and MX keep nothing between steps).
    pub fn state(&self) -> RecipeState {
        let mut tensors = BTreeMap::new();
        if self.kind == RecipeKind::Fp8 && matches!(self.scaling, Fp8Scaling::Delayed { .. }) {
            for t in &self.tensors {
                let name = t.site.name();
                tensors.insert(
                    format!("{name}.amax_history"),
                    StateTensor(t.history.clone()),
                );
                tensors.insert(format!("{name}.scale"), StateTensor(vec![t.scale]));
            }
        }
        RecipeState {
            recipe: self.kind,
            tensors,
        }
    }

    /// Continues from a saved state; a state of another recipe, a missing or unexpected tensor
    /// or one of the wrong length is refused.
    pub fn load_state(&mut self, state: &RecipeState) -> Result<()> {
        if state.recipe != self.kind {
            return Err(SimError::Config(format!(
                "recipe: the state is {:?}, the run {:?}",
                state.recipe, self.kind
            )));
        }
        let expected = self.state();
        if let Some(name) = state
            .tensors
            .keys()
            .find(|k| !expected.tensors.contains_key(*k))
        {
            return Err(SimError::Config(format!(
                "recipe {}: unexpected state tensor {name}",
                self.name()
            )));
        }
        for (name, want) in &expected.tensors {
            let found = state.tensors.get(name).ok_or_else(|| {
                SimError::Config(format!(
                    "recipe {}: state tensor {name} missing",
                    self.name()
                ))
            })?;
            if found.0.len() != want.0.len() {
                return Err(SimError::Config(format!(
                    "recipe {}: state tensor {name} has {} values, the run {}",
                    self.name(),
                    found.0.len(),
                    want.0.len()
                )));
            }
        }
        for t in &mut self.tensors {
            let name = t.site.name();
            if let Some(h) = state.tensors.get(&format!("{name}.amax_history")) {
                t.history.clone_from(&h.0);
            }
            if let Some(s) = state.tensors.get(&format!("{name}.scale")) {
                t.scale = s.0[0];
            }
        }
        Ok(())
    }
}

/// The bits of one f32 tensor of a recipe's state.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StateTensor(#[serde(with = "f32_bits")] pub Vec<f32>);

/// A recipe's state between steps: which recipe, and its tensors by name (a site's name and
/// what it holds, `"fc1.input.amax_history"`, `"fc1.input.scale"`); none for fp32, mixed fp16,
/// mixed bf16, FP8 without delayed scaling and MXFP8.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RecipeState {
    pub recipe: RecipeKind,
    #[serde(default)]
    pub tensors: BTreeMap<String, StateTensor>,
}
