"""Which target should a compressed training input have: the clean clip compressed the same way, or the exact clip?

    python benchmarks/compression_target.py            # -> docs/results/compression-target.md

Renders seeded rain over the held-out package clips (never used for training), passes rainy and clean clips through
the same codec at several qualities, and measures, on the BT.601 luma of the 8-bit frames (levels):

* ``rain-free: vs compressed clean``: RMS of (compressed rainy - compressed clean) over the pixels the rain left alone
  (renderer alpha 0). This is what a model that leaves those pixels alone scores against a compressed target;
* ``rain-free: vs exact clean``: RMS of (compressed rainy - exact clean) over the same pixels: what the same model
  scores against an exact target, i.e. the compression error it would have to undo everywhere to do well;
* ``all pixels: compressed clean vs exact``: the codec's own error on the clean clip.

The decision it informs is recorded in docs/data.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from estinet.data.compress import Compression, compress_clip
from estinet.data.rain import RainRenderer, frames_to_float, frames_to_uint8, get_preset
from estinet.data.sources import heldout_sources, make_clip
from estinet.metrics import rgb_to_y

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = (
    Compression("jpeg", 90),
    Compression("jpeg", 70),
    Compression("jpeg", 45),
    Compression("h264", 20),
    Compression("h264", 28),
    Compression("h264", 35),
)


def rms(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """RMS luma difference (levels) of uint8 frames (..., 3), over ``where`` (same leading shape) when given."""
    d = rgb_to_y(a) - rgb_to_y(b)
    if where is not None:
        d = d[where]
    return float(np.sqrt(np.mean(d * d)))


def main() -> None:
    """Measure and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=6, help="clips per rain preset")
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "compression-target.md")
    args = parser.parse_args()
    sources = heldout_sources()
    rows = []
    # rain without haze, so that the pixels the streaks miss are exactly clean before compression
    presets = {
        "light": get_preset("light"),
        "realistic-light (no haze)": get_preset("realistic-light").replace(haze=0.0),
    }
    for preset, params in presets.items():
        pairs = []
        for k in range(args.clips):
            source = sources[k % len(sources)]
            clip, shifts = make_clip(source, args.frames, args.size, args.seed + k, "mixed")
            renderer = RainRenderer(params, args.size, args.size, seed=args.seed + 100 + k)
            rainy, alpha = renderer.render_clip(frames_to_float(clip), shifts)
            pairs.append((clip, frames_to_uint8(rainy), alpha == 0))
        dry_share = float(np.mean([dry.mean() for _, _, dry in pairs]))
        for setting in SETTINGS:
            same, exact, codec = [], [], []
            for clip, rainy, dry in pairs:
                rainy_c, clean_c = compress_clip(rainy, setting), compress_clip(clip, setting)
                same.append(rms(rainy_c, clean_c, dry))
                exact.append(rms(rainy_c, clip, dry))
                codec.append(rms(clean_c, clip))
            rows.append((preset, dry_share, setting, np.mean(same), np.mean(exact), np.mean(codec)))
    lines = [
        f"Command: `python benchmarks/compression_target.py --clips {args.clips} --frames {args.frames} --size "
        f"{args.size} --seed {args.seed}`. Held-out package clips (mixed camera), seeded rain; RMS of luma differences "
        "in 8-bit levels; rain-free = pixels the renderer left alone (alpha 0).",
        "",
        "| rain | rain-free share | codec | quality | rain-free: vs compressed clean | rain-free: vs exact clean | "
        "all pixels: compressed clean vs exact |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for preset, dry_share, setting, same, exact, codec in rows:
        lines.append(
            f"| {preset} | {100 * dry_share:.0f}% | {setting.codec} | {setting.quality} | {same:.2f} | {exact:.2f} | "
            f"{codec:.2f} |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table)


if __name__ == "__main__":
    main()
