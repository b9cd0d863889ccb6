"""CPU frames/s of ``tiny`` in fp32 against bf16 autocast, and how far apart their outputs are.

Both precisions run this working tree's :func:`estinet.benchmark.run_benchmark` (what ``estinet bench`` runs, with
``--no-half`` / ``--half``): ``streaming`` derains generated frames through :meth:`Derainer.derain_tensors`,
``end-to-end`` derains an H.264 clip into an H.264 file; shipped ``tiny`` weights, whole frames, motion compensation
on, the default CPU workers. Each round runs one measuring process per precision, the two alternating; the table
gives the best round of each, the median, and in how many rounds bf16 was the faster. The 1-minute load average
before and after is recorded: numbers from a busy machine are indicative only. bf16 is only worth timing on a CPU
with native bf16 arithmetic (AVX512-BF16 or AMX); the script says which the machine has.

The outputs are compared on the benchmark's panning clip and, with ``--real DIR``, on the first frames of a folder of
real frames: the largest difference of the float frames in 8-bit levels and how many 8-bit output values differ by
1 and by 2 or more levels.

Usage: ``python benchmarks/bench_cpu_precision.py [--frames 24] [--rounds 3] [--real ../shared/data/real-rain/ra1]
[--note TEXT] [--out docs/results/cpu-precision.md]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from command import add_speed_options, command_line, comparison_table, report_head, tree_name, write_report

ROOT = Path(__file__).resolve().parent.parent
PRECISIONS = {"fp32": False, "bf16": True}

# a fresh interpreter per measurement: argv = frames, warmup, height, width, modes (comma-separated), half (0/1)
MEASURE = """
import json, sys
from estinet.cli import cpu_defaults
cpu_defaults()
from estinet.benchmark import run_benchmark
frames, warmup, height, width = (int(v) for v in sys.argv[1:5])
results, _ = run_benchmark(["tiny"], sizes=((height, width),), device="cpu", frames=frames, warmup=warmup,
                           modes=tuple(sys.argv[5].split(",")), options={"half": sys.argv[6] == "1"})
print("RESULT " + json.dumps({r.mode: {"fps": r.fps, "stages": r.stages} for r in results}))
"""


def measure(frames: int, warmup: int, height: int, width: int, modes: list[str], half: bool) -> dict[str, dict]:
    """One measuring process: {mode: {"fps": ..., "stages": {...}}}."""
    args = [frames, warmup, height, width, ",".join(modes), int(half)]
    done = subprocess.run([sys.executable, "-c", MEASURE, *map(str, args)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"measuring failed:\n{done.stderr[-4000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def differences(frames: list, label: str) -> str:
    """A table row comparing the fp32 and bf16 outputs of ``frames`` (float (3, H, W) tensors in [0, 1])."""
    import torch

    from estinet.inference import Derainer
    from estinet.runtime import frames_to_uint8

    outs = {}
    for name, half in PRECISIONS.items():
        derainer = Derainer("tiny", device="cpu", tile=0, half=half)
        outs[name] = torch.stack([o.float() for o in derainer.derain_tensors(frames)])
    largest = float((outs["bf16"] - outs["fp32"]).abs().max()) * 255
    levels = (frames_to_uint8(outs["bf16"]).int() - frames_to_uint8(outs["fp32"]).int()).abs()
    total = levels.numel()
    one, more = int((levels == 1).sum()), int((levels >= 2).sum())
    return (
        f"| {label} | {len(frames)} | {largest:.2f} | {one:,} ({100 * one / total:.2f} %) "
        f"| {more:,} ({1e6 * more / total:.1f} per million) | {int(levels.max())} |"
    )


def bench_clip_frames(count: int, height: int, width: int) -> list:
    """The end-to-end benchmark's H.264 panning clip, decoded: ``count`` float (3, H, W) frames."""
    import tempfile

    import torch

    from estinet.benchmark import write_bench_clip
    from estinet.data.video_io import read_all

    with tempfile.TemporaryDirectory() as tmp:
        clip = read_all(write_bench_clip(Path(tmp) / "clip.mp4", count, height, width))
    return list(torch.from_numpy(clip).permute(0, 3, 1, 2).float().div(255))


def real_frames(folder: Path, count: int) -> list:
    """The first ``count`` frames of a video or a folder of images (:func:`estinet.data.video_io.open_frames`), as
    float (3, H, W) tensors."""
    from itertools import islice

    import torch

    from estinet.data.video_io import VideoIOError, open_frames

    try:
        with open_frames(folder) as source:
            frames = list(islice(source, count))
    except VideoIOError as error:
        raise SystemExit(f"--real {folder}: {error}") from error
    return [torch.from_numpy(frame).permute(2, 0, 1).float().div(255) for frame in frames]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_speed_options(
        parser,
        frames=24,
        threads_help="torch threads (default: one per core)",
        out=ROOT / "docs" / "results" / "cpu-precision.md",
    )
    parser.add_argument("--real", type=Path, help="also compare the outputs on these real frames (folder or video)")
    parser.add_argument("--real-frames", type=int, default=16, help="frames of --real compared (default 16)")
    args = parser.parse_args()
    if args.threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    height, width = (int(v) for v in args.size.lower().split("x"))
    this = tree_name(ROOT)

    import torch

    from estinet.benchmark import cpu_name

    native = [n for n, ok in (("AVX512-BF16", _has("avx512_bf16")), ("AMX", _has("amx_tile"))) if ok]
    load_before = os.getloadavg()[0]
    best: dict[tuple[str, str], dict] = {}
    rates: dict[tuple[str, str], list[float]] = {}
    for round_ in range(args.rounds):
        for name, half in PRECISIONS.items():
            for mode, r in measure(args.frames, args.warmup, height, width, args.modes, half).items():
                if r["fps"] > best.get((name, mode), {"fps": 0.0})["fps"]:
                    best[name, mode] = r
                rates.setdefault((name, mode), []).append(r["fps"])
                print(f"round {round_ + 1}: {name} {mode:10s} {r['fps']:6.2f} frames/s", flush=True)
    load_after = os.getloadavg()[0]
    torch.set_num_threads(args.threads or torch.get_num_threads())
    rows = [differences(bench_clip_frames(12, height, width), "benchmark panning clip (H.264)")]
    if args.real is not None:
        rows.append(differences(real_frames(args.real, args.real_frames), f"real frames `{args.real.name}`"))
    threads = args.threads or torch.get_num_threads()
    command = command_line("python benchmarks/bench_cpu_precision.py", parser, args)
    if args.real is not None:
        command += f" --real {args.real}"
    lines = report_head(
        "CPU speed in bf16",
        f"`{command}`: shipped `tiny` weights, {width}x{height}, torch backend, whole frames, motion compensation on, "
        f"default CPU workers; fp32 against bf16 autocast (`estinet bench --half`); best of {args.rounds} rounds of "
        f"{args.frames} timed frames (after {args.warmup} untimed), each in a fresh process, the two alternating. "
        f"Tree `{this}`.",
        f"Machine: {cpu_name()}, {os.cpu_count()} logical CPUs (native bf16: {', '.join(native) or 'none'}); "
        f"{threads} torch threads; torch {torch.__version__}. 1-minute load average {load_before:.1f} before and "
        f"{load_after:.1f} after the run.",
        args.note,
    )
    lines += ["", *comparison_table(args.modes, best, rates, ("fp32", "bf16"), ("fp32", "bf16"), args.frames)]
    lines += [
        "",
        "bf16 against fp32 outputs:",
        "",
        "| frames | count | largest float difference (levels) | 8-bit values 1 level apart "
        "| 2 or more levels apart | largest (levels) |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ]
    write_report(lines, args.out)


def _has(flag: str) -> bool:
    """Whether /proc/cpuinfo lists ``flag`` (False where there is no /proc/cpuinfo)."""
    try:
        return flag in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


if __name__ == "__main__":
    main()
