"""The veil estimate: a rainy frame's veiling haze, so that lifting it is a separate, optional step.

Rain seen from a distance is a veil: ``O = S * (1 - h) + h * V`` with ``S`` the frame with its streaks, ``h`` (H, W)
the haze (smooth, growing with depth) and ``V`` the veiling luminance (the renderer's model,
:mod:`estinet.data.rain`). A derainer trained to remove streaks and veil in one residual cannot tell from a crop
whether a frame has a veil, so it lifts some veil everywhere and shifts the tones of veil-free footage
(docs/results/realrain-experiments.md). With ``model.veil_head`` the derainer is trained to keep the veil
(its target is ``B * (1 - h) + h * V``) and :class:`VeilHead` estimates ``h`` and ``V`` at 1/8 resolution from
the derained frame (streaks removed, veil kept: what is left to tell a veil by; in training, the renderer's
streak-free veiled frame) and the rain that was removed from it; :func:`lift_veil` inverts the veil when the user
asks for it (``estinet derain --lift-veil``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MAX_HAZE", "QUANTILES", "VEIL_SCALE", "Veil", "VeilHead", "lift_veil"]

VEIL_SCALE = 8
"""The veil is estimated on 8x8-pixel blocks (it is smooth; a coarse grid also keeps the head cheap)."""

MAX_HAZE = 0.4
"""The largest haze the head predicts (the renderer's presets reach 0.22); lifting divides by ``1 - h >= 0.6``."""


QUANTILES = (0.01, 0.05, 0.25, 0.5)
"""Quantiles over the frame's blocks of their darkest and brightest values that the head sees (how dark the darkest
regions of a frame are is the plainest sign of a veil over it)."""


class Veil(NamedTuple):
    """A veil estimate on the coarse grid.

    Attributes:
        haze: (B, 1, h, w) haze in [0, MAX_HAZE], (h, w) = ceil((H, W) / VEIL_SCALE).
        light: (B, 3, h, w) veiling luminance in [0, 1].
    """

    haze: Tensor
    light: Tensor


class VeilHead(nn.Module):
    """Estimate the veiling haze of a derained frame (veil kept) on a grid of 8x8-pixel blocks.

    Per block it sees the mean colour, the darkest and the brightest channel value, the darkest value of the 3x3
    blocks around it (a veil lifts the dark end of every region: the dark-channel cue of dehazing), and the mean
    and largest change the derainer made (the rain it removed: dense rain comes with a veil). Three 3x3
    convolutions with dilations 1, 2 and 4 (receptive field 15 blocks, 120 pixels) describe each block's
    neighbourhood; their mean over the whole frame and the quantiles :data:`QUANTILES` of the blocks' darkest and
    brightest values are added to every block (whether a frame has a veil at all is a property of the frame, not of
    a block); a 1x1 convolution of all of it outputs haze and luminance.

    Args:
        channels: width of the convolutions.
    """

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(8, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=2, dilation=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=4, dilation=4),
            nn.ReLU(inplace=True),
        )
        self.mix = nn.Sequential(nn.Conv2d(2 * channels + 2 * len(QUANTILES), channels, 1), nn.ReLU(inplace=True))
        self.out = nn.Conv2d(channels, 4, 1)
        nn.init.zeros_(self.out.weight)
        with torch.no_grad():  # start with (almost) no haze and a light grey veil
            self.out.bias.copy_(torch.tensor([-6.0, 1.5, 1.5, 1.5]))

    def forward(self, frame: Tensor, rainy: Tensor) -> Veil:
        """Estimate the veil of frames.

        Args:
            frame: (B, 3, H, W) frames under a veil, their streaks removed (derained), in [0, 1], any H, W >= 1.
            rainy: (B, 3, H, W) the rainy frames they came from: how much rain was removed is a sign of how much
                veil to expect (dense rain seen from afar is the veil).

        Returns:
            :class:`Veil` on the ceil((H, W) / 8) grid.
        """
        height, width = frame.shape[-2:]
        ph, pw = -height % VEIL_SCALE, -width % VEIL_SCALE
        both = torch.cat([frame, (rainy - frame).abs().amax(dim=1, keepdim=True)], dim=1)  # (B, 4, H, W)
        both = F.pad(both, (0, pw, 0, ph), mode="replicate") if ph or pw else both
        x, layer = both[:, :3], both[:, 3:]
        mean = F.avg_pool2d(x, VEIL_SCALE)  # (B, 3, h, w)
        dark = -F.max_pool2d(-x.amin(dim=1, keepdim=True), VEIL_SCALE)  # (B, 1, h, w)
        bright = F.max_pool2d(x.amax(dim=1, keepdim=True), VEIL_SCALE)  # (B, 1, h, w)
        wide = -F.max_pool2d(F.pad(-dark, (1, 1, 1, 1), mode="replicate"), 3, stride=1)  # (B, 1, h, w)
        rain = torch.cat([F.avg_pool2d(layer, VEIL_SCALE), F.max_pool2d(layer, VEIL_SCALE)], dim=1)  # (B, 2, h, w)
        local = self.body(torch.cat([mean, dark, bright, wide, rain], dim=1))  # (B, C, h, w)
        context = local.mean(dim=(2, 3), keepdim=True).expand_as(local)
        levels = torch.tensor(QUANTILES, device=x.device, dtype=x.dtype)
        spread = torch.quantile(torch.cat([dark, bright], dim=1).flatten(2), levels, dim=2)  # (Q, B, 2)
        spread = spread.permute(1, 2, 0).reshape(x.shape[0], -1, 1, 1).expand(-1, -1, *local.shape[-2:])
        y = self.out(self.mix(torch.cat([local, context, spread], dim=1)))  # (B, 4, h, w)
        return Veil(MAX_HAZE * torch.sigmoid(y[:, :1]), torch.sigmoid(y[:, 1:]))


def veil_maps(veil: Veil, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """The veil at full resolution: bilinear from the block grid (block centres), cropped to ``size``.

    Args:
        veil: the estimate of :class:`VeilHead` for frames of ``size``.
        size: (H, W) of the frames.

    Returns:
        haze (B, 1, H, W) and luminance (B, 3, H, W).
    """
    height, width = size
    grid = (math.ceil(height / VEIL_SCALE) * VEIL_SCALE, math.ceil(width / VEIL_SCALE) * VEIL_SCALE)
    both = torch.cat([veil.haze, veil.light], dim=1)
    up = F.interpolate(both, size=grid, mode="bilinear", align_corners=False)[..., :height, :width]
    return up[:, :1], up[:, 1:]


def lift_veil(frame: Tensor, veil: Veil) -> Tensor:
    """Invert the veil: ``(frame - h * V) / (1 - h)``.

    Args:
        frame: (B, 3, H, W) frames under the veil (the derained frame of a model trained to keep it).
        veil: the estimate of :class:`VeilHead` for frames of this size.

    Returns:
        (B, 3, H, W), unclamped.
    """
    haze, light = veil_maps(veil, (frame.shape[-2], frame.shape[-1]))
    return (frame - haze * light) / (1.0 - haze)
