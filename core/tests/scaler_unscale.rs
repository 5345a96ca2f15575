//! The unscale pass: PyTorch's kernel element by element, NaN and inf counted apart, positions
//! right across the block boundaries of the fast path; the f16/bf16 kernels against SoftFloat.

mod oracle;

use halfscale_core::scaler::{
    check_non_finite, inv_scale, scale_loss, unscale_and_check, Found, NonFiniteReport,
};
use proptest::prelude::*;

/// The kernel, one element at a time: `if (!isfinite(val)) found_inf = 1;
/// return inv_scale == 1.f ? val : val * inv_scale;`, with NaN and inf told apart.
fn reference(grads: &mut [f32], inv: f32) -> NonFiniteReport {
    let mut r = NonFiniteReport {
        len: grads.len(),
        ..NonFiniteReport::default()
    };
    for (i, g) in grads.iter_mut().enumerate() {
        if g.is_nan() {
            r.nan += 1;
            r.first_nan.get_or_insert(i);
        } else if g.is_infinite() {
            r.inf += 1;
            r.first_inf.get_or_insert(i);
        }
        if inv != 1.0 {
            *g *= inv;
        }
    }
    r
}

#[test]
fn inv_scale_is_the_f64_reciprocal_rounded_to_f32() {
    assert_eq!(inv_scale(65536.0), 1.0 / 65536.0);
    // 1/3 in f64 rounded to f32, PyTorch's scale.double().reciprocal().float().
    assert_eq!(inv_scale(3.0).to_bits(), ((1.0f64 / 3.0) as f32).to_bits());
    assert_eq!(inv_scale(0.0), f32::INFINITY);
    // For an f32 scale the f64 route always equals IEEE f32 division: double rounding of a
    // quotient from 53 to 24 bits is innocuous since 53 >= 2 * 24 + 2. (The update's products are
    // another matter: there the factor has 53 bits.)
    let mut differs = 0;
    let mut s = 1.0f32;
    for _ in 0..10_000 {
        s = f32::from_bits(s.to_bits() + 7919);
        if (1.0f32 / s).to_bits() != inv_scale(f64::from(s)).to_bits() {
            differs += 1;
        }
    }
    assert_eq!(differs, 0);
}

#[test]
fn counts_and_positions_across_blocks() {
    let n = 64 * 3 + 17;
    for positions in [
        vec![(0, f32::NAN)],
        vec![(63, f32::INFINITY), (64, f32::NAN)],
        vec![(64, f32::NEG_INFINITY), (127, f32::NAN), (128, f32::NAN)],
        vec![(n - 1, f32::NAN), (n - 2, f32::INFINITY)],
        vec![
            (200, f32::from_bits(0x7f80_0001)),
            (5, f32::from_bits(0xffc0_0000)),
        ],
    ] {
        let mut g: Vec<f32> = (0..n).map(|i| (i as f32 - 100.0) * 1024.0).collect();
        for &(i, v) in &positions {
            g[i] = v;
        }
        let mut expected = g.clone();
        let want = reference(&mut expected, 1.0 / 1024.0);
        let got = unscale_and_check(&mut g, 1.0 / 1024.0);
        assert_eq!(got, want, "{positions:?}");
        assert_eq!(got.nan + got.inf, positions.len());
        for (a, b) in g.iter().zip(&expected) {
            assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
        }
        assert_eq!(check_non_finite(&g), want);
    }
}

#[test]
fn report_of_a_concrete_slice() {
    let mut g = [
        2048.0f32,
        f32::INFINITY,
        -1.0,
        f32::NAN,
        f32::NEG_INFINITY,
        0.5,
    ];
    let r = unscale_and_check(&mut g, 0.5);
    assert_eq!(
        r,
        NonFiniteReport {
            len: 6,
            nan: 1,
            inf: 2,
            first_nan: Some(3),
            first_inf: Some(1)
        }
    );
    assert_eq!(r.found(), Found::Nan);
    assert!(r.found_inf());
    assert_eq!(g[0], 1024.0);
    assert_eq!(g[2], -0.5);
    assert_eq!(g[5], 0.25);
    assert!(g[1] == f32::INFINITY && g[4] == f32::NEG_INFINITY && g[3].is_nan());
    let clean = check_non_finite(&[1.0, 2.0]);
    assert_eq!(clean.found(), Found::Finite);
    assert!(!clean.found_inf());
    assert_eq!(check_non_finite(&[1.0, f32::INFINITY]).found(), Found::Inf);
}

/// With `inv == 1` the kernel returns `val` untouched: even a signaling NaN keeps its bits.
#[test]
fn inv_one_leaves_every_bit() {
    let snan = f32::from_bits(0x7f80_0001);
    let mut g = [snan, -0.0, 1e-45, 3.0];
    let r = unscale_and_check(&mut g, 1.0);
    assert_eq!(g[0].to_bits(), 0x7f80_0001);
    assert_eq!(g[1].to_bits(), 0x8000_0000);
    assert_eq!(g[2].to_bits(), 1);
    assert_eq!((r.nan, r.first_nan), (1, Some(0)));
}

/// A collapsed scale (0, so inv = inf) turns finite gradients into inf or NaN; the check looks at
/// the values before the multiply, as the kernel does.
#[test]
fn classification_precedes_the_multiply() {
    let mut g = [1.0f32, 0.0, -2.0];
    let r = unscale_and_check(&mut g, f32::INFINITY);
    assert_eq!(r.found(), Found::Finite);
    assert_eq!(g[0], f32::INFINITY);
    assert!(g[1].is_nan());
    let mut g = [f32::INFINITY, 5.0];
    let r = unscale_and_check(&mut g, 0.0);
    assert_eq!((r.inf, r.nan), (1, 0));
    assert!(g[0].is_nan());
}

#[test]
fn merge_offsets_positions() {
    let a = check_non_finite(&[1.0, 2.0, f32::INFINITY]);
    let b = check_non_finite(&[f32::NAN, f32::INFINITY]);
    let m = a.merge(b);
    assert_eq!(
        m,
        NonFiniteReport {
            len: 5,
            nan: 1,
            inf: 2,
            first_nan: Some(3),
            first_inf: Some(2)
        }
    );
    assert_eq!(Found::Inf.worst(Found::Nan), Found::Nan);
    assert_eq!(Found::Finite.worst(Found::Inf), Found::Inf);
    assert_eq!(Found::Finite.worst(Found::Finite), Found::Finite);
}

#[test]
fn scale_loss_is_an_f32_multiply() {
    assert_eq!(scale_loss(0.1, 65536.0), 0.1f32 * 65536.0f32);
    // An f64 scale (DeepSpeed) is applied as the nearest f32.
    assert_eq!(scale_loss(1.0, 0.1), 0.1f32);
}

fn any_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => -1e6f32..1e6f32,
        2 => any::<u32>().prop_map(f32::from_bits),
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The blocked fast path equals the element-by-element kernel, bit for bit.
    #[test]
    fn fast_path_equals_reference(
        g in proptest::collection::vec(any_f32(), 0..400),
        inv in prop_oneof![Just(1.0f32), Just(0.5f32), Just(1.0f32 / 3.0), any::<u32>().prop_map(f32::from_bits)],
    ) {
        let mut ours = g.clone();
        let mut theirs = g.clone();
        let r = unscale_and_check(&mut ours, inv);
        let e = reference(&mut theirs, inv);
        prop_assert_eq!(r, e);
        for (a, b) in ours.iter().zip(&theirs) {
            prop_assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
        }
    }

    /// unscale(scale(g)) == g bit for bit for finite g whose scaled value is exact in f32, with a
    /// power-of-two scale.
    #[test]
    fn unscale_of_scale_is_the_identity(
        g in proptest::collection::vec(any::<u32>().prop_map(f32::from_bits), 1..300),
        k in -60i32..60,
    ) {
        let scale = 2f64.powi(k);
        let inv = inv_scale(scale);
        let kept: Vec<f32> = g
            .into_iter()
            .filter(|x| {
                let y = f64::from(*x) * scale;
                x.is_finite() && (y as f32).is_finite() && f64::from(y as f32) == y
            })
            .collect();
        let mut grads: Vec<f32> = kept.iter().map(|x| scale_loss(*x, scale)).collect();
        let r = unscale_and_check(&mut grads, inv);
        prop_assert_eq!(r.found(), Found::Finite);
        for (a, b) in grads.iter().zip(&kept) {
            prop_assert_eq!(a.to_bits(), b.to_bits());
        }
    }
}

/// The f16/bf16 kernel, judged by Berkeley SoftFloat: widen (exact), multiply in f32
/// (nearest-even), narrow nearest-even; NaN products stored as c10's quiet NaN.
mod half_gradients {
    use super::oracle::{bf16_from_f32, bf16_to_f32, h, run, s};
    use halfscale_core::half::{bf16, f16};
    use halfscale_core::scaler::{unscale_and_check_bf16, unscale_and_check_f16, Found};
    use halfscale_core::{FpEnv, RoundingMode};
    use softfloat_sys as sf;

    const INV: [f32; 6] = [1.0 / 65536.0, 1.0 / 3.0, 1.0, 1048576.0, 0.0, f32::INFINITY];

    fn sf_mul(a: u32, b: u32) -> u32 {
        let env = FpEnv::new(RoundingMode::NearestEven);
        run(&env, || unsafe { sf::f32_mul(s(a), s(b)) }).0.v
    }

    #[test]
    fn f16_unscale_matches_softfloat_on_all_65536_values() {
        let env = FpEnv::new(RoundingMode::NearestEven);
        let grads: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
        for inv in INV {
            let mut g = grads.clone();
            let report = unscale_and_check_f16(&mut g, inv);
            // 2 infs, 2 * 1023 NaNs in every 16-bit pattern set; the first inf is 0x7C00.
            assert_eq!((report.inf, report.nan), (2, 2046));
            assert_eq!(
                (report.first_inf, report.first_nan),
                (Some(0x7C00), Some(0x7C01))
            );
            assert_eq!(report.found(), Found::Nan);
            for (bits, out) in (0..=u16::MAX).zip(&g) {
                let expected = if inv == 1.0 {
                    bits
                } else {
                    let wide = run(&env, || unsafe { sf::f16_to_f32(h(bits)) }).0.v;
                    let p = sf_mul(wide, inv.to_bits());
                    if p & 0x7FFF_FFFF > 0x7F80_0000 {
                        ((p >> 16) & 0x8000) as u16 | 0x7E00
                    } else {
                        run(&env, || unsafe { sf::f32_to_f16(s(p)) }).0.v
                    }
                };
                assert_eq!(out.to_bits(), expected, "{bits:#06x} * {inv:e}");
            }
        }
    }

    #[test]
    fn bf16_unscale_matches_softfloat_on_all_65536_values() {
        let env = FpEnv::new(RoundingMode::NearestEven);
        let grads: Vec<bf16> = (0..=u16::MAX).map(bf16::from_bits).collect();
        for inv in INV {
            let mut g = grads.clone();
            let report = unscale_and_check_bf16(&mut g, inv);
            assert_eq!((report.inf, report.nan), (2, 2 * 127));
            assert_eq!(report.first_inf, Some(0x7F80));
            for (bits, out) in (0..=u16::MAX).zip(&g) {
                let expected = if inv == 1.0 {
                    bits
                } else {
                    let p = sf_mul(bf16_to_f32(&env, bits).0, inv.to_bits());
                    if p & 0x7FFF_FFFF > 0x7F80_0000 {
                        0x7FC0
                    } else {
                        bf16_from_f32(&env, p).0
                    }
                };
                assert_eq!(out.to_bits(), expected, "{bits:#06x} * {inv:e}");
            }
        }
    }
}
