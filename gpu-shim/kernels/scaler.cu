// The loss scaler on the device: PyTorch's _amp_foreach_non_finite_check_and_unscale_ and
// _amp_update_scale_, with found_inf, the scale and the growth tracker kept in device memory,
// so a training step needs no host synchronisation.
//
// counters (u32 x 4): [0] NaN count, [1] inf count, [2] first NaN index, [3] first inf index
// (0xffffffff when none). found_inf is counters[0] + counters[1] > 0.
#include "common.cuh"

// Per element, in place: classify the bits BEFORE the multiply (NaN: |bits| > 0x7f800000, inf:
// == 0x7f800000; counted apart, first index by atomicMin, so the result does not depend on the
// schedule), then g = g * inv in f32 unless inv == 1. inv = f32(1 / f64(*scale)) when `scale` is
// given (GradScaler.unscale_'s reciprocal in f64), else inv_host. Elementwise: bit-identical to
// the simulator.
extern "C" __global__ void unscale_check(float* __restrict__ g, int len, const float* __restrict__ scale,
                                         float inv_host, unsigned* __restrict__ counters) {
  const float inv = scale != 0 ? (float)(1.0 / (double)*scale) : inv_host;
  for (int i = gtid(); i < len; i += gstride()) {
    const float v = g[i];
    const unsigned a = __float_as_uint(v) & 0x7fffffffu;
    if (a > 0x7f800000u) {
      atomicAdd(&counters[0], 1u);
      atomicMin(&counters[2], (unsigned)i);
    } else if (a == 0x7f800000u) {
      atomicAdd(&counters[1], 1u);
      atomicMin(&counters[3], (unsigned)i);
    }
    if (inv != 1.0f) g[i] = __fmul_rn(v, inv);
  }
}

// The end of a step, one thread, in this order:
//  1. found = check_found && counters[0] + counters[1] > 0;
//  2. record (when rec != 0): rec[10*slot ..] = {loss bits, scale bits, nan, inf, found, ...,
//     first NaN index, first inf index (0xffffffff: none)};
//  3. Adam's step count: *adam_step += 1 unless found (a skipped step leaves Adam untouched);
//  4. when update_scale: _amp_update_scale_ exactly (f64 product, then f32):
//       found:  scale = f32(f64(scale) * backoff); tracker = 0
//       else:   successful = tracker + 1; if successful == interval:
//                 cand = f32(f64(scale) * growth); if finite(cand) scale = cand; tracker = 0
//               else tracker = successful;
//     then rec gets the new scale and tracker;
//  5. when check_found: counters reset for the next step.
extern "C" __global__ void step_finish(unsigned* __restrict__ counters, const float* __restrict__ loss,
                                       float* __restrict__ scale, int* __restrict__ tracker,
                                       unsigned long long* __restrict__ adam_step, double growth,
                                       double backoff, int interval, unsigned* __restrict__ rec, int slot,
                                       int check_found, int update_scale) {
  if (gtid() != 0) return;
  const bool found = check_found && (counters[0] + counters[1]) > 0;
  unsigned* r = rec != 0 ? rec + 10 * slot : 0;
  if (r) {
    r[0] = __float_as_uint(*loss);
    r[1] = __float_as_uint(*scale);
    r[2] = check_found ? counters[0] : 0;
    r[3] = check_found ? counters[1] : 0;
    r[4] = found;
    r[8] = check_found ? counters[2] : 0xffffffffu;
    r[9] = check_found ? counters[3] : 0xffffffffu;
  }
  if (!found) *adam_step += 1;
  if (update_scale) {
    if (found) {
      *scale = (float)((double)*scale * backoff);
      *tracker = 0;
    } else {
      const int successful = *tracker + 1;
      if (successful == interval) {
        const float cand = (float)((double)*scale * growth);
        if (isfinite(cand)) *scale = cand;
        *tracker = 0;
      } else {
        *tracker = successful;
      }
    }
  }
  if (r) {
    r[5] = __float_as_uint(*scale);
    r[6] = (unsigned)*tracker;
    r[7] = (unsigned)*adam_step;
  }
  if (check_found) {
    counters[0] = 0;
    counters[1] = 0;
    counters[2] = 0xffffffffu;
    counters[3] = 0xffffffffu;
  }
}
