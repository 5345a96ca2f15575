//! Every kernel against the simulator on random inputs, outputs poisoned beforehand so an
//! unwritten element fails. Runs where a GPU exists (`--features cuda`); compiled on CPU CI.
#![cfg(any(feature = "cuda", feature = "emulate"))]

mod common;

use common::*;
use halfscale_core::scaler::{pytorch_update_scale, unscale_and_check};
use halfscale_gpu::driver::{Arg, NULL};
use halfscale_gpu::GpuBackend;
use halfscale_sim::adam::{self, AdamConfig, AdamState};
use halfscale_sim::conv2d::Conv2d;
use halfscale_sim::linear::Linear;
use halfscale_sim::rng::SeededRng;
use halfscale_sim::{pool, relu, LowFormat};

fn i(v: usize) -> Arg {
    Arg::I32(v as i32)
}

#[test]
fn conv2d_forward_is_bit_identical() {
    let Some(b) = backend(8) else { return };
    let g = b.gpu();
    let mut rng = SeededRng::new(11);
    for (c, n, cpb) in [
        (
            Conv2d {
                in_channels: 1,
                out_channels: 32,
                kernel: 5,
                in_height: 28,
                in_width: 28,
            },
            3,
            1,
        ),
        (
            Conv2d {
                in_channels: 32,
                out_channels: 64,
                kernel: 5,
                in_height: 12,
                in_width: 12,
            },
            5,
            16,
        ),
    ] {
        let x = rand_f16(&mut rng, c.input_len(n), -1.0, 1.0);
        let w = rand_f16(&mut rng, c.weight_len(), -0.2, 0.2);
        let bias = rand_f16(&mut rng, c.out_channels, -0.2, 0.2);
        let (dx, dw, db) = (
            g.upload(&to_bits(&x)).unwrap(),
            g.upload(&to_bits(&w)).unwrap(),
            g.upload(&to_bits(&bias)).unwrap(),
        );
        let dy = g.upload(&vec![POISON16; c.output_len(n)]).unwrap();
        let (oh, ow) = (c.out_height(), c.out_width());
        g.launch(
            "conv2d_fwd",
            ((c.out_channels / cpb) as u32, n as u32),
            (oh * ow * cpb) as u32,
            (c.in_channels * c.in_plane() * 4) as u32,
            &[
                dx.ptr(),
                dw.ptr(),
                db.ptr(),
                dy.ptr(),
                i(c.in_channels),
                i(c.in_height),
                i(c.in_width),
                i(c.out_channels),
                i(c.kernel),
                i(cpb),
            ],
        )
        .unwrap();
        let gpu = from_bits(&dy.to_vec(c.output_len(n)).unwrap());
        let xs = to_cnhw(&x, n, c.in_channels, c.in_plane());
        let mut col = vec![0.0; c.col_len(n)];
        c.im2col(n, &xs, &mut col);
        let mut y = vec![0.0; c.output_len(n)];
        c.forward(n, &col, &w, &bias, &mut y);
        LowFormat::F16.round(&mut y);
        assert_bits(
            "conv2d_fwd",
            &gpu,
            &from_cnhw(&y, n, c.out_channels, c.out_plane()),
        );
    }
}

#[test]
fn conv2d_backward_params_and_input_are_bit_identical() {
    let Some(b) = backend(8) else { return };
    let g = b.gpu();
    let mut rng = SeededRng::new(12);
    let c = Conv2d {
        in_channels: 32,
        out_channels: 64,
        kernel: 5,
        in_height: 12,
        in_width: 12,
    };
    let n = 11; // two groups of WEIGHT_GRAD_GROUP and a partial one
    let chunk = halfscale_sim::conv2d::WEIGHT_GRAD_GROUP;
    let x = rand_f16(&mut rng, c.input_len(n), 0.0, 1.0);
    let w = rand_f16(&mut rng, c.weight_len(), -0.2, 0.2);
    let dyv = rand_f16(&mut rng, c.output_len(n), -1.0, 1.0);
    let (dx_in, dw, dy) = (
        g.upload(&to_bits(&x)).unwrap(),
        g.upload(&to_bits(&w)).unwrap(),
        g.upload(&to_bits(&dyv)).unwrap(),
    );
    let groups = n.div_ceil(chunk);
    let len = c.weight_len() + c.out_channels;
    let part = g.upload(&vec![POISON32; groups * len]).unwrap();
    let out = g.upload(&vec![POISON32; len]).unwrap();
    g.launch(
        "conv2d_bwd_params_part",
        (len.div_ceil(256) as u32, groups as u32),
        256,
        0,
        &[
            dy.ptr(),
            dx_in.ptr(),
            part.ptr(),
            i(n),
            i(chunk),
            i(c.in_channels),
            i(12),
            i(12),
            i(c.out_channels),
            i(5),
        ],
    )
    .unwrap();
    g.launch_1d(
        "sum_groups_round",
        len,
        &[part.ptr(), i(groups), i(len), out.ptr()],
    )
    .unwrap();
    let gpu = out.to_vec(len).unwrap();
    // The simulator: per group of WEIGHT_GRAD_GROUP images, backward_params, then the sum in
    // group order.
    let mut sum = vec![0f32; len];
    for gi in 0..groups {
        let (i0, i1) = (gi * chunk, ((gi + 1) * chunk).min(n));
        let m = i1 - i0;
        let xs = to_cnhw(
            &x[i0 * c.in_channels * 144..i1 * c.in_channels * 144],
            m,
            c.in_channels,
            144,
        );
        let dys = to_cnhw(
            &dyv[i0 * c.out_channels * 64..i1 * c.out_channels * 64],
            m,
            c.out_channels,
            64,
        );
        let mut col = vec![0.0; c.col_len(m)];
        c.im2col(m, &xs, &mut col);
        let (mut pw, mut pb) = (vec![0.0; c.weight_len()], vec![0.0; c.out_channels]);
        c.backward_params(m, &dys, &col, &mut pw, &mut pb, false);
        let p: Vec<f32> = pw.into_iter().chain(pb).collect();
        if gi == 0 {
            sum.copy_from_slice(&p);
        } else {
            sum.iter_mut().zip(&p).for_each(|(s, v)| *s += v);
        }
    }
    LowFormat::F16.round(&mut sum);
    assert_bits("conv2d dW/db", &gpu, &sum);

    // Input gradient with the relu mask (the layer below's output).
    let mask = rand_f16(&mut rng, c.input_len(n), -1.0, 1.0);
    let dmask = g.upload(&to_bits(&mask)).unwrap();
    let dxo = g.upload(&vec![POISON16; c.input_len(n)]).unwrap();
    g.launch_1d(
        "conv2d_bwd_input",
        c.input_len(n),
        &[
            dy.ptr(),
            dw.ptr(),
            dmask.ptr(),
            dxo.ptr(),
            i(n),
            i(c.in_channels),
            i(12),
            i(12),
            i(c.out_channels),
            i(5),
        ],
    )
    .unwrap();
    let gpu = from_bits(&dxo.to_vec(c.input_len(n)).unwrap());
    let dys = to_cnhw(&dyv, n, c.out_channels, 64);
    let (mut dcol, mut dxs) = (vec![0.0; c.col_len(n)], vec![0.0; c.input_len(n)]);
    c.backward_input(n, &dys, &w, &mut dcol, &mut dxs);
    LowFormat::F16.round(&mut dxs);
    let mut sim = from_cnhw(&dxs, n, c.in_channels, 144);
    relu::backward(&mask, &mut sim);
    assert_bits("conv2d dX", &gpu, &sim);
}

#[test]
fn maxpool_relu_forward_and_backward_are_exact() {
    let Some(b) = backend(8) else { return };
    let g = b.gpu();
    let mut rng = SeededRng::new(13);
    let (planes, h) = (37, 24);
    let mut x = rand_f16(&mut rng, planes * h * h, -1.0, 1.0);
    // Ties, signed zeros, infinities and NaN.
    x[0] = 0.5;
    x[1] = 0.5;
    x[50] = -0.0;
    x[51] = 0.0;
    x[100] = f32::NAN;
    x[200] = f32::INFINITY;
    x[300] = f32::NEG_INFINITY;
    let dx = g.upload(&to_bits(&x)).unwrap();
    let o = planes * 144;
    let (dy, darg) = (
        g.upload(&vec![POISON16; o]).unwrap(),
        g.upload(&vec![0xffu8; o]).unwrap(),
    );
    g.launch_1d(
        "maxpool2_relu_fwd",
        o,
        &[dx.ptr(), dy.ptr(), darg.ptr(), i(planes), i(h), i(h)],
    )
    .unwrap();
    let (mut y, mut arg) = (vec![0.0; o], vec![0u8; o]);
    pool::forward(planes, h, h, &x, &mut y, &mut arg);
    relu::forward(&mut y);
    assert_bits("maxpool2_relu_fwd", &from_bits(&dy.to_vec(o).unwrap()), &y);
    assert_eq!(darg.to_vec(o).unwrap(), arg, "argmax");
    let gy = rand_f16(&mut rng, o, -1.0, 1.0);
    let dgy = g.upload(&to_bits(&gy)).unwrap();
    let dgx = g.upload(&vec![POISON16; planes * h * h]).unwrap();
    g.launch_1d(
        "maxpool2_bwd",
        planes * h * h,
        &[dgy.ptr(), darg.ptr(), dgx.ptr(), i(planes), i(h), i(h)],
    )
    .unwrap();
    let mut gx = vec![0.0; planes * h * h];
    pool::backward(planes, h, h, &gy, &arg, &mut gx);
    assert_bits(
        "maxpool2_bwd",
        &from_bits(&dgx.to_vec(planes * h * h).unwrap()),
        &gx,
    );
    // Standalone relu.
    let r = g.upload(&to_bits(&x)).unwrap();
    g.launch_1d("relu_fwd", x.len(), &[r.ptr(), i(x.len())])
        .unwrap();
    let mut xr = x.clone();
    relu::forward(&mut xr);
    assert_bits("relu_fwd", &from_bits(&r.to_vec(x.len()).unwrap()), &xr);
    let d = g.upload(&to_bits(&gy[..o])).unwrap();
    g.launch_1d("relu_bwd", o, &[dx.ptr(), d.ptr(), i(o)])
        .unwrap();
    let mut gr = gy.clone();
    relu::backward(&x[..o], &mut gr);
    assert_bits("relu_bwd", &from_bits(&d.to_vec(o).unwrap()), &gr);
}

#[test]
fn linear_forward_and_backward_are_bit_identical() {
    let Some(b) = backend(8) else { return };
    let g = b.gpu();
    let mut rng = SeededRng::new(14);
    for (l, n) in [
        (
            Linear {
                in_features: 1024,
                out_features: 128,
            },
            64,
        ),
        (
            Linear {
                in_features: 128,
                out_features: 10,
            },
            37,
        ),
    ] {
        let (fi, fo) = (l.in_features, l.out_features);
        let x = rand_f16(&mut rng, n * fi, 0.0, 1.0);
        let w = rand_f16(&mut rng, fi * fo, -0.1, 0.1);
        let bias = rand_f16(&mut rng, fo, -0.1, 0.1);
        let (dx, dw, db) = (
            g.upload(&to_bits(&x)).unwrap(),
            g.upload(&to_bits(&w)).unwrap(),
            g.upload(&to_bits(&bias)).unwrap(),
        );
        for relu_flag in [0, 1] {
            let dy = g.upload(&vec![POISON16; n * fo]).unwrap();
            g.launch_1d(
                "linear_fwd",
                n * fo,
                &[
                    dx.ptr(),
                    dw.ptr(),
                    db.ptr(),
                    dy.ptr(),
                    i(n),
                    i(fi),
                    i(fo),
                    i(relu_flag),
                ],
            )
            .unwrap();
            let mut y = vec![0.0; n * fo];
            l.forward(n, &x, &w, &bias, &mut y);
            LowFormat::F16.round(&mut y);
            if relu_flag == 1 {
                relu::forward(&mut y);
            }
            assert_bits("linear_fwd", &from_bits(&dy.to_vec(n * fo).unwrap()), &y);
        }
        let gy = rand_f16(&mut rng, n * fo, -1.0, 1.0);
        let dgy = g.upload(&to_bits(&gy)).unwrap();
        let mask = rand_f16(&mut rng, n * fi, -1.0, 1.0);
        let dmask = g.upload(&to_bits(&mask)).unwrap();
        let dgx = g.upload(&vec![POISON16; n * fi]).unwrap();
        g.launch_1d(
            "linear_bwd_input",
            n * fi,
            &[
                dgy.ptr(),
                dw.ptr(),
                dmask.ptr(),
                dgx.ptr(),
                i(n),
                i(fi),
                i(fo),
            ],
        )
        .unwrap();
        let mut gx = vec![0.0; n * fi];
        l.backward_input(n, &gy, &w, &mut gx);
        LowFormat::F16.round(&mut gx);
        relu::backward(&mask, &mut gx);
        assert_bits(
            "linear_bwd_input",
            &from_bits(&dgx.to_vec(n * fi).unwrap()),
            &gx,
        );
        let dgw = g.upload(&vec![POISON32; fi * fo + fo]).unwrap();
        g.launch_1d(
            "linear_bwd_params",
            fi * fo + fo,
            &[dgy.ptr(), dx.ptr(), dgw.ptr(), i(n), i(fi), i(fo)],
        )
        .unwrap();
        let (mut gw, mut gb) = (vec![0.0; fi * fo], vec![0.0; fo]);
        l.backward_params(n, &gy, &x, &mut gw, &mut gb);
        let mut sim: Vec<f32> = gw.into_iter().chain(gb).collect();
        LowFormat::F16.round(&mut sim);
        assert_bits(
            "linear_bwd_params",
            &dgw.to_vec(fi * fo + fo).unwrap(),
            &sim,
        );
    }
}

/// log_softmax/nll use CUDA's expf/logf: within the bound of gpu-shim/README.md (logp within
/// 4 ulp of f32 at its magnitude + 1e-6, the rounded logit gradient within one f16 ulp).
#[test]
fn log_softmax_nll_and_backward_are_within_the_bound() {
    let Some(b) = backend(8) else { return };
    let g = b.gpu();
    let mut rng = SeededRng::new(15);
    let n = 64;
    let logits = rand_f16(&mut rng, n * 10, -8.0, 8.0);
    let labels: Vec<u8> = (0..n).map(|_| rng.below(10) as u8).collect();
    let (dl, dlab) = (
        g.upload(&to_bits(&logits)).unwrap(),
        g.upload(&labels).unwrap(),
    );
    let (dlogp, dloss) = (
        g.upload(&vec![POISON32; n * 10]).unwrap(),
        g.upload(&[POISON32]).unwrap(),
    );
    g.launch(
        "log_softmax_nll",
        (1, 1),
        64,
        0,
        &[dl.ptr(), dlab.ptr(), dlogp.ptr(), dloss.ptr(), i(n), i(10)],
    )
    .unwrap();
    let mut logp = vec![0.0; n * 10];
    halfscale_sim::loss::log_softmax(n, 10, &logits, &mut logp);
    let loss = halfscale_sim::loss::nll_loss(n, 10, &logp, &labels);
    let glogp = dlogp.to_vec(n * 10).unwrap();
    for (k, (a, s)) in glogp.iter().zip(&logp).enumerate() {
        assert!(
            (a - s).abs() <= 4.0 * f32::EPSILON * s.abs() + 1e-6,
            "logp[{k}]: {a} vs {s}"
        );
    }
    let gl = dloss.to_vec(1).unwrap()[0];
    assert!(
        (gl - loss).abs() <= 4.0 * f32::EPSILON * loss.abs() + 1e-6,
        "loss {gl} vs {loss}"
    );
    let scale = g.upload(&[65536f32]).unwrap();
    let dd = g.upload(&vec![POISON16; n * 10]).unwrap();
    g.launch_1d(
        "log_softmax_nll_bwd",
        n * 10,
        &[dlogp.ptr(), dlab.ptr(), scale.ptr(), dd.ptr(), i(n), i(10)],
    )
    .unwrap();
    let mut d = vec![0.0; n * 10];
    halfscale_sim::loss::backward(n, 10, &logp, &labels, 65536.0, &mut d);
    LowFormat::F16.round(&mut d);
    let gd = from_bits(&dd.to_vec(n * 10).unwrap());
    for (k, (a, s)) in gd.iter().zip(&d).enumerate() {
        let ulp = f64::from(s.abs().max(6.1e-5)) * 2f64.powi(-10);
        assert!(
            f64::from((a - s).abs()) <= ulp * 1.0001,
            "dlogits[{k}]: {a} vs {s}"
        );
    }
}

#[test]
fn unscale_check_is_bit_identical_and_counts_nan_and_inf_apart() {
    let Some(b) = backend(8) else { return };
    let g = b.gpu();
    let mut rng = SeededRng::new(16);
    let len = 100_003;
    for (inv, inject) in [
        (1.0f32 / 65536.0, true),
        (1.0, true),
        (0.3, false),
        (f32::INFINITY, true),
        (0.0, true),
    ] {
        let mut v: Vec<f32> = (0..len).map(|_| rng.uniform(-1e4, 1e4)).collect();
        if inject {
            for (k, x) in [
                (17, f32::NAN),
                (5000, f32::INFINITY),
                (99_999, f32::NEG_INFINITY),
                (60_000, -f32::NAN),
                (3, f32::INFINITY),
            ] {
                v[k] = x;
            }
        }
        let dv = g.upload(&v).unwrap();
        let c = g.upload(&[0u32, 0, u32::MAX, u32::MAX]).unwrap();
        g.launch_1d(
            "unscale_check",
            len,
            &[dv.ptr(), i(len), NULL, Arg::F32(inv), c.ptr()],
        )
        .unwrap();
        let report = unscale_and_check(&mut v, inv);
        assert_bits("unscale", &dv.to_vec(len).unwrap(), &v);
        let cv = c.to_vec(4).unwrap();
        let idx = |x: u32| (x != u32::MAX).then_some(x as usize);
        assert_eq!(
            (cv[0] as usize, cv[1] as usize, idx(cv[2]), idx(cv[3])),
            (report.nan, report.inf, report.first_nan, report.first_inf),
            "inv {inv}"
        );
    }
    // The device-scale variant: inv = f32(1 / f64(scale)).
    for scale in [65536f32, 3.0, 1e-30, 0.0] {
        let mut v: Vec<f32> = (0..1000).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let dv = g.upload(&v).unwrap();
        let (ds, c) = (
            g.upload(&[scale]).unwrap(),
            g.upload(&[0u32, 0, u32::MAX, u32::MAX]).unwrap(),
        );
        g.launch_1d(
            "unscale_check",
            1000,
            &[dv.ptr(), i(1000), ds.ptr(), Arg::F32(1.0), c.ptr()],
        )
        .unwrap();
        unscale_and_check(&mut v, halfscale_core::scaler::inv_scale(f64::from(scale)));
        assert_bits("unscale (device scale)", &dv.to_vec(1000).unwrap(), &v);
    }
}

#[test]
fn step_finish_follows_amp_update_scale_and_counts_adam_steps() {
    let Some(b) = backend(8) else { return };
    let g = b.gpu();
    let (growth, backoff, interval) = (2.0, 0.3, 3);
    let (mut scale, mut tracker) = (65536f32, 0u32);
    let dscale = g.upload(&[scale]).unwrap();
    let dtr = g.upload(&[0i32]).unwrap();
    let dstep = g.upload(&[5u64]).unwrap();
    let loss = g.upload(&[0.25f32]).unwrap();
    let w = GpuBackend::RECORD_WORDS;
    let rec = g.upload(&vec![0u32; w * 16]).unwrap();
    let mut steps = 5u64;
    let pattern = [
        false, false, false, true, false, true, true, false, false, false, false, false, false,
        true, false, false,
    ];
    for (k, &found) in pattern.iter().enumerate() {
        let c = g
            .upload(&[
                u32::from(found),
                0,
                if found { 7 } else { u32::MAX },
                u32::MAX,
            ])
            .unwrap();
        g.launch(
            "step_finish",
            (1, 1),
            32,
            0,
            &[
                c.ptr(),
                loss.ptr(),
                dscale.ptr(),
                dtr.ptr(),
                dstep.ptr(),
                Arg::F64(growth),
                Arg::F64(backoff),
                Arg::I32(interval),
                rec.ptr(),
                i(k),
                Arg::I32(1),
                Arg::I32(1),
            ],
        )
        .unwrap();
        (scale, tracker) =
            pytorch_update_scale(scale, tracker, found, growth, backoff, interval as u32);
        steps += u64::from(!found);
        assert_eq!(
            dscale.to_vec(1).unwrap()[0].to_bits(),
            scale.to_bits(),
            "step {k}"
        );
        assert_eq!(dtr.to_vec(1).unwrap()[0] as u32, tracker, "step {k}");
        assert_eq!(dstep.to_vec(1).unwrap()[0], steps, "step {k}");
        assert_eq!(
            c.to_vec(4).unwrap(),
            vec![0, 0, u32::MAX, u32::MAX],
            "counters reset"
        );
    }
    let words = rec.to_vec(w * 16).unwrap();
    let record =
        |k: usize| GpuBackend::decode_record(words[w * k..w * (k + 1)].try_into().unwrap());
    let r = record(3);
    assert!(r.skipped && r.report.nan == 1 && r.loss == 0.25);
    assert_eq!((r.report.first_nan, r.report.first_inf), (Some(7), None));
    let clean = record(0);
    assert_eq!(
        (clean.report.first_nan, clean.report.first_inf),
        (None, None)
    );
}

#[test]
fn adam_is_bit_identical_and_skips_itself_on_found_inf() {
    let Some(b) = backend(8) else { return };
    let mut rng = SeededRng::new(17);
    let n = halfscale_sim::model::PARAM_COUNT;
    let params = halfscale_sim::Params {
        data: (0..n).map(|_| rng.uniform(-0.5, 0.5)).collect(),
    };
    let grads: Vec<f32> = (0..n).map(|_| rng.uniform(-1e-2, 1e-2)).collect();
    let config = AdamConfig::default();
    let mut state = AdamState::new(n);
    state.step = 41;
    state
        .exp_avg
        .iter_mut()
        .for_each(|m| *m = rng.uniform(-1e-3, 1e-3));
    state
        .exp_avg_sq
        .iter_mut()
        .for_each(|v| *v = rng.uniform(0.0, 1e-5));
    let g = b.gpu();
    let dg = g.upload(&grads).unwrap();
    let (dp, dm, dv) = (
        g.upload(&params.data).unwrap(),
        g.upload(&state.exp_avg).unwrap(),
        g.upload(&state.exp_avg_sq).unwrap(),
    );
    let p16 = g.upload(&vec![POISON16; n]).unwrap();
    let mut table = vec![0f32; 6 * 50];
    for s in 1..50u64 {
        let k = config.scalars(s);
        table[6 * s as usize..6 * s as usize + 6].copy_from_slice(&[
            k.lerp_weight,
            k.beta2,
            k.one_minus_beta2,
            k.bias_correction2_sqrt,
            k.eps,
            k.neg_step_size,
        ]);
    }
    let dt = g.upload(&table).unwrap();
    let dstep = g.upload(&[state.step]).unwrap();
    // found_inf set: nothing may change.
    let found = g.upload(&[0u32, 3, u32::MAX, 9]).unwrap();
    let args = |c: Arg| {
        [
            dp.ptr(),
            dg.ptr(),
            dm.ptr(),
            dv.ptr(),
            p16.ptr(),
            i(n),
            dt.ptr(),
            dstep.ptr(),
            c,
        ]
    };
    g.launch_1d("adam_step", n, &args(found.ptr())).unwrap();
    assert_bits("skipped params", &dp.to_vec(n).unwrap(), &params.data);
    assert_bits("skipped exp_avg", &dm.to_vec(n).unwrap(), &state.exp_avg);
    assert_eq!(
        p16.to_vec(n).unwrap(),
        vec![POISON16; n],
        "a skipped step writes nothing"
    );
    // Clean: bit-identical to the simulator's Adam.
    let clean = g.upload(&[0u32, 0, u32::MAX, u32::MAX]).unwrap();
    g.launch_1d("adam_step", n, &args(clean.ptr())).unwrap();
    let mut p = params.data.clone();
    let mut st = state.clone();
    adam::step(&config, &mut st, &mut p, &grads);
    assert_bits("params", &dp.to_vec(n).unwrap(), &p);
    assert_bits("exp_avg", &dm.to_vec(n).unwrap(), &st.exp_avg);
    assert_bits("exp_avg_sq", &dv.to_vec(n).unwrap(), &st.exp_avg_sq);
    let mut p16s = p.clone();
    LowFormat::F16.round(&mut p16s);
    assert_bits("f16 weights", &from_bits(&p16.to_vec(n).unwrap()), &p16s);
}
