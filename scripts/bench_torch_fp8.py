#!/usr/bin/env python3
"""torch's f32 -> float8_e4m3fn cast with a per-tensor scale, `(x * scale).to(torch.float8_e4m3fn)`
and the cast alone, on one CPU thread, over the same sizes and value spread as benches/fp8.rs:
the comparison figure for docs/PERFORMANCE.md.

Run: /work/venv/bin/python scripts/bench_torch_fp8.py
"""
import time

import torch

torch.set_num_threads(1)


def best_of(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    g = torch.Generator().manual_seed(0xE43F8)
    for n, name in [(1 << 20, "1M"), (1 << 24, "16M")]:
        exps = torch.randint(-14, 13, (n,), generator=g).float()
        mant = 1.0 + torch.rand(n, generator=g)
        sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
        x = (sign * mant * torch.exp2(exps)).float()
        scale = torch.tensor(0.25)
        repeats = 20 if n == 1 << 20 else 5
        (x * scale).to(torch.float8_e4m3fn)  # warm up
        t_scaled = best_of(lambda: (x * scale).to(torch.float8_e4m3fn), repeats)
        t_cast = best_of(lambda: x.to(torch.float8_e4m3fn), repeats)
        print(f"torch {torch.__version__} {name}: (x*scale).to(e4m3fn) {n / t_scaled / 1e6:.0f} Melem/s, "
              f".to(e4m3fn) alone {n / t_cast / 1e6:.0f} Melem/s")


if __name__ == "__main__":
    main()
