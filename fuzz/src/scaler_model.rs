//! Plain reference models of the loss-scale update, written from the frameworks' own code rather
//! than from the crate's, for the `scaler` fuzz target.
//!
//! - [`pytorch_kernel`] is `_amp_update_scale_` line for line.
//! - [`Model`] is DeepSpeed's `DynamicLossScaler.update_scale` line for line (iteration counters,
//!   `last_overflow_iter`, `cur_hysteresis`), generalised by the crate's documented options:
//!   PyTorch's growth timing, separate growth and backoff factors, f32 or f64 scale, an optional
//!   ceiling, a floor that holds or errors, and NaN treated as an overflow or as an error. The
//!   crate keeps a growth tracker instead of iteration counters; the model derives the tracker
//!   the crate must report from its counters.

use halfscale_core::scaler::{
    FloorPolicy, Found, GrowthTiming, NanPolicy, ScaleChange, ScalePrecision, ScalerConfig,
};

/// PyTorch's `_amp_update_scale_` kernel on an f32 scale, an int tracker and double factors:
///
/// ```text
/// if (*found_inf) { *current_scale = (*current_scale) * backoff_factor; *growth_tracker = 0; }
/// else { auto successful = (*growth_tracker) + 1;
///   if (successful == growth_interval) {
///     auto new_scale = static_cast<float>((*current_scale) * growth_factor);
///     if (std::isfinite(new_scale)) *current_scale = new_scale;
///     *growth_tracker = 0;
///   } else { *growth_tracker = successful; } }
/// ```
pub fn pytorch_kernel(
    scale: f32,
    tracker: i64,
    found_inf: bool,
    growth: f64,
    backoff: f64,
    interval: i64,
) -> (f32, i64) {
    if found_inf {
        ((f64::from(scale) * backoff) as f32, 0)
    } else {
        let successful = tracker + 1;
        if successful == interval {
            let new_scale = (f64::from(scale) * growth) as f32;
            (
                if new_scale.is_finite() {
                    new_scale
                } else {
                    scale
                },
                0,
            )
        } else {
            (scale, successful)
        }
    }
}

fn round(p: ScalePrecision, x: f64) -> f64 {
    match p {
        ScalePrecision::F32 => f64::from(x as f32),
        ScalePrecision::F64 => x,
    }
}

/// Why the model refuses an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A NaN under `NanPolicy::Error`.
    Nan,
    /// An overflow at the floor under `FloorPolicy::Error` (DeepSpeed's
    /// `raise_error_at_min_scale`).
    AtFloor,
}

#[derive(Clone, Debug)]
pub struct Model {
    pub cfg: ScalerConfig,
    pub floor: Option<f64>,
    pub ceiling: Option<f64>,
    pub cur_scale: f64,
    pub cur_hysteresis: u32,
    pub cur_iter: i64,
    pub last_overflow_iter: i64,
    pub skipped: u64,
}

impl Model {
    /// The configuration's rules as the crate documents them; `None` for an invalid one.
    pub fn new(cfg: ScalerConfig) -> Option<Model> {
        let p = cfg.precision;
        let positive = |x: f64| x.is_finite() && x > 0.0;
        let bound = |m: Option<f64>| match m {
            None => Some(None),
            Some(v) => positive(round(p, v)).then(|| Some(round(p, v))),
        };
        let init = round(p, cfg.init_scale);
        let valid = cfg.growth_factor.is_finite()
            && cfg.growth_factor > 1.0
            && cfg.backoff_factor > 0.0
            && cfg.backoff_factor < 1.0
            && cfg.growth_interval >= 1
            && cfg.hysteresis >= 1
            && positive(init);
        let (floor, ceiling) = (bound(cfg.min_scale)?, bound(cfg.max_scale)?);
        if !valid
            || matches!((floor, ceiling), (Some(lo), Some(hi)) if lo > hi)
            || floor.is_some_and(|lo| init < lo)
            || ceiling.is_some_and(|hi| init > hi)
        {
            return None;
        }
        Some(Model {
            cfg,
            floor,
            ceiling,
            cur_scale: init,
            cur_hysteresis: cfg.hysteresis,
            cur_iter: 0,
            last_overflow_iter: -1,
            skipped: 0,
        })
    }

    /// One `update_scale(overflow)`.
    pub fn update(&mut self, found: Found) -> Result<ScaleChange, Refusal> {
        if !self.cfg.enabled {
            return Ok(ScaleChange::Disabled);
        }
        let overflow = match (found, self.cfg.nan_policy) {
            (Found::Finite, _) => false,
            (Found::Inf, _) | (Found::Nan, NanPolicy::Overflow) => true,
            (Found::Nan, NanPolicy::Error) => return Err(Refusal::Nan),
        };
        let p = self.cfg.precision;
        let change = if overflow {
            // if self.delayed_shift == 1 or self.cur_hysteresis == 1:
            //     if cur_scale == min_scale and raise_error_at_min_scale: raise
            //     else: cur_scale = max(cur_scale / scale_factor, min_scale)
            // else: cur_hysteresis -= 1
            // last_overflow_iter = cur_iter
            let change = if self.cfg.hysteresis == 1 || self.cur_hysteresis == 1 {
                if self.floor == Some(self.cur_scale) && self.cfg.at_floor == FloorPolicy::Error {
                    return Err(Refusal::AtFloor);
                }
                let candidate = round(p, self.cur_scale * self.cfg.backoff_factor);
                match self.floor {
                    Some(lo) if candidate < lo => {
                        self.cur_scale = lo;
                        ScaleChange::ClampedToFloor
                    }
                    _ => {
                        self.cur_scale = candidate;
                        ScaleChange::BackedOff
                    }
                }
            } else {
                self.cur_hysteresis -= 1;
                ScaleChange::Absorbed
            };
            self.last_overflow_iter = self.cur_iter;
            self.skipped += 1;
            change
        } else {
            // if consecutive_hysteresis: cur_hysteresis = delayed_shift
            // stable_interval = (cur_iter - last_overflow_iter) - 1
            // if stable_interval > 0 and stable_interval % scale_window == 0:
            //     if not consecutive_hysteresis: cur_hysteresis = delayed_shift
            //     cur_scale *= scale_factor
            if self.cfg.consecutive_hysteresis {
                self.cur_hysteresis = self.cfg.hysteresis;
            }
            let window = i64::from(self.cfg.growth_interval);
            let since = self.cur_iter - self.last_overflow_iter;
            let grow = match self.cfg.growth_timing {
                // PyTorch grows on the growth_interval-th clean update after an overflow (or the
                // start), and every growth_interval-th after that.
                GrowthTiming::PyTorch => since % window == 0,
                GrowthTiming::DeepSpeed => since - 1 > 0 && (since - 1) % window == 0,
            };
            if grow {
                if !self.cfg.consecutive_hysteresis {
                    self.cur_hysteresis = self.cfg.hysteresis;
                }
                let candidate = round(p, self.cur_scale * self.cfg.growth_factor);
                if !candidate.is_finite() {
                    ScaleChange::GrowthRefused
                } else {
                    match self.ceiling {
                        Some(hi) if candidate > hi => {
                            self.cur_scale = hi;
                            ScaleChange::ClampedToCeiling
                        }
                        _ => {
                            self.cur_scale = candidate;
                            ScaleChange::Grew
                        }
                    }
                }
            } else {
                ScaleChange::Unchanged
            }
        };
        self.cur_iter += 1;
        Ok(change)
    }

    /// The growth tracker the crate must report: PyTorch's `_growth_tracker` (clean updates since
    /// the last overflow or growth), or DeepSpeed's `stable_interval` kept in `0..=W`.
    pub fn tracker(&self) -> u32 {
        let clean = self.cur_iter - 1 - self.last_overflow_iter;
        let window = i64::from(self.cfg.growth_interval);
        let t = match self.cfg.growth_timing {
            GrowthTiming::PyTorch => clean % window,
            GrowthTiming::DeepSpeed if clean == 0 => 0,
            GrowthTiming::DeepSpeed => (clean - 1) % window + 1,
        };
        t as u32
    }
}
