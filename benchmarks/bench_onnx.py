"""CPU frames/s of the torch and onnxruntime backends side by side, and how far apart their outputs are.

For the shipped ``tiny`` weights at 640x480 in fp32, each backend is timed with :func:`estinet.benchmark.run_benchmark`
(what ``estinet bench --backend torch onnxruntime`` runs): ``streaming`` derains generated frames through
:meth:`Derainer.derain_tensors` (per-frame and per-window work, motion estimation and alignment included; no
decoding or encoding), ``end-to-end`` derains an H.264 clip into an H.264 file. Every measurement is a fresh process;
the onnxruntime graphs are exported (or found in the cache) before anything is timed. Rounds alternate the backends
and the best round of each is reported, so that a load spike on a shared machine hurts both alike. The 1-minute load
average before and after the run is recorded: numbers from a busy machine are indicative only.

The outputs are compared on the benchmark's panning clip (2 px per frame, motion compensation on): the largest
absolute difference of the float frames and the share of 8-bit pixels that differ.

Usage: ``python benchmarks/bench_onnx.py [--frames 12] [--rounds 3] [--threads N] [--note TEXT]
[--out docs/results/onnx.md]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from estinet.cli import cpu_defaults

cpu_defaults()  # OMP_WAIT_POLICY=PASSIVE before torch loads, as the estinet command does

import torch  # noqa: E402

from command import add_speed_options, command_line, difference_line, report_head, write_report  # noqa: E402
from estinet.benchmark import cpu_name, run_benchmark, write_bench_clip  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("torch", "onnxruntime")


def output_difference(frames: int, height: int, width: int) -> tuple[float, int, int, int]:
    """On the panning clip: max |onnxruntime - torch| of the float outputs, how many of how many 8-bit output values
    differ, and by how many levels at most."""
    from estinet.data.video_io import read_all
    from estinet.inference import Derainer
    from estinet.runtime import frames_to_uint8

    with tempfile.TemporaryDirectory() as tmp:
        clip = read_all(write_bench_clip(Path(tmp) / "clip.mp4", frames, height, width))
    rainy = torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 255  # (T, 3, H, W)
    outputs = [Derainer("tiny", device="cpu", tile=0, backend=b).derain_clip(rainy) for b in BACKENDS]
    diff = float((outputs[1] - outputs[0]).abs().max())
    levels = frames_to_uint8(outputs[1]).int() - frames_to_uint8(outputs[0]).int()
    return diff, int((levels != 0).sum()), levels.numel(), int(levels.abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_speed_options(
        parser,
        frames=12,
        threads_help="threads of both backends (default: torch's, one per core)",
        out=ROOT / "docs" / "results" / "onnx.md",
    )
    args = parser.parse_args()
    if args.threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # read by torch in each measuring process
        torch.set_num_threads(args.threads)
    height, width = (int(v) for v in args.size.lower().split("x"))
    import onnxruntime

    load_before = os.getloadavg()[0]
    best: dict[tuple[str, str], float] = {}
    for round_ in range(args.rounds):
        results, _ = run_benchmark(
            ["tiny"],
            sizes=((height, width),),
            device="cpu",
            frames=args.frames,
            warmup=args.warmup,
            modes=tuple(args.modes),
            backends=BACKENDS,
        )
        for r in results:
            best[r.mode, r.backend] = max(best.get((r.mode, r.backend), 0.0), r.fps)
            print(f"round {round_ + 1}: {r.mode:10s} {r.backend:11s} {r.fps:6.2f} frames/s", flush=True)
    diff, changed, total, levels = output_difference(args.frames, height, width)
    load_after = os.getloadavg()[0]
    threads = args.threads or torch.get_num_threads()
    command = command_line("python benchmarks/bench_onnx.py", parser, args)
    lines = report_head(
        "ONNX Runtime against PyTorch on the CPU",
        f"`{command}`: shipped `tiny` weights, {width}x{height}, fp32, whole frames, motion compensation on; best of "
        f"{args.rounds} rounds of {args.frames} timed frames (after {args.warmup} untimed), each in a fresh process.",
        f"Machine: {cpu_name()}, {os.cpu_count()} logical CPUs; {threads} threads for both backends; torch "
        f"{torch.__version__}, onnxruntime {onnxruntime.__version__}. 1-minute load average {load_before:.1f} before "
        f"and {load_after:.1f} after the run.",
        args.note,
    )
    lines += [
        "",
        "| mode | torch (frames/s) | onnxruntime (frames/s) | onnxruntime / torch |",
        "|---|---:|---:|---:|",
    ]
    for mode in args.modes:
        t, o = best[mode, "torch"], best[mode, "onnxruntime"]
        lines.append(f"| {mode} | {t:.2f} | {o:.2f} | {o / t:.2f} |")
    lines += [
        "",
        difference_line(args.frames, "onnxruntime - torch", diff, changed, total, levels),
        "",
    ]
    write_report(lines, args.out)


if __name__ == "__main__":
    main()
