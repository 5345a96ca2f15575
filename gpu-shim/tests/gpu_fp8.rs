//! FP8 conversions on the GPU against halfscale-core's `cuda-satfinite` and `cuda-nosat`
//! profiles, for every one of the 2^32 f32 bit patterns: cuda_fp8.h's `__nv_cvt_float_to_fp8`
//! with `__NV_SATFINITE` and `__NV_NOSAT`, and the `cvt.rn.satfinite.{e4m3x2,e5m2x2}.f32`
//! instructions themselves (kernels/sm89/fp8_cvt.cu). Needs an sm_89 or newer GPU; run by
//! scripts/gpu-check (`--ignored`). Prints one `FP8` line per conversion.
#![cfg(feature = "cuda")]

use cust::device::DeviceAttribute;
use cust::prelude::*;
use halfscale_core::{Format, FpEnv, Profile, RoundingMode, E4M3, E5M2};
use rayon::prelude::*;

const PTX: &str = include_str!("../ptx/sm89/fp8_cvt.ptx");
/// f32 patterns per launch: six output planes of 256 MiB.
const CHUNK: u32 = 1 << 28;

/// What the GPU computes, plane by plane (kernels/sm89/fp8_cvt.cu), and the index of the core
/// conversion each plane must equal (see `expected`).
const PLANES: [(&str, usize); 6] = [
    ("__nv_cvt_float_to_fp8 E4M3 SATFINITE", 0),
    ("__nv_cvt_float_to_fp8 E4M3 NOSAT", 1),
    ("__nv_cvt_float_to_fp8 E5M2 SATFINITE", 2),
    ("__nv_cvt_float_to_fp8 E5M2 NOSAT", 3),
    ("cvt.rn.satfinite.e4m3x2.f32", 0),
    ("cvt.rn.satfinite.e5m2x2.f32", 2),
];

/// The core's four answers for `x`: E4M3 and E5M2 under `cuda-satfinite` and `cuda-nosat`.
fn expected(x: f32) -> [u8; 4] {
    let mut env = FpEnv::new(RoundingMode::NearestEven);
    let e4 = |p: Profile, env: &mut FpEnv| p.narrow::<f32, E4M3>(x, env).unwrap().to_bits() as u8;
    let e5 = |p: Profile, env: &mut FpEnv| p.narrow::<f32, E5M2>(x, env).unwrap().to_bits() as u8;
    [
        e4(Profile::CudaSatfinite, &mut env),
        e4(Profile::CudaNosat, &mut env),
        e5(Profile::CudaSatfinite, &mut env),
        e5(Profile::CudaNosat, &mut env),
    ]
}

/// Per block of inputs: each plane's mismatch count and the first few (plane, input, gpu, core).
type BlockFindings = ([u64; 6], Vec<(usize, u32, u8, u8)>);

#[test]
#[ignore = "needs an sm_89+ GPU; run by scripts/gpu-check"]
fn every_f32_converts_to_fp8_as_the_cuda_profiles_say() {
    let ctx = match cust::quick_init() {
        Ok(c) => c,
        Err(e) if std::env::var_os("HALFSCALE_REQUIRE_GPU").is_none() => {
            eprintln!("skipped: no CUDA device ({e})");
            return;
        }
        Err(e) => panic!("HALFSCALE_REQUIRE_GPU is set but: {e}"),
    };
    let device = Device::get_device(0).unwrap();
    let cc = (
        device
            .get_attribute(DeviceAttribute::ComputeCapabilityMajor)
            .unwrap(),
        device
            .get_attribute(DeviceAttribute::ComputeCapabilityMinor)
            .unwrap(),
    );
    if cc < (8, 9) {
        eprintln!(
            "skipped: compute capability {}.{} has no FP8 cvt",
            cc.0, cc.1
        );
        return;
    }
    let module = Module::from_ptx(PTX, &[]).unwrap();
    let kernel = module.get_function("fp8_cvt_f32").unwrap();
    let stream = Stream::new(StreamFlags::NON_BLOCKING, None).unwrap();
    let n = CHUNK as usize;
    let out = DeviceBuffer::<u8>::zeroed(6 * n).unwrap();
    let mut host = vec![0u8; 6 * n];
    // Per plane: mismatches and the first few (input, gpu, core).
    let mut mismatches = [0u64; 6];
    let mut examples: Vec<Vec<(u32, u8, u8)>> = vec![Vec::new(); 6];
    for chunk in 0..(1u64 << 32) / u64::from(CHUNK) {
        let base = (chunk * u64::from(CHUNK)) as u32;
        // SAFETY: the kernel's parameters are (unsigned base, unsigned n, unsigned char *out) and
        // `out` holds 6 * n bytes; the launch is synchronised before `out` is read or dropped.
        unsafe {
            launch!(kernel<<<4096, 256, 0, stream>>>(base, CHUNK, out.as_device_ptr())).unwrap();
        }
        stream.synchronize().unwrap();
        out.copy_to(&mut host[..]).unwrap();
        // Per 64 Ki elements: the mismatches of each plane and the first few.
        let found: Vec<BlockFindings> = (0..n)
            .into_par_iter()
            .step_by(1 << 16)
            .map(|start| {
                let mut count = [0u64; 6];
                let mut first = Vec::new();
                for t in start..(start + (1 << 16)).min(n) {
                    let bits = base + t as u32;
                    let want = expected(f32::from_bits(bits));
                    for (p, &(_, k)) in PLANES.iter().enumerate() {
                        let gpu = host[p * n + t];
                        if gpu != want[k] {
                            count[p] += 1;
                            if first.len() < 8 {
                                first.push((p, bits, gpu, want[k]));
                            }
                        }
                    }
                }
                (count, first)
            })
            .collect();
        for (count, first) in found {
            for p in 0..6 {
                mismatches[p] += count[p];
            }
            for (p, bits, gpu, core) in first {
                if examples[p].len() < 8 {
                    examples[p].push((bits, gpu, core));
                }
            }
        }
    }
    drop(ctx);
    for (p, (name, _)) in PLANES.iter().enumerate() {
        println!(
            "FP8 {name}: {} mismatches of 4294967296 against the core{}",
            mismatches[p],
            examples[p]
                .iter()
                .map(|(x, g, c)| format!(" [{x:#010x}: gpu {g:#04x} core {c:#04x}]"))
                .collect::<String>()
        );
    }
    assert_eq!(mismatches, [0; 6], "see the FP8 lines");
}
