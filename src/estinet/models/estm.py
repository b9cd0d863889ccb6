"""ESTM: the enhanced spatio-temporal module (paper §3.4, SPEC §1).

Input concat(coarse frames, rainy frames) as a (N, 6, T=5, H, W) volume. Two 3x3x3 3D convs without temporal
padding reduce T = 5 -> 3 -> 1; densely connected 2D blocks follow ("3D DenseNet-like"); the output is a residual
added to the coarse centre frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from estinet.models.sicm import conv3x3


class TemporalConv3d(nn.Conv3d):
    """A 3x3x3 conv without temporal padding (spatial padding 1), computed as one 2D conv.

    The weights and their state-dict names are those of :class:`torch.nn.Conv3d`; the computation stacks the three
    frames each output step sees into channels (channel index ``c_in * 3 + dt``) and runs a single 2D conv. This is
    the same function as ``nn.Conv3d`` but several times faster on CPUs, where 3D convolution kernels are slow.

    Input (N, C_in, T, H, W) -> output (N, C_out, T - 2, H, W).
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(c_in, c_out, 3, padding=(0, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, T, H, W) -> (N, C_out, T - 2, H, W)."""
        n, c, t, height, width = x.shape
        steps = t - 2
        if steps < 1:
            raise ValueError(f"TemporalConv3d needs at least 3 frames, got {t}")
        win = torch.stack([x[:, :, k : k + 3] for k in range(steps)], dim=1)  # (N, T-2, C_in, 3, H, W)
        win = win.reshape(n * steps, c * 3, height, width)
        w = self.weight.reshape(self.out_channels, c * 3, 3, 3)
        y = F.conv2d(win, w, self.bias, padding=1)  # (N*(T-2), C_out, H, W)
        return y.reshape(n, steps, self.out_channels, height, width).transpose(1, 2)


class DenseBlock(nn.Module):
    """A densely connected block: each 3x3 conv sees all previous outputs; a 1x1 transition and a residual.

    Args:
        channels: input and output channels.
        layers: number of 3x3 convs.
        growth: channels each conv adds.
    """

    def __init__(self, channels: int, layers: int, growth: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList([conv3x3(channels + k * growth, growth) for k in range(layers)])
        self.transition = nn.Conv2d(channels + layers * growth, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(N, channels, H, W) -> (N, channels, H, W)."""
        feats = [x]
        for conv in self.convs:
            feats.append(F.relu(conv(torch.cat(feats, dim=1))))
        return x + self.transition(torch.cat(feats, dim=1))


class ESTM(nn.Module):
    """3D-conv refiner.

    Args:
        channels: width of the 3D convs and dense blocks.
        blocks: number of dense blocks.
        layers: convs per dense block.
        growth: dense growth rate.

    Input: coarse (N, 5, 3, H, W) and rainy (N, 5, 3, H, W), both in [0, 1] and aligned to the centre frame.
    Output: refined centre frame (N, 3, H, W).
    """

    def __init__(self, channels: int, blocks: int, layers: int, growth: int) -> None:
        super().__init__()
        self.conv3d_1 = TemporalConv3d(6, channels)
        self.conv3d_2 = TemporalConv3d(channels, channels)
        self.blocks = nn.Sequential(*[DenseBlock(channels, layers, growth) for _ in range(blocks)])
        self.out = conv3x3(channels, 3)

    def forward(self, coarse: Tensor, rainy: Tensor) -> Tensor:
        """coarse, rainy (N, 5, 3, H, W) -> refined centre frame (N, 3, H, W)."""
        if coarse.shape[1] != 5:
            raise ValueError(f"ESTM needs windows of exactly 5 frames, got {coarse.shape[1]}")
        vol = torch.cat([coarse, rainy], dim=2).transpose(1, 2) - 0.5  # (N, 6, 5, H, W)
        y = F.relu(self.conv3d_1(vol))  # (N, C, 3, H, W)
        y = F.relu(self.conv3d_2(y)).squeeze(2)  # (N, C, H, W)
        y = self.blocks(y)
        return coarse[:, 2] + self.out(y)
