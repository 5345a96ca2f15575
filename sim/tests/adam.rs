//! Adam against hand-computed `torch.optim.Adam` steps.
//!
//! The expected bit patterns were computed independently of this crate: `_single_tensor_adam`'s
//! operations carried out in exact rational arithmetic, each f32 kernel operation rounded once to
//! nearest-even (lerp as one fused multiply-add, addcmul/addcdiv left to right), the bias
//! corrections in Python floats.

use halfscale_sim::adam::{self, AdamConfig, AdamState};

fn f(bits: &[u32]) -> Vec<f32> {
    bits.iter().map(|&b| f32::from_bits(b)).collect()
}

#[test]
fn three_steps_match_pytorch_bit_for_bit() {
    let config = AdamConfig::default();
    let mut params = vec![1.0f32, -0.5, 0.25, 3.0];
    let mut state = AdamState::new(4);
    let grads = [
        [0.1f32, -0.2, 1.0 / 1024.0, 0.0],
        [-0.05, 0.3, 1.0 / 1024.0, 2.0],
        [0.2, 0.0, -1.0 / 512.0, -1.0],
    ];
    let expected_p = [
        [0x3f7fbe77, 0xbeff7cee, 0x3e7ef9dc, 0x40400000],
        [0x3f7fad03, 0xbeff9d65, 0x3e7df3b8, 0x403ff3cf],
        [0x3f7f81e2, 0xbeffb67e, 0x3e7e078d, 0x403ff010],
    ];
    let expected_m = [
        [0x3c23d70b, 0xbca3d70b, 0x38cccccd, 0x0],
        [0x3b83126f, 0x3c449ba7, 0x39428f5c, 0x3e4ccccd],
        [0x3cc154ca, 0x3c30f27d, 0xb7ed916f, 0x3da3d70a],
    ];
    let expected_v = [
        [0x3727c5ad, 0x3827c5ad, 0x3083126f, 0x0],
        [0x37518c25, 0x390845e0, 0x310301a8, 0x3b83126f],
        [0x385c1b4d, 0x390822fd, 0x31c4827e, 0x3ba3b57d],
    ];
    for t in 0..3 {
        adam::step(&config, &mut state, &mut params, &grads[t]);
        assert_eq!(state.step, t as u64 + 1);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&params),
            bits(&f(&expected_p[t])),
            "params after step {}",
            t + 1
        );
        assert_eq!(
            bits(&state.exp_avg),
            bits(&f(&expected_m[t])),
            "exp_avg after step {}",
            t + 1
        );
        assert_eq!(
            bits(&state.exp_avg_sq),
            bits(&f(&expected_v[t])),
            "exp_avg_sq after step {}",
            t + 1
        );
    }
}

#[test]
fn first_step_moves_each_weight_by_about_lr() {
    // With m = v = 0, step 1 gives m/sqrt(v_hat) = sign(g): every weight moves by ~lr.
    let config = AdamConfig::default();
    let mut params = vec![0.0f32; 5];
    let grads = [1e-6f32, -3.0, 100.0, -1e-3, 0.5];
    let mut state = AdamState::new(5);
    adam::step(&config, &mut state, &mut params, &grads);
    for (p, g) in params.iter().zip(grads) {
        assert!((p + 1e-3 * g.signum()).abs() < 1e-5, "{p} for grad {g}");
    }
}

#[test]
fn scalars_are_python_floats_rounded_to_f32() {
    let s = AdamConfig::default().scalars(1);
    assert_eq!(s.lerp_weight, (1.0f64 - 0.9) as f32);
    assert_eq!(s.one_minus_beta2, (1.0f64 - 0.999) as f32);
    assert_eq!(s.neg_step_size, (-(1e-3f64 / (1.0 - 0.9))) as f32);
    assert_eq!(s.bias_correction2_sqrt, (1.0f64 - 0.999).sqrt() as f32);
    assert_eq!(s.eps, 1e-8f32);
}
