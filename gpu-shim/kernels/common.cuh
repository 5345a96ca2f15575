// Shared helpers of the halfscale kernels. Compiled with -fmad=false: every f32 operation is
// exactly what the source writes (a multiply followed by an add is never contracted into an FMA);
// FMAs appear only where the source calls fmaf.
#pragma once

typedef unsigned short h16;  // binary16 storage, as bits
typedef unsigned char u8;

#ifdef __CUDACC__
// f32 -> binary16, round to nearest even (IEEE; a NaN becomes the canonical 0x7FFF).
static __device__ __forceinline__ h16 f2h(float f) {
  h16 h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
}

// binary16 -> f32, exact.
static __device__ __forceinline__ float h2f(h16 h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
}

// The block's dynamic shared memory as an array of T.
#define HS_SHARED(T, name) extern __shared__ T name[]
#else
// The host emulation (gpu-shim/emulator/) supplies f2h, h2f and the shared memory.
#define HS_SHARED(T, name) T* name = static_cast<T*>(hs_emu_shared())
#endif

// Rounds an f32 through binary16 and back (the simulator's Precision::Fp16.round).
static __device__ __forceinline__ float round_h(float f) { return h2f(f2h(f)); }

static __device__ __forceinline__ int gtid() { return blockIdx.x * blockDim.x + threadIdx.x; }
static __device__ __forceinline__ int gstride() { return gridDim.x * blockDim.x; }

// The k-blocking of the simulator's GEMM (matrixmultiply's sgemm, KC = 256): a dot product of
// length K is formed as sum_blocks (fma-chain of the block from +0), the block partials added in
// order to the running value. Mirroring it makes the GEMM layers bit-identical to the simulator
// on x86-64 CPUs with FMA.
#define GEMM_KC 256
