//! The loss scaler driven by arbitrary configurations and event sequences, against plain
//! reference models: DeepSpeed's `update_scale` generalised by the crate's options, PyTorch's
//! `_amp_update_scale_` kernel for PyTorch configurations, and PyTorch's per-optimizer
//! `GradScaler` protocol; with the floor/ceiling, tracker and hysteresis invariants after every
//! event, and a save/load round trip of the state anywhere in the sequence.
//!
//! Input: a mode byte (even: a `LossScaler` fed one verdict per event; odd: a `GradScaler<2>`
//! driven through unscale_/step/update calls for three optimizers), the configuration (a flags
//! byte, then init scale, growth and backoff factors, interval, hysteresis, floor and ceiling,
//! each a selector byte that picks a typical value or reads raw bytes), then one byte per event.
#![no_main]

use halfscale_core::scaler::{
    pytorch_update_scale, FloorPolicy, Found, GradScaler, GrowthTiming, LossScaler, NanPolicy,
    NonFiniteReport, OptStage, OptimizerId, ScaleChange, ScalePrecision, ScalerConfig, ScalerError,
    StepOutcome,
};
use halfscale_fuzz::scaler_model::{pytorch_kernel, Model, Refusal};
use halfscale_fuzz::Bytes;
use libfuzzer_sys::fuzz_target;

const MAX_EVENTS: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let mode = input.u8();
    let config = read_config(&mut input);
    let model = Model::new(config);
    let scaler = LossScaler::new(config);
    assert_eq!(
        scaler.is_ok(),
        model.is_some(),
        "validity of {config:?}: {scaler:?}"
    );
    let (Ok(scaler), Some(model)) = (scaler, model) else {
        return;
    };
    if mode & 1 == 0 {
        loss_scaler_events(scaler, model, &mut input);
    } else {
        grad_scaler_events(scaler, model, &mut input);
    }
});

/// A typical value from `table` by the selector byte, or (for the last slot) eight raw bytes.
fn pick(input: &mut Bytes, table: &[f64]) -> f64 {
    let i = usize::from(input.u8()) % (table.len() + 1);
    table
        .get(i)
        .copied()
        .unwrap_or_else(|| f64::from_bits(input.u64()))
}

const SCALES: [f64; 8] = [65536.0, 1.0, 2.0, 0.5, 3.0e38, 1.0e-45, 1024.0, 1.0e300];

fn read_config(input: &mut Bytes) -> ScalerConfig {
    let f = input.u8();
    let init_scale = pick(input, &SCALES);
    let growth_factor = pick(input, &[2.0, 1.5, 3.0, 4.0, 1.000_000_1, 65536.0, 1.0]);
    let backoff_factor = pick(input, &[0.5, 0.25, 0.3, 0.1, 0.9, 1.0e-10, 1.0]);
    let interval_byte = input.u8();
    let growth_interval = if interval_byte >= 0xF8 {
        input.u32()
    } else {
        1 + u32::from(interval_byte % 8)
    };
    let hysteresis = u32::from(input.u8() % 5);
    let min_scale = pick(input, &[1.0, 5.960_464_477_539_063e-8, 0.5, 1024.0]);
    let max_scale = pick(input, &[16_777_216.0, 65536.0, 1.0e30, 1.0]);
    ScalerConfig {
        enabled: f & 0x81 != 0x81,
        init_scale,
        growth_factor,
        backoff_factor,
        growth_interval,
        hysteresis,
        consecutive_hysteresis: f & 2 != 0,
        min_scale: (f & 4 != 0).then_some(min_scale),
        max_scale: (f & 8 != 0).then_some(max_scale),
        at_floor: if f & 16 != 0 {
            FloorPolicy::Error
        } else {
            FloorPolicy::Hold
        },
        growth_timing: if f & 32 != 0 {
            GrowthTiming::DeepSpeed
        } else {
            GrowthTiming::PyTorch
        },
        nan_policy: if f & 64 != 0 {
            NanPolicy::Error
        } else {
            NanPolicy::Overflow
        },
        precision: if f & 128 != 0 {
            ScalePrecision::F64
        } else {
            ScalePrecision::F32
        },
    }
}

/// Everything observable about a scaler against the model, and the invariants.
fn check_state(s: &LossScaler, m: &Model, context: &str) {
    let c = &m.cfg;
    if !c.enabled {
        assert_eq!(s.scale(), 1.0, "{context}");
        assert_eq!(s.inv_scale(), 1.0, "{context}");
        assert_eq!(s.state(), None, "{context}");
        return;
    }
    let got = (
        s.scale(),
        s.growth_tracker(),
        s.hysteresis_left(),
        s.skipped_steps(),
        s.iteration(),
    );
    let want = (
        m.cur_scale,
        m.tracker(),
        m.cur_hysteresis,
        m.skipped,
        m.cur_iter as u64,
    );
    assert_eq!(
        (got.0.to_bits(), got.1, got.2, got.3, got.4),
        (want.0.to_bits(), want.1, want.2, want.3, want.4),
        "{context}: (scale, tracker, hysteresis_left, skipped, iteration) {got:?} vs model {want:?} for {c:?}"
    );
    let scale = s.scale();
    assert!(
        scale.is_finite() && scale >= 0.0,
        "{context}: scale {scale}"
    );
    if c.precision == ScalePrecision::F32 {
        assert_eq!(
            f64::from(scale as f32),
            scale,
            "{context}: scale not an f32"
        );
    }
    assert!(
        m.floor.is_none_or(|lo| scale >= lo),
        "{context}: below the floor"
    );
    assert!(
        m.ceiling.is_none_or(|hi| scale <= hi),
        "{context}: above the ceiling"
    );
    assert!(
        (1..=c.hysteresis).contains(&s.hysteresis_left()),
        "{context}: hysteresis"
    );
    let max_tracker = match c.growth_timing {
        GrowthTiming::PyTorch => c.growth_interval - 1,
        GrowthTiming::DeepSpeed => c.growth_interval,
    };
    assert!(s.growth_tracker() <= max_tracker, "{context}: tracker");
    assert_eq!(s.inv_scale(), (1.0 / scale) as f32, "{context}: inv_scale");
}

/// Save the state and continue from a scaler rebuilt from it: nothing may differ.
fn round_trip(s: &LossScaler) -> LossScaler {
    let Some(state) = s.state() else {
        return s.clone();
    };
    let back = LossScaler::from_state(*s.config(), &state).expect("a saved state loads");
    assert_eq!(&back, s, "state round trip through {state:?}");
    back
}

/// `ScalerConfig::pytorch()`'s kind: the configurations the PyTorch kernel describes alone.
fn is_pytorch(c: &ScalerConfig) -> bool {
    c.enabled
        && c.hysteresis == 1
        && c.min_scale.is_none()
        && c.max_scale.is_none()
        && c.growth_timing == GrowthTiming::PyTorch
        && c.nan_policy == NanPolicy::Overflow
        && c.precision == ScalePrecision::F32
}

fn loss_scaler_events(mut s: LossScaler, mut m: Model, input: &mut Bytes) {
    let c = m.cfg;
    let pytorch = is_pytorch(&c);
    let mut kernel = (m.cur_scale as f32, 0i64);
    check_state(&s, &m, "start");
    for step in 0..MAX_EVENTS {
        if input.is_empty() {
            break;
        }
        let e = input.u8();
        let found = match e % 8 {
            0..=3 => Found::Finite,
            4 | 5 => Found::Inf,
            6 => Found::Nan,
            _ => {
                if e & 8 != 0 {
                    s = round_trip(&s);
                } else {
                    let v = pick(input, &SCALES);
                    let ok = s.set_scale(v).is_ok();
                    let rounded = match c.precision {
                        ScalePrecision::F32 => f64::from(v as f32),
                        ScalePrecision::F64 => v,
                    };
                    let valid = !c.enabled
                        || (rounded.is_finite()
                            && rounded > 0.0
                            && m.floor.is_none_or(|lo| rounded >= lo)
                            && m.ceiling.is_none_or(|hi| rounded <= hi));
                    assert_eq!(ok, valid, "set_scale({v:e}) under {c:?}");
                    if ok && c.enabled {
                        m.cur_scale = rounded;
                        kernel.0 = rounded as f32;
                    }
                }
                check_state(&s, &m, &format!("event {step} (special {e:#04X})"));
                continue;
            }
        };
        let (prev_scale, prev_tracker) = (s.scale(), s.growth_tracker());
        let got = s.update(found);
        let want = m.update(found);
        let context = format!("event {step}: {found:?}");
        match (got, want) {
            (Ok(g), Ok(w)) => assert_eq!(g, w, "{context}"),
            (Err(ScalerError::NanGradient { .. }), Err(Refusal::Nan)) => {}
            (Err(ScalerError::ScaleAtFloor { scale }), Err(Refusal::AtFloor)) => {
                assert_eq!(scale, m.cur_scale, "{context}");
            }
            (g, w) => panic!("{context}: crate {g:?}, model {w:?} for {c:?}"),
        }
        check_state(&s, &m, &context);
        if pytorch {
            let found_inf = found != Found::Finite;
            kernel = pytorch_kernel(
                kernel.0,
                kernel.1,
                found_inf,
                c.growth_factor,
                c.backoff_factor,
                i64::from(c.growth_interval),
            );
            assert_eq!(
                (s.scale().to_bits(), i64::from(s.growth_tracker())),
                (f64::from(kernel.0).to_bits(), kernel.1),
                "{context}: against PyTorch's kernel for {c:?}"
            );
            let direct = pytorch_update_scale(
                prev_scale as f32,
                prev_tracker,
                found_inf,
                c.growth_factor,
                c.backoff_factor,
                c.growth_interval,
            );
            assert_eq!(
                (direct.0.to_bits(), i64::from(direct.1)),
                (kernel.0.to_bits(), kernel.1),
                "{context}: pytorch_update_scale"
            );
        }
    }
}

/// Gradient sets the GradScaler events unscale.
fn grads(kind: u8) -> Vec<f32> {
    match kind % 4 {
        0 => vec![1024.0, -2048.0, 0.5],
        1 => vec![1.0, f32::INFINITY, -3.0],
        2 => vec![f32::NAN, 2.0, f32::NEG_INFINITY],
        _ => vec![],
    }
}

fn report_of(g: &[f32]) -> NonFiniteReport {
    NonFiniteReport {
        len: g.len(),
        nan: g.iter().filter(|x| x.is_nan()).count(),
        inf: g.iter().filter(|x| x.is_infinite()).count(),
        first_nan: g.iter().position(|x| x.is_nan()),
        first_inf: g.iter().position(|x| x.is_infinite()),
    }
}

fn found_of(r: &NonFiniteReport) -> Found {
    if r.nan > 0 {
        Found::Nan
    } else if r.inf > 0 {
        Found::Inf
    } else {
        Found::Finite
    }
}

/// PyTorch's per-optimizer `OptState` bookkeeping, with room for two optimizers.
#[derive(Default)]
struct Protocol {
    /// In first-unscale order: (optimizer, stage, check).
    slots: Vec<(OptimizerId, OptStage, NonFiniteReport)>,
}

impl Protocol {
    fn stage(&self, id: OptimizerId) -> OptStage {
        self.slots
            .iter()
            .find(|s| s.0 == id)
            .map_or(OptStage::Ready, |s| s.1)
    }

    fn unscale(&mut self, id: OptimizerId, g: &[f32]) -> Result<NonFiniteReport, ScalerError> {
        match self.stage(id) {
            OptStage::Unscaled => return Err(ScalerError::UnscaleTwice { optimizer: id }),
            OptStage::Stepped => return Err(ScalerError::UnscaleAfterStep { optimizer: id }),
            OptStage::Ready => {}
        }
        if self.slots.len() == 2 {
            return Err(ScalerError::TooManyOptimizers { capacity: 2 });
        }
        let r = report_of(g);
        self.slots.push((id, OptStage::Unscaled, r));
        Ok(r)
    }

    fn step(&mut self, id: OptimizerId, nan: NanPolicy) -> Result<StepOutcome, ScalerError> {
        let Some(slot) = self.slots.iter_mut().find(|s| s.0 == id) else {
            return Err(ScalerError::NoInfChecksForOptimizer { optimizer: id });
        };
        if slot.1 == OptStage::Stepped {
            return Err(ScalerError::StepTwice { optimizer: id });
        }
        let found = found_of(&slot.2);
        if found == Found::Nan && nan == NanPolicy::Error {
            return Err(ScalerError::NanGradient {
                optimizer: Some(id),
                index: slot.2.first_nan,
            });
        }
        slot.1 = OptStage::Stepped;
        Ok(match found {
            Found::Finite => StepOutcome::Stepped,
            Found::Inf => StepOutcome::SkippedInf,
            Found::Nan => StepOutcome::SkippedNan,
        })
    }

    fn update(&mut self, m: &mut Model) -> Result<ScaleChange, ScalerError> {
        let worst = self
            .slots
            .iter()
            .map(|s| found_of(&s.2))
            .max_by_key(|f| match f {
                Found::Finite => 0,
                Found::Inf => 1,
                Found::Nan => 2,
            });
        let found = worst.ok_or(ScalerError::NoInfChecks)?;
        let change = m.update(found).map_err(|r| match r {
            Refusal::Nan => {
                let slot = self
                    .slots
                    .iter()
                    .find(|s| s.2.nan > 0)
                    .expect("a NaN was found");
                ScalerError::NanGradient {
                    optimizer: Some(slot.0),
                    index: slot.2.first_nan,
                }
            }
            Refusal::AtFloor => ScalerError::ScaleAtFloor { scale: m.cur_scale },
        })?;
        self.slots.clear();
        Ok(change)
    }
}

fn grad_scaler_events(s: LossScaler, mut m: Model, input: &mut Bytes) {
    let c = m.cfg;
    let mut gs: GradScaler<2> = GradScaler::from_scaler(s);
    let mut p = Protocol::default();
    for step in 0..MAX_EVENTS {
        if input.is_empty() {
            break;
        }
        let e = input.u8();
        let id = OptimizerId(u16::from(e >> 3) % 3);
        let g = grads(e >> 5);
        let context = format!("event {step}: {e:#04X}");
        match e % 8 {
            0 | 1 => {
                let mut work = g.clone();
                let got = gs.unscale_(id, &mut work);
                let want = if c.enabled {
                    p.unscale(id, &g)
                } else {
                    Ok(NonFiniteReport::default())
                };
                assert_eq!(got, want, "{context}: unscale_({id:?})");
            }
            2 | 3 => {
                let got = gs.step(id);
                let want = if c.enabled {
                    p.step(id, c.nan_policy)
                } else {
                    Ok(StepOutcome::Stepped)
                };
                assert_eq!(got, want, "{context}: step({id:?})");
            }
            4 | 5 => {
                let got = gs.update();
                let want = if c.enabled {
                    p.update(&mut m)
                } else {
                    Ok(ScaleChange::Disabled)
                };
                assert_eq!(got, want, "{context}: update()");
            }
            6 => {
                let mut work = g.clone();
                let got = gs.unscale_and_step(id, &mut work);
                let want = if !c.enabled {
                    Ok(StepOutcome::Stepped)
                } else {
                    let unscaled = if p.stage(id) == OptStage::Ready {
                        p.unscale(id, &g).map(|_| ())
                    } else {
                        Ok(())
                    };
                    unscaled.and_then(|()| p.step(id, c.nan_policy))
                };
                assert_eq!(got, want, "{context}: unscale_and_step({id:?})");
            }
            _ => {
                if e & 8 != 0 {
                    gs.discard_iteration();
                    p.slots.clear();
                } else {
                    let v = pick(input, &SCALES);
                    let got = gs.update_to(v);
                    let rounded = match c.precision {
                        ScalePrecision::F32 => f64::from(v as f32),
                        ScalePrecision::F64 => v,
                    };
                    let valid = !c.enabled
                        || (rounded.is_finite()
                            && rounded > 0.0
                            && m.floor.is_none_or(|lo| rounded >= lo)
                            && m.ceiling.is_none_or(|hi| rounded <= hi));
                    if valid {
                        assert_eq!(got, Ok(()), "{context}: update_to({v:e})");
                        if c.enabled {
                            m.cur_scale = rounded;
                        }
                        p.slots.clear();
                    } else {
                        // Compared by bits: the rejected value may be NaN.
                        let rejected = match got {
                            Err(ScalerError::InvalidScale(x)) => Some(x.to_bits()),
                            _ => None,
                        };
                        assert_eq!(rejected, Some(v.to_bits()), "{context}: {got:?}");
                    }
                }
            }
        }
        check_state(gs.scaler(), &m, &context);
        for k in 0..3 {
            let id = OptimizerId(k);
            let want = if c.enabled {
                p.stage(id)
            } else {
                OptStage::Ready
            };
            assert_eq!(gs.stage(id), want, "{context}: stage of {id:?}");
        }
    }
}
