//! The state of a run: everything that decides the steps still to come, in one serialisable
//! value. A [`crate::train::Trainer`] advances it one step at a time; serialised mid-run and
//! read back, it continues the run bit for bit (test: `sim/tests/resume.rs`).
//!
//! What decides the rest of a run, besides its configuration ([`crate::train::TrainConfig`], the
//! recipe, the scaler's policy, the data), and nothing more:
//!
//! - the master weights and `torch.optim.Adam`'s moments and step count;
//! - the loss scaler's [`ScalerState`] (PyTorch's `GradScaler.state_dict()` keys and ours);
//! - the recipe's state ([`RecipeState`]: empty for fp32, mixed fp16 and mixed bf16; per-tensor
//!   scaling histories for recipes that scale);
//! - where the data stands ([`DataCursor`]: epoch, batch, and the position of the shuffling
//!   stream from which the epoch's order is drawn);
//! - the global step, which also decides which steps are cross-checked.
//!
//! Tensors are stored as the bits of their f32 values (`u32`), so a JSON round trip keeps NaN,
//! infinities, signed zeros and every payload: a resumed run must see exactly the weights the
//! interrupted one had.

use crate::adam::AdamState;
use crate::model::Params;
use crate::recipe::RecipeState;
use crate::train::{TrainConfig, SHUFFLE_SEED_XOR};
use halfscale_core::scaler::{LossScaler, ScalerState};

/// Where the data stands: the next batch to train on.
///
/// An epoch's order is a permutation drawn from the shuffling stream (see
/// [`crate::dataset::Batches`]); the cursor keeps the stream's position *before* the current
/// epoch's draw, so a resumed run draws the same permutation again and continues at `batch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataCursor {
    /// Epoch from 0.
    pub epoch: usize,
    /// The next batch of the epoch, from 0.
    pub batch: usize,
    /// The seed of the shuffling stream (the run's seed xor [`SHUFFLE_SEED_XOR`]).
    pub shuffle_seed: u64,
    /// 32-bit words of the shuffling stream consumed before this epoch's order was drawn.
    pub rng_word_pos: u64,
}

/// Everything a run needs to continue (see the module doc). Between a trainer's steps its
/// tensors live in the backend; [`crate::train::Trainer::sync`] brings them back.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainState {
    /// Steps taken (skipped ones included), the next step's number.
    pub step: u64,
    /// The next batch.
    pub cursor: DataCursor,
    /// The f32 master weights.
    pub params: Params,
    /// Adam's step count and moments.
    pub adam: AdamState,
    /// The loss scaler's state; `None` when scaling is off (as PyTorch's `state_dict()` is `{}`).
    pub scaler: Option<ScalerState>,
    /// The recipe's own state (empty for the recipes without scaling).
    pub recipe: RecipeState,
}

impl TrainState {
    /// The state at step 0: the seed's initial weights (`Params::init(config.seed)`), fresh
    /// Adam moments, `scaler` as it stands, the recipe's initial state, the first batch of the
    /// first epoch.
    pub fn init(config: &TrainConfig, scaler: &LossScaler, recipe: RecipeState) -> Self {
        Self {
            step: 0,
            cursor: DataCursor {
                epoch: 0,
                batch: 0,
                shuffle_seed: config.seed ^ SHUFFLE_SEED_XOR,
                rng_word_pos: 0,
            },
            params: Params::init(config.seed),
            adam: AdamState::new(crate::model::PARAM_COUNT),
            scaler: scaler.state(),
            recipe,
        }
    }
}

/// Serde for `Vec<f32>` as the values' bits (`Vec<u32>`): exact for every value, NaN included
/// (JSON has no NaN or infinity, and decimal text is not guaranteed to round-trip through an
/// f64 parser).
pub mod f32_bits {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Writes `values` as their bit patterns.
    pub fn serialize<S: Serializer>(values: &[f32], s: S) -> Result<S::Ok, S::Error> {
        let bits: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
        bits.serialize(s)
    }

    /// Reads bit patterns back into values.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        let bits = Vec::<u32>::deserialize(d)?;
        Ok(bits.into_iter().map(f32::from_bits).collect())
    }
}
