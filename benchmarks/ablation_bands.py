"""Where the ablation rows' errors are: fine detail (thin streaks) or coarse structure.

Splits each row's error on the held-out benchmark into a low band (a Gaussian blur, sigma 2 px, of the output and of
the ground truth) and a high band (what the blur removes), both as PSNR-Y in dB over the same frames as
``benchmarks/ablation.py``. A model whose full-resolution path is too weak to reproduce thin rain streaks in its
residual leaves them in the high band.

    python benchmarks/ablation_bands.py --runs /work/runs/ablation --out docs/results
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ablation import ROWS
from estinet.benchmark import cpu_name
from estinet.evaluate import Predictor, input_predictor, median_predictor, model_predictor
from estinet.metrics import rgb_to_y
from heldout import column_dataset

ROOT = Path(__file__).resolve().parents[1]
SIGMA = 2.0


def _luma(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> BT.601 Y in [16, 235] as float64 (T, 1, H, W)."""
    return torch.from_numpy(rgb_to_y(frames)).unsqueeze(1)


def _blur(y: torch.Tensor, sigma: float = SIGMA) -> torch.Tensor:
    """Separable Gaussian blur with reflected borders, (T, 1, H, W) -> (T, 1, H, W)."""
    radius = math.ceil(3 * sigma)
    t = torch.arange(-radius, radius + 1, dtype=y.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1))


def _psnr(mse: float) -> float:
    return 10 * math.log10(255.0**2 / max(mse, 1e-12))


def bands(predictor: Predictor, bench: str) -> tuple[float, float, float]:
    """(PSNR-Y, low-band PSNR-Y, high-band PSNR-Y) over all frames of one held-out benchmark (pooled MSE)."""
    dataset = column_dataset(bench)
    total = low = high = 0.0
    count = 0
    for i in range(len(dataset)):
        sample = dataset[i]
        rainy = (sample["rainy"].permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
        clean = (sample["clean"].permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
        out = np.stack(list(predictor(list(rainy))))
        yo, yg = _luma(out), _luma(clean)
        lo, lg = _blur(yo), _blur(yg)
        total += float(((yo - yg) ** 2).sum())
        low += float(((lo - lg) ** 2).sum())
        high += float((((yo - lo) - (yg - lg)) ** 2).sum())
        count += yo.numel()
    return _psnr(total / count), _psnr(low / count), _psnr(high / count)


def main() -> None:
    """Write ``ablation-bands.md``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs/ablation", help="the ablation's run folder")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results"))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    rows: list[tuple[str, Predictor]] = [
        ("rainy input", input_predictor),
        ("temporal median (5 frames)", median_predictor),
    ]
    for label, name, _, _ in ROWS:
        weights = Path(args.runs) / name / "model.safetensors"
        if weights.exists():
            rows.append((label, model_predictor(str(weights), device=args.device)))
    lines = [
        "# Ablation: error by frequency band",
        "",
        f"`python benchmarks/ablation_bands.py --runs {args.runs}`; machine: {cpu_name()}, torch {torch.__version__}. "
        f"PSNR-Y over all frames of the held-out benchmark (pooled MSE, so it differs slightly from the sequence "
        f"mean of ablation.md); low band: both images blurred (Gaussian, sigma {SIGMA:g} px); high band: what the "
        "blur removes.",
        "",
        "| model | light PSNR-Y | light low band | light high band | heavy PSNR-Y | heavy low band | heavy high band |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, predictor in rows:
        values = []
        for bench in ("light", "heavy"):  # cached in RUNS/bands-LABEL-BENCH.json, like the ablation's scores
            cache = Path(args.runs) / f"bands-{label.replace(' ', '_')}-{bench}.json"
            if not cache.exists():
                cache.write_text(json.dumps(bands(predictor, bench)))
            values += json.loads(cache.read_text())
        cells = [f"{v:.2f}" for v in values]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation-bands.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
