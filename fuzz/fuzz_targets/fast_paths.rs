//! The flag-free nearest-even fast paths (`halfscale_core::fast`) against the generic, flagged
//! arithmetic in nearest-even: the same bits for every non-NaN result, a NaN where it gives NaN
//! (the fast paths' NaN payloads follow the hardware, as documented). Slices are checked element
//! by element, across the 256-element chunk boundary of the in-place round trips.
//!
//! Input: `a b` (little-endian u16), a length byte `n`, then f32 values (also read as u16 values
//! for the f16 -> f32 slice conversion), repeated cyclically to `max(3 n, count)` elements.
#![no_main]

use halfscale_core::half::{bf16, f16};
use halfscale_core::{self as hc, fast, Format, FpEnv};
use halfscale_fuzz::narrow::is_nan;
use halfscale_fuzz::{f32s, Bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let (a, b) = (input.u16(), input.u16());
    let n = usize::from(input.u8()) * 3;
    let raw = input.rest();
    check_scalar::<f16>(
        a,
        b,
        [fast::add_f16, fast::sub_f16, fast::mul_f16, fast::div_f16],
        fast::sqrt_f16,
    );
    check_scalar::<bf16>(
        a,
        b,
        [
            fast::add_bf16,
            fast::sub_bf16,
            fast::mul_bf16,
            fast::div_bf16,
        ],
        fast::sqrt_bf16,
    );

    let mut values = f32s(raw);
    if !values.is_empty() && values.len() < n {
        values = values.iter().copied().cycle().take(n).collect();
    }
    check_slices(&values);
    let halves: Vec<f16> = raw
        .chunks_exact(2)
        .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])))
        .collect();
    let mut wide = vec![0.0f32; halves.len()];
    fast::f16_slice_to_f32(&halves, &mut wide);
    for (h, w) in halves.iter().zip(&wide) {
        let want = hc::to_f32(*h, &mut FpEnv::default());
        assert!(
            same(*w, want),
            "f16_slice_to_f32 {:04X}: {w:?} vs {want:?}",
            h.to_bits()
        );
    }
});

/// Bit-equal, or both NaN.
fn same(x: f32, y: f32) -> bool {
    x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
}

fn check_scalar<F: Format>(a: u16, b: u16, bin: [fn(F, F) -> F; 4], sqrt: fn(F) -> F) {
    let (x, y) = (F::from_bits(a.into()), F::from_bits(b.into()));
    let generic: [fn(F, F, &mut FpEnv) -> F; 4] = [hc::add, hc::sub, hc::mul, hc::div];
    for ((name, fast_op), generic_op) in ["add", "sub", "mul", "div"].iter().zip(bin).zip(generic) {
        let got = fast_op(x, y).to_bits() as u16;
        let want = generic_op(x, y, &mut FpEnv::default()).to_bits() as u16;
        let ok = if is_nan::<F>(want) {
            is_nan::<F>(got)
        } else {
            got == want
        };
        assert!(
            ok,
            "{} fast {name} {a:04X} {b:04X}: {got:04X} vs {want:04X}",
            F::NAME
        );
    }
    let got = sqrt(x).to_bits() as u16;
    let want = hc::sqrt(x, &mut FpEnv::default()).to_bits() as u16;
    let ok = if is_nan::<F>(want) {
        is_nan::<F>(got)
    } else {
        got == want
    };
    assert!(ok, "{} fast sqrt {a:04X}: {got:04X} vs {want:04X}", F::NAME);
}

fn check_slices(values: &[f32]) {
    let e = &mut FpEnv::default();
    let mut through16 = values.to_vec();
    fast::round_slice_through_f16(&mut through16);
    let mut through_bf16 = values.to_vec();
    fast::round_slice_through_bf16(&mut through_bf16);
    let mut narrow = vec![f16::ZERO; values.len()];
    fast::f32_slice_to_f16(values, &mut narrow);
    for (i, &x) in values.iter().enumerate() {
        let h: f16 = hc::from_f32(x, e);
        let want = hc::to_f32(h, e);
        assert!(
            same(through16[i], want),
            "round_slice_through_f16[{i}] of {x:e}: {:e} vs {want:e}",
            through16[i]
        );
        let got = narrow[i].to_bits();
        let ok = if h.is_nan() {
            narrow[i].is_nan()
        } else {
            got == h.to_bits()
        };
        assert!(
            ok,
            "f32_slice_to_f16[{i}] of {x:e}: {got:04X} vs {:04X}",
            h.to_bits()
        );
        let bh: bf16 = hc::from_f32(x, e);
        let want = hc::to_f32(bh, e);
        assert!(
            same(through_bf16[i], want),
            "round_slice_through_bf16[{i}] of {x:e}: {:e} vs {want:e}",
            through_bf16[i]
        );
    }
}
