"""Time the synthetic rain renderer per preset and print a Markdown table.

Measures ``RainRenderer.render`` (advance the drop field, splat the streaks, composite) on a fixed frame,
after a warm-up, on one thread by default. Budget (SPEC section 5 / rain brief): at most 20 ms per 640x480
frame on one core for every preset. Wall time on a shared machine includes waiting for a core, so the
process CPU time per frame is printed beside it.

Usage:
    python benchmarks/bench_rain.py [--height 480] [--width 640] [--frames 100] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from estinet.benchmark import cpu_name
from estinet.data.rain import PRESETS, RainRenderer


def bench_preset(name: str, height: int, width: int, frames: int, warmup: int, seed: int) -> dict[str, float]:
    """Render ``warmup + frames`` frames of one preset and return timing statistics in milliseconds."""
    frame = np.random.default_rng(seed).uniform(0.1, 0.7, size=(height, width, 3)).astype(np.float32)
    t0 = time.perf_counter()
    renderer = RainRenderer(PRESETS[name], height, width, seed=seed)
    setup_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(warmup):
        renderer.render(frame)
    wall = []
    cpu0 = time.process_time()
    for _ in range(frames):
        start = time.perf_counter()
        renderer.render(frame)
        wall.append((time.perf_counter() - start) * 1e3)
    cpu_ms = (time.process_time() - cpu0) * 1e3 / frames
    return {
        "median": statistics.median(wall),
        "mean": statistics.fmean(wall),
        "p90": float(np.percentile(wall, 90)),
        "cpu": cpu_ms,
        "setup": setup_ms,
        "drops": float(sum(layer.x.size for layer in renderer._layers)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Time the synthetic rain renderer per preset.")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--frames", type=int, default=100, help="timed frames per preset")
    parser.add_argument("--warmup", type=int, default=10, help="untimed frames per preset")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (numpy parts are 1 thread)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--presets", nargs="+", default=sorted(PRESETS), choices=sorted(PRESETS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(
        f"Rain renderer, {args.width}x{args.height}, {args.frames} frames after {args.warmup} warm-up, "
        f"{args.threads} thread(s); CPU: {cpu_name()}; numpy {np.__version__}, torch {torch.__version__}\n"
    )
    print("| preset | ms/frame (median wall) | ms/frame (p90 wall) | ms/frame (CPU) | drops | setup ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in args.presets:
        r = bench_preset(name, args.height, args.width, args.frames, args.warmup, args.seed)
        print(
            f"| {name} | {r['median']:.1f} | {r['p90']:.1f} | {r['cpu']:.1f} | {int(r['drops'])} | {r['setup']:.0f} |"
        )


if __name__ == "__main__":
    main()
