"""SICM: the per-frame spatial information collection module (paper §3.2, SPEC §1).

A ResNet encoder-decoder with multi-scale fusion. The encoder is one 3x3 conv at full resolution followed by
four residual stages that each halve the resolution (widths C, 2C, 4C, 8C, down to 1/16); the decoder has four
up-projections (x2 bilinear upsampling + convs, the matching encoder skip added) back to full resolution; the
multi-scale fusion projects every encoder stage to a few channels, upsamples them to full resolution, concatenates
and fuses them with a conv. The output is f_x = concat(decoder output, fusion output).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def conv3x3(c_in: int, c_out: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    """A 3x3 conv with zero padding 1."""
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias)


class ResidualBlock(nn.Module):
    """A basic residual block (two 3x3 convs), optionally strided with a 1x1 projection shortcut.

    Args:
        c_in: input channels.
        c_out: output channels.
        stride: 1 or 2 (2 halves the resolution).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.conv2 = conv3x3(c_out, c_out)
        self.shortcut: nn.Module = (
            nn.Conv2d(c_in, c_out, 1, stride=stride) if stride != 1 or c_in != c_out else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        """(N, c_in, H, W) -> (N, c_out, H/stride, W/stride)."""
        return F.relu(self.conv2(F.relu(self.conv1(x))) + self.shortcut(x))


class UpProjection(nn.Module):
    """x2 up-projection: 1x1 projection, bilinear upsampling to the skip's size, skip added, two-conv residual.

    Projecting before upsampling keeps the cost at the low resolution; the two 3x3 convs at the target resolution
    refine the sum.

    Args:
        c_in: channels of the low-resolution input.
        c_out: channels of the skip and of the output.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.project = nn.Conv2d(c_in, c_out, 1)
        self.conv1 = conv3x3(c_out, c_out)
        self.conv2 = conv3x3(c_out, c_out)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """x (N, c_in, h, w), skip (N, c_out, H, W) -> (N, c_out, H, W)."""
        y = F.interpolate(self.project(x), size=skip.shape[-2:], mode="bilinear", align_corners=False) + skip
        return F.relu(y + self.conv2(F.relu(self.conv1(y))))


class SICM(nn.Module):
    """Per-frame ResNet encoder-decoder with multi-scale fusion.

    Args:
        base_channels: C; the encoder stages have C, 2C, 4C, 8C channels.
        blocks_per_stage: residual blocks per encoder stage (the first one is strided).
        fusion_channels: channels each encoder stage contributes to the fusion.
        fusion_out: channels of the fusion output.

    Input: frames (N, 3, H, W) in [0, 1] with H and W multiples of 16.
    Output: features (N, C + fusion_out, H, W).
    """

    def __init__(self, base_channels: int, blocks_per_stage: int, fusion_channels: int, fusion_out: int) -> None:
        super().__init__()
        c = base_channels
        widths = [c, 2 * c, 4 * c, 8 * c]
        self.stem = conv3x3(3, c)
        stages: list[nn.Module] = []
        c_prev = c
        for w in widths:
            blocks = [ResidualBlock(c_prev, w, stride=2)] + [ResidualBlock(w, w) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*blocks))
            c_prev = w
        self.stages = nn.ModuleList(stages)
        # decoder: 8C@1/16 -> 4C@1/8 -> 2C@1/4 -> C@1/2 -> C@1 (skips: stage3, stage2, stage1, stem)
        self.ups = nn.ModuleList(
            [UpProjection(widths[k + 1], widths[k]) for k in (2, 1, 0)] + [UpProjection(widths[0], c)]
        )
        self.fusion_proj = nn.ModuleList([nn.Conv2d(w, fusion_channels, 1) for w in widths])
        self.fusion = conv3x3(4 * fusion_channels, fusion_out)
        self.out_channels = c + fusion_out

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, C + fusion_out, H, W)."""
        if x.shape[-1] % 16 or x.shape[-2] % 16:
            raise ValueError(f"SICM needs H and W that are multiples of 16, got {tuple(x.shape[-2:])}; pad first")
        stem = F.relu(self.stem(x - 0.5))
        feats: list[Tensor] = []
        y = stem
        for stage in self.stages:
            y = stage(y)
            feats.append(y)  # C@1/2, 2C@1/4, 4C@1/8, 8C@1/16
        skips = [feats[2], feats[1], feats[0], stem]
        d = feats[3]
        for up, skip in zip(self.ups, skips, strict=True):
            d = up(d, skip)
        size = x.shape[-2:]
        fused = [
            F.interpolate(proj(f), size=size, mode="bilinear", align_corners=False)
            for proj, f in zip(self.fusion_proj, feats, strict=True)
        ]
        m = F.relu(self.fusion(torch.cat(fused, dim=1)))
        return torch.cat([d, m], dim=1)  # (N, C + fusion_out, H, W)
