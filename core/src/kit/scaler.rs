#![doc = include_str!("../../docs/check-your-scaler.md")]
//!
//! # The strategies
//! [`pytorch_configs`] draws configurations that follow PyTorch's rule (what a device kernel
//! implements); [`scaler_configs`] any valid configuration, every policy included; [`events`]
//! sequences of gradient checks, runs of clean steps long enough to reach growth broken by infs
//! and NaNs.

use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestError, TestRunner};

use crate::scaler::{
    ConfigError, FloorPolicy, Found, GrowthTiming, LossScaler, NanPolicy, ScalePrecision,
    ScalerConfig,
};

/// Scales a PyTorch-rule configuration starts from: powers of two across f32, any normal f32,
/// and the extremes (the top of f32, where growth is refused; the bottom, where backoff reaches 0).
fn init_scales() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => (-24i32..=40).prop_map(|k| libm::ldexp(1.0, k)),
        2 => (0x0080_0000u32..0x7f80_0000).prop_map(|b| f64::from(f32::from_bits(b))),
        1 => prop::sample::select(alloc::vec![
            libm::ldexp(1.0, 126),
            libm::ldexp(1.0, 127),
            f64::from(f32::MAX),
            libm::ldexp(1.0, -126),
            libm::ldexp(1.0, -149),
        ]),
    ]
}

/// Configurations under PyTorch's rule ([`ScalerConfig::follows_pytorch_rule`]): PyTorch's
/// defaults for the factors most of the time, arbitrary `f64` factors (0.3, 1.5, ...: not
/// representable in f32, so they must reach the update unrounded), intervals of 1 to 64 and 2000.
pub fn pytorch_configs() -> impl Strategy<Value = ScalerConfig> {
    let growth = prop_oneof![
        4 => Just(2.0),
        2 => (1.0f64..16.0).prop_filter("growth > 1", |g| *g > 1.0),
        1 => prop::sample::select(alloc::vec![1.0 + f64::EPSILON, 1.5, 3.0, 1e10]),
    ];
    let backoff = prop_oneof![
        4 => Just(0.5),
        2 => (0.0f64..1.0).prop_filter("backoff > 0", |b| *b > 0.0),
        1 => prop::sample::select(alloc::vec![0.3, 0.1, 0.25, 1e-10, 1.0 - f64::EPSILON]),
    ];
    let interval = prop_oneof![4 => 1u32..=4, 2 => 5u32..=64, 1 => Just(2000u32)];
    (init_scales(), growth, backoff, interval).prop_map(|(init_scale, g, b, n)| ScalerConfig {
        init_scale,
        growth_factor: g,
        backoff_factor: b,
        growth_interval: n,
        ..ScalerConfig::pytorch()
    })
}

/// Any valid configuration: [`pytorch_configs`] with hysteresis, floors and ceilings (the initial
/// scale moved inside them), both floor policies, DeepSpeed timing, NaN as an error, an f64
/// scale, and now and then scaling disabled.
pub fn scaler_configs() -> impl Strategy<Value = ScalerConfig> {
    let policies = (
        prop::bool::weighted(0.95),
        prop_oneof![3 => Just(1u32), 1 => 2u32..=4],
        any::<bool>(),
        prop::option::of((-10i32..=10).prop_map(|k| libm::ldexp(1.0, k))),
        prop::option::of((10i32..=40).prop_map(|k| libm::ldexp(1.0, k))),
        prop_oneof![Just(FloorPolicy::Hold), Just(FloorPolicy::Error)],
        prop_oneof![Just(GrowthTiming::PyTorch), Just(GrowthTiming::DeepSpeed)],
        prop_oneof![Just(NanPolicy::Overflow), Just(NanPolicy::Error)],
        prop_oneof![Just(ScalePrecision::F32), Just(ScalePrecision::F64)],
    );
    (pytorch_configs(), policies)
        .prop_map(
            |(base, (enabled, hyst, consecutive, min, max, floor, timing, nan, precision))| {
                let init = base.init_scale;
                let init = min.map_or(init, |lo| init.max(lo));
                let init = max.map_or(init, |hi| init.min(hi));
                ScalerConfig {
                    enabled,
                    init_scale: init,
                    hysteresis: hyst,
                    consecutive_hysteresis: consecutive,
                    min_scale: min,
                    max_scale: max,
                    at_floor: floor,
                    growth_timing: timing,
                    nan_policy: nan,
                    precision,
                    ..base
                }
            },
        )
        .prop_filter("valid configuration", |c| c.validate().is_ok())
}

/// Sequences of at most `max_len` gradient checks: runs of clean steps (short ones, and ones of
/// up to 70, past the growth intervals [`pytorch_configs`] draws) each ended by an inf (6 in 9),
/// a NaN (2 in 9) or nothing (1 in 9, joining two runs).
pub fn events(max_len: usize) -> impl Strategy<Value = Vec<Found>> {
    let run = prop_oneof![3 => 0usize..=4, 2 => 0usize..=70];
    let end = prop_oneof![6 => Just(Found::Inf), 2 => Just(Found::Nan), 1 => Just(Found::Finite)];
    proptest::collection::vec((run, end), 1..=max_len / 2 + 1).prop_map(move |runs| {
        let mut out = Vec::with_capacity(max_len);
        for (clean, end) in runs {
            out.extend(core::iter::repeat_n(Found::Finite, clean));
            out.push(end);
        }
        out.truncate(max_len);
        out
    })
}

/// A configuration under PyTorch's rule and up to 300 events: what [`check_scale_update`] draws.
pub fn pytorch_cases() -> impl Strategy<Value = (ScalerConfig, Vec<Found>)> {
    (pytorch_configs(), events(300))
}

/// The inputs of one update, as PyTorch's `_amp_update_scale_` receives them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UpdateArgs {
    /// `current_scale`, a float32.
    pub scale: f32,
    /// `growth_tracker`, clean updates since the last growth or backoff.
    pub growth_tracker: u32,
    /// What this iteration's gradient check found (PyTorch's `found_inf` does not tell NaN from
    /// inf; [`found_inf`](Self::found_inf) is that flag).
    pub found: Found,
    /// `growth_factor`, a C++ `double`.
    pub growth_factor: f64,
    /// `backoff_factor`, a C++ `double`.
    pub backoff_factor: f64,
    /// `growth_interval`.
    pub growth_interval: u32,
}

impl UpdateArgs {
    /// PyTorch's `found_inf`: an inf or a NaN was found.
    pub const fn found_inf(&self) -> bool {
        self.found.is_non_finite()
    }
}

/// The first step at which an update disagreed with [`LossScaler`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UpdateMismatch {
    /// 0-based index of the event.
    pub step: usize,
    /// What both were given.
    pub args: UpdateArgs,
    /// `(scale, growth_tracker)` from halfscale.
    pub expected: (f32, u32),
    /// `(scale, growth_tracker)` from the update under test.
    pub got: (f32, u32),
}

impl fmt::Display for UpdateMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.args;
        write!(
            f,
            "step {}: {:?} from scale {:e} ({:#010x}), tracker {} (growth {}, backoff {}, interval {}): \
             halfscale gives scale {:e} ({:#010x}) tracker {}, the update under test scale {:e} ({:#010x}) tracker {}",
            self.step,
            a.found,
            a.scale,
            a.scale.to_bits(),
            a.growth_tracker,
            a.growth_factor,
            a.backoff_factor,
            a.growth_interval,
            self.expected.0,
            self.expected.0.to_bits(),
            self.expected.1,
            self.got.0,
            self.got.0.to_bits(),
            self.got.1,
        )
    }
}

/// Why a replay stopped.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReplayError {
    /// The configuration is invalid.
    Config(ConfigError),
    /// The configuration uses a policy beyond PyTorch's rule (hysteresis, bounds, DeepSpeed
    /// timing, NaN as an error, f64 scale, disabled), which an [`UpdateArgs`] closure cannot see.
    NotPyTorchRule,
    /// The update disagreed with halfscale.
    Mismatch(UpdateMismatch),
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::Config(e) => write!(f, "invalid scaler configuration: {e}"),
            ReplayError::NotPyTorchRule => f.write_str(
                "the configuration is not PyTorch's rule (see ScalerConfig::follows_pytorch_rule)",
            ),
            ReplayError::Mismatch(m) => m.fmt(f),
        }
    }
}

impl core::error::Error for ReplayError {}

/// Runs `update` and a [`LossScaler`] under `config` through `events`, comparing the scale's
/// bits and the tracker after every step; stops at the first difference.
pub fn replay_scale_update(
    config: &ScalerConfig,
    events: &[Found],
    mut update: impl FnMut(&UpdateArgs) -> (f32, u32),
) -> Result<(), ReplayError> {
    if !config.follows_pytorch_rule() {
        return Err(ReplayError::NotPyTorchRule);
    }
    let mut reference = LossScaler::new(*config).map_err(ReplayError::Config)?;
    let mut state = (reference.scale_f32(), reference.growth_tracker());
    for (step, &found) in events.iter().enumerate() {
        let args = UpdateArgs {
            scale: state.0,
            growth_tracker: state.1,
            found,
            growth_factor: config.growth_factor,
            backoff_factor: config.backoff_factor,
            growth_interval: config.growth_interval,
        };
        let got = update(&args);
        // Under PyTorch's rule a NaN is an overflow: the update cannot fail.
        reference
            .update(found)
            .expect("PyTorch's rule has no failing update");
        let expected = (reference.scale_f32(), reference.growth_tracker());
        if (got.0.to_bits(), got.1) != (expected.0.to_bits(), expected.1) {
            return Err(ReplayError::Mismatch(UpdateMismatch {
                step,
                args,
                expected,
                got,
            }));
        }
        state = expected;
    }
    Ok(())
}

/// The ready property: `update` against [`LossScaler`] on 256 cases from [`pytorch_cases`],
/// with a fixed seed (a failure reproduces), each step compared bit for bit. The error names the
/// first differing step of the minimal (shrunk) case.
pub fn check_scale_update(
    update: impl FnMut(&UpdateArgs) -> (f32, u32),
) -> Result<(), TestError<(ScalerConfig, Vec<Found>)>> {
    check_scale_update_with(&mut TestRunner::deterministic(), update)
}

/// [`check_scale_update`] with the caller's runner (case count, seed, shrinking limits).
pub fn check_scale_update_with(
    runner: &mut TestRunner,
    update: impl FnMut(&UpdateArgs) -> (f32, u32),
) -> Result<(), TestError<(ScalerConfig, Vec<Found>)>> {
    let update = RefCell::new(update);
    runner.run(&pytorch_cases(), |(config, events)| {
        replay_scale_update(&config, &events, &mut *update.borrow_mut())
            .map_err(|e| TestCaseError::fail(alloc::format!("{e}")))
    })
}
