#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/: the inputs a person would try first
(specials, ties, subnormal boundaries, overflow thresholds), in each target's byte layout (see
the target's doc comment). Deterministic: rerun after changing a layout, then commit the files.
"""
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, seeds):
    d = os.path.join(HERE, "corpus", target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, data in seeds:
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def u16(*xs):
    return b"".join(struct.pack("<H", x & 0xFFFF) for x in xs)


def u32(*xs):
    return b"".join(struct.pack("<I", x & 0xFFFFFFFF) for x in xs)


def u64(*xs):
    return b"".join(struct.pack("<Q", x & 0xFFFFFFFFFFFFFFFF) for x in xs)


def f32(*xs):
    return b"".join(struct.pack("<f", x) for x in xs)


def f64(*xs):
    return b"".join(struct.pack("<d", x) for x in xs)


# binary16 and bfloat16 encodings worth starting from.
F16 = dict(one=0x3C00, one_up=0x3C01, half_ulp1=0x1000, min_sub=0x0001, max_sub=0x03FF,
           min_norm=0x0400, max=0x7BFF, inf=0x7C00, qnan=0x7E00, snan=0x7C01, three=0x4200,
           big=0x77D0, two_m11=0x1000, tiny_tie=0x0001 | 0x8000)
BF16 = dict(one=0x3F80, one_up=0x3F81, half_ulp1=0x3B80, min_sub=0x0001, max_sub=0x007F,
            min_norm=0x0080, max=0x7F7F, inf=0x7F80, qnan=0x7FC0, snan=0x7F81, three=0x4040,
            big=0x7F00, two_m11=0x3A00, tiny_tie=0x8001)


def ops_seeds(v):
    s = [
        ("tie_one_plus_half_ulp", u16(v["one"], v["half_ulp1"], v["one"])),
        ("tie_odd_plus_half_ulp", u16(v["one_up"], v["half_ulp1"], v["one"])),
        ("overflow_max_plus_max", u16(v["max"], v["max"], v["max"])),
        ("overflow_big_times_three", u16(v["big"], v["three"], 0)),
        ("underflow_min_sub_squared", u16(v["min_sub"], v["min_sub"], v["min_norm"])),
        ("subnormal_boundary", u16(v["max_sub"], v["min_sub"], v["min_norm"])),
        ("min_norm_minus_min_sub", u16(v["min_norm"], v["min_sub"] | 0x8000, 0)),
        ("zero_minus_zero", u16(0, 0x8000, 0x8000)),
        ("zero_div_zero", u16(0x8000, 0, 0)),
        ("inf_minus_inf", u16(v["inf"], v["inf"] | 0x8000, 0)),
        ("inf_times_zero_plus_qnan", u16(v["inf"], 0, v["qnan"])),
        ("snan_qnan", u16(v["snan"], v["qnan"] | 0x8000 | 5, v["one"])),
        ("qnan_snan_payload", u16(v["qnan"] | 3, v["snan"] | 0x8000, v["snan"])),
        ("div_by_zero", u16(v["one"], 0x8000, 0)),
        ("sqrt_negative", u16(v["one"] | 0x8000, v["one"], 0)),
        ("fma_cancel", u16(v["one_up"], v["one_up"] | 0x8000, v["one"])),
        ("fma_tie_trap", u16(v["one_up"], v["one_up"], v["two_m11"] | 0x8000)),
        ("max_and_inf", u16(v["max"], v["inf"], v["max"] | 0x8000)),
        ("neg_min_sub_next_up", u16(v["tiny_tie"], v["min_sub"], 0)),
        ("neg_inf_next_up", u16(v["inf"] | 0x8000, v["max"] | 0x8000, 0)),
        ("round_to_int_half", u16(v["half_ulp1"] | 0x8000, v["one"], 0)),
        ("short", u16(v["one"])[:1]),
    ]
    return s


write("f16_ops", ops_seeds(F16))
write("bf16_ops", ops_seeds(BF16))


def conv(steer, a, x32, x64, i):
    return bytes([steer]) + u16(a) + u32(x32) + u64(x64) + u64(i)


def d(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def s(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


write("convert", [
    ("f16_tie_above_one", conv(0, F16["one_up"], 0x3F801000, d(1 + 2**-11), 2049)),
    ("f16_overflow_threshold", conv(0, F16["max"], 0x477FF000, d(65520.0), 65520)),
    ("f16_below_threshold", conv(0, F16["inf"], 0x477FEFFF, d(65519.99), 65519)),
    ("f16_half_min_subnormal", conv(0, F16["min_sub"], s(2**-25), d(2**-25), -2049)),
    ("f16_min_subnormal_tie_up", conv(0, F16["max_sub"], 0x33C00000, d(1.5 * 2**-24), 4095)),
    ("f16_min_normal_carry", conv(0, F16["min_norm"], 0x387FF000, d(2**-14 - 2**-25), 1 << 11)),
    ("bf16_tie_above_one", conv(0, BF16["one_up"], 0x3F808000, d(1 + 2**-8), 257)),
    ("bf16_overflow_tie", conv(0, BF16["max"], 0x7F7F8000, d(2.0**128 * (1 - 2**-9)), -257)),
    ("bf16_subnormal_tie", conv(0, BF16["min_sub"], 0x00008000, d(2.0**-134), (1 << 63) - 1)),
    ("f64_double_rounding_trap", conv(0, 0x3555, 0x3F800FFF, d(1 + 2**-11 + 2**-40), 1 << 63)),
    ("nans", conv(0, F16["snan"], 0x7F800001, 0x7FF0000000000001, -1)),
    ("nan_payloads", conv(0, BF16["snan"] | 0x8000, 0xFFC12345, 0xFFF8123456789ABC, 0)),
    ("steered_random", conv(0x0F, 0x1234, 0xDEADBEEF, 0x0123456789ABCDEF, 0xFEDCBA9876543210)),
    ("steered_bf16", conv(0x05, 0x8765, 0x12345678, 0x9ABCDEF012345678, 0x00000000FFFFFFFF)),
    ("int_extremes", conv(8, 0xFFFF, 0x80000000, 0x8000000000000000, 0x7FFFFFFFFFFFFFFF)),
])


def fate(x32, s32, x64, s64, values):
    return f32(x32, s32) + f64(x64, s64) + f32(*values)


GRADS = [1e-8, -3e-5, 0.25, 65504.0, 2**-24, 2**-25, 1.5 * 2**-25, 0.0, -0.0, 1e-30, 70000.0]
write("fate", [
    ("gradients_at_65536", fate(1e-8, 65536.0, 1e-8, 65536.0, GRADS)),
    ("overflow_threshold", fate(65520.0, 1.0, 65519.99, 1.0, [65520.0, 65519.0, -65520.0])),
    ("half_min_subnormal", fate(2**-25, 1.0, 2**-25, 1.0, [2**-25, 2**-26, 3 * 2**-26])),
    ("bf16_boundaries", fate(2.0**-133, 1.0, 2.0**-134, 1.0, [2.0**-126, 2.0**-133, 3e38])),
    ("inf_times_zero", fate(float("inf"), 0.0, float("inf"), 0.0, [float("nan"), float("inf")])),
    ("tiny_scale", fate(1.0, 2.0**-149, 1.0, 2.0**-1074, [1e-45, 3e38])),
    ("f64_product_overflows", fate(3e38, 3e38, 1e300, 1e300, [1.0])),
    ("empty", fate(0.0, 0.0, 0.0, 0.0, [])),
])


def fast(a, b, n, values):
    return u16(a, b) + bytes([n]) + f32(*values)


write("fast_paths", [
    ("ties", fast(F16["one_up"], F16["half_ulp1"], 0, [1 + 2**-11, 1 + 3 * 2**-11, 65520.0])),
    ("chunk_boundary", fast(F16["max"], F16["max"], 100, [1e-8, 2**-25, 65519.0, -7.0])),
    ("subnormals", fast(F16["min_sub"], F16["max_sub"], 1, [2**-24, 1.5 * 2**-24, 2**-14])),
    ("nans", fast(F16["snan"], F16["qnan"], 0, [float("nan"), float("inf"), -0.0])),
    ("bf16", fast(BF16["one_up"], BF16["half_ulp1"], 90, [1 + 2**-8, 3.3e38, 2.0**-133])),
])

write("batch_line", [
    ("issue_example", b"\x00f16_mul near_even 77D0 4200\n"),
    ("every_kind", b"\x00f16_add min 3C00 0001\nbf16_mulAdd max 3F80 3F80 8001\n"
     b"f16_to_i64 near_maxMag FBFF\nf64_to_bf16 rne 7FF0000000000001\n"
     b"ui64_to_f16 zero FFFFFFFFFFFFFFFF\nf16_le_quiet down 7C01 0000\n"),
    ("errors", b"\x00f16_add\nf16_add near_even\nf16_add sideways 1 2\nf16_add min 12345 1\n"
     b"f16_frob min 1 2\nf16_sqrt min 1 2\nf16_add min +1 2\n\xff\xfe\n"),
    ("structured_f16_mul", bytes([1, 2, 0, 0]) + u64(0x77D0, 0x4200, 0)),
    ("structured_bf16_fma", bytes([3, 4, 7, 0x81]) + u64(0x3F81, 0xBF81, 0x3F80)),
    ("structured_from_i64", bytes([1, 21, 12, 1]) + u64(0x8000000000000000, 0, 0)),
])


def idx(dims, data, rank=None):
    hdr = bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", x) for x in dims)
    return bytes([len(dims) if rank is None else rank]) + hdr + bytes(data)


write("idx_parse", [
    ("labels", idx([3], [1, 2, 9])),
    ("images_2x2x2", idx([2, 2, 2], range(8))),
    ("empty_dims", idx([0, 28, 28], [])),
    ("truncated", idx([4], [1, 2])),
    ("trailing", idx([1], [1, 2])),
    ("bad_type", bytes([1, 0, 0, 9, 1, 0, 0, 0, 1, 7])),
    ("short_header", bytes([3, 0, 0, 8, 3, 0, 0])),
    ("rank_zero", idx([], [])),
    ("big_dims", idx([0xFFFFFFFF, 0xFFFFFFFF], [])),
    # Found by this target (now tests/fuzz_regressions.rs): dims whose product passes u64.
    ("dims_product_overflows", bytes.fromhex("03" "00000803" "1c00f7f7" "f7f7f7f7" "1c000000" "1c")),
    ("dims_product_wraps_to_zero", idx([1 << 16] * 4, [])),
])


def unscale(how, k, split, n, scale, values):
    return bytes([how, k, split, n]) + u64(scale) + f32(*values)


write("unscale", [
    ("pow2_finite", unscale(1, 144, 128, 0, 0, [65536.0, -1024.0, 2**-20, 0.0])),
    ("inf_and_nan", unscale(1, 128, 64, 20, 0, [1.0, float("inf"), float("nan"), -2.0, float("-inf")])),
    ("inv_one", unscale(2, 0, 200, 0, 0, [float("nan"), 3.0, float("inf")])),
    ("inv_inf_scale_zero", unscale(3, 0, 1, 0, 0, [1.0, 0.0, -0.0, float("inf")])),
    ("inv_zero", unscale(0, 0, 30, 0, 0, [1e30, float("inf"), -3.0])),
    ("inv_subnormal", unscale(0, 0, 99, 33, 1, [3e38, -3e38, 1e-38])),
    ("nan_at_block_edge", unscale(1, 120, 128, 40, 0, [1.0] * 63 + [float("nan")] + [float("inf")])),
])


def cfg(flags, init=0, growth=0, backoff=0, interval=0, hyst=1, mn=0, mx=0):
    return bytes([flags, init, growth, backoff, interval, hyst, mn, mx])


write("scaler", [
    ("pytorch_growth", bytes([0]) + cfg(0, interval=1) + bytes([0] * 12 + [4] + [0] * 6)),
    ("pytorch_backoff_to_zero", bytes([0]) + cfg(0, init=5, backoff=5) + bytes([4] * 40)),
    ("pytorch_backoff_0_3", bytes([0]) + cfg(0, backoff=2, interval=2) + bytes([0, 4, 0, 0, 0, 4] * 4)),
    ("growth_refused_at_f32_max", bytes([0]) + cfg(0, init=4, interval=0) + bytes([0] * 8)),
    ("deepspeed_hysteresis", bytes([0]) + cfg(0x20 | 0x80 | 0x04, hyst=2, interval=1) + bytes([0, 4, 0, 4, 4, 4, 0, 0, 0, 15, 0])),
    ("floor_error", bytes([0]) + cfg(0x04 | 0x10, init=1, mn=0) + bytes([4, 4, 4])),
    ("ceiling", bytes([0]) + cfg(0x08, mx=1, interval=0) + bytes([0, 0, 0, 7, 2, 15, 0])),
    ("consecutive_hysteresis", bytes([0]) + cfg(0x02 | 0x20, hyst=3) + bytes([4, 0, 4, 4, 0, 4, 4, 4])),
    ("nan_error", bytes([0]) + cfg(0x40) + bytes([6, 0, 6])),
    ("disabled", bytes([0]) + cfg(0x81) + bytes([0, 4, 6, 7, 15])),
    ("grad_protocol", bytes([1]) + cfg(0, interval=1) + bytes([0, 2, 4, 0x28, 0x08, 0x0A, 0x0C, 4, 0x10, 0x12, 2, 4])),
    ("grad_protocol_errors", bytes([1]) + cfg(0x40) + bytes([0, 0, 2, 2, 0x40, 0x42, 0x10, 4, 5, 6, 0x0E, 7, 3])),
    ("grad_three_optimizers", bytes([1]) + cfg(0) + bytes([0, 0x08, 0x10, 4, 0x17, 0])),
])


# mx: selector (element = s % 5, mode = s / 5 % 4, exponents steered when s >= 128), 32 f32, text.
write("mx", [
    ("zeros_e4m3_floor", bytes([0]) + f32(*([0.0] * 31 + [-0.0]))),
    ("nan_block_e2m1_rceil", bytes([4 + 5 * 1]) + f32(*([1.0] * 31 + [float("nan")]))),
    ("inf_block_e4m3_even", bytes([0 + 5 * 3]) + f32(*([2.0] * 31 + [float("-inf")]))),
    ("subnormal_e5m2_ceil", bytes([1 + 5 * 2]) + u32(*range(1, 33))),
    ("steered_e3m2_rceil", bytes([128 + 2 + 5 * 1]) + u32(*[0x3F800000 + i * 0x12345 for i in range(32)])),
    ("ties_e2m3_floor", bytes([3]) + f32(*[(i + 0.5) / 4 for i in range(32)])),
    ("text", bytes([1]) + f32(*([1.5] * 32)) + b"3F800000 zz\n7F 00 10\n" + b"0 " * 32 + b"\n"),
])
