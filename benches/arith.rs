//! binary16 add, mul, div, sqrt and fma per element, in nearest-even and a directed mode, against
//! the libraries a user would otherwise pick: `half` (an f32 round trip, nearest-even only, no
//! flags), Berkeley SoftFloat through `softfloat-wrapper`, and LLVM's APFloat port
//! `rustc_apfloat` (both correctly rounded in every mode, like this crate).
//!
//! Every variant runs the same loop over the same 4096 operand pairs (normal numbers between 2^-8
//! and 2^8, both signs), so the figures are elements per second of one core, loop included.

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use half::f16;
use halfscale::core::{self as hc, fast, FpEnv, RoundingMode};
use rustc_apfloat::ieee::Half;
use rustc_apfloat::{Float, Round};
use softfloat_wrapper::{Float as SfFloat, RoundingMode as SfMode, F16};
use std::hint::black_box;

const N: usize = 4096;

struct Operands {
    a: Vec<f16>,
    b: Vec<f16>,
    c: Vec<f16>,
}

fn operands() -> Operands {
    let mut rng = common::Rng(0x0DDB_1A5E_5BAD_5EED);
    let mut gen = || -> Vec<f16> { (0..N).map(|_| f16::from_f32(rng.spread(-8, 8))).collect() };
    Operands {
        a: gen(),
        b: gen(),
        c: gen(),
    }
}

#[derive(Clone, Copy)]
enum Op {
    Add,
    Mul,
    Div,
    Sqrt,
    Fma,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Mul => "mul",
            Op::Div => "div",
            Op::Sqrt => "sqrt",
            Op::Fma => "fma",
        }
    }
}

fn bench_op(c: &mut Criterion, op: Op) {
    let x = operands();
    // sqrt takes |a|, so no variant spends its time on the invalid-operation path.
    let a_sqrt: Vec<f16> =
        x.a.iter()
            .map(|v| f16::from_bits(v.to_bits() & 0x7FFF))
            .collect();
    let a = if matches!(op, Op::Sqrt) {
        &a_sqrt
    } else {
        &x.a
    };
    let (b, cc) = (&x.b, &x.c);
    let mut out = vec![f16::ZERO; N];

    let mut group = c.benchmark_group(format!("f16_{}", op.name()));
    group.throughput(Throughput::Elements(N as u64));

    for (label, mode) in [
        ("near_even", RoundingMode::NearestEven),
        ("toward_pos", RoundingMode::TowardPositive),
    ] {
        group.bench_function(BenchmarkId::new("halfscale", label), |bench| {
            let mut env = FpEnv::new(mode);
            bench.iter(|| {
                for i in 0..N {
                    out[i] = match op {
                        Op::Add => hc::add(a[i], b[i], &mut env),
                        Op::Mul => hc::mul(a[i], b[i], &mut env),
                        Op::Div => hc::div(a[i], b[i], &mut env),
                        Op::Sqrt => hc::sqrt(a[i], &mut env),
                        Op::Fma => hc::fma(a[i], b[i], cc[i], &mut env),
                    };
                }
                black_box((&out, env.flags));
            })
        });
    }

    if !matches!(op, Op::Fma) {
        group.bench_function(BenchmarkId::new("halfscale_fast", "near_even"), |bench| {
            bench.iter(|| {
                for i in 0..N {
                    out[i] = match op {
                        Op::Add => fast::add_f16(a[i], b[i]),
                        Op::Mul => fast::mul_f16(a[i], b[i]),
                        Op::Div => fast::div_f16(a[i], b[i]),
                        Op::Sqrt => fast::sqrt_f16(a[i]),
                        Op::Fma => unreachable!(),
                    };
                }
                black_box(&out);
            })
        });
    }

    // `half`'s own operators are an f32 round trip; it has no sqrt or fma, so those are written
    // the way a `half` user would (f32 sqrt, f32 mul_add: the latter can double-round).
    group.bench_function(BenchmarkId::new("anchor_half", "near_even"), |bench| {
        bench.iter(|| {
            for i in 0..N {
                out[i] = match op {
                    Op::Add => a[i] + b[i],
                    Op::Mul => a[i] * b[i],
                    Op::Div => a[i] / b[i],
                    Op::Sqrt => f16::from_f32(a[i].to_f32().sqrt()),
                    Op::Fma => f16::from_f32(a[i].to_f32().mul_add(b[i].to_f32(), cc[i].to_f32())),
                };
            }
            black_box(&out);
        })
    });

    let (sa, sb, sc): (Vec<F16>, Vec<F16>, Vec<F16>) = (
        a.iter().map(|v| F16::from_bits(v.to_bits())).collect(),
        b.iter().map(|v| F16::from_bits(v.to_bits())).collect(),
        cc.iter().map(|v| F16::from_bits(v.to_bits())).collect(),
    );
    let mut sout = vec![F16::from_bits(0); N];
    for (label, mode) in [
        ("near_even", SfMode::TiesToEven),
        ("toward_pos", SfMode::TowardPositive),
    ] {
        group.bench_function(BenchmarkId::new("anchor_softfloat", label), |bench| {
            bench.iter(|| {
                for i in 0..N {
                    sout[i] = match op {
                        Op::Add => sa[i].add(sb[i], mode),
                        Op::Mul => sa[i].mul(sb[i], mode),
                        Op::Div => sa[i].div(sb[i], mode),
                        Op::Sqrt => sa[i].sqrt(mode),
                        Op::Fma => sa[i].fused_mul_add(sb[i], sc[i], mode),
                    };
                }
                black_box(&sout);
            })
        });
    }

    let (pa, pb, pc): (Vec<Half>, Vec<Half>, Vec<Half>) = (
        a.iter()
            .map(|v| Half::from_bits(v.to_bits().into()))
            .collect(),
        b.iter()
            .map(|v| Half::from_bits(v.to_bits().into()))
            .collect(),
        cc.iter()
            .map(|v| Half::from_bits(v.to_bits().into()))
            .collect(),
    );
    if !matches!(op, Op::Sqrt) {
        let mut pout = vec![Half::ZERO; N];
        for (label, round) in [
            ("near_even", Round::NearestTiesToEven),
            ("toward_pos", Round::TowardPositive),
        ] {
            group.bench_function(BenchmarkId::new("anchor_apfloat", label), |bench| {
                bench.iter(|| {
                    for i in 0..N {
                        pout[i] = match op {
                            Op::Add => pa[i].add_r(pb[i], round).value,
                            Op::Mul => pa[i].mul_r(pb[i], round).value,
                            Op::Div => pa[i].div_r(pb[i], round).value,
                            Op::Fma => pa[i].mul_add_r(pb[i], pc[i], round).value,
                            Op::Sqrt => unreachable!("rustc_apfloat has no sqrt"),
                        };
                    }
                    black_box(&pout);
                })
            });
        }
    }
    group.finish();
}

fn arith(c: &mut Criterion) {
    for op in [Op::Add, Op::Mul, Op::Div, Op::Sqrt, Op::Fma] {
        bench_op(c, op);
    }
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = arith
}
criterion_main!(benches);
