// The SimpleCNN layers in autocast fp16: binary16 storage, f32 accumulation, rounded once per
// output, at the simulator's rounding points (sim/src/mixed.rs).
//
// Accumulation order (fixed; see gpu-shim/README.md): every output element is computed by one
// thread, sequentially. Dot products follow the simulator's GEMM blocking (GEMM_KC): for each
// block of 256 consecutive indices, `p = +0; p = fmaf(a, b, p)` in index order, then
// `acc = acc + p`; `acc` starts at the bias (forward) or at +0 (gradients). Bias gradients are
// sequential sums (linear) or the simulator's 8-lane sum_lanes (conv, per group). Where the simulator splits the batch into groups of `chunk` images
// (the conv trunk), the kernels split it the same way and sum the group partials in group order.
#include "common.cuh"

// dst[i] = f16(src[i]): the per-step cast of the master weights, the input batch, a dataset.
extern "C" __global__ void cast_f32_f16(const float* __restrict__ src, h16* __restrict__ dst, int len) {
  for (int i = gtid(); i < len; i += gstride()) dst[i] = f2h(src[i]);
}

// A batch from a resident dataset: row b of dst is row idx[b] of src (row_len halves), and
// labels[b] = src_labels[idx[b]]. Pure copies.
extern "C" __global__ void gather_rows(const h16* __restrict__ src, const u8* __restrict__ src_labels,
                                       const unsigned* __restrict__ idx, int n, int row_len,
                                       h16* __restrict__ dst, u8* __restrict__ labels) {
  for (int i = gtid(); i < n * row_len; i += gstride()) {
    int b = i / row_len, p = i - b * row_len;
    unsigned r = idx[b];
    dst[i] = src[(size_t)r * row_len + p];
    if (p == 0) labels[b] = src_labels[r];
  }
}

// Convolution, stride 1, no padding; x [n][cin][h][w], w [cout][cin][k][k], y [n][cout][oh][ow].
// y = f16(b + dot(w[co], patch)) with the dot over the im2col row order (ci*k + i)*k + j,
// blocked by GEMM_KC. Launch: grid (ceil(cout/cpb), n), block oh*ow*cpb, shared cin*h*w floats.
extern "C" __global__ void conv2d_fwd(const h16* __restrict__ x, const h16* __restrict__ w,
                                      const h16* __restrict__ b, h16* __restrict__ y, int cin, int h,
                                      int wd, int cout, int k, int cpb) {
  HS_SHARED(float, xs);
  const int img = blockIdx.y, oh = h - k + 1, ow = wd - k + 1, plane = oh * ow;
  const h16* xi = x + (size_t)img * cin * h * wd;
  for (int t = threadIdx.x; t < cin * h * wd; t += blockDim.x) xs[t] = h2f(xi[t]);
  __syncthreads();
  const int pos = threadIdx.x % plane, co = blockIdx.x * cpb + threadIdx.x / plane;
  if (co >= cout) return;
  const int oy = pos / ow, ox = pos - oy * ow, kk = k * k, len = cin * kk;
  const h16* wc = w + (size_t)co * len;
  float acc = h2f(b[co]);
  for (int r0 = 0; r0 < len; r0 += GEMM_KC) {
    const int r1 = min(len, r0 + GEMM_KC);
    float p = 0.0f;
    for (int r = r0; r < r1; ++r) {
      const int ci = r / kk, ij = r - ci * kk, i = ij / k, j = ij - i * k;
      p = fmaf(h2f(wc[r]), xs[(ci * h + oy + i) * wd + ox + j], p);
    }
    acc = acc + p;
  }
  y[((size_t)img * cout + co) * plane + pos] = f2h(acc);
}

// Partial weight and bias gradients of a convolution for one group of `chunk` images:
// part[g][e] for e < cout*cin*k*k: dot over (image of the group, oy, ox) in that order of
// dy[img][co][oy][ox] * x[img][ci][oy+i][ox+j], blocked by GEMM_KC, from +0;
// for e = wlen + co: the sum of dy[img][co][.][.] over the group in sum_lanes order (8 lanes).
// Launch: grid (ceil((wlen+cout)/256), groups), block 256.
extern "C" __global__ void conv2d_bwd_params_part(const h16* __restrict__ dy, const h16* __restrict__ x,
                                                  float* __restrict__ part, int n, int chunk, int cin,
                                                  int h, int wd, int cout, int k) {
  const int oh = h - k + 1, ow = wd - k + 1, plane = oh * ow, kk = k * k;
  const int wlen = cout * cin * kk, e = gtid(), g = blockIdx.y;
  if (e >= wlen + cout) return;
  const int i0 = g * chunk, i1 = min(n, i0 + chunk);
  float acc = 0.0f;
  if (e < wlen) {
    const int co = e / (cin * kk), rem = e - co * cin * kk, ci = rem / kk, ij = rem - ci * kk,
              i = ij / k, j = ij - i * k;
    const int len = (i1 - i0) * plane;
    for (int q0 = 0; q0 < len; q0 += GEMM_KC) {
      const int q1 = min(len, q0 + GEMM_KC);
      float p = 0.0f;
      for (int q = q0; q < q1; ++q) {
        const int img = i0 + q / plane, pos = q % plane, oy = pos / ow, ox = pos - oy * ow;
        p = fmaf(h2f(dy[((size_t)img * cout + co) * plane + pos]),
                 h2f(x[((size_t)img * cin + ci) * h * wd + (oy + i) * wd + ox + j]), p);
      }
      acc = acc + p;
    }
  } else {
    // halfscale_sim::gemm::sum_lanes: element q of the group's row into lane q % 8 (from +0),
    // lanes combined as ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
    const int co = e - wlen;
    float l[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    int q = 0;
    for (int img = i0; img < i1; ++img)
      for (int pos = 0; pos < plane; ++pos, ++q) l[q & 7] = l[q & 7] + h2f(dy[((size_t)img * cout + co) * plane + pos]);
    acc = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
  }
  part[(size_t)g * (wlen + cout) + e] = acc;
}

// Sums the group partials in group order (part[0] + part[1] + ...), rounds through f16 and
// writes the f32 master gradient: out[e] = f16(sum_g part[g][e]) for e < len.
extern "C" __global__ void sum_groups_round(const float* __restrict__ part, int groups, int len,
                                            float* __restrict__ out) {
  for (int e = gtid(); e < len; e += gstride()) {
    float s = part[e];
    for (int g = 1; g < groups; ++g) s = s + part[(size_t)g * len + e];
    out[e] = round_h(s);
  }
}

// Input gradient of a convolution, fused with the relu backward of the layer below:
// dx[img][ci][y][x] = f16(sum over (i, j) in order of dcol(ci,i,j; y-i, x-j)) where
// dcol = dot over co (from +0, fmaf) of w[co][ci][i][j] * dy[img][co][y-i][x-j] (col2im's
// scatter-add order), then zero where mask (the relu output) is not > 0. Launch: 1-D over all
// input elements.
extern "C" __global__ void conv2d_bwd_input(const h16* __restrict__ dy, const h16* __restrict__ w,
                                            const h16* __restrict__ mask, h16* __restrict__ dx, int n,
                                            int cin, int h, int wd, int cout, int k) {
  const int oh = h - k + 1, ow = wd - k + 1, plane = oh * ow, kk = k * k;
  const int total = n * cin * h * wd;
  for (int t = gtid(); t < total; t += gstride()) {
    const int img = t / (cin * h * wd), rem = t - img * cin * h * wd, ci = rem / (h * wd),
              yx = rem - ci * h * wd, y = yx / wd, xx = yx - y * wd;
    float acc = 0.0f;
    for (int i = 0; i < k; ++i) {
      const int oy = y - i;
      if (oy < 0 || oy >= oh) continue;
      for (int j = 0; j < k; ++j) {
        const int ox = xx - j;
        if (ox < 0 || ox >= ow) continue;
        float p = 0.0f;
        for (int co = 0; co < cout; ++co)
          p = fmaf(h2f(w[((size_t)co * cin + ci) * kk + i * k + j]),
                   h2f(dy[((size_t)img * cout + co) * plane + oy * ow + ox]), p);
        acc = acc + p;
      }
    }
    float v = round_h(acc);
    if (mask != 0 && !(h2f(mask[t]) > 0.0f)) v = 0.0f;
    dx[t] = f2h(v);
  }
}

// max_pool2d(2) then relu on planes of h x w: the window is scanned row by row, an element
// replaces the running maximum (from -inf) when `v > max || isnan(v)` (PyTorch's CPU kernel:
// the first of equal maxima wins, NaN propagates); argmax gets the winner's index 0..3; relu
// maps v < 0 to +0 (NaN and -0 kept). Exact. 1-D launch over planes*(h/2)*(w/2).
extern "C" __global__ void maxpool2_relu_fwd(const h16* __restrict__ x, h16* __restrict__ y,
                                             u8* __restrict__ argmax, int planes, int h, int wd) {
  const int oh = h / 2, ow = wd / 2, total = planes * oh * ow;
  for (int t = gtid(); t < total; t += gstride()) {
    const int pl = t / (oh * ow), r = t - pl * oh * ow, oy = r / ow, ox = r - oy * ow;
    const h16* src = x + (size_t)pl * h * wd;
    float best = -__int_as_float(0x7f800000);
    h16 bestbits = 0xfc00;
    int idx = 0;
    for (int c = 0; c < 4; ++c) {
      const h16 bits = src[(2 * oy + c / 2) * wd + 2 * ox + c % 2];
      const float v = h2f(bits);
      if (v > best || v != v) { best = v; bestbits = bits; idx = c; }
    }
    y[t] = best < 0.0f ? (h16)0 : bestbits;
    argmax[t] = (u8)idx;
  }
}

// Backward of max_pool2d(2): every input element gets its window's output gradient when it is
// the window's winner, +0 otherwise (each element written). Exact.
extern "C" __global__ void maxpool2_bwd(const h16* __restrict__ dy, const u8* __restrict__ argmax,
                                        h16* __restrict__ dx, int planes, int h, int wd) {
  const int oh = h / 2, ow = wd / 2, total = planes * h * wd;
  for (int t = gtid(); t < total; t += gstride()) {
    const int pl = t / (h * wd), r = t - pl * h * wd, yy = r / wd, xx = r - yy * wd;
    const int o = pl * oh * ow + (yy / 2) * ow + xx / 2;
    dx[t] = (int)argmax[o] == (yy % 2) * 2 + (xx % 2) ? dy[o] : (h16)0;
  }
}

// relu forward in place (v < 0 -> +0; NaN, -0 kept) and backward (dy kept where y > 0, else
// +0). Exact. Standalone versions of what the fused kernels do.
extern "C" __global__ void relu_fwd(h16* __restrict__ x, int len) {
  for (int i = gtid(); i < len; i += gstride())
    if (h2f(x[i]) < 0.0f) x[i] = 0;
}
extern "C" __global__ void relu_bwd(const h16* __restrict__ y, h16* __restrict__ dy, int len) {
  for (int i = gtid(); i < len; i += gstride())
    if (!(h2f(y[i]) > 0.0f)) dy[i] = 0;
}

// Linear forward: y[b][o] = f16(bias[o] + dot_i(x[b][i], w[o][i])) (GEMM_KC blocking), then
// relu when `relu` is set. 1-D launch over n*out.
extern "C" __global__ void linear_fwd(const h16* __restrict__ x, const h16* __restrict__ w,
                                      const h16* __restrict__ bias, h16* __restrict__ y, int n,
                                      int in, int out, int relu) {
  for (int t = gtid(); t < n * out; t += gstride()) {
    const int b = t / out, o = t - b * out;
    const h16* xr = x + (size_t)b * in;
    const h16* wr = w + (size_t)o * in;
    float acc = h2f(bias[o]);
    for (int i0 = 0; i0 < in; i0 += GEMM_KC) {
      const int i1 = min(in, i0 + GEMM_KC);
      float p = 0.0f;
      for (int i = i0; i < i1; ++i) p = fmaf(h2f(xr[i]), h2f(wr[i]), p);
      acc = acc + p;
    }
    h16 r = f2h(acc);
    if (relu && h2f(r) < 0.0f) r = 0;
    y[t] = r;
  }
}

// Linear input gradient: dx[b][i] = f16(dot_o(dy[b][o], w[o][i])) (GEMM_KC blocking, from +0),
// then zero where mask[b][i] (a relu output) is not > 0 when mask is given. 1-D over n*in.
extern "C" __global__ void linear_bwd_input(const h16* __restrict__ dy, const h16* __restrict__ w,
                                            const h16* __restrict__ mask, h16* __restrict__ dx,
                                            int n, int in, int out) {
  for (int t = gtid(); t < n * in; t += gstride()) {
    const int b = t / in, i = t - b * in;
    float acc = 0.0f;
    for (int o0 = 0; o0 < out; o0 += GEMM_KC) {
      const int o1 = min(out, o0 + GEMM_KC);
      float p = 0.0f;
      for (int o = o0; o < o1; ++o) p = fmaf(h2f(dy[(size_t)b * out + o]), h2f(w[(size_t)o * in + i]), p);
      acc = acc + p;
    }
    float v = round_h(acc);
    if (mask != 0 && !(h2f(mask[t]) > 0.0f)) v = 0.0f;
    dx[t] = f2h(v);
  }
}

// Linear parameter gradients into the f32 master gradients (rounded through f16):
// dw[o][i] = f16(dot_b(dy[b][o], x[b][i])) (GEMM_KC blocking, from +0) for e < out*in;
// db[o] = f16(sequential sum over b of dy[b][o], from +0) for e = out*in + o. 1-D launch.
extern "C" __global__ void linear_bwd_params(const h16* __restrict__ dy, const h16* __restrict__ x,
                                             float* __restrict__ dwb, int n, int in, int out) {
  for (int e = gtid(); e < out * in + out; e += gstride()) {
    float acc = 0.0f;
    if (e < out * in) {
      const int o = e / in, i = e - o * in;
      for (int b0 = 0; b0 < n; b0 += GEMM_KC) {
        const int b1 = min(n, b0 + GEMM_KC);
        float p = 0.0f;
        for (int b = b0; b < b1; ++b) p = fmaf(h2f(dy[(size_t)b * out + o]), h2f(x[(size_t)b * in + i]), p);
        acc = acc + p;
      }
    } else {
      const int o = e - out * in;
      for (int b = 0; b < n; ++b) acc = acc + h2f(dy[(size_t)b * out + o]);
    }
    dwb[e] = round_h(acc);
  }
}
