// log_softmax + nll_loss in f32 (autocast's fp32 list), their backward, and evaluation counts.
//
// Order (fixed): per row, m = max by the scan `v > m || isnan(v)` from -inf; s = sum of
// expf(v - m) in class order from +0; out = (v - m) - logf(s). The batch loss is the sequential
// sum over rows of -out[target] from +0, divided by f32(n): one thread, after a block barrier.
// expf/logf are CUDA's (max 2 and 1 ulp, non-fast-math) where the simulator calls the host's
// libm: the only place the GPU is not bit-identical to the simulator on equal inputs; the bound
// is in gpu-shim/README.md.
#include "common.cuh"

// One block (any size); rows strided over its threads.
extern "C" __global__ void log_softmax_nll(const h16* __restrict__ logits, const u8* __restrict__ labels,
                                           float* __restrict__ logp, float* __restrict__ loss, int n,
                                           int classes) {
  for (int r = threadIdx.x; r < n; r += blockDim.x) {
    const h16* x = logits + (size_t)r * classes;
    float m = -__int_as_float(0x7f800000);
    for (int j = 0; j < classes; ++j) {
      const float v = h2f(x[j]);
      if (v > m || v != v) m = v;
    }
    float s = 0.0f;
    for (int j = 0; j < classes; ++j) s = s + expf(h2f(x[j]) - m);
    const float ls = logf(s);
    for (int j = 0; j < classes; ++j) logp[(size_t)r * classes + j] = (h2f(x[j]) - m) - ls;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0.0f;
    for (int r = 0; r < n; ++r) s = s + -logp[(size_t)r * classes + labels[r]];
    *loss = s / (float)n;
  }
}

// dlogits[b][j] = f16(dout - expf(logp[b][j]) * g) with g = -(scale / f32(n)) and dout = g at
// the target, +0 elsewhere (nll_loss_backward then _log_softmax_backward_data). `scale` is a
// device scalar: the loss scale. 1-D launch over n*classes.
extern "C" __global__ void log_softmax_nll_bwd(const float* __restrict__ logp, const u8* __restrict__ labels,
                                               const float* __restrict__ scale, h16* __restrict__ dlogits,
                                               int n, int classes) {
  const float g = -(*scale / (float)n);
  for (int t = gtid(); t < n * classes; t += gstride()) {
    const int b = t / classes, j = t - b * classes;
    const float dout = j == (int)labels[b] ? g : 0.0f;
    dlogits[t] = f2h(dout - expf(logp[t]) * g);
  }
}

// Evaluation counts, one thread: correct predictions (first maximum of the row, `v > best`) and
// the summed loss in f64 (sequential from -0.0, as Rust's f64 Sum).
extern "C" __global__ void eval_stats(const float* __restrict__ logp, const u8* __restrict__ labels, int n,
                                      int classes, double* __restrict__ loss_sum, unsigned* __restrict__ correct) {
  if (gtid() != 0) return;
  double s = -0.0;
  unsigned c = 0;
  for (int r = 0; r < n; ++r) {
    const float* row = logp + (size_t)r * classes;
    int best = 0;
    for (int j = 1; j < classes; ++j)
      if (row[j] > row[best]) best = j;
    c += best == (int)labels[r];
    s = s + -(double)row[labels[r]];
  }
  *loss_sum = s;
  *correct = c;
}
