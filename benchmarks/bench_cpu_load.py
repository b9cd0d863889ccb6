"""Frames/s of ``estinet derain`` on the CPU, alone and beside one busy process, with the old and the new defaults.

Laptops are never idle: a browser tab or a compile keeps a core busy. torch's OpenMP threads used to spin while they
waited for each other (libgomp's default wait policy), so a thread whose core was taken by another process held the
others spinning, and one busy process cost most of the speed. ``estinet`` now starts with ``OMP_WAIT_POLICY=PASSIVE``
(unless the user set it; see ``estinet.cli.cpu_defaults``).

Each run is a fresh process on a generated clip (``--frames`` frames of ``--size``); the busy process is a Python
loop. Modes:

* ``old``: torch imported before ``estinet.cli.main`` (the wait policy is read when torch loads), as before;
* ``new``: ``estinet`` as shipped;
* ``threads1``: ``--threads 1`` with the new defaults, for reference.

Usage: ``python benchmarks/bench_cpu_load.py [--frames 24] [--size 240x320] [--repeats 1] [--out FILE.md]``.
The numbers depend on the machine and on whatever else runs on it; the Markdown it writes records the conditions.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OLD = "import torch, sys; from estinet.cli import main; sys.exit(main(sys.argv[1:]))"
NEW = "import sys; from estinet.cli import main; sys.exit(main(sys.argv[1:]))"


def busy_loop(stop_at: float) -> None:
    """Keep one core busy until ``stop_at`` (time.time())."""
    x = 0
    while time.time() < stop_at:
        x += 1


def make_clip(path: Path, frames: int, height: int, width: int) -> None:
    import numpy as np

    from estinet.data.video_io import write_video

    rng = np.random.default_rng(0)
    base = rng.random((height, width + frames * 2, 3))
    clip = [(base[:, 2 * t : 2 * t + width] * 255).astype(np.uint8) for t in range(frames)]
    write_video(path, clip, 25)


def run(mode: str, clip: Path, out: Path, frames: int) -> float:
    """Frames/s reported by one ``estinet derain`` run (model load excluded: the printed rate covers the clip)."""
    code = OLD if mode == "old" else NEW
    args = [sys.executable, "-c", code, "derain", str(clip), "-o", str(out), "--overwrite", "--quiet"]
    if mode == "threads1":
        args += ["--threads", "1"]
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    env.pop("OMP_NUM_THREADS", None)
    result = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    match = re.search(r"\(\d+ frames in [\d.]+ s, ([\d.]+) frames/s", result.stdout)
    if match is None:
        raise RuntimeError(f"unexpected output: {result.stdout} {result.stderr}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", default="240x320", help="HxW")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--modes", nargs="+", default=["old", "new", "threads1"])
    parser.add_argument("--out", help="also write the Markdown table here")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        make_clip(clip, args.frames, height, width)
        for mode in args.modes:
            for loaded in (False, True):
                rates = []
                for _ in range(args.repeats):
                    busy = None
                    if loaded:
                        busy = multiprocessing.Process(target=busy_loop, args=(time.time() + 600,), daemon=True)
                        busy.start()
                    try:
                        rates.append(run(mode, clip, Path(tmp) / "out.mp4", args.frames))
                    finally:
                        if busy is not None:
                            busy.terminate()
                            busy.join()
                rows.append((mode, loaded, max(rates), os.getloadavg()[0]))
                print(f"{mode:9s} {'loaded' if loaded else 'alone':6s} {max(rates):6.2f} frames/s", flush=True)
    lines = [
        f"`python benchmarks/bench_cpu_load.py --frames {args.frames} --size {args.size} --repeats {args.repeats}` "
        f"on {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, {platform.system()}; "
        "loaded = one Python busy loop beside it. Best of the repeats; the 1-min load average after each row says "
        "what else ran.",
        "",
        "| defaults | alone (frames/s) | beside a busy process (frames/s) | loaded / alone | load avg |",
        "|---|---:|---:|---:|---:|",
    ]
    by_mode = {(m, loaded): (r, la) for m, loaded, r, la in rows}
    for mode in args.modes:
        alone, _ = by_mode[(mode, False)]
        loaded, la = by_mode[(mode, True)]
        lines.append(f"| {mode} | {alone:.2f} | {loaded:.2f} | {loaded / alone:.2f} | {la:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
