"""Time global motion compensation: the streaming per-frame estimate and the alignment of a window's neighbours.

Usage::

    python benchmarks/bench_motion.py                      # 640x480, CPU, torch's default thread count
    python benchmarks/bench_motion.py --threads 1 --frames 200
    python benchmarks/bench_motion.py --device cuda --height 1080 --width 1920

Prints a Markdown table (median, 10th and 90th percentile milliseconds) with the machine it ran on. The budget in
SPEC §2 is 15 ms per 640x480 frame on a 2-core CPU for the per-frame estimate.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch

from estinet.benchmark import cpu_name
from estinet.models.motion import StreamingMotion, align_to_centre, frames_spectrum, translate


def panning_clip(frames: int, height: int, width: int, seed: int, device: torch.device) -> torch.Tensor:
    """(frames, 3, height, width) seeded smooth texture panned by a random walk of 0-6 px per frame.

    Args:
        frames: number of frames.
        height: frame height.
        width: frame width.
        seed: seed of the texture and of the walk.
        device: where the clip lives.

    Returns:
        Frames in [0, 1].
    """
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 8 + 2, width // 8 + 2, generator=g)
    texture = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    texture = texture.clamp(0, 1)
    steps = (torch.rand(frames, 2, generator=g) * 2 - 1) * 6 / 2**0.5  # (T, 2), |step| <= 6 px
    positions = steps.cumsum(0).remainder(32.0) - 16.0  # stay within +-16 px of the texture
    return translate(texture.expand(frames, -1, -1, -1), positions).to(device)


def timed(fn: Callable[[], object], repeats: int, device: torch.device) -> list[float]:
    """Milliseconds of ``repeats`` calls of ``fn`` (after one warm-up call), synchronising CUDA around each."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def summary(times: list[float]) -> tuple[float, float, float]:
    """(median, 10th percentile, 90th percentile) of ``times``."""
    ordered = sorted(times)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return at(0.5), at(0.1), at(0.9)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--height", type=int, default=480, help="frame height (default 480)")
    parser.add_argument("--width", type=int, default=640, help="frame width (default 640)")
    parser.add_argument("--frames", type=int, default=100, help="frames pushed through the streaming estimator")
    parser.add_argument("--neighbours", type=int, default=4, help="frames aligned per window (default 4)")
    parser.add_argument("--channels", type=int, default=3, help="channels of the aligned tensors (default 3)")
    parser.add_argument("--repeats", type=int, default=50, help="timed repeats of the alignment (default 50)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.frames < 2 or args.neighbours < 1 or args.repeats < 1:
        parser.error("--frames must be >= 2, --neighbours and --repeats >= 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)

    clip = panning_clip(args.frames, args.height, args.width, args.seed, device)  # (T, 3, H, W)
    stream = StreamingMotion()
    stream.push(clip[0:1])
    push_times = []
    for t in range(1, args.frames):
        push_times.extend(timed(lambda t=t: stream.push(clip[t : t + 1]), 1, device))
    spectrum_times = timed(lambda: frames_spectrum(clip[0:1]), args.repeats, device)

    t = args.neighbours + 1
    window = clip[:t, :1].expand(t, args.channels, -1, -1) if args.channels != 3 else clip[:t]
    window = window.contiguous()[None]  # (1, T, C, H, W)
    disp = torch.randn(1, t, 2, generator=torch.Generator().manual_seed(args.seed)) * 4
    disp[:, t // 2] = 0.0  # the centre frame is never resampled
    disp = disp.to(device)
    with torch.no_grad():
        align_times = timed(lambda: align_to_centre(window, disp), args.repeats, device)

    load = " / ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    hw = f"{args.width}x{args.height}"
    print(f"Machine: {cpu_name()}, {os.cpu_count()} logical CPUs, load average {load}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, device {device}")
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}")
    print()
    print("| measurement | size | median ms | p10 ms | p90 ms | samples |")
    print("|---|---|---|---|---|---|")
    rows = [
        ("streaming estimate per frame (`StreamingMotion.push`)", push_times),
        ("  of which: one frame's spectrum (`frames_spectrum`)", spectrum_times),
        (f"align {args.neighbours} neighbours, {args.channels} channels (`align_to_centre`)", align_times),
    ]
    for name, times in rows:
        med, p10, p90 = summary(times)
        print(f"| {name} | {hw} | {med:.2f} | {p10:.2f} | {p90:.2f} | {len(times)} |")


if __name__ == "__main__":
    main()
