"""CPU training speed with and without glibc keeping freed memory (``estinet.allocator``).

Each run is a fresh process training ``configs/tiny-synthetic.yaml`` for 60 + 40 steps (no validation, no
checkpoints); ``estinet train`` applies the setting on CPU, so the ``default`` runs switch it off by making
``keep_freed_memory`` a no-op before training starts.

    python benchmarks/bench_train_allocator.py --pairs 2
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import sys, time
import estinet.allocator as allocator
if sys.argv[1] == "default":
    allocator._applied = False  # pretend it was refused: training then runs with glibc's default settings
from estinet.config import load_experiment
from estinet.train import train
t = time.perf_counter()
train(load_experiment(sys.argv[2], ["train.stage1_steps=60", "train.stage2_steps=40", "train.val_every=100000",
      "train.ckpt_every=100000", "data.workers=1", "train.threads=2", "train.progress=false"]), out_dir=sys.argv[3])
print(time.perf_counter() - t)
"""


def main() -> None:
    """Print the seconds of each run and the mean ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2, help="default/keep pairs to run")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"default": [], "keep": []}
    for _ in range(args.pairs):
        for mode in times:
            with tempfile.TemporaryDirectory() as tmp:
                config = str(ROOT / "configs" / "tiny-synthetic.yaml")
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, mode, config, tmp], capture_output=True, text=True, check=True
                )
                times[mode].append(float(out.stdout.strip().splitlines()[-1]))
                print(f"{mode}: {times[mode][-1]:.1f} s", flush=True)
    ratio = sum(times["default"]) / sum(times["keep"])
    print(
        f"100 training steps: default {sum(times['default']) / args.pairs:.1f} s, "
        f"kept freed memory {sum(times['keep']) / args.pairs:.1f} s ({ratio:.2f}x)"
    )


if __name__ == "__main__":
    main()
