"""Throughput and memory measurements behind ``estinet bench``.

For each model and frame size, two ways to produce output frames are timed on the current device:

- **streaming**: :meth:`estinet.inference.Derainer.derain_tensors`, where each frame's per-frame work (SICM features,
  STIM frame gates, motion estimate) is done once and the per-window work once per output frame — what
  ``estinet derain`` does, without decoding and encoding;
- **per-window**: :meth:`estinet.inference.Derainer.derain_per_window`, where every output frame recomputes its whole
  window, the naive sliding window (identical output);
- **end-to-end**: :meth:`estinet.inference.Derainer.derain_video` from an H.264 file to an H.264 file (decode,
  derain, encode with the default settings) — what ``estinet derain clip.mp4 -o out.mp4`` does. The clip is a seeded
  smooth texture panning 2 px per frame with fine noise, written by the parent process before the measurement.

Each measurement runs in a fresh child process so that its peak resident memory (CPU) is its own; on CUDA the peak
allocated memory is read from the allocator. The share of the machine's peak is the model's counted FLOPs per second
(:mod:`estinet.models.complexity`) divided by a measured dense matrix-multiply rate on the same device and dtype.
"""

from __future__ import annotations

import multiprocessing as mp
import platform
import resource
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from estinet.config import ModelConfig, preset_config
from estinet.errors import EstinetError
from estinet.models import build_model
from estinet.models.complexity import measure_complexity
from estinet.runtime import frames_to_uint8, resolve_device

SIZES: tuple[tuple[int, int], ...] = ((480, 640), (720, 1280), (1080, 1920))
MODES: tuple[str, ...] = ("streaming", "per-window", "end-to-end")


class BenchmarkError(EstinetError, ValueError):
    """Benchmark options that cannot be measured (an unknown mode, no models, a veil to lift without a veil head)."""


@dataclass(frozen=True)
class BenchResult:
    """One measurement.

    Attributes:
        model: model name (shipped name or ``variant/preset``).
        mode: ``streaming``, ``per-window`` or ``end-to-end``.
        height: frame height.
        width: frame width.
        fps: output frames per second.
        peak_mib: peak memory in MiB (resident set on CPU; on CUDA allocated, over the warm-up and the timed run).
        gflops_per_frame: counted GFLOPs per output frame in this mode.
        peak_share: achieved FLOP rate / measured matrix-multiply peak.
        backend: ``torch`` or ``onnxruntime`` (:class:`~estinet.inference.Derainer`'s ``backend``).
        precision: ``fp32``, ``fp16`` or ``bf16`` (autocast).
        batch: frames per per-frame call and windows per window call (the plan's).
        cuda_graphs: whether the calls were replayed as CUDA graphs.
        compiled: whether the calls were compiled by ``torch.compile`` (``compile`` option).
        setup_s: seconds of one-off set-up in the first (untimed) run: compilation and CUDA-graph capture.
        stages: seconds per stage of the timed run (:attr:`~estinet.inference.stream.StreamStats.seconds`; on CUDA
            exact only when measured with ``profile``).
    """

    model: str
    mode: str
    height: int
    width: int
    fps: float
    peak_mib: float
    gflops_per_frame: float
    peak_share: float
    backend: str = "torch"
    precision: str = "fp32"
    batch: int = 1
    cuda_graphs: bool = False
    compiled: bool = False
    setup_s: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_gflops(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """Measured float32 dense matrix-multiply rate in GFLOP/s (2 n^3 FLOPs per product)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    with torch.inference_mode():
        torch.mm(a, b)
        _sync(device)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b)
            _sync(device)
            best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def _load(spec: str, device: torch.device) -> tuple[nn.Module, ModelConfig]:
    """A model from weights, or ``variant/preset`` with random weights (speed does not depend on them)."""
    if "/" in spec and not spec.endswith((".safetensors", ".pt", ".pth")):
        variant, preset = spec.split("/", 1)
        torch.manual_seed(0)
        config = preset_config(variant, preset)
        return build_model(config).to(device).eval(), config
    from estinet.checkpoint import load_model

    return load_model(spec, device)


GPU_FRAME_POOL = 16
"""Distinct random frames made once on a GPU and cycled: GPU throughput is measured on frames already there."""


def bench_frames(count: int, height: int, width: int, device: torch.device) -> Iterator[torch.Tensor]:
    """``count`` random (3, H, W) frames: on CPU made one at a time (the stream itself holds no clip); on a GPU a
    pool of :data:`GPU_FRAME_POOL` frames made on the device and cycled (no host work or upload in the timing)."""
    g = torch.Generator().manual_seed(0)
    if device.type == "cuda":
        pool = torch.rand(min(count, GPU_FRAME_POOL), 3, height, width, generator=g).to(device)
        for i in range(count):
            yield pool[i % len(pool)]
        return
    for _ in range(count):
        yield torch.rand(3, height, width, generator=g).to(device)


def write_bench_clip(path: Path, count: int, height: int, width: int, seed: int = 0) -> Path:
    """An H.264 clip for the end-to-end measurement: a smooth seeded texture panning 2 px per frame, fine noise.

    Args:
        path: output ``.mp4``.
        count: frames.
        height: frame height.
        width: frame width.
        seed: texture and noise seed.

    Returns:
        ``path``.
    """
    import torch.nn.functional as F

    from estinet.data.video_io import open_writer

    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 16 + 2, (width + 2 * count) // 16 + 2, generator=g)
    texture = F.interpolate(coarse, size=(height, width + 2 * count), mode="bicubic", align_corners=False)[0]
    with open_writer(path, 25, width, height, overwrite=True) as sink:
        for i in range(count):
            frame = texture[:, :, 2 * i : 2 * i + width] + 0.02 * torch.randn(3, height, width, generator=g)
            sink.write(frames_to_uint8(frame).permute(1, 2, 0).numpy())
    return path


def _measure(
    spec: str,
    mode: str,
    height: int,
    width: int,
    device_name: str,
    frames: int,
    warmup: int,
    clip: str | None,
    backend: str = "torch",
    options: dict[str, Any] | None = None,
) -> dict:
    """Child-process body: derain ``frames`` frames after a ``warmup``-frame run; return fps and peak memory.

    The onnxruntime backend's graphs are exported (or found in the cache) before anything is timed.

    ``end-to-end`` derains the H.264 file ``clip`` (``frames`` frames) into a temporary H.264 file, after the warm-up
    and one untimed pass over the same clip: a short clip would otherwise weigh the one-off costs of the first pass
    (decoder and encoder set-up, threads, memory first touched) far more than a real video does.
    """
    from estinet.inference import Derainer

    device = torch.device(device_name)
    model, config = _load(spec, device)
    options = {"tile": 0, **(options or {})}
    config_arg = None if config.variant == "official" else config
    derainer = Derainer(model, config=config_arg, device=device, backend=backend, **options)

    def run(count: int, on_clip: bool) -> float:
        """Seconds to derain ``count`` frames; ``end-to-end`` with ``on_clip`` runs derain_video on the clip."""
        _sync(device)
        t0 = time.perf_counter()
        if mode == "end-to-end" and on_clip:
            assert clip is not None
            with tempfile.TemporaryDirectory() as tmp:
                derainer.derain_video(clip, Path(tmp) / "out.mp4", progress=False)
        elif mode in ("streaming", "end-to-end"):
            for _ in derainer.derain_tensors(bench_frames(count, height, width, device)):
                pass
        else:
            derainer.derain_per_window(torch.stack(list(bench_frames(count, height, width, device))))
        _sync(device)
        return time.perf_counter() - t0

    if device.type == "cuda":  # the peak includes the warm-up: CUDA graphs allocate their memory while captured
        torch.cuda.reset_peak_memory_stats(device)
    run(warmup, on_clip=False)  # random frames through the streaming path
    if mode == "end-to-end":
        run(frames, on_clip=True)  # one untimed pass of the clip
    setup = derainer.setup_seconds()
    seconds = run(frames, on_clip=True)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    stats = derainer.last_stats
    return {
        "fps": frames / seconds,
        "peak_mib": peak,
        "precision": derainer.precision,
        "batch": stats.plan.batch if stats.plan is not None and mode != "per-window" else 1,
        "cuda_graphs": derainer.cuda_graphs and mode != "per-window",
        "compiled": derainer.compile and mode != "per-window",
        "setup_s": setup,
        "stages": dict(stats.seconds) if mode != "per-window" else {},
    }


def _child(queue: Any, args: tuple) -> None:
    try:
        queue.put(_measure(*args))
    except Exception as exc:  # reported to the parent, which raises
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def run_benchmark(
    models: list[str],
    sizes: tuple[tuple[int, int], ...] = SIZES,
    device: str = "auto",
    frames: int = 5,
    warmup: int = 2,
    modes: tuple[str, ...] = MODES,
    backends: tuple[str, ...] = ("torch",),
    options: dict[str, Any] | None = None,
) -> tuple[list[BenchResult], float]:
    """Measure every (model, size, mode, backend) in its own process.

    Args:
        models: shipped names, weight files, or ``variant/preset`` for randomly initialised models.
        sizes: (H, W) frame sizes.
        device: ``cpu``, ``cuda`` or ``auto``.
        frames: timed output frames per measurement.
        warmup: untimed output frames first.
        modes: any of :data:`MODES`.
        backends: ``torch`` and/or ``onnxruntime`` (CPU only), measured side by side; ``per-window`` (the torch
            reference, :meth:`~estinet.inference.Derainer.derain_per_window`) is measured for ``torch`` only.
        options: :class:`~estinet.inference.Derainer` arguments (e.g. ``half``, ``batch``, ``cuda_graphs``,
            ``max_memory``, ``tile``; default ``tile=0``, whole frames).

    Returns:
        (results, measured matrix-multiply peak in GFLOP/s).
    """
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise BenchmarkError(f"unknown benchmark mode(s) {', '.join(unknown)}; use {', '.join(MODES)}")
    from estinet.inference.derainer import BACKENDS

    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise BenchmarkError(f"unknown backend(s) {', '.join(unknown) or 'none'}; use {', '.join(BACKENDS)}")
    dev = resolve_device(device)
    if "onnxruntime" in backends and dev.type != "cpu":
        raise BenchmarkError(f"the onnxruntime backend runs on the CPU, not {dev}; pass --device cpu (device='cpu')")
    peak = matmul_peak_gflops(dev)
    ctx = mp.get_context("spawn")
    results: list[BenchResult] = []
    with tempfile.TemporaryDirectory() as tmp:
        clips: dict[tuple[int, int], str] = {}
        for spec in models:
            _, config = _load(spec, torch.device("cpu"))
            if (options or {}).get("lift_veil") and not config.veil_head:
                raise BenchmarkError(
                    f"{spec} has no veil head (model.veil_head), so it cannot lift the veil; drop --lift-veil "
                    "(lift_veil) or benchmark weights trained with one"
                )
            for h, w in sizes:
                cost = measure_complexity(config, h, w)
                for mode in modes:
                    clip = None
                    if mode == "end-to-end":
                        if (h, w) not in clips:
                            clips[h, w] = str(write_bench_clip(Path(tmp) / f"clip-{w}x{h}.mp4", frames, h, w))
                        clip = clips[h, w]
                    for backend in backends:
                        if mode == "per-window" and backend != "torch":
                            continue  # the per-window reference runs the torch model
                        queue = ctx.Queue()
                        job = (spec, mode, h, w, str(dev), frames, warmup, clip, backend, options)
                        proc = ctx.Process(target=_child, args=(queue, job))
                        proc.start()
                        out = queue.get()
                        proc.join()
                        if "error" in out:
                            raise RuntimeError(
                                f"benchmark of {spec} at {h}x{w} ({mode}, {backend}) failed: {out['error']}"
                            )
                        gflops = cost.window_gflops if mode == "per-window" else cost.streaming_gflops
                        share = out["fps"] * gflops / peak
                        fps, peak_mib = out.pop("fps"), out.pop("peak_mib")
                        results.append(BenchResult(spec, mode, h, w, fps, peak_mib, gflops, share, backend, **out))
    return results, peak


def cpu_name() -> str:
    """The CPU model name from /proc/cpuinfo (``platform``'s best guess elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_description(device: str = "auto") -> str:
    """One line naming the CPU (and GPU), threads and torch version."""
    import os

    cpu = f"{cpu_name()} x{os.cpu_count()}"
    dev = resolve_device(device)
    gpu = f", GPU {torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else ""
    return f"CPU {cpu}{gpu}; torch {torch.__version__}, {torch.get_num_threads()} threads; device {dev}"


def format_results(results: list[BenchResult], peak: float, machine: str) -> str:
    """Markdown table of the results."""
    lines = [
        f"Machine: {machine}; measured float32 matmul peak {peak:.0f} GFLOP/s.",
        "",
        "| model | size | mode | backend | precision | batch | CUDA graphs | frames/s | peak MiB | GFLOPs/frame "
        "| share of matmul peak |",
        "|---|---|---|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        graphs = "yes" if r.cuda_graphs else "no"
        if r.compiled:
            graphs += ", compiled"
        if r.cuda_graphs or r.compiled:
            graphs += f" ({r.setup_s:.1f} s set-up)"
        lines.append(
            f"| {r.model} | {r.width}x{r.height} | {r.mode} | {r.backend} | {r.precision} | {r.batch} | {graphs} | "
            f"{r.fps:.2f} | {r.peak_mib:.0f} | {r.gflops_per_frame:.2f} | {100 * r.peak_share:.1f}% |"
        )
    return "\n".join(lines)


def results_as_dicts(results: list[BenchResult]) -> list[dict[str, Any]]:
    """The results as plain dicts (for JSON)."""
    return [asdict(r) for r in results]
