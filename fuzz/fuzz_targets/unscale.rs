//! The fused unscale + non-finite check (`unscale_and_check`, `check_non_finite`, and a
//! `LossScaler`'s and `GradScaler`'s `unscale`) over arbitrary f32 slices: NaN and inf counts and
//! first positions exact, every element multiplied by the inverse scale in f32 bit for bit (left
//! alone when it is 1), and the report of a split slice merging to the report of the whole.
//!
//! Input: `how k split n`, eight bytes of scale, then f32 values repeated cyclically to
//! `max(4 n, count)`. `how % 4` picks the inverse scale: raw f32 bits, `inv_scale(2^(k - 128))`,
//! exactly 1, or `inv_scale` of the f64 bits.
#![no_main]

use halfscale_core::scaler::{
    check_non_finite, inv_scale, unscale_and_check, Found, GradScaler, LossScaler, NonFiniteReport,
    OptimizerId, ScalerConfig,
};
use halfscale_fuzz::{f32s, Bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let how = input.u8();
    let k = input.u8();
    let split = input.u8();
    let n = usize::from(input.u8()) * 4;
    let raw_scale = input.u64();
    let inv = match how % 4 {
        0 => f32::from_bits(raw_scale as u32),
        1 => inv_scale(pow2(i32::from(k) - 128)),
        2 => 1.0,
        _ => inv_scale(f64::from_bits(raw_scale)),
    };
    let mut grads = f32s(input.rest());
    if !grads.is_empty() && grads.len() < n {
        grads = grads.iter().copied().cycle().take(n).collect();
    }

    let want = reference(&grads);
    assert_eq!(check_non_finite(&grads), want, "check_non_finite {grads:?}");

    let mut unscaled = grads.clone();
    let report = unscale_and_check(&mut unscaled, inv);
    assert_eq!(report, want, "unscale_and_check {grads:?} by {inv:e}");
    for (i, (&g, &u)) in grads.iter().zip(&unscaled).enumerate() {
        let expect = if inv == 1.0 { g } else { g * inv };
        let same = u.to_bits() == expect.to_bits() || (u.is_nan() && expect.is_nan());
        assert!(
            same,
            "element {i}: {g:e} * {inv:e} gave {u:e}, want {expect:e}"
        );
    }

    // The report of two halves, merged, is the report of the whole.
    let cut = usize::from(split) * grads.len() / 256;
    let (mut left, mut right) = (grads[..cut].to_vec(), grads[cut..].to_vec());
    let merged = unscale_and_check(&mut left, inv).merge(unscale_and_check(&mut right, inv));
    assert_eq!(merged, want, "split at {cut}");
    assert_eq!(merged.found(), expected_found(&want));

    // Through a scaler whose scale is a power of two: the same pass with inv_scale(scale).
    let scale = pow2(i32::from(k % 64) - 16);
    let config = ScalerConfig {
        init_scale: scale,
        ..ScalerConfig::pytorch()
    };
    let scaler = LossScaler::new(config).expect("a power-of-two scale is valid");
    let (mut a, mut b) = (grads.clone(), grads.clone());
    assert_eq!(
        scaler.unscale(&mut a),
        unscale_and_check(&mut b, inv_scale(scale))
    );
    assert_eq!(
        a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        b.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );

    let mut gs: GradScaler<2> = GradScaler::from_scaler(scaler);
    let (mut l, mut r) = (grads[..cut].to_vec(), grads[cut..].to_vec());
    let tensors: [&mut [f32]; 2] = [&mut l, &mut r];
    let got = gs
        .unscale_tensors(OptimizerId(0), tensors)
        .expect("first unscale of optimizer 0");
    assert_eq!(got, want, "GradScaler::unscale_tensors");
});

/// `2^k` exactly (|k| well inside f64's normal range here).
fn pow2(k: i32) -> f64 {
    f64::from_bits(((1023 + k) as u64) << 52)
}

/// Counts and first positions, the plain way.
fn reference(grads: &[f32]) -> NonFiniteReport {
    NonFiniteReport {
        len: grads.len(),
        nan: grads.iter().filter(|g| g.is_nan()).count(),
        inf: grads.iter().filter(|g| g.is_infinite()).count(),
        first_nan: grads.iter().position(|g| g.is_nan()),
        first_inf: grads.iter().position(|g| g.is_infinite()),
    }
}

fn expected_found(r: &NonFiniteReport) -> Found {
    if r.nan > 0 {
        Found::Nan
    } else if r.inf > 0 {
        Found::Inf
    } else {
        Found::Finite
    }
}
