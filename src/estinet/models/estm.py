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
    """A 3x3x3 conv without temporal padding (spatial padding 1), computed as 2D convs, one per temporal tap.

    The weights and their state-dict names are those of :class:`torch.nn.Conv3d`. Output step ``j`` is
    ``bias + sum_k conv2d(frame[j + k], weight[:, :, k])``: one 2D conv per tap (over all output steps at once, or on
    CPUs one output step per call) and two additions. This is the same function as ``nn.Conv3d``, several times
    faster on CPUs than the 3D kernel and than one 2D conv over the three frames stacked into channels.

    Input (N, C_in, T, H, W) -> output (N, C_out, T - 2, H, W); :meth:`frames` takes and returns frame-major
    (N, T, C, H, W) tensors and avoids the transposes.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(c_in, c_out, 3, padding=(0, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, T, H, W) -> (N, C_out, T - 2, H, W)."""
        return self.frames(x.transpose(1, 2)).transpose(1, 2)

    def frames(self, x: Tensor) -> Tensor:
        """Frame-major form: (N, T, C_in, H, W) -> (N, T - 2, C_out, H, W)."""
        n, t, c, height, width = x.shape
        steps = t - 2
        if steps < 1:
            raise ValueError(f"TemporalConv3d needs at least 3 frames, got {t}")
        if c != self.in_channels:
            raise ValueError(f"TemporalConv3d expects {self.in_channels} channels, got {c}")
        # On CPUs, oneDNN's NCHW convolution with these few channels is slower for a batch of N images than for N
        # single images (3 images, 6 -> 4 channels, 640x480: 30.6 vs 9.7 ms with 2 threads, 50.0 vs 38.0 ms with one;
        # `benchmarks/bench_streaming.py --conv-batch`), so there each output step is its own call.
        groups = [x] if x.device.type != "cpu" else [x[i : i + 1, j : j + 3] for i in range(n) for j in range(steps)]
        outs = []
        for group in groups:
            m = group.shape[0] * (group.shape[1] - 2)
            y: Tensor | None = None
            for k in range(3):  # conv2d follows the memory format of the taps and weights
                taps = group[:, k : k + group.shape[1] - 2].reshape(m, c, height, width)
                term = F.conv2d(taps, self.weight[:, :, k], self.bias if k == 0 else None, padding=1)
                y = term if y is None else y.add_(term)
            assert y is not None
            outs.append(y)
        y = outs[0] if len(outs) == 1 else torch.cat(outs)
        return y.reshape(n, steps, self.out_channels, height, width)


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
        vol = torch.cat([coarse, rainy], dim=2).sub_(0.5)  # (N, 5, 6, H, W), frame-major
        y = F.relu(self.conv3d_1.frames(vol))  # (N, 3, C, H, W)
        y = F.relu(self.conv3d_2.frames(y)).squeeze(1)  # (N, C, H, W)
        y = self.blocks(y)
        return coarse[:, 2] + self.out(y)
