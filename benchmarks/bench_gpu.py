"""The GPU table (docs/results/bench-gpu.md): streaming throughput, memory and end-to-end speed on one CUDA device.

One process, one model at a time (a fresh :class:`~estinet.inference.Derainer` per row, its memory released before
the next), frames already on the GPU for the streaming rows (a pool of 16 random frames cycled, motion compensation
on unless a row says otherwise), then an H.264-to-H.264 file run at 640x480 with its stage times. Each row runs an
untimed warm-up first (where CUDA graphs are captured; their capture time is reported), then the timed frames
between two ``torch.cuda.synchronize`` calls. Peak memory is ``torch.cuda.max_memory_allocated`` over the warm-up
and the timed run: a graph's intermediates are allocated while it is captured (in the warm-up) and are not
allocations during replays, so a peak over the timed run alone misses them. "main before" rows emulate the path this
replaces: 8 frames/windows per call, one small translation per frame and field, no graphs. "compiled" rows add
``torch.compile`` of the per-frame and per-window calls (``Derainer(compile=True)``, ``--compile``); their set-up
column is the compilation plus the capture, in the warm-up.

    python benchmarks/bench_gpu.py --out docs/results/bench-gpu   # writes bench-gpu.json and bench-gpu.md
    python benchmarks/bench_gpu.py --compiled-only --out /tmp/compiled   # the compiled rows and the default plan

Rows are written to the JSON as they finish, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from estinet.benchmark import bench_frames, machine_description, matmul_peak_gflops, write_bench_clip
from estinet.inference import Derainer

PEERS = """Peer figures quoted from issue #11 (measured in another session on an NVIDIA H200, torch 2.11, 640x480
frames already on the GPU, each method under its own protocol; not re-measured here):

| method | fp32 frames/s | fp16 frames/s | peak GPU memory |
|---|---:|---:|---:|
| S2VD (public weights; 24-frame chunks) | 292 | 357 | 3.1-8.2 GiB |
| the authors' ESTINet release (one 5-frame window per output frame) | 5.8 | 8.2 | 6.9-7.9 GiB |
| estinet `tiny` before this work (streaming, `Derainer.derain_tensors`) | 134 | 129 | 1.8-2.9 GiB |
| estinet `small` before this work (streaming) | 85 | 92 | 3.7-10.7 GiB |
"""


def streaming_row(
    name: str,
    weights: str,
    size: tuple[int, int],
    frames: int,
    warmup: int,
    *,
    old_path: bool = False,
    cudnn_benchmark: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """One streaming measurement (see the module docstring)."""
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = cudnn_benchmark
    if old_path:
        options = {"cuda_graphs": False, "batch": 8, **options}
    derainer = Derainer(weights, device=device, **options)
    if old_path:
        derainer.tiler = dataclasses.replace(derainer.tiler, batched_align=False)
    h, w = size
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    for _ in derainer.derain_tensors(bench_frames(warmup, h, w, device)):
        pass
    torch.cuda.synchronize()
    clip = list(bench_frames(frames, h, w, device))
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in derainer.derain_tensors(iter(clip)):
        pass
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    plan = derainer.last_stats.plan
    row = {
        "row": name,
        "model": weights,
        "size": f"{w}x{h}",
        "precision": derainer.precision,
        "batch": plan.batch if plan else None,
        "tile": plan.tile if plan else None,
        "cuda_graphs": derainer.cuda_graphs,
        "motion": derainer.motion,
        "compiled": derainer.compile,
        "capture_s": round(derainer.setup_seconds(), 2),
        "frames": frames,
        "fps": frames / seconds,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,  # warm-up (graph capture) and timed run
        "reserved_gib": torch.cuda.max_memory_reserved() / 2**30,
        "max_memory_gib": derainer.max_memory,
        "estimated_gib": plan.estimated_bytes / 2**30 if plan else None,
    }
    del derainer, clip
    gc.collect()
    torch.cuda.empty_cache()
    return row


def per_window_row(weights: str, size: tuple[int, int], frames: int) -> dict[str, Any]:
    """The per-window reference (every window recomputes everything), fp16, batch 1."""
    device = torch.device("cuda")
    derainer = Derainer(weights, device=device)
    h, w = size
    clip = torch.stack(list(bench_frames(frames, h, w, device)))
    derainer.derain_per_window(clip[:5])
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    derainer.derain_per_window(clip)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    row = {
        "row": "per-window reference (no streaming)",
        "model": weights,
        "size": f"{w}x{h}",
        "precision": "fp16",
        "fps": frames / seconds,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
    }
    del derainer, clip
    gc.collect()
    torch.cuda.empty_cache()
    return row


def end_to_end_rows(weights: str, frames: int, tmp: Path) -> list[dict[str, Any]]:
    """H.264 file to H.264 file at 640x480: total frames/s, then a profiled run for the stage times."""
    clip = write_bench_clip(tmp / "clip.mp4", frames, 480, 640)
    rows = []
    for profile in (False, True):
        derainer = Derainer(weights, device="cuda", profile=profile)
        derainer.derain_video(clip, tmp / "warm.mp4", progress=False, overwrite=True)  # capture, codec set-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        derainer.derain_video(clip, tmp / "out.mp4", progress=False, overwrite=True)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        rows.append(
            {
                "row": "end to end, H.264 -> H.264" + (" (profiled: stages synchronised)" if profile else ""),
                "model": weights,
                "size": "640x480",
                "precision": "fp16",
                "frames": frames,
                "fps": frames / seconds,
                "seconds": seconds,
                "stages": {k: round(v, 3) for k, v in derainer.last_stats.seconds.items()},
            }
        )
        del derainer
        gc.collect()
        torch.cuda.empty_cache()
    return rows


def markdown(rows: list[dict[str, Any]], machine: str, peaks: dict[str, float]) -> str:
    """The committed table."""
    lines = [
        "# GPU speed and memory",
        "",
        f"Machine: {machine}. Measured matrix-multiply rate: fp32 {peaks['fp32'] / 1000:.0f} TFLOP/s, "
        f"fp16 {peaks['fp16'] / 1000:.0f} TFLOP/s.",
        "",
        "Command: `python benchmarks/bench_gpu.py --out docs/results/bench-gpu` (module docstring: protocol).",
        "",
        "| row | model | size | precision | batch | tile | CUDA graphs / compiled (set-up s) | motion | frames/s "
        "| peak GiB | cap GiB |",
        "|---|---|---|---|---:|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        if "stages" in r or "error" in r:
            continue
        graphs = ("yes" if r.get("cuda_graphs") else "no") + (", compiled" if r.get("compiled") else "")
        if r.get("cuda_graphs") or r.get("compiled"):
            graphs += f" ({r['capture_s']:.1f})"
        lines.append(
            f"| {r['row']} | {r['model']} | {r['size']} | {r['precision']} | {r.get('batch', 1)} | "
            f"{r.get('tile') or 'whole'} | {graphs} | {'on' if r.get('motion', True) else 'off'} | {r['fps']:.0f} | "
            f"{r['peak_gib']:.2f} | {r.get('max_memory_gib') or '-'} |"
        )
    e2e = [r for r in rows if "stages" in r]
    if e2e:
        lines += ["", "End to end (decode on a thread, model, encode on a thread; stage seconds summed per stage):", ""]
        lines += ["| run | frames | frames/s | stage seconds |", "|---|---:|---:|---|"]
        for r in e2e:
            stages = ", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items())
            lines.append(f"| {r['row']} | {r['frames']} | {r['fps']:.0f} | {stages} |")
    errors = [r for r in rows if "error" in r]
    if errors:
        lines += ["", "Rows that failed:", ""] + [f"- {r['row']}: {r['error']}" for r in errors]
    lines += ["", PEERS]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/results/bench-gpu", help="output stem (.json and .md)")
    parser.add_argument("--quick", action="store_true", help="a few frames per row (a smoke test)")
    parser.add_argument("--default-only", action="store_true", help="only the default-plan rows, no file run")
    parser.add_argument(
        "--compiled-only", action="store_true", help="only the default-plan and torch.compile rows, no file run"
    )
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_gpu.py needs a CUDA device", file=sys.stderr)
        return 2
    scale = 8 if args.quick else 1
    vga, full_hd = (480, 640), (1080, 1920)
    n_vga, n_small, n_hd = 1024 // scale, 384 // scale, 128 // scale
    plan: list[tuple[str, str, tuple[int, int], int, dict[str, Any]]] = [
        ("fast path (default plan)", "tiny", vga, n_vga, {}),
        ("fast path, fp32", "tiny", vga, n_vga, {"half": False}),
        ("fast path, batch 16", "tiny", vga, n_vga, {"batch": 16, "max_memory": 16.0}),
        ("fast path, batch 32", "tiny", vga, n_vga, {"batch": 32, "max_memory": 16.0}),
        ("fast path, batch 64", "tiny", vga, n_vga, {"batch": 64, "max_memory": 32.0}),
        ("fast path, batch 32, motion off", "tiny", vga, n_vga, {"batch": 32, "max_memory": 16.0, "motion": False}),
        (
            "fast path, batch 32, cuDNN benchmark",
            "tiny",
            vga,
            n_vga,
            {"batch": 32, "max_memory": 16.0, "cudnn_benchmark": True},
        ),
        ("batched, no CUDA graphs", "tiny", vga, n_vga // 2, {"cuda_graphs": False}),
        ("main before (emulated)", "tiny", vga, n_vga // 4, {"old_path": True}),
        ("main before (emulated), fp32", "tiny", vga, n_vga // 4, {"old_path": True, "half": False}),
        ("fast path (default plan)", "small", vga, n_small, {}),
        ("fast path, fp32", "small", vga, n_small, {"half": False}),
        ("fast path, batch 32", "small", vga, n_small, {"batch": 32, "max_memory": 32.0}),
        ("main before (emulated)", "small", vga, n_small // 2, {"old_path": True}),
        ("fast path (default plan)", "tiny", full_hd, n_hd, {}),
        ("fast path, batch 8", "tiny", full_hd, n_hd, {"batch": 8, "max_memory": 32.0}),
        ("fast path (default plan)", "small", full_hd, n_hd, {}),
        ("fast path, batch 4", "small", full_hd, n_hd, {"batch": 4, "max_memory": 32.0}),
        ("main before (emulated)", "tiny", full_hd, n_hd // 2, {"old_path": True}),
        ("compiled (default plan)", "tiny", vga, n_vga, {"compile": True}),
        ("compiled, batch 32", "tiny", vga, n_vga, {"compile": True, "batch": 32, "max_memory": 16.0}),
        ("compiled (default plan)", "small", vga, n_small, {"compile": True}),
        ("compiled (default plan)", "tiny", full_hd, n_hd, {"compile": True}),
        ("compiled (default plan)", "small", full_hd, n_hd, {"compile": True}),
    ]
    if args.default_only:
        plan = [row for row in plan if not row[4]]
    if args.compiled_only:  # the compiled rows beside the default plan they start from
        plan = [row for row in plan if not row[4] or row[4].get("compile")]
    machine = machine_description("cuda")
    peaks = {"fp32": matmul_peak_gflops(torch.device("cuda"))}
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    torch.mm(a, a)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(5):
        torch.mm(a, a)
    torch.cuda.synchronize()
    peaks["fp16"] = 5 * 2 * 8192**3 / (time.perf_counter() - t0) / 1e9
    del a
    rows: list[dict[str, Any]] = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        Path(f"{out}.json").write_text(json.dumps({"machine": machine, "peaks": peaks, "rows": rows}, indent=1))
        Path(f"{out}.md").write_text(markdown(rows, machine, peaks))

    for name, weights, size, frames, options in plan:
        warmup = max(96, 3 * options.get("batch", 32)) // (2 if args.quick else 1)
        try:
            rows.append(streaming_row(name, weights, size, frames, warmup, **options))
        except Exception as exc:  # recorded, the rest still runs
            rows.append({"row": f"{name} ({weights}, {size[1]}x{size[0]})", "error": f"{type(exc).__name__}: {exc}"})
            gc.collect()
            torch.cuda.empty_cache()
        print(json.dumps(rows[-1]), flush=True)
        save()
    if args.default_only or args.compiled_only:
        print(markdown(rows, machine, peaks))
        return 0
    try:
        rows.append(per_window_row("tiny", vga, 64 // scale))
    except Exception as exc:
        rows.append({"row": "per-window reference", "error": f"{type(exc).__name__}: {exc}"})
    print(json.dumps(rows[-1]), flush=True)
    save()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            rows.extend(end_to_end_rows("tiny", 1200 // scale, Path(tmp)))
        except Exception as exc:
            rows.append({"row": "end to end", "error": f"{type(exc).__name__}: {exc}"})
        print(json.dumps(rows[-1]), flush=True)
    save()
    print(markdown(rows, machine, peaks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
