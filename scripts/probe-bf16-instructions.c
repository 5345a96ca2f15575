/* Can this CPU's bf16 instructions compute the bf16 recipe's GEMMs faster with the same bits?
 * (issue 15; docs/PERFORMANCE.md, "CPU speed, third round").
 *
 * The emulation promises, per output element and KC block, one chain of f32 FMAs over the
 * products in index order (sim/src/gemm/sgemm.rs, mirrored by the CUDA kernels). This probe:
 *   1. times VDPBF16PS (AVX512-BF16: two bf16 products per f32 lane) against VFMADD231PS, 16
 *      independent accumulator chains each, and prints the product rate of both;
 *   2. runs AMX TDPBF16PS on random 16 x 16 x 32 bf16 tiles (2000 of them) and counts the
 *      outputs that differ from the sequential f32 FMA chain over the same products, with the
 *      pairs in order and with each pair's odd element first (VDPBF16PS's documented order).
 *
 * Build and run (gcc 12, Linux 5.16+ for the AMX permission request; needs AVX512-BF16 and
 * AMX-BF16 hardware, so not part of CI):
 *   gcc -O2 -mavx512f -mavx512bf16 -mamx-tile -mamx-bf16 scripts/probe-bf16-instructions.c \
 *       -o /tmp/probe -lm && /tmp/probe
 * Measured on the Xeon (family 6 model 207) of that section, one core, two runs: VDPBF16PS
 * 1.55-1.8 G instr/s (50-58 G products/s) against VFMADD 6.8-7.3 G instr/s (108-117 G
 * products/s); AMX 323,612 of 512,000 outputs differ (in order), 323,824 (odd first).
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static void throughput(void) {
  __m512 acc[16], acc2[16];
  for (int i = 0; i < 16; i++) acc[i] = acc2[i] = _mm512_setzero_ps();
  __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = a;
  __m512 f = _mm512_set1_ps(1.0f), g = _mm512_set1_ps(1.0f);
  const long n = 100000000 / 16;
  double t0 = now();
  for (long k = 0; k < n; k++) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
    __asm__ volatile("" : "+v"(a));
  }
  double t1 = now();
  for (long k = 0; k < n; k++) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) acc2[i] = _mm512_fmadd_ps(acc2[i], f, g);
    __asm__ volatile("" : "+v"(f));
  }
  double t2 = now();
  float sink = 0;
  for (int i = 0; i < 16; i++) sink += _mm512_reduce_add_ps(acc[i]) + _mm512_reduce_add_ps(acc2[i]);
  printf("vdpbf16ps: %.2f G instr/s, %.1f G products/s\n", 1e8 / (t1 - t0) / 1e9, 32e8 / (t1 - t0) / 1e9);
  printf("vfmadd:    %.2f G instr/s, %.1f G products/s (sink %g)\n", 1e8 / (t2 - t1) / 1e9, 16e8 / (t2 - t1) / 1e9, sink);
}

typedef struct {
  uint8_t palette_id, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} tilecfg;

static uint16_t to_bf16(float f) { uint32_t u; memcpy(&u, &f, 4); return u >> 16; }
static float from_bf16(uint16_t h) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }
static uint64_t state = 88172645463325252ull;
static uint64_t next(void) { state ^= state << 13; state ^= state >> 7; state ^= state << 17; return state; }
/* Both signs, 16 binades, rounded to bf16. */
static float value(void) {
  double v = ((double)(next() >> 11) / 9007199254740992.0 * 2 - 1) * pow(2.0, (int)(next() % 16) - 8);
  return from_bf16(to_bf16((float)v));
}

static void amx_exactness(void) {
  if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)) {
    printf("AMX: the kernel refused the tile-data permission\n");
    return;
  }
  tilecfg cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette_id = 1;
  for (int t = 0; t < 3; t++) { cfg.colsb[t] = 64; cfg.rows[t] = 16; }
  _tile_loadconfig(&cfg);
  static uint16_t A[16][32], B[16][32];
  static float C[16][16], b[32][16];
  long total = 0, differ_in_order = 0, differ_odd_first = 0;
  for (int trial = 0; trial < 2000; trial++) {
    for (int i = 0; i < 16; i++)
      for (int k = 0; k < 32; k++) A[i][k] = to_bf16(value());
    for (int k = 0; k < 32; k++)
      for (int j = 0; j < 16; j++) b[k][j] = value();
    /* B in AMX's pair layout: row kp holds (b[2kp][j], b[2kp+1][j]) for every j. */
    for (int kp = 0; kp < 16; kp++)
      for (int j = 0; j < 16; j++)
        for (int e = 0; e < 2; e++) B[kp][2 * j + e] = to_bf16(b[2 * kp + e][j]);
    _tile_zero(0);
    _tile_loadd(1, A, 64);
    _tile_loadd(2, B, 64);
    _tile_dpbf16ps(0, 1, 2);
    _tile_stored(0, C, 64);
    for (int i = 0; i < 16; i++)
      for (int j = 0; j < 16; j++) {
        float in_order = 0.0f, odd_first = 0.0f;
        for (int k = 0; k < 32; k++) in_order = fmaf(from_bf16(A[i][k]), b[k][j], in_order);
        for (int kp = 0; kp < 16; kp++) {
          odd_first = fmaf(from_bf16(A[i][2 * kp + 1]), b[2 * kp + 1][j], odd_first);
          odd_first = fmaf(from_bf16(A[i][2 * kp]), b[2 * kp][j], odd_first);
        }
        total++;
        differ_in_order += memcmp(&in_order, &C[i][j], 4) != 0;
        differ_odd_first += memcmp(&odd_first, &C[i][j], 4) != 0;
      }
  }
  _tile_release();
  printf("AMX tdpbf16ps: %ld outputs, %ld differ from the in-order FMA chain, %ld from odd-first\n",
         total, differ_in_order, differ_odd_first);
}

int main(void) {
  throughput();
  amx_exactness();
  return 0;
}
