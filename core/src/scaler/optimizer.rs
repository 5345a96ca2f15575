//! PyTorch's per-optimizer state machine (`OptState.READY -> UNSCALED -> STEPPED`, reset by
//! `update()`), in a fixed-capacity `heapless` map.

use core::fmt;

use heapless::LinearMap;

use super::config::NanPolicy;
use super::error::ScalerError;
use super::unscale::{Found, NonFiniteReport};

/// A caller-chosen name for an optimizer (PyTorch keys its states by `id(optimizer)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct OptimizerId(pub u16);

impl fmt::Display for OptimizerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "optimizer {}", self.0)
    }
}

/// Where an optimizer is in the current iteration (PyTorch `OptState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OptStage {
    /// Nothing done since the last update.
    Ready,
    /// Its gradients were unscaled (and checked).
    Unscaled,
    /// `step` was called (whether or not the step was skipped).
    Stepped,
}

/// What `step` did, so the caller can gate an LR scheduler (or anything that must move only
/// with the parameters) without another look at the gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum StepOutcome {
    /// The gradients were finite (or scaling is disabled): the optimizer steps.
    Stepped,
    /// An inf was found: the step is skipped.
    SkippedInf,
    /// A NaN was found (under `NanPolicy::Overflow`): the step is skipped.
    SkippedNan,
}

impl StepOutcome {
    /// The outcome of a check.
    pub const fn from_found(found: Found) -> Self {
        match found {
            Found::Finite => StepOutcome::Stepped,
            Found::Inf => StepOutcome::SkippedInf,
            Found::Nan => StepOutcome::SkippedNan,
        }
    }

    /// Whether the optimizer (and its LR scheduler) should step.
    pub const fn is_stepped(self) -> bool {
        matches!(self, StepOutcome::Stepped)
    }

    /// `stepped`, `skipped_inf`, `skipped_nan`.
    pub const fn as_str(self) -> &'static str {
        match self {
            StepOutcome::Stepped => "stepped",
            StepOutcome::SkippedInf => "skipped_inf",
            StepOutcome::SkippedNan => "skipped_nan",
        }
    }
}

impl fmt::Display for StepOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Slot {
    stage: OptStage,
    /// The inf checks recorded this iteration (`found_inf_per_device`); `None` if none.
    check: Option<NonFiniteReport>,
}

/// The per-optimizer states of one iteration, for at most `N` optimizers.
///
/// Every transition is checked before anything changes, and misuse is the error PyTorch raises:
/// unscale twice or after a step, step twice, step with no inf check, update with none.
#[derive(Clone, Debug)]
pub struct OptimizerStates<const N: usize> {
    slots: LinearMap<OptimizerId, Slot, N>,
}

impl<const N: usize> Default for OptimizerStates<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> OptimizerStates<N> {
    /// No optimizer seen yet.
    pub const fn new() -> Self {
        Self {
            slots: LinearMap::new(),
        }
    }

    /// The stage of `id` (`Ready` if not seen this iteration).
    pub fn stage(&self, id: OptimizerId) -> OptStage {
        self.slots.get(&id).map_or(OptStage::Ready, |s| s.stage)
    }

    /// The check recorded for `id` this iteration.
    pub fn check(&self, id: OptimizerId) -> Option<NonFiniteReport> {
        self.slots.get(&id).and_then(|s| s.check)
    }

    /// Runs `pass` (the unscale of `id`'s gradients, returning its report, or `None` when it had
    /// no gradient tensors) if `id` may be unscaled now, and records it. The checks come first,
    /// so a refused call never runs `pass`.
    pub fn unscale_with(
        &mut self,
        id: OptimizerId,
        pass: impl FnOnce() -> Option<NonFiniteReport>,
    ) -> Result<Option<NonFiniteReport>, ScalerError> {
        match self.stage(id) {
            OptStage::Unscaled => return Err(ScalerError::UnscaleTwice { optimizer: id }),
            OptStage::Stepped => return Err(ScalerError::UnscaleAfterStep { optimizer: id }),
            OptStage::Ready => {}
        }
        if !self.slots.contains_key(&id) && self.slots.is_full() {
            return Err(ScalerError::TooManyOptimizers { capacity: N });
        }
        let check = pass();
        let slot = Slot {
            stage: OptStage::Unscaled,
            check,
        };
        if self.slots.insert(id, slot).is_err() {
            // Unreachable: capacity was checked above; report it rather than panic.
            return Err(ScalerError::TooManyOptimizers { capacity: N });
        }
        Ok(check)
    }

    /// PyTorch's `step` checks and verdict for `id`: refuses a second step and a step with no
    /// inf check; under `NanPolicy::Error` a NaN is an error naming its position (and the stage
    /// does not move). Otherwise the stage becomes `Stepped` and the outcome says whether the
    /// optimizer should really step.
    pub fn step(
        &mut self,
        id: OptimizerId,
        nan_policy: NanPolicy,
    ) -> Result<StepOutcome, ScalerError> {
        let Some(slot) = self.slots.get_mut(&id) else {
            return Err(ScalerError::NoInfChecksForOptimizer { optimizer: id });
        };
        if slot.stage == OptStage::Stepped {
            return Err(ScalerError::StepTwice { optimizer: id });
        }
        let Some(check) = slot.check else {
            return Err(ScalerError::NoInfChecksForOptimizer { optimizer: id });
        };
        let found = check.found();
        if found == Found::Nan && nan_policy == NanPolicy::Error {
            return Err(ScalerError::NanGradient {
                optimizer: Some(id),
                index: check.first_nan,
            });
        }
        slot.stage = OptStage::Stepped;
        Ok(StepOutcome::from_found(found))
    }

    /// The worst finding over every optimizer's check, what `GradScaler.update` sums; `None` if
    /// no check was recorded.
    pub fn found(&self) -> Option<Found> {
        self.slots
            .values()
            .filter_map(|s| s.check)
            .map(|c| c.found())
            .reduce(Found::worst)
    }

    /// The first optimizer (in the order first unscaled) with a NaN, and its NaN's index.
    pub fn first_nan(&self) -> Option<(OptimizerId, Option<usize>)> {
        self.slots
            .iter()
            .find_map(|(id, s)| s.check.filter(|c| c.nan > 0).map(|c| (*id, c.first_nan)))
    }

    /// Forgets the iteration: every optimizer is `Ready` again (what `update()` ends with).
    pub fn reset(&mut self) {
        self.slots.clear();
    }

    /// Optimizers seen this iteration.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no optimizer was seen this iteration.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}
