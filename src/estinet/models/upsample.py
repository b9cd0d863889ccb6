"""Bilinear upsampling by an integer factor, written as one interpolation per output phase.

``F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)`` on CPUs is several times slower than
memory speed for the 3-channel coarse residual of ``tiny`` (and slower still for channels_last input), and it is one
of the per-window steps of streaming inference. With an integer factor ``s`` the output rows ``s * i + r`` of phase
``r`` all interpolate the same two neighbouring input rows with the same weight, so each axis is ``s`` strided
``lerp`` calls over an edge-replicated input (``benchmarks/bench_streaming.py --stages``, column "coarse head").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from estinet.models.cpu import cpu_inference


def _upsample_axis(x: Tensor, factor: int, dim: int, out: Tensor | None = None) -> Tensor:
    """Upsample (..., L, ...) along ``dim`` to (..., factor * L, ...) (``align_corners=False``, edges clamped), into
    ``out`` (any strides) when given."""
    length = x.shape[dim]
    padded = torch.cat([x.narrow(dim, 0, 1), x, x.narrow(dim, length - 1, 1)], dim=dim)  # (..., L + 2, ...)
    shape = list(x.shape)
    if out is None:
        out = x.new_empty([*shape[:dim], length, factor, *shape[dim + 1 :]])
    else:
        out = out.unflatten(dim, (length, factor))
    for r in range(factor):
        source = (r + 0.5) / factor - 0.5  # position of output r relative to input i, in input pixels
        lower = 0 if source < 0 else 1  # index in `padded` of the lower neighbour of input 0
        weight = source + 1.0 if source < 0 else source
        start, end = padded.narrow(dim, lower, length), padded.narrow(dim, lower + 1, length)
        torch.lerp(start, end, weight, out=out.select(dim + 1, r))
    return out.flatten(dim, dim + 1)


def upsample_bilinear(x: Tensor, factor: int, channels_last: bool | None = None, out: Tensor | None = None) -> Tensor:
    """Bilinear upsampling of (N, C, h, w) to (N, C, factor * h, factor * w).

    The function of ``F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)`` (equal to float
    rounding). With autograd recording a graph through ``x``, and under ONNX export (the phase-wise form writes into a
    preallocated output, which the exporter cannot follow), it is that call; otherwise the phase-wise form.

    Args:
        x: (N, C, h, w) floating point, any memory format.
        factor: integer factor >= 1.
        channels_last: memory format of the result (None: channels_last when ``x`` is, so that a following
            channels_last conv needs no conversion); with ``out``, the order in which it is written.
        out: optional (N, C, factor * h, factor * w) tensor to write the result into, any strides (e.g. a channel
            slice of a larger channels_last map, which saves the concatenation that would follow).

    Returns:
        (N, C, factor * h, factor * w).
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    if x.dim() != 4:
        raise ValueError(f"upsample_bilinear expects (N, C, h, w), got {tuple(x.shape)}")
    expected = (x.shape[0], x.shape[1], factor * x.shape[2], factor * x.shape[3])
    if out is not None and tuple(out.shape) != expected:
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {expected}")
    if factor == 1:
        return x if out is None else out.copy_(x)
    if channels_last is None:
        channels_last = x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last)
    if (torch.is_grad_enabled() and x.requires_grad) or torch.onnx.is_in_onnx_export():  # ONNX: one Resize node
        y = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
        if out is not None:
            return out.copy_(y)
        return y.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    if channels_last:  # upsample (N, h, w, C) along w, then h
        target = None if out is None else out.permute(0, 2, 3, 1)
        y = _upsample_axis(_upsample_axis(x.permute(0, 2, 3, 1), factor, 2), factor, 1, target).permute(0, 3, 1, 2)
    else:
        y = _upsample_axis(_upsample_axis(x, factor, 3), factor, 2, out)
    return y if out is None else out


def upsample_to(x: Tensor, size: tuple[int, int] | torch.Size, out: Tensor | None = None) -> Tensor:
    """Bilinear upsampling (``align_corners=False``) of (N, C, h, w) to (N, C, *size).

    ``F.interpolate(x, size=size, mode="bilinear", align_corners=False)``; on CPUs, where ``size`` is one integer
    multiple of (h, w), the phase-wise form of :func:`upsample_bilinear` (equal to float rounding; SICM's fusion, whose
    2-channel channels_last maps ``F.interpolate`` upsamples several times slower than memory speed on CPUs:
    ``benchmarks/bench_cpu_stages.py``), where :func:`~estinet.models.cpu.cpu_inference` holds.

    Args:
        x: (N, C, h, w) floating point.
        size: (H, W) of the result.
        out: optional (N, C, H, W) tensor to write the result into, any strides.

    Returns:
        (N, C, H, W), ``out`` when given.
    """
    if cpu_inference(x):
        height, width = int(size[0]), int(size[1])
        factor = height // int(x.shape[-2])
        if factor >= 1 and (factor * x.shape[-2], factor * x.shape[-1]) == (height, width):
            return upsample_bilinear(x, factor, out=out)
    y = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return y if out is None else out.copy_(y)
