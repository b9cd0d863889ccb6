"""CPU milliseconds of the plain PyTorch calls against the inference forms that replace them in `tiny` at 640x480.

Each row times one step of the shipped `tiny` at 640x480 in its plain form and in the form the model takes at
inference on CPUs (same function, equal to float rounding; the largest difference is printed), on the maps' real
shapes and layouts (channels_last, as :class:`~estinet.inference.Derainer` prepares the model):

- SICM's fusion: four 2-channel maps at 1/2 .. 1/16 upsampled to full resolution with ``F.interpolate`` and
  concatenated, against :func:`~estinet.models.upsample.upsample_to` writing each into its channels of one map;
- SICM's decoder: the 8-channel x2 upsampling of the last up-projection (which keeps ``F.interpolate``: no gain);
- ``head_spatial``: the 1x1 conv of the concatenated SICM output, against
  :func:`~estinet.models.sicm.conv_concat` (matrix products on the two halves);
- the rain gate on its evidence (10 channels, NCHW: the concatenation of channels_last features and NCHW residuals):
  1x1 conv to 8, ReLU, 3x3 conv to 1, against :func:`~estinet.models.sicm.pointwise_conv` (a matrix product) and
  :func:`~estinet.models.estm.single_output_conv` (a depthwise conv and a channel sum);
- a ReLU out of place against in place.

Process CPU time per call, median of ``--repeats`` runs of ``--calls`` calls, with :func:`estinet.allocator.
keep_freed_memory` applied as inference does. Usage: ``python benchmarks/bench_cpu_stages.py [--threads 1]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from estinet.allocator import keep_freed_memory
from estinet.benchmark import cpu_name
from estinet.models.estm import single_output_conv
from estinet.models.sicm import conv_concat, pointwise_conv
from estinet.models.upsample import upsample_to

H, W = 480, 640
CL = torch.channels_last


def cpu_ms(fn: Callable[[], object], calls: int, repeats: int) -> float:
    """Median over ``repeats`` of the process CPU milliseconds per call of ``fn``."""
    fn()
    runs = []
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(calls):
            fn()
        runs.append((time.process_time() - start) / calls * 1000)
    return statistics.median(runs)


def rows() -> list[tuple[str, Callable[[], torch.Tensor], Callable[[], torch.Tensor]]]:
    """(step, plain form, inference form) on ``tiny``'s shapes at 640x480."""
    g = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g).contiguous(memory_format=CL)

    maps = [rand(1, 2, H // f, W // f) for f in (2, 4, 8, 16)]

    def fusion_plain() -> torch.Tensor:
        return torch.cat([F.interpolate(m, size=(H, W), mode="bilinear", align_corners=False) for m in maps], 1)

    def fusion_fast() -> torch.Tensor:
        out = torch.empty(1, H, W, 8).permute(0, 3, 1, 2)
        for k, m in enumerate(maps):
            upsample_to(m, (H, W), out=out[:, 2 * k : 2 * k + 2])
        return out

    low = rand(1, 8, H // 2, W // 2)
    halves = [rand(1, 8, H, W), rand(1, 8, H, W)]
    head = torch.nn.Conv2d(16, 3, 1, bias=False).to(memory_format=CL)
    features = rand(1, 8, H, W)
    evidence = torch.rand(1, 10, H, W, generator=g)  # NCHW, as ESTM concatenates it
    gate = torch.nn.Sequential(torch.nn.Conv2d(10, 8, 1), torch.nn.ReLU(), torch.nn.Conv2d(8, 1, 3, padding=1)).to(
        memory_format=CL
    )
    return [
        ("SICM fusion: upsample 4 maps + concatenate", fusion_plain, fusion_fast),
        (
            "SICM decoder: x2 upsampling, 8 channels",
            lambda: F.interpolate(low, size=(H, W), mode="bilinear", align_corners=False),
            lambda: upsample_to(low, (H, W)),
        ),
        (
            "head_spatial: 1x1 conv of the concatenation",
            lambda: head(torch.cat(halves, 1)),
            lambda: conv_concat(head, halves),
        ),
        (
            "rain gate: 1x1 conv 10 to 8, ReLU, 3x3 conv 8 to 1",
            lambda: gate(evidence),
            lambda: single_output_conv(gate[2], pointwise_conv(gate[0], evidence).relu_()),
        ),
        ("ReLU, 8 channels", lambda: F.relu(features), lambda: features.relu_()),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--calls", type=int, default=10, help="calls per timed run (default 10)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; the median counts (default 5)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    print(
        f"{cpu_name()}, torch {torch.__version__}, {args.threads} thread(s); CPU ms per call, median of {args.repeats}"
    )
    print("| step | plain (ms) | inference form (ms) | ratio | max difference |\n|---|---:|---:|---:|---:|")
    with torch.inference_mode():
        for name, plain, fast in rows():
            diff = float((plain() - fast()).abs().max()) if "ReLU" not in name else 0.0
            a, b = cpu_ms(plain, args.calls, args.repeats), cpu_ms(fast, args.calls, args.repeats)
            print(f"| {name} | {a:.2f} | {b:.2f} | {a / b:.1f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
