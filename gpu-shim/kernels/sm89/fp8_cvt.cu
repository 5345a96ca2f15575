// FP8 conversions of f32 on the GPU, for comparing halfscale-core's `cuda-satfinite` and
// `cuda-nosat` profiles byte for byte with the hardware and with cuda_fp8.h (test only:
// gpu-shim/tests/gpu_fp8.rs). Needs sm_89 or newer (Ada, Hopper) for the cvt instructions, so
// gen-ptx compiles the files of this folder for compute_89.
//
// For the n consecutive f32 bit patterns base, base+1, ..., out holds six planes of n bytes:
//   0: __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3)
//   1: __nv_cvt_float_to_fp8(x, __NV_NOSAT,     __NV_E4M3)
//   2: __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E5M2)
//   3: __nv_cvt_float_to_fp8(x, __NV_NOSAT,     __NV_E5M2)
//   4: cvt.rn.satfinite.e4m3x2.f32 (the instruction itself; x in the low byte)
//   5: cvt.rn.satfinite.e5m2x2.f32
#include <cuda_fp8.h>

extern "C" __global__ void fp8_cvt_f32(unsigned base, unsigned n, unsigned char* __restrict__ out) {
  for (unsigned t = blockIdx.x * blockDim.x + threadIdx.x; t < n; t += gridDim.x * blockDim.x) {
    const float x = __uint_as_float(base + t);
    out[t] = __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3);
    out[(size_t)n + t] = __nv_cvt_float_to_fp8(x, __NV_NOSAT, __NV_E4M3);
    out[2 * (size_t)n + t] = __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E5M2);
    out[3 * (size_t)n + t] = __nv_cvt_float_to_fp8(x, __NV_NOSAT, __NV_E5M2);
    unsigned short e4, e5;
    // cvt.rn.satfinite.{e4m3x2,e5m2x2}.f32 d, a, b: a goes to the upper byte, b to the lower.
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(e4) : "f"(0.0f), "f"(x));
    asm("cvt.rn.satfinite.e5m2x2.f32 %0, %1, %2;" : "=h"(e5) : "f"(0.0f), "f"(x));
    out[4 * (size_t)n + t] = (unsigned char)(e4 & 0xff);
    out[5 * (size_t)n + t] = (unsigned char)(e5 & 0xff);
  }
}
