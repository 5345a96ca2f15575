//! Transformer Engine's delayed and current scaling and torchao's tensorwise rule: the state
//! across steps, the special amaxes, and every f32/f64 operation checked against `rustc_apfloat`
//! (an independent software IEEE implementation) rather than against the machine's own division.

use halfscale_core::recipe::{
    te_compute_scale_from_amax, te_scale_inv, torchao_tensorwise_scale, AmaxComputeAlgo,
    DelayedScaling, DelayedScalingState, Fp8Format, HistoryRoll, Pass,
};
use proptest::prelude::*;
use rustc_apfloat::ieee::{Double, Single};
use rustc_apfloat::{Float, FloatConvert};

/// `a / b` in f32, round to nearest even, by rustc_apfloat.
fn div_f32(a: f32, b: f32) -> f32 {
    let q = (Single::from_bits(a.to_bits().into()) / Single::from_bits(b.to_bits().into())).value;
    f32::from_bits(q.to_bits() as u32)
}

fn recipe(algo: AmaxComputeAlgo) -> DelayedScaling {
    DelayedScaling {
        amax_compute_algo: algo,
        ..DelayedScaling::default()
    }
}

#[test]
fn fresh_state_is_tes_initialisation() {
    let s = DelayedScalingState::<8>::new();
    assert_eq!(s.history(), &[0.0; 8]);
    assert_eq!((s.scale(), s.scale_inv()), (1.0, 1.0));
}

#[test]
fn the_history_rolls_as_torch_roll_minus_one_then_zero() {
    let r = recipe(AmaxComputeAlgo::Max);
    let mut s = DelayedScalingState::<4>::new();
    // Step 1 writes 1.0 into slot 0; the update moves it to the last slot and zeroes slot 0.
    s.record_amax(1.0);
    s.update(&r, Pass::Forward);
    assert_eq!(s.history(), &[0.0, 0.0, 0.0, 1.0]);
    s.record_amax(2.0);
    s.update(&r, Pass::Forward);
    assert_eq!(s.history(), &[0.0, 0.0, 1.0, 2.0]);
    s.record_amax(3.0);
    s.update(&r, Pass::Forward);
    assert_eq!(s.history(), &[0.0, 1.0, 2.0, 3.0]);
    s.record_amax(4.0);
    s.update(&r, Pass::Forward);
    // old = [4, 1, 2, 3] -> roll -> [1, 2, 3, 4] -> new[0] = 0: the oldest amax (1) leaves.
    assert_eq!(s.history(), &[0.0, 2.0, 3.0, 4.0]);
    s.record_amax(0.5);
    let used = s.update(&r, Pass::Forward);
    assert_eq!(used, 4.0, "max over [0.5, 2, 3, 4]");
    assert_eq!(s.history(), &[0.0, 3.0, 4.0, 0.5]);
}

#[test]
fn max_uses_the_window_most_recent_the_last_amax() {
    for (algo, expected_amax) in [
        (AmaxComputeAlgo::Max, 8.0f32),
        (AmaxComputeAlgo::MostRecent, 2.0),
    ] {
        let r = recipe(algo);
        let mut s = DelayedScalingState::<16>::new();
        s.record_amax(8.0);
        s.update(&r, Pass::Forward);
        s.record_amax(2.0);
        assert_eq!(s.update(&r, Pass::Forward), expected_amax);
        assert_eq!(s.scale(), div_f32(448.0, expected_amax));
        assert_eq!(s.scale_inv(), div_f32(1.0, s.scale()));
    }
}

#[test]
fn zero_and_non_finite_amaxes_keep_the_previous_scale() {
    for algo in [AmaxComputeAlgo::Max, AmaxComputeAlgo::MostRecent] {
        let r = recipe(algo);
        let mut s = DelayedScalingState::<1>::new();
        s.record_amax(3.0);
        s.update(&r, Pass::Forward);
        let kept = s.scale();
        assert_eq!(kept, div_f32(448.0, 3.0));
        for amax in [0.0, f32::INFINITY, f32::NAN, -0.0] {
            s.record_amax(amax);
            s.update(&r, Pass::Forward);
            assert_eq!(s.scale().to_bits(), kept.to_bits(), "{algo:?} amax {amax}");
            assert_eq!(s.scale_inv(), div_f32(1.0, kept));
            assert_eq!(s.history(), &[0.0]);
        }
    }
}

#[test]
fn max_skips_nan_entries_with_fmaxf() {
    let r = recipe(AmaxComputeAlgo::Max);
    let mut s = DelayedScalingState::<3>::new();
    s.record_amax(5.0);
    s.update(&r, Pass::Forward);
    s.record_amax(f32::NAN);
    assert_eq!(s.update(&r, Pass::Forward), 5.0);
    assert_eq!(s.scale(), div_f32(448.0, 5.0));
    // The NaN stays in the history (rolled to the end) but never wins.
    assert!(s.history()[2].is_nan());
}

#[test]
fn an_infinite_scale_becomes_f32_max() {
    let r = recipe(AmaxComputeAlgo::MostRecent);
    let mut s = DelayedScalingState::<2>::new();
    // 448 / 2^-149 overflows f32.
    s.record_amax(f32::from_bits(1));
    s.update(&r, Pass::Forward);
    assert_eq!(s.scale(), f32::MAX);
    assert_eq!(s.scale_inv(), div_f32(1.0, f32::MAX));
    // A finite quotient just below the overflow threshold stays.
    let amax = div_f32(448.0, f32::MAX);
    s.record_amax(amax);
    s.update(&r, Pass::Forward);
    assert_eq!(s.scale(), div_f32(448.0, amax));
    assert!(s.scale().is_finite());
}

#[test]
fn margin_and_hybrid_set_the_scaled_max() {
    let mut r = recipe(AmaxComputeAlgo::MostRecent);
    assert_eq!(r.scaled_max(Pass::Forward), 448.0);
    assert_eq!(r.scaled_max(Pass::Backward), 57344.0);
    r.fp8_format = Fp8Format::E4M3;
    assert_eq!(r.scaled_max(Pass::Backward), 448.0);
    r.margin = 3;
    assert_eq!(r.scaled_max(Pass::Forward), 56.0);
    r.margin = -2;
    assert_eq!(r.scaled_max(Pass::Forward), 1792.0);
    r.margin = 200;
    assert_eq!(r.scaled_max(Pass::Forward), 0.0, "2^-200 is 0 in f32");
    let mut s = DelayedScalingState::<1>::new();
    r.margin = 1;
    s.record_amax(7.0);
    s.update(&r, Pass::Forward);
    assert_eq!(s.scale(), div_f32(224.0, 7.0));
}

#[test]
fn the_bulk_kernel_leaves_everything_alone_on_a_zero_amax() {
    let r = DelayedScaling {
        roll: HistoryRoll::SkipWhenZero,
        ..recipe(AmaxComputeAlgo::Max)
    };
    let mut s = DelayedScalingState::<3>::new();
    s.record_amax(6.0);
    s.update(&r, Pass::Forward);
    assert_eq!(s.history(), &[0.0, 0.0, 6.0]);
    let before = s;
    s.record_amax(0.0);
    assert_eq!(s.update(&r, Pass::Forward), 0.0);
    assert_eq!(s, before, "no roll, same scale");
    // The single-tensor kernel rolls regardless.
    let mut t = before;
    t.record_amax(0.0);
    t.update(&recipe(AmaxComputeAlgo::Max), Pass::Forward);
    assert_eq!(t.history(), &[0.0, 6.0, 0.0]);
}

/// An independent formulation of the window: the last `H` recorded amaxes, oldest dropped.
fn window_model(amaxes: &[f32], h: usize, algo: AmaxComputeAlgo) -> Vec<(f32, f32)> {
    let mut scale = 1.0f32;
    let mut out = Vec::new();
    for (t, &a) in amaxes.iter().enumerate() {
        let lo = (t + 1).saturating_sub(h);
        let amax = match algo {
            AmaxComputeAlgo::MostRecent => a,
            AmaxComputeAlgo::Max => amaxes[lo..=t]
                .iter()
                .filter(|v| !v.is_nan())
                .fold(0.0f32, |m, &v| if v > m { v } else { m }),
        };
        if amax.is_finite() && amax > 0.0 {
            scale = div_f32(448.0, amax);
        }
        if scale.is_infinite() {
            scale = f32::MAX;
        }
        out.push((scale, div_f32(1.0, scale)));
    }
    out
}

fn amax_strategy() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => (1u32..0x7F80_0000).prop_map(f32::from_bits),
        1 => Just(0.0f32),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NAN),
        1 => (1u32..0x0080_0000).prop_map(f32::from_bits),
    ]
}

proptest! {
    #[test]
    fn delayed_scaling_matches_the_window_model(
        amaxes in prop::collection::vec(amax_strategy(), 1..40),
        most_recent in any::<bool>(),
    ) {
        let algo = if most_recent { AmaxComputeAlgo::MostRecent } else { AmaxComputeAlgo::Max };
        let r = recipe(algo);
        let mut s = DelayedScalingState::<5>::new();
        for (&a, (scale, scale_inv)) in amaxes.iter().zip(window_model(&amaxes, 5, algo)) {
            s.record_amax(a);
            s.update(&r, Pass::Forward);
            prop_assert_eq!(s.scale().to_bits(), scale.to_bits());
            prop_assert_eq!(s.scale_inv().to_bits(), scale_inv.to_bits());
        }
    }

    #[test]
    fn te_current_scale_is_one_correctly_rounded_division(
        bits in 0u32..0x7F80_0000,
        pow2 in any::<bool>(),
    ) {
        let amax = f32::from_bits(bits);
        let scale = te_compute_scale_from_amax(amax, 448.0, pow2, 0.0, f32::MAX);
        let mut expected = if bits == 0 { 1.0 } else { div_f32(448.0, amax) };
        if expected.is_infinite() {
            expected = f32::MAX;
        }
        if pow2 {
            // Clearing the fraction is the power of two at or below.
            expected = f32::from_bits(expected.to_bits() & 0xFF80_0000);
        }
        prop_assert_eq!(scale.to_bits(), expected.to_bits());
        prop_assert_eq!(te_scale_inv(scale).to_bits(), div_f32(1.0, scale).to_bits());
    }

    #[test]
    fn torchao_tensorwise_is_reciprocal_then_product_in_f64(bits in 0u32..0x7F80_0000) {
        let amax = f32::from_bits(bits);
        let a = Double::from_bits(f64::from(amax).max(1e-12).to_bits().into());
        let one = Double::from_bits(1f64.to_bits().into());
        let max = Double::from_bits(448f64.to_bits().into());
        let product = ((one / a).value * max).value;
        let mut loses = false;
        let single: Single = product.convert(&mut loses).value;
        let expected = f32::from_bits(single.to_bits() as u32);
        prop_assert_eq!(torchao_tensorwise_scale(amax, 448.0, false).to_bits(), expected.to_bits());
    }
}

#[test]
fn te_current_scale_special_amaxes() {
    for amax in [0.0, f32::INFINITY, f32::NAN, -0.0] {
        assert_eq!(
            te_compute_scale_from_amax(amax, 448.0, false, 0.0, f32::MAX),
            1.0
        );
    }
    // epsilon floors a small amax before the division.
    assert_eq!(
        te_compute_scale_from_amax(1e-30, 448.0, false, 1e-6, f32::MAX),
        div_f32(448.0, 1e-6)
    );
    // a zero amax with a positive epsilon is no longer zero.
    assert_eq!(
        te_compute_scale_from_amax(0.0, 448.0, false, 0.25, f32::MAX),
        1792.0
    );
    // overflow goes to value_for_inf, then the power-of-two rounding clears its fraction.
    let tiny = f32::from_bits(1);
    assert_eq!(
        te_compute_scale_from_amax(tiny, 448.0, false, 0.0, f32::MAX),
        f32::MAX
    );
    assert_eq!(
        te_compute_scale_from_amax(tiny, 448.0, true, 0.0, f32::MAX),
        f32::from_bits(0x7F00_0000)
    );
    // 448 / 3 = 149.33 -> 128 as a power of two.
    assert_eq!(
        te_compute_scale_from_amax(3.0, 448.0, true, 0.0, f32::MAX),
        128.0
    );
}

#[test]
fn torchao_tensorwise_special_amaxes() {
    assert!(torchao_tensorwise_scale(f32::NAN, 448.0, false).is_nan());
    assert_eq!(torchao_tensorwise_scale(f32::INFINITY, 448.0, false), 0.0);
    assert_eq!(torchao_tensorwise_scale(f32::INFINITY, 448.0, true), 0.0);
    // Below EPS the amax is EPS: 448 / 1e-12, rounded twice in f64 and once to f32.
    assert_eq!(
        torchao_tensorwise_scale(0.0, 448.0, false),
        torchao_tensorwise_scale(1e-13, 448.0, false)
    );
    assert_eq!(torchao_tensorwise_scale(3.0, 448.0, true), 128.0);
}
