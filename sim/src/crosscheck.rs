//! The cross-check: beside a step of any backend, the f32 reference step from the same weights
//! and batch, and what differs.
//!
//! For each checked step it records
//! - the relative difference of the loss, of the logits and of each layer's (unscaled) weight and
//!   bias gradient, `||a - r||_2 / ||r||_2` in f64 (`r` the reference);
//! - the fate census of each layer's reference gradient, and of the reference `dL/dlogits`, at the
//!   current loss scale in the low-precision format (`halfscale_core::fate::census`): how many
//!   elements would be flushed to zero, lose bits as subnormals, or overflow;
//! - whether the scaler's skip decision was right: a step must be skipped exactly when the
//!   low-precision backward produced an inf or NaN in the parameter gradients (checked here
//!   independently, on the gradients before unscaling).
//!
//! # The bound
//! A non-skipped step is *divergent* when any relative difference exceeds [`Bounds`]:
//!
//! | precision | loss | logits | any layer's gradient |
//! |-----------|------|--------|----------------------|
//! | fp16      | 1e-2 | 5e-3   | 3e-1                 |
//! | bf16      | 1e-1 | 3e-2   | 5e-1                 |
//! | fp8       | 1    | 3e-1   | 1.5                  |
//! | mxfp8     | 2.5  | 4e-1   | 3                    |
//! | fp32      | 1e-6 | 1e-6   | 1e-6                 |
//!
//! fp16 keeps 11 significant bits (unit roundoff 2^-11 = 4.9e-4), bf16 8 (3.9e-3). Measured over
//! one MNIST epoch with the default seed and PyTorch's scaler (938 checked steps), the worst
//! step reached, in fp16: loss 2.2e-3, logits 4.3e-4, gradient 1.0e-1 (median 6.3e-3); in bf16:
//! loss 2.2e-2, logits 3.3e-3, gradient 1.4e-1 (median 2.7e-2). The loss and logits follow the
//! unit roundoff. The gradients are further off because rounding flips discrete decisions
//! (a ReLU or a max-pool winner on a near-tie) and late in training a well-classified batch has
//! a tiny gradient made of a few examples, where one flip is a visible fraction. The bounds sit
//! 3x (gradients) to 10x (logits) above the worst measured step: they flag a lost layer gradient
//! (relative difference near 1), a misplaced rounding point or a broken kernel, not rounding
//! noise. With `--no-scaler`, underflow removes gradient components and the differences grow;
//! that is what the flag is for.
//!
//! The FP8 recipes keep 4 (E4M3) or 3 (E5M2) significant bits in every GEMM operand, so a step's
//! result is far from f32's while training stays on course. Over the same epoch the worst step
//! reached, in fp8 with delayed scaling: loss 3.1e-1, logits 9.5e-2, gradient 5.4e-1 (median
//! 1.5e-1; current scaling 2.1e-1, 3.7e-2, 5.3e-1); in mxfp8 (FLOOR): loss 8.2e-1 (a step whose
//! loss is small), logits 1.3e-1, gradient 1.06 (median 2.4e-1; FLOOR saturates up to an
//! eighth of each block's top octave). The bounds sit about 3x above: they flag a blow-up or a
//! lost tensor, not the format's noise.

use crate::backend::{Backend, Batch};
use crate::dataset::CLASSES;
use crate::error::Result;
use crate::loss;
use crate::model::{Layer, Params};
use crate::recipe::{Cast, LowFormat, Recipe, RecipeKind, Role, Site};
use halfscale_core::fate::{census, Census};
use halfscale_core::half::{bf16, f16};
use rayon::prelude::*;

/// Relative-difference bounds of a non-skipped step (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Bounds {
    pub loss: f64,
    pub logits: f64,
    pub grads: f64,
}

impl Bounds {
    /// The documented bounds for a recipe.
    pub const fn for_recipe(recipe: &Recipe) -> Self {
        match recipe.kind() {
            RecipeKind::MixedFp16 => Bounds {
                loss: 1e-2,
                logits: 5e-3,
                grads: 3e-1,
            },
            RecipeKind::MixedBf16 => Bounds {
                loss: 1e-1,
                logits: 3e-2,
                grads: 5e-1,
            },
            RecipeKind::Fp8 => Bounds {
                loss: 1.0,
                logits: 3e-1,
                grads: 1.5,
            },
            RecipeKind::Mxfp8 => Bounds {
                loss: 2.5,
                logits: 4e-1,
                grads: 3.0,
            },
            RecipeKind::Fp32 => Bounds {
                loss: 1e-6,
                logits: 1e-6,
                grads: 1e-6,
            },
        }
    }
}

/// Writes a [`Census`] into the metrics file as its counts: `total`, `zero`, `exact`,
/// `rounded`, `subnormal`, `subnormal_inexact`, `flushed_to_zero`, `overflow`, `nan`, `inf` and
/// `underflowed` (flushed to zero, or subnormal with lost bits), in that order. The exponent
/// histogram and the extremes stay out of the per-step line (384 bins a tensor a step), and so
/// do the FP8-only `overflow_nan` and `saturated`, which are zero for the 16-bit formats the
/// cross-check censuses in.
pub fn census_counts<S: serde::Serializer>(c: &Census, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut m = s.serialize_struct("Census", 11)?;
    m.serialize_field("total", &c.total())?;
    m.serialize_field("zero", &c.zero)?;
    m.serialize_field("exact", &c.exact)?;
    m.serialize_field("rounded", &c.rounded)?;
    m.serialize_field("subnormal", &c.subnormal)?;
    m.serialize_field("subnormal_inexact", &c.subnormal_inexact)?;
    m.serialize_field("flushed_to_zero", &c.flushed_to_zero)?;
    m.serialize_field("overflow", &c.overflow)?;
    m.serialize_field("nan", &c.nan)?;
    m.serialize_field("inf", &c.inf)?;
    m.serialize_field("underflowed", &c.underflowed())?;
    m.end()
}

/// One layer's figures in a checked step.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LayerCheck {
    pub layer: Layer,
    /// Relative difference of the weight and bias gradients (together).
    pub grad_rel: f64,
    /// Fate of the reference gradient times the scale in the low-precision format.
    #[serde(serialize_with = "census_counts")]
    pub census: Census,
}

/// What the comparison measured about one step, before the scaler's decision is known: a
/// [`Verdict`] once [`Comparison::judge`] has it.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub loss_ref: f32,
    pub loss_rel: f64,
    pub logits_rel: f64,
    pub layers: Vec<LayerCheck>,
    /// Fate of the reference `dL/dlogits` times the scale: the backward's first rounding point.
    pub logit_grad_census: Census,
    /// The low-precision backward produced an inf or NaN in a parameter gradient.
    pub expected_skip: bool,
    /// Largest `grad_rel` over layers.
    pub max_grad_rel: f64,
    /// The bounds of the check that measured it.
    pub bounds: Bounds,
}

impl Comparison {
    /// The step's complete verdict, given what the scaler decided: `skip_ok` (always true when
    /// scaling is disabled: nothing is skipped by design then) and `within_bounds` (skipped
    /// steps are judged by `skip_ok` alone; a step that applies non-finite gradients, possible
    /// only without a scaler, is out of bounds).
    pub fn judge(self, scaler_skipped: bool, scaling_enabled: bool) -> Verdict {
        let b = self.bounds;
        let within_bounds = if self.expected_skip {
            scaling_enabled
        } else {
            self.loss_rel <= b.loss && self.logits_rel <= b.logits && self.max_grad_rel <= b.grads
        };
        Verdict {
            loss_ref: self.loss_ref,
            loss_rel: self.loss_rel,
            logits_rel: self.logits_rel,
            layers: self.layers,
            logit_grad_census: self.logit_grad_census,
            expected_skip: self.expected_skip,
            scaler_skipped,
            skip_ok: !scaling_enabled || scaler_skipped == self.expected_skip,
            max_grad_rel: self.max_grad_rel,
            within_bounds,
        }
    }
}

/// Everything the cross-check found about one step, judged: what the loop accounts for, the
/// metrics file records and the CLI prints. Nothing downstream recomputes it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Verdict {
    pub loss_ref: f32,
    pub loss_rel: f64,
    pub logits_rel: f64,
    pub layers: Vec<LayerCheck>,
    /// Fate of the reference `dL/dlogits` times the scale: the backward's first rounding point.
    #[serde(serialize_with = "census_counts")]
    pub logit_grad_census: Census,
    /// The low-precision backward produced an inf or NaN in a parameter gradient.
    pub expected_skip: bool,
    /// What the scaler decided.
    pub scaler_skipped: bool,
    /// `expected_skip == scaler_skipped`, or scaling disabled.
    pub skip_ok: bool,
    /// Largest `grad_rel` over layers.
    pub max_grad_rel: f64,
    /// No bound exceeded (see [`Comparison::judge`]).
    pub within_bounds: bool,
}

/// What is wrong with a checked step, when something is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Finding {
    /// The low-precision backward produced inf/NaN and no scaler skipped the step.
    NonFiniteApplied,
    /// The scaler's skip decision disagrees with the gradients.
    WrongSkip {
        scaler_skipped: bool,
        expected_skip: bool,
    },
    /// A relative difference beyond its bound.
    Divergent {
        loss_rel: f64,
        logits_rel: f64,
        grad_rel: f64,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Finding::NonFiniteApplied => f.write_str(
                "the low-precision backward produced inf/NaN and no scaler skipped the step",
            ),
            Finding::WrongSkip {
                scaler_skipped,
                expected_skip,
            } => write!(
                f,
                "wrong skip decision: the scaler {} but the low-precision backward {} inf/NaN",
                if scaler_skipped { "skipped" } else { "stepped" },
                if expected_skip { "produced" } else { "produced no" }
            ),
            Finding::Divergent {
                loss_rel,
                logits_rel,
                grad_rel,
            } => write!(
                f,
                "divergence beyond the bound: loss {loss_rel:.2e}, logits {logits_rel:.2e}, gradients {grad_rel:.2e}"
            ),
        }
    }
}

impl Verdict {
    /// What is wrong with the step, if anything.
    pub fn finding(&self) -> Option<Finding> {
        if self.within_bounds && self.skip_ok {
            None
        } else if self.expected_skip && !self.scaler_skipped {
            Some(Finding::NonFiniteApplied)
        } else if !self.skip_ok {
            Some(Finding::WrongSkip {
                scaler_skipped: self.scaler_skipped,
                expected_skip: self.expected_skip,
            })
        } else {
            Some(Finding::Divergent {
                loss_rel: self.loss_rel,
                logits_rel: self.logits_rel,
                grad_rel: self.max_grad_rel,
            })
        }
    }

    /// The layer with the largest gradient difference, when the step's gradients are
    /// comparable (none when the low-precision backward was not finite).
    pub fn worst_layer(&self) -> Option<&LayerCheck> {
        if self.expected_skip {
            return None;
        }
        self.layers
            .iter()
            .max_by(|a, b| a.grad_rel.total_cmp(&b.grad_rel))
    }

    /// Total underflowed elements over the layers' gradients.
    pub fn underflowed(&self) -> u64 {
        self.layers.iter().map(|l| l.census.underflowed()).sum()
    }

    /// Total elements censused over the layers' gradients.
    pub fn censused(&self) -> u64 {
        self.layers.iter().map(|l| l.census.total()).sum()
    }
}

/// `||a - r|| / ||r||` in f64; 0 when both are zero, inf when only `r` is.
pub fn rel_diff(a: &[f32], r: &[f32]) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(r) {
        let d = f64::from(x) - f64::from(y);
        num += d * d;
        den += f64::from(y) * f64::from(y);
    }
    if den == 0.0 {
        if num == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        (num / den).sqrt()
    }
}

/// The format a recipe's site is censused in: the format it rounds to, and for a site kept in
/// f32 (an fp32 run) fp16, as fp16 would store it: what the seed warns about.
pub fn census_format(recipe: &Recipe, site: Site) -> LowFormat {
    match recipe.cast(site) {
        Cast::Round(format) => format,
        Cast::Keep => LowFormat::F16,
        // A GEMM operand of an FP8 recipe: its 8-bit cast has counts of its own (the recipe's
        // per-tensor figures); the tensor before the cast is bf16.
        Cast::Quantize(_) => LowFormat::Bf16,
    }
}

/// The census of `values * scale` in `format`, in parallel over blocks (counts and extremes
/// merge exactly, in any order).
fn census_in(format: LowFormat, values: &[f32], scale: f32) -> Census {
    let one = |block: &[f32]| match format {
        LowFormat::Bf16 => census::<bf16>(block, scale),
        LowFormat::F16 => census::<f16>(block, scale),
    };
    values
        .par_chunks(1 << 14)
        .map(one)
        .reduce(Census::default, |mut a, b| {
            a.merge(&b);
            a
        })
}

/// The reference backend and the buffers of the comparison.
pub struct CrossCheck {
    reference: Box<dyn Backend>,
    recipe: Recipe,
    bounds: Bounds,
    ref_grads: Params,
    grads: Params,
    logits: Vec<f32>,
    ref_logits: Vec<f32>,
    logp: Vec<f32>,
    dlogits: Vec<f32>,
}

impl CrossCheck {
    /// A cross-check of a backend running recipe `checked` against `reference` (an f32
    /// backend).
    pub fn new(reference: Box<dyn Backend>, checked: &Recipe) -> Self {
        Self {
            reference,
            recipe: checked.clone(),
            bounds: Bounds::for_recipe(checked),
            ref_grads: Params::zeros(),
            grads: Params::zeros(),
            logits: Vec::new(),
            ref_logits: Vec::new(),
            logp: Vec::new(),
            dlogits: Vec::new(),
        }
    }

    /// The bounds in force.
    pub fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    /// Compares `checked` right after its `forward_backward(batch, scale)` (and before its
    /// unscale): runs the reference from the same weights and reads both sides; the
    /// [`Comparison`] becomes the step's [`Verdict`] with the scaler's decision.
    pub fn compare(
        &mut self,
        checked: &dyn Backend,
        batch: Batch<'_>,
        loss: f32,
        scale: f32,
        inv_scale: f32,
    ) -> Result<Comparison> {
        // The checked backend's weights (its optimizer state is no business of the reference).
        self.reference.import_state(&checked.export_weights()?)?;
        let loss_ref = self.reference.forward_backward(batch, 1.0)?;
        self.reference.read_grads(&mut self.ref_grads)?;
        self.reference.read_logits(&mut self.ref_logits)?;
        checked.read_grads(&mut self.grads)?;
        checked.read_logits(&mut self.logits)?;

        // Independent of the scaler: did the low-precision backward overflow?
        let expected_skip = self.grads.data.iter().any(|g| !g.is_finite());
        // Unscale as the scaler does (f32 multiply) to compare with the unscaled reference.
        if inv_scale != 1.0 {
            for g in &mut self.grads.data {
                *g *= inv_scale;
            }
        }
        let mut layers = Vec::with_capacity(4);
        for layer in Layer::ALL {
            let r = layer.range();
            layers.push(LayerCheck {
                layer,
                grad_rel: rel_diff(&self.grads.data[r.clone()], &self.ref_grads.data[r.clone()]),
                census: census_in(
                    census_format(&self.recipe, Site::new(layer, Role::WeightGrad)),
                    &self.ref_grads.data[r],
                    scale,
                ),
            });
        }
        // The reference dL/dlogits (upstream gradient 1), censused at the scale.
        let n = batch.len();
        self.logp.resize(n * CLASSES, 0.0);
        self.dlogits.resize(n * CLASSES, 0.0);
        loss::log_softmax(n, CLASSES, &self.ref_logits, &mut self.logp);
        loss::backward(n, CLASSES, &self.logp, batch.labels, 1.0, &mut self.dlogits);
        let logit_grad_census = census_in(
            census_format(&self.recipe, Site::new(Layer::Fc2, Role::OutputGrad)),
            &self.dlogits,
            scale,
        );

        let max_grad_rel = layers.iter().map(|l| l.grad_rel).fold(0.0, f64::max);
        let loss_rel = if loss_ref == 0.0 {
            f64::from((loss - loss_ref).abs())
        } else {
            (f64::from(loss) - f64::from(loss_ref)).abs() / f64::from(loss_ref).abs()
        };
        Ok(Comparison {
            loss_ref,
            loss_rel,
            logits_rel: rel_diff(&self.logits, &self.ref_logits),
            layers,
            logit_grad_census,
            expected_skip,
            max_grad_rel,
            bounds: self.bounds,
        })
    }
}
