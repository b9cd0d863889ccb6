"""SICM: the per-frame spatial information collection module (paper §3.2, SPEC §1).

A ResNet encoder-decoder with multi-scale fusion. The encoder is one 3x3 conv at full resolution followed by
four residual stages that each halve the resolution (widths C, 2C, 4C, 8C, down to 1/16); the decoder has four
up-projections (x2 bilinear upsampling + convs, the matching encoder skip added) back to full resolution; the
multi-scale fusion projects every encoder stage to a few channels, upsamples them to full resolution, concatenates
and fuses them with a conv. The output is f_x = concat(decoder output, fusion output).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from estinet.models.cpu import cpu_inference
from estinet.models.upsample import upsample_to


def conv3x3(c_in: int, c_out: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    """A 3x3 conv with zero padding 1."""
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias)


def conv_concat(conv: nn.Conv2d, parts: Sequence[Tensor]) -> Tensor:
    """``conv(torch.cat(parts, dim=1))``; at inference, without the concatenation.

    A conv over concatenated channels is the sum of one conv per part with that part's slice of the weights
    (``groups=1``); the sum is equal to float rounding and skips writing and reading the concatenated map. Only where
    :func:`~estinet.models.cpu.cpu_inference` holds; elsewhere it is the plain call.

    Args:
        conv: a 2-D conv with ``groups == 1`` whose input channels are the parts' channels in order.
        parts: (N, C_k, H, W) tensors, sum of C_k = ``conv.in_channels``.

    Returns:
        (N, conv.out_channels, H', W').
    """
    if len(parts) == 1 or conv.groups != 1 or not cpu_inference(parts[0]):
        return conv(torch.cat(list(parts), dim=1))
    channels = sum(part.shape[1] for part in parts)
    if channels != conv.in_channels:
        raise ValueError(f"the parts have {channels} channels in all, the conv expects {conv.in_channels}")
    if _pointwise_matmul(conv, parts):
        return _pointwise_concat(conv, parts)
    out: Tensor | None = None
    start = 0
    for k, part in enumerate(parts):
        weight = conv.weight[:, start : start + part.shape[1]]
        start += part.shape[1]
        bias = conv.bias if k == 0 else None
        term = F.conv2d(part, weight, bias, conv.stride, conv.padding, conv.dilation)
        out = term if out is None else out.add_(term)
    assert out is not None
    return out


def _plain_pointwise(conv: nn.Conv2d) -> bool:
    """Whether ``conv`` is a plain 1x1 conv (stride 1, no padding or dilation, one group) that may run as matrix
    products: not under CPU autocast, which keeps the conv's own mixed precision."""
    plain = conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.padding == (0, 0) and conv.dilation == (1, 1)
    return plain and conv.groups == 1 and not torch.is_autocast_enabled("cpu")


def _pointwise_matmul(conv: nn.Conv2d, parts: Sequence[Tensor]) -> bool:
    """Whether :func:`conv_concat` computes ``conv`` as matrix products: a plain 1x1 conv on channels_last CPU maps."""
    return _plain_pointwise(conv) and all(p.is_contiguous(memory_format=torch.channels_last) for p in parts)


def pointwise_conv(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """A plain 1x1 conv of a contiguous (NCHW) CPU map as a matrix product per sample (other inputs: the plain call).

    Args:
        conv: a 2-D conv.
        x: (N, C, H, W).

    Returns:
        (N, O, H, W); contiguous where the product ran.
    """
    if not _plain_pointwise(conv) or not x.is_contiguous() or x.device.type != "cpu":
        return conv(x)
    n, c, height, width = x.shape
    weight = conv.weight.reshape(conv.out_channels, c)
    flat = x.reshape(n, c, height * width)
    out = (
        torch.matmul(weight, flat)
        if conv.bias is None
        else torch.baddbmm(conv.bias.view(1, -1, 1).expand(n, -1, height * width), weight.expand(n, -1, -1), flat)
    )
    return out.view(n, conv.out_channels, height, width)


def _pointwise_concat(conv: nn.Conv2d, parts: Sequence[Tensor]) -> Tensor:
    """A 1x1 conv of concatenated channels_last parts as per-sample products ``W_k @ part_k^T``, summed.

    oneDNN runs a 1x1 conv with a few output channels on channels_last maps at a fraction of memory speed on CPUs; the
    product with the pixels as the long dimension does not, and it writes the (N, O, H, W) result in the default
    (NCHW) layout, the one of the frames it is added to (``benchmarks/bench_cpu_stages.py``).
    """
    n, _, height, width = parts[0].shape
    weight = conv.weight.reshape(conv.out_channels, conv.in_channels)
    out = parts[0].new_empty(n, conv.out_channels, height * width)  # 3-D: contiguous
    for i in range(n):
        start = 0
        for k, part in enumerate(parts):
            pixels = part[i].permute(1, 2, 0).reshape(height * width, part.shape[1])  # a view: channels_last
            w = weight[:, start : start + part.shape[1]]
            start += part.shape[1]
            if k == 0:
                torch.mm(w, pixels.t(), out=out[i])
            else:
                out[i].addmm_(w, pixels.t())
        if conv.bias is not None:
            out[i].add_(conv.bias[:, None])
    return out.view(n, conv.out_channels, height, width)


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
        return (self.conv2(self.conv1(x).relu_()) + self.shortcut(x)).relu_()


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
        y = F.interpolate(self.project(x), size=skip.shape[-2:], mode="bilinear", align_corners=False).add_(skip)
        return self.conv2(self.conv1(y).relu_()).add_(y).relu_()


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
        return torch.cat(self.parts(x), dim=1)

    def parts(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The two halves of :meth:`forward`'s output, not concatenated (callers that only pool or convolve the
        features save a full-resolution copy).

        Args:
            x: (N, 3, H, W) in [0, 1], H and W multiples of 16.

        Returns:
            decoder output (N, C, H, W) and fusion output (N, fusion_out, H, W).
        """
        if x.shape[-1] % 16 or x.shape[-2] % 16:
            raise ValueError(f"SICM needs H and W that are multiples of 16, got {tuple(x.shape[-2:])}; pad first")
        stem = self.stem(x - 0.5).relu_()
        feats: list[Tensor] = []
        y = stem
        for stage in self.stages:
            y = stage(y)
            feats.append(y)  # C@1/2, 2C@1/4, 4C@1/8, 8C@1/16
        skips = [feats[2], feats[1], feats[0], stem]
        d = feats[3]
        for up, skip in zip(self.ups, skips, strict=True):
            d = up(d, skip)
        return d, self.fusion(self._fusion_input(feats, x.shape[-2:])).relu_()

    def _fusion_input(self, feats: list[Tensor], size: torch.Size) -> Tensor:
        """Every encoder stage projected and upsampled to ``size``, concatenated: (N, 4 * fusion_channels, H, W).

        On CPUs at inference each projection is upsampled straight into its channels of one channels_last map (no
        concatenation pass); elsewhere (training, export, GPUs) upsampled and concatenated.
        """
        projected = [proj(f) for proj, f in zip(self.fusion_proj, feats, strict=True)]
        first = projected[0]
        if not cpu_inference(first):
            return torch.cat([upsample_to(p, size) for p in projected], dim=1)
        width = first.shape[1]
        out = first.new_empty(first.shape[0], size[0], size[1], width * len(projected)).permute(0, 3, 1, 2)
        for k, p in enumerate(projected):
            upsample_to(p, size, out=out[:, k * width : (k + 1) * width])
        return out
