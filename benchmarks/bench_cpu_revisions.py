"""CPU frames/s of this working tree against an earlier revision, and how far apart their outputs are.

For the shipped ``tiny`` weights at 640x480 in fp32 (torch backend), both source trees are timed with
:func:`estinet.benchmark.run_benchmark` (what ``estinet bench`` runs): ``streaming`` derains generated frames through
:meth:`Derainer.derain_tensors` (per-frame and per-window work, motion estimation and alignment included; no decoding
or encoding), ``end-to-end`` derains an H.264 clip into an H.264 file. The earlier revision is checked out with ``git
worktree`` into a temporary folder; each round runs one measuring process per tree (``PYTHONPATH`` pointing at its
``src``), the trees alternating. The table gives the best round of each (a load spike on a shared machine hurts
both alike), the median, and in how many rounds this tree was the faster of the pair. The 1-minute load average
before and after the run is recorded: numbers from a busy machine are indicative only.

The outputs are compared on the benchmark's panning clip (2 px per frame, motion compensation on): the largest
absolute difference of the float frames and the 8-bit output values that differ.

Usage: ``python benchmarks/bench_cpu_revisions.py --baseline REV [--frames 24] [--rounds 3] [--threads N]
[--note TEXT] [--out docs/results/cpu-speed.md]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from command import (
    add_speed_options,
    command_line,
    comparison_table,
    difference_line,
    report_head,
    tree_name,
    write_report,
)

ROOT = Path(__file__).resolve().parent.parent

# run in a fresh interpreter with PYTHONPATH=<tree>/src: argv = frames, warmup, height, width, modes (comma-separated)
MEASURE = """
import json, sys
from estinet.cli import cpu_defaults
cpu_defaults()
from estinet.benchmark import run_benchmark
frames, warmup, height, width = (int(v) for v in sys.argv[1:5])
results, _ = run_benchmark(["tiny"], sizes=((height, width),), device="cpu", frames=frames, warmup=warmup,
                           modes=tuple(sys.argv[5].split(",")))
print("RESULT " + json.dumps({r.mode: {"fps": r.fps, "stages": r.stages} for r in results}))
"""

# argv = frames, height, width, output .npy: the derained panning clip as uint8 (T, 3, H, W)
OUTPUTS = """
import sys, tempfile
from pathlib import Path
import numpy as np, torch
from estinet.benchmark import write_bench_clip
from estinet.data.video_io import read_all
from estinet.inference import Derainer
from estinet.runtime import frames_to_uint8
frames, height, width, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
with tempfile.TemporaryDirectory() as tmp:
    clip = read_all(write_bench_clip(Path(tmp) / "clip.mp4", frames, height, width))
rainy = torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 255
derained = Derainer("tiny", device="cpu", tile=0).derain_clip(rainy)
np.save(out, derained.numpy())
np.save(out.replace(".npy", "-u8.npy"), frames_to_uint8(derained).numpy())
"""


def run_in(tree: Path, code: str, *args: object) -> str:
    """Run ``code`` in a fresh interpreter that imports estinet from ``tree``; its stdout."""
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"measuring in {tree} failed:\n{done.stderr[-4000:]}")
    return done.stdout


def measure(tree: Path, frames: int, warmup: int, height: int, width: int, modes: list[str]) -> dict[str, dict]:
    """One round in ``tree``: {mode: {"fps": ..., "stages": {...}}}."""
    out = run_in(tree, MEASURE, frames, warmup, height, width, ",".join(modes))
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="git revision to compare against (e.g. a commit hash)")
    add_speed_options(
        parser,
        frames=24,
        threads_help="torch threads (default: one per core)",
        out=ROOT / "docs" / "results" / "cpu-speed.md",
    )
    args = parser.parse_args()
    if args.threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    height, width = (int(v) for v in args.size.lower().split("x"))
    rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", args.baseline], capture_output=True, text=True, check=True
    ).stdout.strip()
    this = tree_name(ROOT)

    import numpy as np
    import torch

    from estinet.benchmark import cpu_name

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), rev], check=True, capture_output=True
        )
        try:
            load_before = os.getloadavg()[0]
            trees = {"baseline": base, "this": ROOT}
            best: dict[tuple[str, str], dict] = {}
            rates: dict[tuple[str, str], list[float]] = {}
            for round_ in range(args.rounds):
                for name, tree in trees.items():
                    for mode, r in measure(tree, args.frames, args.warmup, height, width, args.modes).items():
                        if r["fps"] > best.get((name, mode), {"fps": 0.0})["fps"]:
                            best[name, mode] = r
                        rates.setdefault((name, mode), []).append(r["fps"])
                        print(f"round {round_ + 1}: {name:8s} {mode:10s} {r['fps']:6.2f} frames/s", flush=True)
            load_after = os.getloadavg()[0]
            outputs = {}
            for name, tree in trees.items():
                path = Path(tmp) / f"{name}.npy"
                run_in(tree, OUTPUTS, 12, height, width, path)
                floats, levels8 = np.load(path), np.load(str(path).replace(".npy", "-u8.npy"))
                outputs[name] = (torch.from_numpy(floats), torch.from_numpy(levels8))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
    diff = float((outputs["this"][0] - outputs["baseline"][0]).abs().max())
    levels = outputs["this"][1].int() - outputs["baseline"][1].int()
    threads = args.threads or torch.get_num_threads()
    command = command_line(f"python benchmarks/bench_cpu_revisions.py --baseline {rev}", parser, args)
    lines = report_head(
        "CPU speed against an earlier revision",
        f"`{command}`: shipped `tiny` weights, {width}x{height}, fp32, torch backend, whole frames, motion "
        f"compensation on; best of {args.rounds} rounds of {args.frames} timed frames (after {args.warmup} untimed), "
        f"each in a fresh process, the two trees alternating. Baseline `{rev}`, this tree `{this}`.",
        f"Machine: {cpu_name()}, {os.cpu_count()} logical CPUs; {threads} torch threads; torch {torch.__version__}. "
        f"1-minute load average {load_before:.1f} before and {load_after:.1f} after the run.",
        args.note,
    )
    names, labels = ("baseline", "this"), ("baseline", "this tree")
    lines += ["", *comparison_table(args.modes, best, rates, names, labels, args.frames)]
    lines += [
        "",
        difference_line(12, "this - baseline", diff, int((levels != 0).sum()), levels.numel(), int(levels.abs().max())),
        "",
    ]
    write_report(lines, args.out)


if __name__ == "__main__":
    main()
