// The CUDA C the kernels use, on the host: thread and block indices, __syncthreads, atomics,
// the IEEE intrinsics and the binary16 conversions, so gpu-shim/kernels/*.cu compile as C++ and
// run on the CPU (feature `emulate`). Each block runs its threads as user-level contexts on one
// OS thread: __syncthreads switches to the next thread, so barriers and shared memory behave as
// on a GPU, and atomics need no locking. Compiled with -ffp-contract=off, like -fmad=false.
#pragma once

#include <math.h>
#include <stddef.h>
#include <string.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

struct dim3 {
  unsigned x, y, z;
};

// The running thread's coordinates (per OS thread: Rust tests launch from several).
extern thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

// Yields to the block's other threads until all have arrived.
void __syncthreads();
// The running block's dynamic shared memory.
void* hs_emu_shared();

static inline unsigned __float_as_uint(float f) {
  unsigned u;
  memcpy(&u, &f, 4);
  return u;
}
static inline float __uint_as_float(unsigned u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static inline float __int_as_float(int i) {
  float f;
  memcpy(&f, &i, 4);
  return f;
}
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __fsqrt_rn(float a) { return sqrtf(a); }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }

// One OS thread runs a block's threads one at a time, so read-modify-write is atomic.
static inline unsigned atomicAdd(unsigned* p, unsigned v) {
  unsigned old = *p;
  *p = old + v;
  return old;
}
static inline unsigned atomicMin(unsigned* p, unsigned v) {
  unsigned old = *p;
  if (v < old) *p = v;
  return old;
}

// binary16 <-> f32 as cvt.rn.f16.f32 / cvt.f32.f16 do (a NaN becomes 0x7FFF). F16C when the
// build has it (build.rs adds -mf16c where the CPU does); else GCC's _Float16 conversions.
#ifdef __F16C__
#include <immintrin.h>
static inline unsigned short f2h(float f) {
  if (f != f) return 0x7FFF;
  return (unsigned short)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}
static inline float h2f(unsigned short u) { return _cvtsh_ss(u); }
#else
static inline unsigned short f2h(float f) {
  if (f != f) return 0x7FFF;
  _Float16 h = (_Float16)f;
  unsigned short u;
  memcpy(&u, &h, 2);
  return u;
}
static inline float h2f(unsigned short u) {
  _Float16 h;
  memcpy(&h, &u, 2);
  return (float)h;
}
#endif
