/* Exercises every function of halfscale.h against known values: PyTorch GradScaler
 * trajectories recorded from PyTorch itself (pytorch_trajectories.h), IEEE 754 results worked
 * out by hand, and every misuse the API promises to refuse. Exit status 0 when all hold. */
#include "halfscale.h"
#include "pytorch_trajectories.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int failures = 0;
#define CHECK(cond)                                                        \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "check.c:%d: FAILED: %s\n", __LINE__, #cond);        \
      failures++;                                                          \
    }                                                                      \
  } while (0)

static uint32_t bits_of(float x) {
  uint32_t b;
  memcpy(&b, &x, sizeof b);
  return b;
}

static void status_messages(void) {
  HsStatus all[] = {HS_OK, HS_ERR_NULL_POINTER, HS_ERR_INVALID_ARGUMENT, HS_ERR_INVALID_BUFFER,
                    HS_ERR_OVERLAPPING_BUFFERS, HS_ERR_INVALID_CONFIG, HS_ERR_NAN_GRADIENT,
                    HS_ERR_SCALE_AT_FLOOR, HS_ERR_INTERNAL};
  size_t n = sizeof all / sizeof all[0];
  CHECK(strcmp(hs_status_message(HS_OK), "ok") == 0);
  for (size_t i = 0; i < n; i++) {
    CHECK(hs_status_message(all[i]) != NULL);
    CHECK(strstr(hs_status_message(all[i]), "unknown") == NULL);
    for (size_t j = 0; j < i; j++) CHECK(strcmp(hs_status_message(all[i]), hs_status_message(all[j])) != 0);
  }
  CHECK(strcmp(hs_status_message(99), "unknown halfscale status") == 0);
  CHECK(strcmp(hs_status_message(-1), "unknown halfscale status") == 0);
}

static void arithmetic(void) {
  HsEnv env = hs_env_default();
  uint16_t r = 0;
  CHECK(env.rounding == HS_ROUND_NEAREST_EVEN && env.flags == 0);
  /* 1 + 1 = 2, exact. */
  CHECK(hs_f16_add(&env, 0x3C00, 0x3C00, &r) == HS_OK && r == 0x4000 && env.flags == 0);
  /* 65504 * 2 overflows to inf; flags stick. */
  CHECK(hs_f16_mul(&env, 0x7BFF, 0x4000, &r) == HS_OK && r == 0x7C00);
  CHECK(env.flags == (HS_FLAG_OVERFLOW | HS_FLAG_INEXACT));
  /* Toward zero, 32000 * 3 saturates at 65504. */
  env = hs_env_default();
  env.rounding = HS_ROUND_TOWARD_ZERO;
  CHECK(hs_f16_mul(&env, 0x77D0, 0x4200, &r) == HS_OK && r == 0x7BFF);
  CHECK(env.flags == (HS_FLAG_OVERFLOW | HS_FLAG_INEXACT));
  /* x - x is -0 toward negative, +0 otherwise. */
  env.rounding = HS_ROUND_TOWARD_NEGATIVE;
  env.flags = 0;
  CHECK(hs_f16_sub(&env, 0x3C00, 0x3C00, &r) == HS_OK && r == 0x8000 && env.flags == 0);
  env.rounding = HS_ROUND_NEAREST_EVEN;
  CHECK(hs_f16_sub(&env, 0x3C00, 0x3C00, &r) == HS_OK && r == 0x0000);
  /* 1 / 0 = inf, divide-by-zero. */
  CHECK(hs_f16_div(&env, 0x3C00, 0x0000, &r) == HS_OK && r == 0x7C00 && env.flags == HS_FLAG_DIV_BY_ZERO);
  /* sqrt(-1): invalid, the NaN depends on the style. */
  env.flags = 0;
  CHECK(hs_f16_sqrt(&env, 0xBC00, &r) == HS_OK && r == 0xFE00 && env.flags == HS_FLAG_INVALID);
  env.nan_style = HS_NAN_CUDA;
  CHECK(hs_f16_sqrt(&env, 0xBC00, &r) == HS_OK && r == 0x7FFF);
  env.nan_style = HS_NAN_CANONICAL;
  CHECK(hs_f16_sqrt(&env, 0xBC00, &r) == HS_OK && r == 0x7E00);
  CHECK(hs_f16_sqrt(&env, 0x4400, &r) == HS_OK && r == 0x4000); /* sqrt(4) = 2 */
  /* fma rounds once: (1 + 2^-10)^2 - (1 + 2^-9) = 2^-20 exactly, a subnormal (0x0010), where
     a multiply then an add would give 0. */
  env = hs_env_default();
  CHECK(hs_f16_fma(&env, 0x3C01, 0x3C01, 0xBC02, &r) == HS_OK && r == 0x0010 && env.flags == 0);
  CHECK(hs_f16_mul(&env, 0x3C01, 0x3C01, &r) == HS_OK && r == 0x3C02);

  /* bfloat16. */
  env = hs_env_default();
  CHECK(hs_bf16_add(&env, 0x3F80, 0x3F80, &r) == HS_OK && r == 0x4000 && env.flags == 0);
  CHECK(hs_bf16_sub(&env, 0x4040, 0x3F80, &r) == HS_OK && r == 0x4000); /* 3 - 1 */
  CHECK(hs_bf16_div(&env, 0x3F80, 0x4040, &r) == HS_OK && r == 0x3EAB && env.flags == HS_FLAG_INEXACT);
  CHECK(hs_bf16_sqrt(&env, 0x4080, &r) == HS_OK && r == 0x4000);
  CHECK(hs_bf16_fma(&env, 0x3F80, 0x3F80, 0x3F80, &r) == HS_OK && r == 0x4000);
  env.flags = 0;
  CHECK(hs_bf16_mul(&env, 0x7F7F, 0x4000, &r) == HS_OK && r == 0x7F80);
  CHECK(env.flags == (HS_FLAG_OVERFLOW | HS_FLAG_INEXACT));

  /* Misuse: a bad mode, a NULL environment or output; the output is left alone. */
  env = hs_env_default();
  env.rounding = 9;
  r = 0x1234;
  CHECK(hs_f16_add(&env, 0x3C00, 0x3C00, &r) == HS_ERR_INVALID_ARGUMENT && r == 0x1234);
  env = hs_env_default();
  env.tininess = 2;
  CHECK(hs_bf16_add(&env, 0x3C00, 0x3C00, &r) == HS_ERR_INVALID_ARGUMENT);
  env = hs_env_default();
  env.nan_style = -1;
  CHECK(hs_f16_fma(&env, 0, 0, 0, &r) == HS_ERR_INVALID_ARGUMENT);
  env = hs_env_default();
  env.flags = 0x20;
  CHECK(hs_f16_sqrt(&env, 0, &r) == HS_ERR_INVALID_ARGUMENT);
  env = hs_env_default();
  CHECK(hs_f16_add(NULL, 0x3C00, 0x3C00, &r) == HS_ERR_NULL_POINTER);
  CHECK(hs_bf16_fma(&env, 0, 0, 0, NULL) == HS_ERR_NULL_POINTER);
}

static void conversions(void) {
  HsEnv env = hs_env_default();
  /* 65520 is the overflow tie (inf), 65519 rounds to 65504, 1e-8 flushes, 2^-24 is exact. */
  float src[6] = {1.0f, 65520.0f, 65519.0f, 1e-8f, -0.0f, 5.9604645e-08f};
  uint16_t h[6] = {0};
  uint16_t want[6] = {0x3C00, 0x7C00, 0x7BFF, 0x0000, 0x8000, 0x0001};
  CHECK(hs_f32_to_f16(&env, src, h, 6) == HS_OK);
  for (int i = 0; i < 6; i++) CHECK(h[i] == want[i]);
  CHECK(env.flags == (HS_FLAG_INEXACT | HS_FLAG_OVERFLOW | HS_FLAG_UNDERFLOW));
  /* Toward zero, 65520 saturates. */
  env = hs_env_default();
  env.rounding = HS_ROUND_TOWARD_ZERO;
  CHECK(hs_f32_to_f16(&env, src + 1, h, 1) == HS_OK && h[0] == 0x7BFF);

  /* bf16 ties: 1 + 2^-8 -> 1 (even), 1 + 3 * 2^-8 -> 1 + 2^-6 (even). */
  env = hs_env_default();
  float bsrc[4] = {1.0f, 3.0f, 1.00390625f, 1.01171875f};
  uint16_t b[4];
  uint16_t bwant[4] = {0x3F80, 0x4040, 0x3F80, 0x3F82};
  CHECK(hs_f32_to_bf16(&env, bsrc, b, 4) == HS_OK);
  for (int i = 0; i < 4; i++) CHECK(b[i] == bwant[i]);
  CHECK(env.flags == HS_FLAG_INEXACT);

  float w[3];
  uint16_t hin[3] = {0x3C00, 0x0001, 0xFC00};
  env = hs_env_default();
  CHECK(hs_f16_to_f32(&env, hin, w, 3) == HS_OK);
  CHECK(w[0] == 1.0f && w[1] == 5.9604645e-08f && isinf(w[2]) && w[2] < 0 && env.flags == 0);
  uint16_t bin[2] = {0x3F80, 0xC040};
  CHECK(hs_bf16_to_f32(&env, bin, w, 2) == HS_OK && w[0] == 1.0f && w[1] == -3.0f);

  /* Misuse: NULL with n > 0, NULL with n == 0 (fine), misaligned, overlapping. */
  CHECK(hs_f32_to_f16(&env, NULL, h, 1) == HS_ERR_NULL_POINTER);
  CHECK(hs_f32_to_f16(&env, NULL, NULL, 0) == HS_OK);
  CHECK(hs_f32_to_f16(NULL, src, h, 1) == HS_ERR_NULL_POINTER);
  float aligned[4] = {1, 2, 3, 4};
  CHECK(hs_f32_to_bf16(&env, (const float *)((const char *)aligned + 1), b, 2) == HS_ERR_INVALID_BUFFER);
  CHECK(hs_f32_to_f16(&env, aligned, (uint16_t *)aligned, 4) == HS_ERR_OVERLAPPING_BUFFERS);
  CHECK(hs_f16_to_f32(&env, (const uint16_t *)aligned + 2, aligned, 2) == HS_ERR_OVERLAPPING_BUFFERS);
  CHECK(aligned[0] == 1 && aligned[3] == 4);
  env.rounding = 5;
  CHECK(hs_bf16_to_f32(&env, bin, w, 2) == HS_ERR_INVALID_ARGUMENT);
}

static void census(void) {
  /* At scale 65536: 0 -> zero, 2^-16 -> 1 exact, 1e-12 -> subnormal (rounded), 1e-13 ->
     flushed, 1 -> 65536 overflows f16, 1e-4 -> 6.5536 rounded, NaN, inf. */
  float v[8] = {0.0f, 1.52587890625e-05f, 1e-12f, 1e-13f, 1.0f, 1e-4f, NAN, INFINITY};
  HsCensus c;
  CHECK(hs_census_f16(v, 8, 65536.0f, &c) == HS_OK);
  CHECK(c.zero == 1 && c.exact == 1 && c.subnormal == 1 && c.subnormal_inexact == 1);
  CHECK(c.flushed_to_zero == 1 && c.overflow == 1 && c.rounded == 1 && c.nan == 1 && c.inf == 1);
  CHECK(c.max_abs == 1.0 && c.min_nonzero_abs == (double)1e-13f);
  /* bfloat16 has f32's range: nothing underflows or overflows; 65536 and 1 are exact. */
  CHECK(hs_census_bf16(v, 8, 65536.0f, &c) == HS_OK);
  CHECK(c.zero == 1 && c.exact == 2 && c.rounded == 3 && c.subnormal == 0 && c.overflow == 0);
  CHECK(hs_census_bf16(v, 8, 65536.0f, NULL) == HS_ERR_NULL_POINTER);
  CHECK(hs_census_f16(NULL, 0, 1.0f, &c) == HS_OK && c.zero == 0 && isinf(c.min_nonzero_abs));
}

static void unscale(void) {
  float g[5] = {65536.0f, -131072.0f, INFINITY, NAN, 3.0f};
  HsNonFinite rep;
  CHECK(hs_unscale_f32(g, 5, 1.0f / 65536.0f, &rep) == HS_OK);
  CHECK(g[0] == 1.0f && g[1] == -2.0f && isinf(g[2]) && isnan(g[3]) && g[4] == 3.0f / 65536.0f);
  CHECK(rep.len == 5 && rep.nan == 1 && rep.inf == 1 && rep.first_inf == 2 && rep.first_nan == 3);
  CHECK(rep.found == HS_FOUND_NAN);
  uint16_t h[3] = {0x6400, 0x7C00, 0xE800}; /* 1024, inf, -2048 */
  CHECK(hs_unscale_f16(h, 3, 1.0f / 1024.0f, &rep) == HS_OK);
  CHECK(h[0] == 0x3C00 && h[1] == 0x7C00 && h[2] == 0xC000);
  CHECK(rep.found == HS_FOUND_INF && rep.first_inf == 1 && rep.first_nan == -1);
  uint16_t b[2] = {0x4780, 0x7FC0}; /* 65536, NaN */
  CHECK(hs_unscale_bf16(b, 2, 1.0f / 65536.0f, &rep) == HS_OK);
  CHECK(b[0] == 0x3F80 && b[1] == 0x7FC0 && rep.found == HS_FOUND_NAN && rep.first_nan == 1);
  CHECK(hs_unscale_f32(g, 5, 1.0f, NULL) == HS_ERR_NULL_POINTER);
  CHECK(hs_unscale_f16(NULL, 3, 1.0f, &rep) == HS_ERR_NULL_POINTER);
  CHECK(hs_unscale_bf16(NULL, 0, 1.0f, &rep) == HS_OK && rep.len == 0 && rep.found == HS_FOUND_FINITE);
}

static void trajectories(void) {
  size_t n = sizeof TRAJECTORIES / sizeof TRAJECTORIES[0];
  for (size_t t = 0; t < n; t++) {
    const Trajectory *tr = &TRAJECTORIES[t];
    HsScalerConfig config = hs_scaler_config_pytorch();
    config.init_scale = tr->init_scale;
    config.growth_factor = tr->growth_factor;
    config.backoff_factor = tr->backoff_factor;
    config.growth_interval = tr->growth_interval;
    HsScaler *s = NULL;
    CHECK(hs_scaler_new(&config, &s) == HS_OK && s != NULL);
    if (s == NULL) continue;
    uint64_t skipped = 0;
    for (size_t i = 0; tr->events[i] != '\0'; i++) {
      char e = tr->events[i];
      HsFound found = e == 'F' ? HS_FOUND_FINITE : e == 'I' ? HS_FOUND_INF : HS_FOUND_NAN;
      HsStepOutcome want = e == 'F' ? HS_STEPPED : e == 'I' ? HS_SKIPPED_INF : HS_SKIPPED_NAN;
      HsStepOutcome outcome = -1;
      skipped += e != 'F';
      if (hs_scaler_update(s, found, &outcome) != HS_OK || outcome != want ||
          bits_of(hs_scaler_scale(s)) != tr->scale_bits[i] ||
          hs_scaler_growth_tracker(s) != tr->tracker[i]) {
        fprintf(stderr, "%s step %zu: scale 0x%08X (PyTorch 0x%08X), tracker %d (PyTorch %d), outcome %d\n",
                tr->name, i, (unsigned)bits_of(hs_scaler_scale(s)), (unsigned)tr->scale_bits[i],
                (int)hs_scaler_growth_tracker(s), (int)tr->tracker[i], (int)outcome);
        failures++;
        break;
      }
    }
    CHECK(hs_scaler_skipped_steps(s) == skipped);
    hs_scaler_free(s);
  }
}

static void scaler_api(void) {
  HsScalerConfig config = hs_scaler_config_pytorch();
  CHECK(config.init_scale == 65536.0 && config.growth_factor == 2.0 && config.backoff_factor == 0.5);
  CHECK(config.growth_interval == 2000 && config.enabled == 1 && config.hysteresis == 1);
  CHECK(config.min_scale == 0.0 && config.max_scale == 0.0);
  HsScaler *s = NULL;
  CHECK(hs_scaler_new(&config, &s) == HS_OK);
  CHECK(hs_scaler_scale(s) == 65536.0f && hs_scaler_scale_f64(s) == 65536.0);
  CHECK(bits_of(hs_scaler_inv_scale(s)) == 0x37800000u); /* 2^-16 */
  CHECK(hs_scaler_growth_tracker(s) == 0 && hs_scaler_skipped_steps(s) == 0);
  HsStepOutcome o = -1;
  CHECK(hs_scaler_update(s, 7, &o) == HS_ERR_INVALID_ARGUMENT && o == -1);
  CHECK(hs_scaler_update(s, HS_FOUND_INF, NULL) == HS_ERR_NULL_POINTER);
  CHECK(hs_scaler_update(NULL, HS_FOUND_INF, &o) == HS_ERR_NULL_POINTER);
  CHECK(hs_scaler_scale(s) == 65536.0f); /* nothing changed */
  hs_scaler_free(s);

  /* Misuse at construction: *out untouched. */
  HsScaler *untouched = (HsScaler *)&config;
  CHECK(hs_scaler_new(NULL, &untouched) == HS_ERR_NULL_POINTER && untouched == (HsScaler *)&config);
  CHECK(hs_scaler_new(&config, NULL) == HS_ERR_NULL_POINTER);
  HsScalerConfig bad = config;
  bad.backoff_factor = 1.0;
  CHECK(hs_scaler_new(&bad, &untouched) == HS_ERR_INVALID_CONFIG && untouched == (HsScaler *)&config);
  bad = config;
  bad.growth_interval = 0;
  CHECK(hs_scaler_new(&bad, &untouched) == HS_ERR_INVALID_CONFIG);
  bad = config;
  bad.growth_interval = -5;
  CHECK(hs_scaler_new(&bad, &untouched) == HS_ERR_INVALID_CONFIG);
  bad = config;
  bad.enabled = 2;
  CHECK(hs_scaler_new(&bad, &untouched) == HS_ERR_INVALID_CONFIG);
  bad = config;
  bad.init_scale = NAN;
  CHECK(hs_scaler_new(&bad, &untouched) == HS_ERR_INVALID_CONFIG);
  bad = config;
  bad.growth_factor = INFINITY;
  CHECK(hs_scaler_new(&bad, &untouched) == HS_ERR_INVALID_CONFIG);
  bad = config;
  bad.precision = 3;
  CHECK(hs_scaler_new(&bad, &untouched) == HS_ERR_INVALID_CONFIG);
  bad = config;
  bad.min_scale = 10.0;
  bad.max_scale = 1.0;
  CHECK(hs_scaler_new(&bad, &untouched) == HS_ERR_INVALID_CONFIG);
  CHECK(isnan(hs_scaler_scale(NULL)) && isnan(hs_scaler_inv_scale(NULL)) && isnan(hs_scaler_scale_f64(NULL)));
  CHECK(hs_scaler_growth_tracker(NULL) == -1 && hs_scaler_skipped_steps(NULL) == 0);
  hs_scaler_free(NULL);

  /* The recommended policy: NaN is an error and changes nothing; an overflow at the floor too. */
  HsScalerConfig rec = hs_scaler_config_recommended();
  CHECK(rec.min_scale == 1.0 && rec.nan_policy == HS_NAN_IS_ERROR && rec.at_floor == HS_FLOOR_ERROR);
  rec.init_scale = 1.0;
  CHECK(hs_scaler_new(&rec, &s) == HS_OK);
  o = -1;
  CHECK(hs_scaler_update(s, HS_FOUND_NAN, &o) == HS_ERR_NAN_GRADIENT && o == -1);
  CHECK(hs_scaler_update(s, HS_FOUND_INF, &o) == HS_ERR_SCALE_AT_FLOOR && hs_scaler_scale(s) == 1.0f);
  hs_scaler_free(s);

  /* DeepSpeed: hysteresis 2 absorbs the first overflow (skip, no backoff); a double scale. */
  HsScalerConfig ds = hs_scaler_config_deepspeed();
  CHECK(ds.hysteresis == 2 && ds.growth_timing == HS_GROWTH_DEEPSPEED && ds.precision == HS_PRECISION_F64);
  CHECK(hs_scaler_new(&ds, &s) == HS_OK);
  CHECK(hs_scaler_update(s, HS_FOUND_INF, &o) == HS_OK && o == HS_SKIPPED_INF && hs_scaler_scale_f64(s) == 65536.0);
  CHECK(hs_scaler_update(s, HS_FOUND_INF, &o) == HS_OK && hs_scaler_scale_f64(s) == 32768.0);
  hs_scaler_free(s);

  /* Disabled: scale 1, every step taken. */
  HsScalerConfig off = hs_scaler_config_pytorch();
  off.enabled = 0;
  CHECK(hs_scaler_new(&off, &s) == HS_OK);
  CHECK(hs_scaler_update(s, HS_FOUND_INF, &o) == HS_OK && o == HS_STEPPED && hs_scaler_scale(s) == 1.0f);
  hs_scaler_free(s);
}

int main(void) {
  status_messages();
  arithmetic();
  conversions();
  census();
  unscale();
  trajectories();
  scaler_api();
  if (failures) {
    fprintf(stderr, "%d checks failed\n", failures);
    return 1;
  }
  printf("halfscale C API: all checks passed\n");
  return 0;
}
