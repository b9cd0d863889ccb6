"""Regenerate tests/data/golden_clips.npz: `python -m tests.data.make_golden_clips` from the repository root.

The file pins :func:`estinet.data.sources.make_clip`'s default output (no scene motion) on fixed inputs stored in the
file itself: a still, a static-camera video and a moving-camera video. Run it only when a deliberate change alters
make_clip's default clips (the held-out benchmark depends on them), and say so in the commit message.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from estinet.data.sources import clean_sources, make_clip

CASES = (  # (input, seed, camera, frames, out_size)
    ("still", 0, "mixed", 5, (32, 48)),
    ("still", 1, "pan", 5, (32, 48)),
    ("still", 2, "handheld", 7, (24, 24)),
    ("still", 3, "static", 5, (32, 48)),
    ("still", 4, "pan", 3, (96, 120)),
    ("static_video", 5, "mixed", 5, (32, 48)),
    ("static_video", 6, "pan", 6, (40, 56)),
    ("moving_video", 7, "mixed", 5, (32, 48)),
)


def _smooth(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random colour image, uint8 (h, w, 3), from bicubic-upsampled noise."""
    small = (rng.random((h // 8 + 2, w // 8 + 2, 3)) * 255).astype(np.uint8)
    big = np.asarray(Image.fromarray(small).resize((w + 16, h + 16), Image.Resampling.BICUBIC))
    detail = rng.integers(0, 6, size=(h, w, 3))
    return np.clip(big[8 : 8 + h, 8 : 8 + w].astype(np.int32) + detail, 0, 255).astype(np.uint8)


def inputs() -> dict[str, np.ndarray]:
    """The stored inputs: a still (80, 112, 3) and two videos (6, 64, 96, 3), all uint8."""
    rng = np.random.default_rng(2024)
    still = _smooth(rng, 80, 112)
    base = _smooth(rng, 64, 128)
    static = np.stack([np.clip(base[:, 16:112].astype(np.int32) + k % 2, 0, 255) for k in range(6)]).astype(np.uint8)
    moving = np.stack([base[:, 3 * k : 3 * k + 96] for k in range(6)])
    return {"still": still, "static_video": static, "moving_video": moving}


def write_sources(data: dict[str, np.ndarray], folder: Path) -> dict[str, object]:
    """Write the inputs as a PNG and two frame folders under ``folder``; return their CleanSource by input name."""
    Image.fromarray(data["still"]).save(folder / "still.png")
    out = {"still": clean_sources([folder / "still.png"])[0]}
    for name in ("static_video", "moving_video"):
        (folder / name).mkdir()
        for t, frame in enumerate(data[name]):
            Image.fromarray(frame).save(folder / name / f"{t:03d}.png")
        out[name] = clean_sources([folder / name])[0]
    return out


def main() -> None:
    data = inputs()
    arrays: dict[str, np.ndarray] = dict(data)
    with tempfile.TemporaryDirectory() as tmp:
        found = write_sources(data, Path(tmp))
        for k, (name, seed, camera, frames, size) in enumerate(CASES):
            clip, shifts = make_clip(found[name], frames, size, seed, camera)
            arrays[f"clip{k}"], arrays[f"shifts{k}"] = clip, shifts
    out = Path(__file__).with_name("golden_clips.npz")
    np.savez_compressed(out, **arrays)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
