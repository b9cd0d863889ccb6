"""Streaming sliding-window inference, overlapping tiles, and the :class:`Derainer` API (SPEC §2).

:mod:`~estinet.inference.derainer` (options, model preparation, frames/clips/per-window reference) drives
:mod:`~estinet.inference.stream` (the ring buffer), which calls :mod:`~estinet.inference.tiles` (the per-frame and
per-window calls, whole or in tiles) under the plan of :mod:`~estinet.inference.plan` (memory and tile margins);
:mod:`~estinet.inference.video` reads and writes files, and :mod:`~estinet.inference.batch` many files at once (on
every GPU, or on Ray). The per-window reference
(:meth:`Derainer.derain_per_window`) recomputes everything for every window with ``model.forward``; streaming equals
it to about 2e-6. docs/architecture.md draws the layout.
"""

from __future__ import annotations

from estinet.errors import DerainError
from estinet.inference.derainer import Derainer, resolve_device
from estinet.inference.plan import (
    MEMORY_SAFETY,
    OFFICIAL_TILE_MARGIN,
    WORK_BYTES_PER_PIXEL,
    Plan,
    available_memory,
    default_tile_margin,
    sicm_receptive_radius,
)
from estinet.inference.stream import Slot, StreamStats, official_window
from estinet.inference.tiles import Tiler, tile_spans
from estinet.inference.video import derain_main

__all__ = [
    "MEMORY_SAFETY",
    "OFFICIAL_TILE_MARGIN",
    "WORK_BYTES_PER_PIXEL",
    "DerainError",
    "Derainer",
    "Plan",
    "Slot",
    "StreamStats",
    "Tiler",
    "available_memory",
    "default_tile_margin",
    "derain_main",
    "official_window",
    "resolve_device",
    "sicm_receptive_radius",
    "tile_spans",
]
