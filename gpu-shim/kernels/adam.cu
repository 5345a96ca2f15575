// torch.optim.Adam on the f32 master weights, in the order of sim/src/adam.rs (the order of
// _single_tensor_adam), elementwise, every operation correctly rounded: bit-identical to the
// simulator.
//
//   m = fmaf(lerp_weight, g - m, m)                 exp_avg.lerp_(grad, 1 - beta1)
//   v = v * beta2; v = v + (one_minus_beta2 * g) * g
//   denom = sqrt(v) / bias_correction2_sqrt + eps
//   p = p + (neg_step_size * m) / denom
//
// The per-step scalars come from a table (6 f32 per step number, computed on the host in f64 by
// AdamConfig::scalars and rounded to f32 as PyTorch does), indexed by the device-side step count
// + 1, so no host value changes between steps. The kernel returns without writing anything when
// `counters` is given and holds a non-finite count (GradScaler's skipped step). It also writes
// the f16 copy of the new weights (autocast's weight cast for the next forward).
#include "common.cuh"

extern "C" __global__ void adam_step(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                     float* __restrict__ v, h16* __restrict__ p16, int len,
                                     const float* __restrict__ table, const unsigned long long* __restrict__ step,
                                     const unsigned* __restrict__ counters) {
  if (counters != 0 && (counters[0] | counters[1]) != 0) return;
  const float* s = table + 6 * (*step + 1);
  const float lerp_weight = s[0], beta2 = s[1], one_minus_beta2 = s[2], bc2_sqrt = s[3], eps = s[4],
              neg_step_size = s[5];
  for (int i = gtid(); i < len; i += gstride()) {
    const float gi = g[i];
    float mi = m[i], vi = v[i], pi = p[i];
    mi = fmaf(lerp_weight, __fsub_rn(gi, mi), mi);
    vi = __fmul_rn(vi, beta2);
    vi = __fadd_rn(vi, __fmul_rn(__fmul_rn(one_minus_beta2, gi), gi));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2_sqrt), eps);
    pi = __fadd_rn(pi, __fdiv_rn(__fmul_rn(neg_step_size, mi), denom));
    m[i] = mi;
    v[i] = vi;
    p[i] = pi;
    p16[i] = f2h(pi);
  }
}
