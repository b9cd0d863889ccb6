"""Shared test inputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def textured_clip(t: int, h: int, w: int, seed: int = 0, shift: float = 0.0) -> torch.Tensor:
    """A smooth seeded random texture whose content moves right by ``shift`` pixels per frame.

    Args:
        t: frames.
        h: height.
        w: width.
        seed: texture seed.
        shift: horizontal motion in pixels per frame (|t * shift| <= 16).

    Returns:
        (1, t, 3, h, w) in [0, 1].
    """
    g = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.rand(1, 3, h // 4 + 4, w // 4 + 8, generator=g), scale_factor=4, mode="bicubic")
    hb, wb = base.shape[-2:]  # h + 16 (>=), w + 32 (>=)
    ys = torch.arange(h, dtype=torch.float32) + 8
    frames = []
    for k in range(t):
        xs = torch.arange(w, dtype=torch.float32) + 16 - k * shift  # out(x) = base(x + 16 - dx): content moves +dx
        gy, gx = torch.meshgrid(2 * ys / (hb - 1) - 1, 2 * xs / (wb - 1) - 1, indexing="ij")
        grid = torch.stack([gx, gy], -1)[None]  # (1, h, w, 2)
        frames.append(F.grid_sample(base, grid, mode="bicubic", align_corners=True))
    return torch.stack(frames, 1).clamp(0, 1)  # (1, t, 3, h, w)
