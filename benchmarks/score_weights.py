"""Score shipped weights on the held-out synthetic benchmark for their model card.

    python benchmarks/score_weights.py small            # -> docs/results/scores-small.json and a Markdown table

Rows: the rainy input, the 5-frame temporal median, and the model (with ``--lift-veil`` also the model with the veil
lifted), on every column of ``benchmarks/heldout.py`` (first- and second-generation rain, moving and still cameras,
one-frame columns, veil-free columns), with background PSNR-Y (pixels the renderer left rain-free, where ghosting
shows), the mean brightness bias and the streaks removed, and the ghosting gap (background PSNR-Y moving minus
static). See ``benchmarks/heldout.py`` for the benchmark's definition.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from estinet.benchmark import cpu_name
from estinet.evaluate import input_predictor, median_predictor, model_predictor
from heldout import BENCHMARKS, describe, ghosting_gaps, score

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    """Score and write ``docs/results/scores-NAME.{json,md}``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", help="shipped name or weights file")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results"))
    parser.add_argument(
        "--baselines",
        help="reuse the input/median rows of an earlier scores-*.json (same benchmark) instead of rescoring",
    )
    parser.add_argument(
        "--lift-veil", action="store_true", help="add a row with the veil lifted (weights with a veil head)"
    )
    args = parser.parse_args()
    name = Path(args.weights).stem
    methods = {
        "rainy input": input_predictor,
        "temporal median (5 frames)": median_predictor,
        f"estinet {name}": model_predictor(args.weights, device=args.device),
    }
    if args.lift_veil:
        methods[f"estinet {name}, veil lifted"] = model_predictor(args.weights, device=args.device, lift_veil=True)
    results: dict[str, dict] = {label: {} for label in methods}
    if args.baselines:  # rows of the same benchmark from an earlier run; benchmarks it lacks are scored here
        earlier = json.loads(Path(args.baselines).read_text())
        for label in ("rainy input", "temporal median (5 frames)"):
            results[label] = {b: earlier[label][b] for b in BENCHMARKS if b in earlier.get(label, {})}
    t0 = time.time()
    for label, predictor in methods.items():
        for bench in BENCHMARKS:
            if bench not in results[label]:
                results[label][bench] = score(predictor, bench, label)
        results[label] = {bench: results[label][bench] for bench in BENCHMARKS}
        print(f"{label}: {time.time() - t0:.0f} s", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    baselines_arg = f" --baselines {args.baselines}" if args.baselines else ""
    baselines_arg += " --lift-veil" if args.lift_veil else ""
    (out / f"scores-{name}.json").write_text(json.dumps(results, indent=1))
    lines = [
        f"Command: `python benchmarks/score_weights.py {args.weights} --device {args.device}{baselines_arg}`; machine: "
        f"{cpu_name()}, torch {torch.__version__}. Scores: {describe()}.",
        "",
        "| method | benchmark | PSNR-Y | SSIM-Y | PSNR-RGB | background PSNR-Y | bias Y | streaks removed | frames/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, benches in results.items():
        for bench, r in benches.items():
            m = r["sequence_mean"]
            bg, streaks = r.get("background_psnr_y"), r.get("streaks_removed")
            lines.append(
                f"| {label} | {bench} | {m['psnr_y']:.2f} | {m['ssim_y']:.4f} | {m['psnr_rgb']:.2f} | "
                f"{'n/a' if bg is None else f'{bg:.2f}'} | {r['brightness_bias']:+.2f} | "
                f"{'n/a' if streaks is None else f'{streaks:.1f} %'} | {r['fps']:.1f} |"
            )
    lines += [
        "",
        "Ghosting gap (background PSNR-Y on the moving-camera clips minus on the same clips with a still camera; "
        "0 = camera motion costs nothing on rain-free pixels):",
        "",
        "| method | pan | handheld |",
        "|---|---:|---:|",
    ]
    for label, benches in results.items():
        gaps = ghosting_gaps(benches)
        if gaps:
            cells = " | ".join(f"{gaps[b]:+.2f}" if b in gaps else "n/a" for b in ("pan", "handheld"))
            lines.append(f"| {label} | {cells} |")
    table = "\n".join(lines) + "\n"
    (out / f"scores-{name}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
