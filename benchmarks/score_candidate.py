"""Score candidate weights on the held-out benchmark against a shipped model's committed scores (one line per column).

For training experiments: the same protocol as ``benchmarks/score_weights.py`` (``benchmarks/heldout.py``: 12 clips x
9 frames per column, PSNR-Y sequence mean, background PSNR-Y on the pixels the renderer left rain-free, the share of
the rain's fine detail removed from its streaks; docs/metric_protocol.md), printed beside the reference's committed
numbers. ``--soft-threshold T`` scores the candidate with its residual shrunk at inference (``out = rainy + r * max(0,
|r| - T) / |r|`` per pixel, ``|r|`` the largest channel difference in 8-bit levels), a test of
leaving small changes out.

    python benchmarks/score_candidate.py runs/tiny-realrain-attempt7/model.safetensors
    python benchmarks/score_candidate.py tiny --soft-threshold 2
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from estinet.evaluate import input_predictor
from estinet.inference import Derainer
from heldout import BENCHMARKS, score

ROOT = Path(__file__).resolve().parent.parent


def adjusted(
    derainer: Derainer, change: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> Callable[[Iterable[np.ndarray]], Iterator[np.ndarray]]:
    """A predictor: ``change(rainy, output)`` of each rainy frame and the derainer's uint8 output for it."""

    def predict(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        frames = list(frames)
        for rainy, out in zip(frames, derainer.derain_frames(iter(frames)), strict=True):
            yield change(rainy, out)

    return predict


def soft_threshold(threshold: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The output with its residual soft-thresholded at ``threshold`` levels."""

    def change(rainy: np.ndarray, out: np.ndarray) -> np.ndarray:
        residual = out.astype(np.float32) - rainy.astype(np.float32)
        size = np.abs(residual).max(axis=2, keepdims=True)
        scale = np.clip((size - threshold) / np.maximum(size, 1e-6), 0.0, 1.0)
        return np.clip(rainy + np.rint(residual * scale), 0, 255).astype(np.uint8)

    return change


def darken_only(rainy: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The output where it is darker than the rainy frame, the rainy frame elsewhere (rain adds light; a test of
    keeping only the changes that remove light)."""
    return np.minimum(rainy, out)


def compared(value: float, reference: float | None, unit: str = "") -> str:
    """``value`` (dB, or ``unit``) beside the reference's and the difference, or a note that the reference has none."""
    if reference is None:
        return f"{value:6.2f}{unit} (reference not scored)"
    return f"{value:6.2f}{unit} (reference {reference:6.2f}{unit}, {value - reference:+.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", help="candidate weights (file or shipped name), or 'input' for the rainy input")
    parser.add_argument("--reference", default=str(ROOT / "docs/results/scores-tiny.json"), help="committed scores")
    parser.add_argument("--label", default="estinet tiny", help="the reference's row in that file")
    change = parser.add_mutually_exclusive_group()
    change.add_argument("--soft-threshold", type=float, default=0.0, help="shrink the residual by this many levels")
    change.add_argument("--darken-only", action="store_true", help="keep only the output's darkening changes")
    parser.add_argument("--only", help="comma-separated columns to score (default: every column)")
    parser.add_argument("--lift-veil", action="store_true", help="lift the veil too (weights with a veil head)")
    args = parser.parse_args()
    columns = [c.strip() for c in args.only.split(",")] if args.only else list(BENCHMARKS)
    unknown = sorted(set(columns) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown columns {unknown}; the columns are {', '.join(BENCHMARKS)}")
    reference = json.loads(Path(args.reference).read_text())[args.label]
    if args.weights == "input":
        if args.soft_threshold > 0 or args.darken_only or args.lift_veil:
            parser.error("the rainy input has no residual to change; drop --soft-threshold, --darken-only, --lift-veil")
        predict = input_predictor
    else:
        derainer = Derainer(args.weights, device="cpu", lift_veil=args.lift_veil)
        predict = derainer.derain_frames
        if args.soft_threshold > 0:
            predict = adjusted(derainer, soft_threshold(args.soft_threshold))
        elif args.darken_only:
            predict = adjusted(derainer, darken_only)
    width = max(len(c) for c in columns)
    for bench in columns:
        got, ref = score(predict, bench, "candidate"), reference.get(bench, {})  # {}: a column newer than the reference
        psnr, ref_psnr = got["sequence_mean"]["psnr_y"], ref.get("sequence_mean", {}).get("psnr_y")
        line = f"{bench:{width}s} PSNR-Y {compared(psnr, ref_psnr)}"
        if got.get("background_psnr_y") is not None:
            line += f"  background {compared(got['background_psnr_y'], ref.get('background_psnr_y'))}"
        if got.get("streaks_removed") is not None:
            line += f"  streaks removed {compared(got['streaks_removed'], ref.get('streaks_removed'), '%')}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
