"""Real rain in, derained out: a contact sheet per model for looking at results on footage without ground truth.

    python benchmarks/real_rain_sheet.py --real ../shared/data/real-rain --weights tiny,small \
        --out docs/images/real_rain.png

Each row is one real input (a frame folder is derained as a sequence and its middle frame shown; a single image is
derained as a one-frame video, whose windows reflect it onto itself), first in full and then a 4x crop so that
streaks are visible (the centre by default; ``--region X,Y`` places the crop's top-left corner at these fractions of
the frame, e.g. ``0,0`` for the dark roof of ``heavy-still.jpg``, where its streaks show best); the columns are the
input and each model's output. Prints, per input and model, the mean absolute change in luma (levels) and the share
of pixels changed by more than 2 levels, which show how much of the frame a model touches, and the mean of the
top-hat rain layer (``estinet.data.rain_stats.rain_layer_tophat``: luma above a 7x7 grey opening, bright thin
structure such as streaks) of the input and of the output, which shows how much of the streaks is left.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from command import derainer_for, weights_label
from estinet.data.rain_stats import rain_layer_tophat
from estinet.metrics import rgb_to_y

ROOT = Path(__file__).resolve().parents[1]


def load(item: Path, limit: int) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of a frame folder (first ``limit`` in name order) or a single image."""
    if item.is_dir():
        files = sorted(p for p in item.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:limit]
        return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in files])
    return np.asarray(Image.open(item).convert("RGB"))[None]


def crop(img: np.ndarray, corner: tuple[float, float] | None = None, scale: int = 4) -> np.ndarray:
    """A 1/scale crop of an image, enlarged back by ``scale`` (nearest neighbour, so streaks stay sharp).

    ``corner`` is its top-left corner as fractions (x, y) of the image's size; None centres the crop.
    """
    h, w = img.shape[:2]
    ch, cw = h // scale, w // scale
    if corner is None:
        y, x = (h - ch) // 2, (w - cw) // 2
    else:
        x, y = min(round(corner[0] * w), w - cw), min(round(corner[1] * h), h - ch)
    part = img[y : y + ch, x : x + cw]
    return np.repeat(np.repeat(part, scale, axis=0), scale, axis=1)


def main() -> None:
    """Derain every real input with every model and write the sheet."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", type=Path, required=True)
    parser.add_argument(
        "--weights", default="tiny", help="comma-separated shipped names or weights files (NAME+lift: lift the veil)"
    )
    parser.add_argument("--frames", type=int, default=15, help="frames of a sequence to derain (middle one shown)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "real_rain.png")
    parser.add_argument("--width", type=int, default=360, help="width of one tile in the sheet")
    parser.add_argument(
        "--region", help="X,Y: the 4x crop's top-left corner as fractions of the frame (default: centre)"
    )
    args = parser.parse_args()
    corner = None
    if args.region:
        try:
            corner = tuple(float(v) for v in args.region.split(","))
        except ValueError:
            corner = ()
        if len(corner) != 2 or not all(0.0 <= v <= 1.0 for v in corner):
            parser.error(f"--region takes two fractions X,Y in [0, 1], got {args.region!r}")
    names = [w.strip() for w in args.weights.split(",") if w.strip()]
    derainers = {name: derainer_for(name) for name in names}
    items = sorted(p for p in args.real.iterdir() if p.is_dir() or p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    rows: list[list[tuple[str, np.ndarray]]] = []
    for item in items:
        frames = load(item, args.frames)
        mid = len(frames) // 2
        outputs = [("input", frames[mid])]
        streaks_in = rain_layer_tophat(frames[mid]).mean()
        for name, derainer in derainers.items():
            out = list(derainer.derain_frames(iter(frames)))[mid]
            change = np.abs(rgb_to_y(out) - rgb_to_y(frames[mid]))
            print(
                f"{item.name} {weights_label(name)}: mean |change| {change.mean():.2f} levels, "
                f"{100 * (change > 2).mean():.1f}% of pixels changed by more than 2 levels, "
                f"top-hat rain layer {streaks_in:.2f} -> {rain_layer_tophat(out).mean():.2f} levels"
            )
            outputs.append((weights_label(name), out))
        rows.append([(f"{item.name}: {label}", img) for label, img in outputs])
        where = "centre" if corner is None else f"at {args.region}"
        rows.append([(f"{item.name} ({where}, 4x): {label}", crop(img, corner)) for label, img in outputs])
    tiles = [[(label, Image.fromarray(img)) for label, img in row] for row in rows]
    w = args.width
    heights = [max(round(im.height * w / im.width) for _, im in row) for row in tiles]
    sheet = Image.new("RGB", (len(tiles[0]) * (w + 4), sum(h + 20 for h in heights)), "white")
    draw = ImageDraw.Draw(sheet)
    y = 0
    for row, h in zip(tiles, heights, strict=True):
        for i, (label, im) in enumerate(row):
            x = i * (w + 4)
            draw.text((x + 4, y + 3), label, fill="black")
            sheet.paste(im.resize((w, round(im.height * w / im.width)), Image.Resampling.LANCZOS), (x, y + 18))
        y += h + 20
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.partial")
    sheet.save(tmp, format="PNG")
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
