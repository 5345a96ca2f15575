//! The saved state of a scaler: PyTorch's `GradScaler.state_dict()` keys, plus this crate's.

/// Everything needed to continue a scaler bit for bit.
///
/// The first five fields are PyTorch's `state_dict()` entries under their exact names, so
/// `json.dumps(scaler.state_dict())` loads as is (with the `serde` feature) and a dump of this
/// struct loads into `GradScaler.load_state_dict`, which reads those five keys and ignores the
/// rest. The extras default when absent, as they are in a PyTorch dump.
///
/// As in PyTorch, loading replaces the configuration's `growth_factor`, `backoff_factor` and
/// `growth_interval` with the saved ones (see [`LossScaler::load_state`](super::LossScaler::load_state)).
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ScalerState {
    /// The current scale (PyTorch: `get_scale()`, a Python float holding the f32 value).
    pub scale: f64,
    /// PyTorch `growth_factor`.
    pub growth_factor: f64,
    /// PyTorch `backoff_factor`.
    pub backoff_factor: f64,
    /// PyTorch `growth_interval`.
    pub growth_interval: u32,
    /// PyTorch `_growth_tracker`: clean updates counted towards the next growth. Under DeepSpeed
    /// timing it is DeepSpeed's `stable_interval` for the next update, kept in `0..=W` (see
    /// [`LossScaler::growth_tracker`](super::LossScaler::growth_tracker)).
    #[cfg_attr(feature = "serde", serde(rename = "_growth_tracker"))]
    pub growth_tracker: u32,
    /// Overflows still tolerated before a backoff (DeepSpeed `cur_hysteresis`); `None` (absent)
    /// means the configured `hysteresis`, i.e. full.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub hysteresis_left: Option<u32>,
    /// Updates whose check found a non-finite gradient, i.e. iterations whose steps were skipped.
    #[cfg_attr(feature = "serde", serde(default))]
    pub skipped_steps: u64,
    /// Updates performed (DeepSpeed `cur_iter`).
    #[cfg_attr(feature = "serde", serde(default))]
    pub iteration: u64,
}
