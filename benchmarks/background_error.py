"""Where a derainer changes the pixels the rain left alone: error on the background by distance to the rain.

On held-out benchmark columns (``benchmarks/heldout.py``: 12 clips x 9 frames at 224x224; background = the pixels
the renderer left rain-free, ``alpha == 0``), the luma error ``Y(output) - Y(clean)`` of the background pixels (the
metric protocol's BT.601 Y, ``estinet.metrics.rgb_to_y``, on its 16-235 scale) is split two ways:

- by the pixel's distance to the nearest rain pixel of its frame (Euclidean, pixels): RMS, mean (bias) and share of
  the background's squared error per distance band. Errors that leak from removed streaks sit in the first bands;
  errors spread over the frame do not fall off with distance;
- by scale: the share of the background's squared error in the error's low-pass (Gaussian, sigma 3 px: tone changes
  over areas) and in the rest (fine detail), and how much of the fine part a blur of the clean frame's detail
  explains (least squares of the fine error on ``Y(clean) - gaussian(Y(clean), 1.5)``; 0: not a blur).

``--coarse`` scores the model's coarse centre frame (SICM -> STIM, before ESTM and the rain gate) instead of its
output, on still-camera columns only (the windows are then aligned without motion estimation); ``still-light``
(``light`` rain, still camera) is a column of this script for it.

    python benchmarks/background_error.py --weights tiny,small --columns light,pan
    python benchmarks/background_error.py --weights tiny --columns still-light --coarse
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt, gaussian_filter

from command import derainer_for
from estinet.data.windows import window_indices
from estinet.evaluate import eval_sequences, input_predictor
from estinet.inference import Derainer
from estinet.metrics import rgb_to_y
from estinet.runtime import frames_to_uint8
from heldout import BENCHMARKS, column_dataset

COLUMNS = {**BENCHMARKS, "still-light": {"rain": "light", "camera": "static"}}

BANDS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, float("inf"))
"""Distance bands (pixels) to the nearest rain pixel: (lo, hi]."""

Predictor = Callable[[Iterable[np.ndarray]], Iterator[np.ndarray]]


def coarse_predictor(derainer: Derainer) -> Predictor:
    """The model's coarse centre frames (before ESTM and the gate) of a still-camera sequence, as uint8 frames."""

    def predict(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        clip = torch.from_numpy(np.stack(list(frames))).permute(0, 3, 1, 2).float().div(255)  # (T, 3, H, W)
        count = clip.shape[0]
        with torch.inference_mode():
            for t in range(count):
                window = clip[window_indices(count, t, derainer.window_size, mode="reflect")][None]
                coarse, _ = derainer.model(window, torch.zeros(1, derainer.window_size, 2))
                yield frames_to_uint8(coarse[0, derainer.centre].clamp(0, 1)).permute(1, 2, 0).numpy()

    return predict


def analyse(predict: Predictor, column: str) -> dict[str, object]:
    """The split of the background error of ``predict`` on one held-out column (see the module docstring)."""
    spec = COLUMNS[column]
    if spec.get("frames") == "one" or spec.get("compression"):
        raise SystemExit(f"column {column!r}: use a video column without compression (e.g. light, heavy, pan)")
    data = column_dataset(column, COLUMNS)
    bands = len(BANDS) - 1
    se, total, count = np.zeros(bands), np.zeros(bands), np.zeros(bands)
    low = high = blur = 0.0
    for sequence in eval_sequences(data):
        frames = list(sequence.frames())
        for frame, out in zip(frames, predict(f.rainy for f in frames), strict=True):
            assert frame.alpha is not None  # synthetic rain carries its opacity
            background = frame.alpha == 0
            if not background.any():
                continue
            y_clean = rgb_to_y(frame.clean)
            error = rgb_to_y(out) - y_clean
            distance = distance_transform_edt(background)  # to the nearest rain pixel (alpha > 0)
            for k in range(bands):
                band = background & (distance > BANDS[k]) & (distance <= BANDS[k + 1])
                se[k] += float((error[band] ** 2).sum())
                total[k] += float(error[band].sum())
                count[k] += int(band.sum())
            smooth = gaussian_filter(error, 3.0)
            fine = error - smooth
            detail = y_clean - gaussian_filter(y_clean, 1.5)
            gain = float((fine[background] * detail[background]).sum()) / max(
                float((detail[background] ** 2).sum()), 1e-9
            )
            low += float((smooth[background] ** 2).sum())
            high += float((fine[background] ** 2).sum())
            blur += float(((gain * detail[background]) ** 2).sum())
    energy = float(se.sum())
    return {
        "rms": float(np.sqrt(energy / max(count.sum(), 1))),
        "bands": [
            {
                "band": (BANDS[k], BANDS[k + 1]),
                "share_pixels": float(count[k] / max(count.sum(), 1)),
                "rms": float(np.sqrt(se[k] / count[k])) if count[k] else float("nan"),
                "bias": float(total[k] / count[k]) if count[k] else float("nan"),
                "share_error": float(se[k] / energy) if energy else float("nan"),
            }
            for k in range(bands)
        ],
        "low_share": low / energy if energy else float("nan"),
        "fine_share": high / energy if energy else float("nan"),
        "fine_blur_share": blur / high if high else float("nan"),
    }


def band_name(band: tuple[float, float]) -> str:
    """``(lo, hi]`` px, or ``> lo`` px for the last band."""
    lo, hi = band
    return f"> {lo:g}" if hi == float("inf") else f"({lo:g}, {hi:g}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--weights",
        default="tiny",
        help="comma-separated shipped names, weights files (NAME+lift: lift the veil) or 'input'",
    )
    parser.add_argument("--columns", default="light,pan", help="comma-separated held-out video columns")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--coarse", action="store_true", help="score the coarse centre frame (still-camera columns)")
    args = parser.parse_args()
    columns = args.columns.split(",")
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        parser.error(f"unknown columns {unknown}; the columns are {', '.join(COLUMNS)}")
    if args.coarse and any(COLUMNS[c]["camera"] != "static" for c in columns):
        parser.error("--coarse aligns windows without motion: use still-camera columns (static, still-light)")
    torch.set_num_threads(args.threads)
    print(
        "| weights | column | background RMS (levels) | low-pass share | fine share (of it a blur) | by distance to "
        "the rain, px: pixels / RMS / bias / share of the error |"
    )
    print("|---|---|---:|---:|---:|---|")
    for name in args.weights.split(","):
        if name == "input":
            predict: Predictor = input_predictor
        else:
            derainer = derainer_for(name)
            predict = coarse_predictor(derainer) if args.coarse else derainer.derain_frames
        label = f"{name} (coarse)" if args.coarse and name != "input" else name
        for column in columns:
            r = analyse(predict, column)
            cells = "; ".join(
                f"{band_name(b['band'])}: {100 * b['share_pixels']:.0f} % / {b['rms']:.2f} / {b['bias']:+.2f} / "
                f"{100 * b['share_error']:.0f} %"
                for b in r["bands"]  # type: ignore[union-attr]
            )
            print(
                f"| {label} | {column} | {r['rms']:.2f} | {100 * r['low_share']:.0f} % | {100 * r['fine_share']:.0f} % "
                f"({100 * r['fine_blur_share']:.0f} %) | {cells} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
