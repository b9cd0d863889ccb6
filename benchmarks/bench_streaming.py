"""Streaming inference against per-window recomputation, end-to-end ``derain_video`` speed, tile margins, memory.

Usage::

    python benchmarks/bench_streaming.py                         # frames/s, streaming vs per-window, tiny + small
    python benchmarks/bench_streaming.py --e2e                   # also derain_video on a 640x480 H.264 clip
    python benchmarks/bench_streaming.py --margins               # tiled vs untiled error by tile margin
    python benchmarks/bench_streaming.py --receptive-field       # receptive field of the per-frame features
    python benchmarks/bench_streaming.py --memory                # working memory per pixel (WORK_BYTES_PER_PIXEL)
    python benchmarks/bench_streaming.py --length                # peak memory: 100- vs 10,000-frame videos
    python benchmarks/bench_streaming.py --encoders              # H.264 encoding time and size per x264 preset
    python benchmarks/bench_streaming.py --conv-batch            # CPU conv: batch of 3 vs 3 single-image calls
    python benchmarks/bench_streaming.py --no-speed --stages     # ms per stage: per-frame work, then per window
    python benchmarks/bench_streaming.py --device cuda --presets tiny,small,paper

Random weights (speed does not depend on them). Clips are a seeded smooth texture panned by 1.5 px per frame with
fine noise, so motion compensation has real work. Every table is printed in Markdown with the machine it ran on.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from estinet.benchmark import cpu_name
from estinet.config import preset_config
from estinet.inference import Derainer, sicm_receptive_radius
from estinet.models import build_model
from estinet.models.estinet import ESTINet
from estinet.models.official import OfficialESTINet, random_official_state


def machine(device: torch.device) -> str:
    """One line naming the machine, the torch threads and the load."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    text = (
        f"{cpu_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} with {torch.get_num_threads()} "
        f"threads, load average {load:.1f} at start"
    )
    if device.type == "cuda":
        text += f"; GPU {torch.cuda.get_device_name(device)}"
    return text


def moving_clip(frames: int, height: int, width: int, seed: int = 0, shift: float = 1.5) -> torch.Tensor:
    """(frames, 3, height, width) in [0, 1]: a smooth seeded texture moving ``shift`` px right per frame, plus noise."""
    g = torch.Generator().manual_seed(seed)
    pad = int(abs(shift) * frames) + 8
    base = torch.rand(1, 3, height // 8 + 4, (width + pad) // 8 + 4, generator=g)
    base = F.interpolate(base, size=(height, width + pad), mode="bicubic", align_corners=False)
    out = []
    for k in range(frames):
        x0 = pad - 4 - k * shift
        grid_x = (torch.arange(width, dtype=torch.float32) + x0) / (width + pad - 1) * 2 - 1
        grid_y = torch.arange(height, dtype=torch.float32) / (height - 1) * 2 - 1
        gy, gx = torch.meshgrid(grid_y, grid_x, indexing="ij")
        out.append(F.grid_sample(base, torch.stack([gx, gy], -1)[None], mode="bilinear", align_corners=True)[0])
    clip = torch.stack(out).clamp(0, 1)
    return (clip + 0.08 * torch.rand(clip.shape, generator=g)).clamp(0, 1)


def build(name: str, seed: int = 0) -> torch.nn.Module:
    """A random-weight model: ``official`` or an ``estinet`` preset name (``variant:preset`` also accepted)."""
    torch.manual_seed(seed)
    if name == "official":
        model = OfficialESTINet()
        model.load_official(*random_official_state(seed))
        return model
    variant, _, preset = name.rpartition(":")
    return build_model(preset_config(variant or "estinet", preset))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeat: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    """Best wall time of ``repeat`` calls (after one warm-up call) and the last result."""
    result = fn()
    best = float("inf")
    for _ in range(repeat):
        sync(device)
        start = time.perf_counter()
        result = fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best, result


# ---------------------------------------------------------------------------------------------------------------------
def speed_table(args: argparse.Namespace, device: torch.device) -> None:
    print(f"\n### Streaming vs per-window recomputation, {args.width}x{args.height}, {args.frames} frames\n")
    print(f"Machine: {machine(device)}; device {device}.\n")
    print("| model | precision | batch | streaming frames/s | per-window frames/s | speed-up | max abs diff |")
    print("|---|---|---:|---:|---:|---:|---:|")
    notes = []
    for name in args.presets.split(","):
        model = build(name)
        clip = moving_clip(args.frames, args.height, args.width)
        warm = clip[:5]
        for batch in [int(b) for b in args.batch.split(",")]:
            derainer = Derainer(
                model, device=device, tile=0, batch=batch, half=args.half, channels_last=not args.no_channels_last
            )
            derainer.derain_clip(warm)
            t_stream, streamed = timed(lambda d=derainer, c=clip: d.derain_clip(c), device, args.repeat)
            stages = dict(derainer.last_stats.seconds)
            window_fps = ratio = diff = ""
            if batch == 1:
                derainer.derain_per_window(warm)
                t_window, reference = timed(lambda d=derainer, c=clip: d.derain_per_window(c), device, 1)
                diff = f"{float((streamed - reference.to(streamed.device)).abs().max()):.1e}"  # type: ignore[operator]
                window_fps = f"{args.frames / t_window:.2f}"
                ratio = f"{t_window / t_stream:.2f}x"
            precision = "fp32" if derainer.amp_dtype is None else str(derainer.amp_dtype).removeprefix("torch.")
            row = f"| {name} | {precision} | {batch} | {args.frames / t_stream:.2f} | {window_fps} | {ratio} | {diff} |"
            print(row, flush=True)
            parts = ", ".join(f"{k} {1000 * v / args.frames:.0f} ms" for k, v in stages.items())
            notes.append(f"- {name}, batch {batch}: per output frame {parts}")
    print("\nStage times of the last streaming run (wall time per output frame):\n")
    print("\n".join(notes))


def e2e_table(args: argparse.Namespace, device: torch.device) -> None:
    from estinet.data.video_io import write_video

    print(f"\n### End to end: derain_video on a {args.width}x{args.height} H.264 clip of {args.e2e_frames} frames\n")
    print(f"Machine: {machine(device)}; device {device}.\n")
    print("Per output frame. *encode* runs on a worker thread beside the model (overlapped, not part of the sum); ")
    print("*other* is the wall time the listed main-thread stages leave unexplained (waiting for the encoder too).\n")
    print("| model | frames/s end to end | decode | convert | motion | per-frame | per-window | encode | other |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "rainy.mp4"
        clip = moving_clip(args.e2e_frames, args.height, args.width, seed=3)
        arrays = (clip.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
        write_video(src, list(arrays), 25)
        for name in args.presets.split(","):
            derainer = Derainer(build(name), device=device, half=args.half, channels_last=not args.no_channels_last)
            derainer.derain_clip(clip[:5])  # warm-up
            dst = Path(tmp) / f"out_{name.replace(':', '_')}.mp4"
            start = time.perf_counter()
            derainer.derain_video(src, dst, overwrite=True, progress=False)
            wall = time.perf_counter() - start
            s = derainer.last_stats.seconds
            n = derainer.last_stats.frames_out
            keys = ["decode", "convert", "motion", "features", "windows", "encode"]
            other = wall - sum(s.get(k, 0.0) for k in keys[:-1])
            cells = " | ".join(f"{1000 * s.get(k, 0.0) / n:.0f} ms" for k in keys)
            print(f"| {name} | {n / wall:.2f} | {cells} | {1000 * other / n:.0f} ms |", flush=True)


def margin_table(args: argparse.Namespace, device: torch.device) -> None:
    torch.backends.cudnn.allow_tf32 = False  # TF32 rounding would swamp the differences being measured
    torch.backends.cuda.matmul.allow_tf32 = False
    tile = args.tile
    print(f"\n### Tiled vs untiled: max abs error by tile margin ({args.width}x{args.height}, {tile}-px tile cores)\n")
    print(f"Machine: {machine(device)}; device {device}; fp32; 5-frame clip panning 1.5 px/frame, all 5 outputs.\n")
    margins = [int(m) for m in args.margin_list.split(",")]
    print("| model | " + " | ".join(f"margin {m}" for m in margins) + " |")
    print("|---|" + "---:|" * len(margins))
    for name in args.presets.split(","):
        model = build(name)
        clip = moving_clip(5, args.height, args.width)
        reference = Derainer(model, device=device, tile=0, half=False).derain_clip(clip)
        cells = []
        for margin in margins:
            tiled = Derainer(model, device=device, tile=tile, tile_margin=margin, half=False).derain_clip(clip)
            cells.append(f"{float((tiled - reference).abs().max()):.1e}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


def receptive_field_table(args: argparse.Namespace, device: torch.device) -> None:
    print("\n### Receptive field of the per-frame features (support of the input gradient of one output pixel)\n")
    print("| model | features | pixels above/left of the output pixel | below/right | sicm_receptive_radius |")
    print("|---|---|---:|---:|---:|")
    for name in args.presets.split(","):
        if name == "official":
            continue
        model = build(name).to(device).eval()
        assert isinstance(model, ESTINet)
        size = 640
        x = torch.rand(1, 3, size, size, device=device, requires_grad=True)
        feats = model.frame_features(x)
        stride = model.config.temporal_stride
        for label, tensor, scale in [("full", feats.full, 1), ("low", feats.low, stride)]:
            if not tensor.numel() or not tensor.requires_grad:  # e.g. paper's per-frame head term is zero
                continue
            x.grad = None
            tensor[..., size // 2 // scale, size // 2 // scale].sum().backward(retain_graph=True)
            support = torch.nonzero(x.grad.abs().sum((0, 1)) > 0)  # type: ignore[union-attr]
            before = size // 2 - int(support[:, 0].min())
            after = int(support[:, 0].max()) - size // 2
            print(f"| {name} | {label} | {before} | {after} | {sicm_receptive_radius(model.config)} |", flush=True)


# ---------------------------------------------------------------------------------------------------------------------
def _rss_peak_since_reset() -> tuple[int, int]:
    """(current RSS, peak RSS) in bytes after resetting the peak (Linux /proc/self/clear_refs)."""
    status = Path("/proc/self/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) * 1024  # type: ignore[union-attr]
    hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) * 1024  # type: ignore[union-attr]
    return rss, hwm


def peak_bytes(fn, device: torch.device) -> int:  # type: ignore[no-untyped-def]
    """Peak memory above the starting point while ``fn`` runs (CUDA allocator, or RSS on CPU)."""
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    Path("/proc/self/clear_refs").write_text("5")
    base, _ = _rss_peak_since_reset()
    fn()
    _, peak = _rss_peak_since_reset()
    return peak - base


def memory_table(args: argparse.Namespace, device: torch.device) -> None:
    from estinet.inference import Plan, Slot

    sizes = [tuple(int(v) for v in s.split("x")) for s in args.memory_sizes.split(",")]
    print("\n### Working memory (bytes per padded pixel, slope between " + " and ".join(args.memory_sizes.split(",")))
    print(f"\nMachine: {machine(device)}; device {device}; fp32 unless --half.\n")
    print("| model | per-frame features | per window (batch 1) |")
    print("|---|---:|---:|")
    for name in args.presets.split(","):
        derainer = Derainer(build(name), device=device, tile=0, batch=1, half=args.half)
        results = []
        for height, width in sizes:
            clip = moving_clip(5, height, width).to(device)
            plan = Plan(None, 0, 1, 5, 0, None)
            with torch.inference_mode():
                if derainer.is_official:
                    slots = {k: Slot(clip[k], clip.new_zeros(0), clip.new_zeros(0), torch.zeros(2)) for k in range(5)}
                    feat = 0
                else:
                    from estinet.models.estinet import pad_to_multiple

                    padded = pad_to_multiple(clip)[0]
                    feat = peak_bytes(lambda p=padded, d=derainer, q=plan: d.tiler.frame_features(p[:1], q), device)
                    slots = {}
                    for k in range(5):
                        full, low = derainer.tiler.frame_features(padded[k : k + 1], plan)
                        slots[k] = Slot(padded[k], full[0], low[0] if low.numel() else low, torch.zeros(2))
                disp = torch.tensor([[[0.3, 2.2], [0.1, 1.1], [0.0, 0.0], [-0.2, -1.3], [-0.4, -2.4]]])
                disp = disp if derainer.motion else None
                forward = functools.partial(derainer.tiler.window_forward, slots, [[0, 1, 2, 3, 4]], disp, plan)
                win = peak_bytes(forward, device)
            pixels = (-(-height // 16) * 16) * (-(-width // 16) * 16)
            results.append((pixels, feat, win))
        (p1, f1, w1), (p2, f2, w2) = results[0], results[-1]
        print(f"| {name} | {(f2 - f1) / (p2 - p1):.0f} | {(w2 - w1) / (p2 - p1):.0f} |", flush=True)


def _length_child(queue, name: str, clip: str, out: str, threads: int | None) -> None:  # type: ignore[no-untyped-def]
    import resource

    if threads:
        torch.set_num_threads(threads)
    derainer = Derainer(build(name), device="cpu")
    start = time.perf_counter()
    derainer.derain_video(clip, out, progress=False, overwrite=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    queue.put((derainer.last_stats.frames_out, peak, time.perf_counter() - start))


def length_table(args: argparse.Namespace) -> None:
    """Peak resident memory of ``derain_video`` (H.264 in and out) on short and long videos, one fresh process each."""
    import multiprocessing as mp

    from estinet.benchmark import write_bench_clip

    lengths = [int(v) for v in args.lengths.split(",")]
    print(f"\n### Peak memory against video length ({args.length_size}, H.264 in and out, fresh process each)\n")
    print(f"Machine: {machine(torch.device('cpu'))}; device cpu.\n")
    print("| model | frames | peak RSS MiB | seconds |")
    print("|---|---:|---:|---:|")
    height, width = (int(v) for v in args.length_size.split("x"))
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.presets.split(","):
            for count in lengths:
                clip = write_bench_clip(Path(tmp) / f"clip-{count}.mp4", count, height, width)
                queue = ctx.Queue()
                job = (queue, name, str(clip), str(Path(tmp) / "out.mp4"), args.threads)
                proc = ctx.Process(target=_length_child, args=job)
                proc.start()
                frames, peak, seconds = queue.get()
                proc.join()
                print(f"| {name} | {frames} | {peak / 2**20:.0f} | {seconds:.0f} |", flush=True)


def encoder_table(args: argparse.Namespace) -> None:
    """Time and size of writing the same 640x480 clip with each x264 preset (CRF 18, the writer's defaults)."""
    import os

    from estinet.data.video_io import open_writer

    clip = moving_clip(args.e2e_frames, args.height, args.width, seed=3)
    arrays = list((clip.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8).numpy())
    print(f"\n### H.264 encoding, {args.width}x{args.height}, {len(arrays)} frames, CRF 18\n")
    print(f"Machine: {machine(torch.device('cpu'))}.\n")
    print("| x264 preset | ms per frame | KiB per frame |")
    print("|---|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for preset in ("medium", "fast", "veryfast", "ultrafast"):
            path = Path(tmp) / f"{preset}.mp4"
            start = time.perf_counter()
            with open_writer(path, 25, args.width, args.height, x264_preset=preset) as sink:
                for frame in arrays:
                    sink.write(frame)
            ms = 1000 * (time.perf_counter() - start) / len(arrays)
            print(f"| {preset} | {ms:.1f} | {os.path.getsize(path) / 1024 / len(arrays):.1f} |", flush=True)


def _stage_row(name: str, args: argparse.Namespace, device: torch.device) -> list[float] | None:
    """Best-of milliseconds for :func:`stage_table`'s columns, or None for models without a per-window STIM."""
    from estinet.models.estinet import pad_to_multiple
    from estinet.models.motion import align_to_centre

    derainer = Derainer(build(name), device=device, tile=0, channels_last=not args.no_channels_last)
    model = derainer.model
    if not isinstance(model, ESTINet) or model.stim is None:
        return None
    stride = model.config.temporal_stride

    def best(fn) -> float:  # type: ignore[no-untyped-def]
        fn()  # a second warm-up call; `timed` makes the first
        return 1000 * timed(fn, device, args.repeat * 5)[0]

    g = torch.Generator().manual_seed(0)
    clip = torch.rand(1, 5, 3, args.height, args.width, generator=g).to(device)
    disp = torch.tensor([[[0.3, 2.2], [0.1, 1.1], [0.0, 0.0], [-0.2, -1.3], [-0.4, -2.4]]], device=device)
    with torch.inference_mode():
        padded, _ = pad_to_multiple(clip)
        feats = model.frame_features(padded.flatten(0, 1))
        full, low = feats.full.unflatten(0, (1, 5)), feats.low.unflatten(0, (1, 5))

        def align() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return (
                align_to_centre(padded, disp),
                align_to_centre(full, disp),
                align_to_centre(low, disp, scale=1.0 / stride),
            )

        rainy_a, full_a, low_a = align()
        g_out = model.stim(low_a).flatten(0, 1)
        size = padded.shape[-2:]

        def head() -> torch.Tensor:
            if hasattr(model, "coarse_head"):
                return model.coarse_head(g_out, size)
            if stride == 1:
                return model.head(g_out)
            if model.config.head_kernel == 1:
                return F.interpolate(model.head(g_out), size=size, mode="bilinear", align_corners=False)
            return model.head(F.interpolate(g_out, size=size, mode="bilinear", align_corners=False))

        r = head().unflatten(0, (1, 5))
        coarse = rainy_a + full_a + r
        estm = model.estm
        return [
            best(lambda: model.frame_features(padded[:, 0])),
            best(lambda: model.window_forward(padded, full, low, disp)),
            best(align),
            best(lambda: model.stim(low_a)),
            best(head),
            best(lambda: rainy_a + full_a + r),
            best(lambda: estm(coarse, rainy_a)) if estm is not None else 0.0,
        ]


def stage_table(args: argparse.Namespace, device: torch.device) -> None:
    """Milliseconds of the per-frame work and of each part of the per-window work, one window at a time.

    The model is prepared as ``Derainer`` prepares it (eval, channels_last weights unless ``--no-channels-last``);
    the window's displacements are sub-pixel, so every neighbour is really translated. Parts are timed through the
    model's own modules (alignment, STIM, coarse head with its upsampling, ESTM), so the same script also times
    older versions of the package (``PYTHONPATH=<old checkout>/src``). Best of ``5 * --repeat`` runs.
    """
    print(f"\n### Per-frame and per-window work, ms ({args.width}x{args.height}, one window per call)\n")
    print(f"Machine: {machine(device)}; device {device.type}.\n")
    print("| model | per frame | window total | align | STIM | coarse head | coarse sum | ESTM |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.presets.split(","):
        row = _stage_row(name, args, device)
        if row is not None:
            print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in row) + " |", flush=True)


def conv_batch_table(args: argparse.Namespace) -> None:
    """CPU: ESTM-sized 3x3 convs (6 -> 4 channels): a batch of 3 images against 3 single-image calls (NCHW), and one
    channels_last image against the number of output channels."""
    x = torch.rand(3, 6, args.height, args.width)
    w = torch.randn(4, 6, 3, 3)

    def best(fn) -> float:  # type: ignore[no-untyped-def]
        return 1000 * timed(fn, torch.device("cpu"), 5)[0]

    batched = best(lambda: F.conv2d(x, w, padding=1))
    single = best(lambda: [F.conv2d(x[i : i + 1], w, padding=1) for i in range(3)])
    print(f"\n### 3x3 conv 6 -> 4 channels, {args.width}x{args.height}, NCHW, CPU\n")
    print(f"Machine: {machine(torch.device('cpu'))}.\n")
    print("| batch of 3 images | 3 single-image calls |\n|---:|---:|")
    print(f"| {batched:.1f} ms | {single:.1f} ms |", flush=True)

    # one image, channels_last: the cost against the number of output channels, and the layout conversion that an
    # NCHW input costs with channels_last weights (what ESTM's per-input-frame convs avoid)
    cl = torch.channels_last
    image, image_cl = x[:1].contiguous(), x[:1].contiguous(memory_format=cl)
    print(f"\n### One image, 3x3 conv 6 -> N channels, {args.width}x{args.height}, channels_last weights, CPU\n")
    print("| output channels | channels_last input | NCHW input |\n|---:|---:|---:|")
    for out_ch in (4, 8, 12):
        weight = torch.randn(out_ch, 6, 3, 3).contiguous(memory_format=cl)
        t_cl = best(lambda w=weight: F.conv2d(image_cl, w, padding=1))
        t_nchw = best(lambda w=weight: F.conv2d(image, w, padding=1))
        print(f"| {out_ch} | {t_cl:.1f} ms | {t_nchw:.1f} ms |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--presets", default="tiny,small", help="comma list: tiny, small, paper, official, variant:preset"
    )
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--frames", type=int, default=10, help="frames per timed clip")
    parser.add_argument("--repeat", type=int, default=2, help="timed repetitions of the streaming run (best is kept)")
    parser.add_argument("--batch", default="1", help="comma list of window batch sizes for the streaming run")
    parser.add_argument("--half", action="store_true", help="fp16 (CUDA) / bf16 (CPU) autocast")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--no-speed", action="store_true", help="skip the streaming vs per-window table")
    parser.add_argument("--e2e", action="store_true", help="also time derain_video end to end")
    parser.add_argument("--e2e-frames", type=int, default=40)
    parser.add_argument("--margins", action="store_true", help="tiled vs untiled error by margin")
    parser.add_argument("--margin-list", default="0,32,64,96,128,160,192")
    parser.add_argument("--receptive-field", action="store_true", help="receptive field of the per-frame features")
    parser.add_argument("--tile", type=int, default=128, help="tile core for --margins")
    parser.add_argument("--memory", action="store_true", help="working memory per pixel")
    parser.add_argument("--memory-sizes", default="240x320,480x640")
    parser.add_argument("--length", action="store_true", help="peak memory of short vs long videos (CPU)")
    parser.add_argument("--encoders", action="store_true", help="H.264 encoding time and size per x264 preset")
    parser.add_argument("--conv-batch", action="store_true", help="ESTM-sized CPU convs: batched vs one image per call")
    parser.add_argument("--stages", action="store_true", help="ms of the per-frame work and of each per-window part")
    parser.add_argument("--lengths", default="100,10000", help="frame counts for --length")
    parser.add_argument("--length-size", default="96x128", help="HxW of the --length clips")
    args = parser.parse_args()
    if args.memory and args.device == "cpu" and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        # glibc keeps freed memory in the heap once its dynamic mmap threshold rises, which hides peaks from RSS:
        # a fixed threshold makes every large tensor its own mapping, returned to the system when freed
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if not args.no_speed:
        speed_table(args, device)
    if args.e2e:
        e2e_table(args, device)
    if args.receptive_field:
        receptive_field_table(args, device)
    if args.margins:
        margin_table(args, device)
    if args.memory:
        memory_table(args, device)
    if args.length:
        length_table(args)
    if args.encoders:
        encoder_table(args)
    if args.conv_batch:
        conv_batch_table(args)
    if args.stages:
        stage_table(args, device)


if __name__ == "__main__":
    main()
