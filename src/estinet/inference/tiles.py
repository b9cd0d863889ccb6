"""Overlapping tiles: tile spans, and the per-frame and per-window calls run whole or tile by tile.

Frames that do not fit in memory are processed in overlapping tiles; motion is still estimated on whole frames.
Tile cores start at multiples of the model's alignment (16; 32 for ``official``, whose encoder reaches 1/32) of the
padded frame and margins are multiples of it, so each tile sees the whole frame's downsampling grid, and a tile at
the frame's edge sees the frame's own edge. The per-frame terms are computed per tile (crop = core + margin on each
side, clipped to the frame) and the cores pasted into whole-frame buffers; the per-window part runs per tile again,
with the margin widened by the window's largest displacement, and the cores of the refined frames are pasted back.

Both calls go through the models' streaming seam (``frame_features`` / ``window_forward``), which
:class:`~estinet.models.estinet.ESTINet` and :class:`~estinet.models.official.OfficialESTINet` share; a model
without per-frame terms returns them empty, and empty terms are passed on empty.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from estinet import runtime
from estinet.inference.plan import Plan, align_up
from estinet.models.estinet import PAD_MULTIPLE
from estinet.models.motion import centre_shifts, translate_into

if TYPE_CHECKING:
    from estinet.inference.stream import Slot

__all__ = ["Tiler", "tile_spans"]


def tile_spans(
    length: int, tile: int | None, margin: int, align: int = PAD_MULTIPLE
) -> list[tuple[int, int, int, int]]:
    """Split one axis into tiles with aligned cores and overlapping crops.

    The cores partition ``[0, length)`` into ``ceil(length / tile)`` nearly equal parts whose starts are multiples
    of ``align``; each crop extends its core by ``margin`` on both sides, clipped to ``[0, length)``.

    Args:
        length: axis length in pixels (a multiple of ``align`` for ESTINet's padded frames).
        tile: largest core size; None or >= ``length`` gives one tile covering the axis.
        margin: overlap per side, a multiple of ``align``.
        align: alignment of the core starts.

    Returns:
        ``(core_start, core_stop, crop_start, crop_stop)`` per tile, in order.
    """
    if tile is None or tile >= length:
        return [(0, length, 0, length)]
    count = -(-length // tile)
    core = align_up(-(-length // count), align)
    spans = []
    for start in range(0, length, core):
        stop = min(length, start + core)
        spans.append((start, stop, max(0, start - margin), min(length, stop + margin)))
    return spans


@dataclass(frozen=True)
class Tiler:
    """A prepared model's per-frame and per-window calls, whole or in tiles, under its precision.

    Attributes:
        model: an eval-mode :class:`ESTINet` or :class:`OfficialESTINet` (the streaming seam).
        align: tile cores start at multiples of this.
        stride: the model's ``temporal_stride`` (resolution of the ``low`` per-frame terms).
        device: where the model runs.
        amp_dtype: autocast dtype, or None for full precision.
    """

    model: nn.Module
    align: int
    stride: int
    device: torch.device
    amp_dtype: torch.dtype | None

    def frame_features(self, padded: Tensor, plan: Plan) -> tuple[Tensor, Tensor]:
        """Per-frame terms of padded frames (N, 3, Hp, Wp), whole or in tiles (pasting the cores).

        Returns:
            ``full`` (N, 3, Hp, Wp) and ``low`` (N, 16*hidden, Hp/s, Wp/s), each empty where the model has none.
        """
        hp, wp = padded.shape[-2:]
        ys = tile_spans(hp, plan.tile, plan.margin, self.align)
        xs = tile_spans(wp, plan.tile, plan.margin, self.align)
        s = self.stride
        full = low = None
        for y0, y1, py0, py1 in ys:
            for x0, x1, px0, px1 in xs:
                with runtime.autocast(self.device, self.amp_dtype):
                    feats = self.model.frame_features(padded[:, :, py0:py1, px0:px1])
                if len(ys) == 1 and len(xs) == 1:
                    return feats.full, feats.low
                if full is None or low is None:
                    n = padded.shape[0]
                    full, low = _canvas(feats.full, n, hp, wp), _canvas(feats.low, n, hp // s, wp // s)
                if full.numel():
                    full[:, :, y0:y1, x0:x1] = feats.full[:, :, y0 - py0 : y1 - py0, x0 - px0 : x1 - px0]
                if low.numel():
                    low[:, :, y0 // s : y1 // s, x0 // s : x1 // s] = feats.low[
                        :, :, (y0 - py0) // s : (y1 - py0) // s, (x0 - px0) // s : (x1 - px0) // s
                    ]
        assert full is not None and low is not None
        return full, low

    def window_forward(
        self, slots: Mapping[int, Slot], windows: list[list[int]], disp: Tensor | None, plan: Plan
    ) -> Tensor:
        """Refined centre frames (B, 3, Hp, Wp) (padded, unclamped) of a batch of windows, whole or in tiles.

        Args:
            slots: buffered frames by index (:class:`~estinet.inference.stream.Slot`).
            windows: B windows of frame indices.
            disp: (B, T, 2) displacements of each entry relative to its window's centre, or None (no alignment).
            plan: the tile plan; the margin is widened by the largest displacement.
        """
        first = slots[windows[0][0]].rainy
        hp, wp = first.shape[-2:]
        extra = math.ceil(float(disp.abs().max())) if disp is not None and plan.tile is not None else 0
        margin = align_up(plan.margin + extra, self.align)
        ys = tile_spans(hp, plan.tile, margin, self.align)
        xs = tile_spans(wp, plan.tile, margin, self.align)
        s = self.stride
        shifts: dict[float, list[list[float]]] = {}
        if disp is not None:  # the shifts align_to_centre applies (so streaming equals the per-window forward)
            disp_dev = disp.to(self.device)
            for scale in (1.0, 1.0 / s):
                shifts[scale] = centre_shifts(disp_dev, scale).detach().to("cpu", torch.float64).tolist()

        def run(py0: int, py1: int, px0: int, px1: int) -> Tensor:
            # aligned while gathered: one copy per frame instead of a stack and then a translation
            rainy = _gather(slots, windows, "rainy", (py0, py1, px0, px1), shifts.get(1.0))
            full = _gather(slots, windows, "full", (py0, py1, px0, px1), shifts.get(1.0))
            low = _gather(slots, windows, "low", (py0 // s, py1 // s, px0 // s, px1 // s), shifts.get(1.0 / s))
            with runtime.autocast(self.device, self.amp_dtype):
                return self.model.window_forward(rainy, full, low, None)[1]

        if len(ys) == 1 and len(xs) == 1:
            return run(0, hp, 0, wp)
        out = first.new_empty(len(windows), 3, hp, wp)
        for y0, y1, py0, py1 in ys:
            for x0, x1, px0, px1 in xs:
                part = run(py0, py1, px0, px1)
                out[:, :, y0:y1, x0:x1] = part[:, :, y0 - py0 : y1 - py0, x0 - px0 : x1 - px0]
        return out


def _canvas(term: Tensor, count: int, height: int, width: int) -> Tensor:
    """A whole-frame buffer (count, C, height, width) for the tile cores of ``term``; empty terms stay empty."""
    return term.new_empty(count, term.shape[1], height, width) if term.numel() else term


def _gather(
    slots: Mapping[int, Slot],
    windows: list[list[int]],
    attr: str,
    box: tuple[int, int, int, int],
    shifts: list[list[float]] | None,
) -> Tensor:
    """(B, T, C, y1 - y0, x1 - x0): the windows' crops of a slot field, translated onto their centres by ``shifts``
    ((dy, dx) per window entry, row-major; None: not translated). An empty field gives an empty tensor."""
    y0, y1, x0, x1 = box
    if not getattr(slots[windows[0][0]], attr).numel():
        return getattr(slots[windows[0][0]], attr).new_zeros(0)
    crops = [[getattr(slots[j], attr)[:, y0:y1, x0:x1] for j in w] for w in windows]
    if shifts is None:
        return torch.stack([torch.stack(row) for row in crops])
    first = crops[0][0]
    out = first.new_empty(len(windows), len(windows[0]), *first.shape)
    scratch = torch.empty_like(out[0, 0])
    for b, row in enumerate(crops):
        for t, crop in enumerate(row):
            dy, dx = shifts[b * len(row) + t]
            translate_into(out[b, t], crop, dy, dx, scratch)
    return out
