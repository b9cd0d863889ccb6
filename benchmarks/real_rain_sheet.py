"""Real rain in, derained out: a contact sheet per model for looking at results on footage without ground truth.

    python benchmarks/real_rain_sheet.py --real ../shared/data/real-rain --weights tiny,small \
        --out docs/images/real_rain.png

Each row is one real input (a frame folder is derained as a sequence and its middle frame shown; a single image is
derained as a one-frame video, whose windows reflect it onto itself), first in full and then a 4x crop of its centre
so that streaks are visible; the columns are the input and each model's output. Prints, per input and model, the mean
absolute change in luma (levels) and the share of pixels changed by more than 2 levels, which show how much of the
frame a model touches.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from estinet import Derainer
from estinet.metrics import rgb_to_y

ROOT = Path(__file__).resolve().parents[1]


def load(item: Path, limit: int) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of a frame folder (first ``limit`` in name order) or a single image."""
    if item.is_dir():
        files = sorted(p for p in item.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:limit]
        return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in files])
    return np.asarray(Image.open(item).convert("RGB"))[None]


def centre_crop(img: np.ndarray, scale: int = 4) -> np.ndarray:
    """The centre 1/scale of an image, enlarged back by ``scale`` (nearest neighbour, so streaks stay sharp)."""
    h, w = img.shape[:2]
    ch, cw = h // scale, w // scale
    y, x = (h - ch) // 2, (w - cw) // 2
    crop = img[y : y + ch, x : x + cw]
    return np.repeat(np.repeat(crop, scale, axis=0), scale, axis=1)


def main() -> None:
    """Derain every real input with every model and write the sheet."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", type=Path, required=True)
    parser.add_argument("--weights", default="tiny", help="comma-separated shipped names or weights files")
    parser.add_argument("--frames", type=int, default=15, help="frames of a sequence to derain (middle one shown)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "real_rain.png")
    parser.add_argument("--width", type=int, default=360, help="width of one tile in the sheet")
    args = parser.parse_args()
    names = [w.strip() for w in args.weights.split(",") if w.strip()]
    derainers = {name: Derainer(weights=name, device="cpu") for name in names}
    items = sorted(p for p in args.real.iterdir() if p.is_dir() or p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    rows: list[list[tuple[str, np.ndarray]]] = []
    for item in items:
        frames = load(item, args.frames)
        mid = len(frames) // 2
        outputs = [("input", frames[mid])]
        for name, derainer in derainers.items():
            out = list(derainer.derain_frames(iter(frames)))[mid]
            change = np.abs(rgb_to_y(out) - rgb_to_y(frames[mid]))
            print(
                f"{item.name} {Path(name).stem}: mean |change| {change.mean():.2f} levels, "
                f"{100 * (change > 2).mean():.1f}% of pixels changed by more than 2 levels"
            )
            outputs.append((Path(name).stem, out))
        rows.append([(f"{item.name}: {label}", img) for label, img in outputs])
        rows.append([(f"{item.name} (centre, 4x): {label}", centre_crop(img)) for label, img in outputs])
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
