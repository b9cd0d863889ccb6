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
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import Tensor, nn

from estinet import runtime
from estinet.inference.compiled import CompiledSeam
from estinet.inference.graphs import GraphedCall
from estinet.inference.plan import Plan, align_up
from estinet.models.estinet import PAD_MULTIPLE
from estinet.models.motion import centre_shifts, translate_batch_into, translate_into

if TYPE_CHECKING:
    from estinet.inference.stream import Slot

__all__ = ["FrameWorkers", "Tiler", "tile_spans"]

T = TypeVar("T")


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
        model: an eval-mode :class:`ESTINet` or :class:`OfficialESTINet` (the streaming seam), or a
            :class:`~estinet.inference.compiled.CompiledSeam` of one.
        align: tile cores start at multiples of this.
        stride: the model's ``temporal_stride`` (resolution of the ``low`` per-frame terms).
        device: where the model runs.
        amp_dtype: autocast dtype, or None for full precision.
        batched_align: align a batch of windows with a fixed number of kernels
            (:func:`~estinet.models.motion.translate_batch_into`) instead of a few calls per frame (GPUs).
        cuda_graphs: replay whole-frame calls as CUDA graphs (:mod:`estinet.inference.graphs`), one per call and
            shape; a short last batch is padded to the plan's batch. Models with per-frame terms only.
        graphs: the captured graphs by call and shape (filled in as shapes appear; they share one memory pool).
        workers: CPU frame-parallel workers (:class:`FrameWorkers`): the frames of a per-frame call and the windows of
            a per-window call are computed apart, at once, each on a worker thread; None: as one batch.
    """

    model: nn.Module | CompiledSeam
    align: int
    stride: int
    device: torch.device
    amp_dtype: torch.dtype | None
    batched_align: bool = False
    cuda_graphs: bool = False
    graphs: dict[tuple[Any, ...], GraphedCall] = field(default_factory=dict, compare=False, repr=False)
    workers: FrameWorkers | None = field(default=None, compare=False)

    def _graph(self, key: tuple[Any, ...], fn: Any, example: list[Tensor]) -> GraphedCall:
        """The graph for ``key``, captured from ``example`` inputs on first use (one memory pool per tiler)."""
        graph = self.graphs.get(key)
        if graph is None:
            pool = next(iter(self.graphs.values())).pool if self.graphs else None
            # a compiled model is compiled for the captured shapes in the warm-up, before the capture
            whole = isinstance(self.model, CompiledSeam)
            graph = self.graphs[key] = GraphedCall(fn, example, self.amp_dtype, pool=pool, warmup_whole=whole)
        return graph

    def graph_seconds(self) -> float:
        """Total warm-up and capture time of the graphs so far."""
        return sum(g.seconds for g in self.graphs.values())

    def setup_seconds(self) -> float:
        """One-off set-up so far: compilation and CUDA-graph capture (a graph's warm-up includes the compilation
        of its call, so the larger of the two totals counts)."""
        compiled = self.model.seconds if isinstance(self.model, CompiledSeam) else 0.0
        return max(self.graph_seconds(), compiled)

    def frame_features(self, padded: Tensor, plan: Plan) -> tuple[Tensor, Tensor]:
        """Per-frame terms of padded frames (N, 3, Hp, Wp), whole or in tiles (pasting the cores).

        Returns:
            ``full`` (N, 3, Hp, Wp) and ``low`` (N, 16*hidden, Hp/s, Wp/s), each empty where the model has none.
        """
        if self.workers is not None and padded.shape[0] > 1:
            parts = self.workers.map(lambda k: self._frame_features(padded[k : k + 1], plan), range(padded.shape[0]))
            return _join([p[0] for p in parts]), _join([p[1] for p in parts])
        return self._frame_features(padded, plan)

    def _frame_features(self, padded: Tensor, plan: Plan) -> tuple[Tensor, Tensor]:
        """:meth:`frame_features` of one batch, in this thread."""
        hp, wp = padded.shape[-2:]
        ys = tile_spans(hp, plan.tile, plan.margin, self.align)
        xs = tile_spans(wp, plan.tile, plan.margin, self.align)
        if self.cuda_graphs and len(ys) == 1 and len(xs) == 1:
            return self._graphed_features(padded, plan.batch)
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
        if self.workers is not None and len(windows) > 1:
            parts = self.workers.map(
                lambda b: self._window_forward(
                    slots, windows[b : b + 1], None if disp is None else disp[b : b + 1], plan
                ),
                range(len(windows)),
            )
            return torch.cat(parts)
        return self._window_forward(slots, windows, disp, plan)

    def _window_forward(
        self, slots: Mapping[int, Slot], windows: list[list[int]], disp: Tensor | None, plan: Plan
    ) -> Tensor:
        """:meth:`window_forward` of one batch, in this thread."""
        first = slots[windows[0][0]].rainy
        hp, wp = first.shape[-2:]
        extra = math.ceil(float(disp.abs().max())) if disp is not None and plan.tile is not None else 0
        margin = align_up(plan.margin + extra, self.align)
        ys = tile_spans(hp, plan.tile, margin, self.align)
        xs = tile_spans(wp, plan.tile, margin, self.align)
        s = self.stride
        shifts: dict[float, list[list[float]]] = {}
        if disp is not None:  # the shifts align_to_centre applies (so streaming equals the per-window forward)
            disp_host = disp.detach().to("cpu")  # computed on the host: no device round trip, no synchronisation
            for scale in (1.0, 1.0 / s):
                shifts[scale] = centre_shifts(disp_host, scale).to(torch.float64).tolist()

        def run(py0: int, py1: int, px0: int, px1: int) -> Tensor:
            rainy, full, low = self._window_inputs(slots, windows, shifts, (py0, py1, px0, px1))
            with runtime.autocast(self.device, self.amp_dtype):
                return self.model.window_forward(rainy, full, low, None)[1]

        if len(ys) == 1 and len(xs) == 1:
            if self.cuda_graphs:
                return self._graphed_windows(slots, windows, shifts, plan.batch)
            return run(0, hp, 0, wp)
        out = first.new_empty(len(windows), 3, hp, wp)
        for y0, y1, py0, py1 in ys:
            for x0, x1, px0, px1 in xs:
                part = run(py0, py1, px0, px1)
                out[:, :, y0:y1, x0:x1] = part[:, :, y0 - py0 : y1 - py0, x0 - px0 : x1 - px0]
        return out

    def _graphed_features(self, padded: Tensor, batch: int) -> tuple[Tensor, Tensor]:
        """Whole-frame per-frame terms through a CUDA graph of ``max(batch, N)`` frames (a short batch is padded
        with copies of its last frame); the terms are copied out of the graph's buffers for the ring buffer."""
        n = padded.shape[0]
        size = max(batch, n)
        if n < size:
            padded = torch.cat([padded, padded[-1:].expand(size - n, *padded.shape[1:])])
        key = ("frame", tuple(padded.shape), padded.dtype)
        graph = self._graph(key, lambda x: tuple(self.model.frame_features(x)), [padded])
        full, low = graph(padded)
        return full[:n].clone(), low[:n].clone()

    def _window_inputs(
        self,
        slots: Mapping[int, Slot],
        windows: list[list[int]],
        shifts: dict[float, list[list[float]]],
        box: tuple[int, int, int, int],
        out: list[Tensor] | None = None,
    ) -> list[Tensor]:
        """The windows' ``rainy``, ``full`` and ``low`` crops of ``box`` (frame pixels; ``low`` at 1/stride), aligned
        while gathered (one copy per frame instead of a stack and then a translation), into ``out`` when given."""
        y0, y1, x0, x1 = box
        s = self.stride
        fields = (("rainy", box, 1.0), ("full", box, 1.0), ("low", (y0 // s, y1 // s, x0 // s, x1 // s), 1.0 / s))
        targets = out if out is not None else [None] * len(fields)
        return [
            _gather(slots, windows, attr, crop, shifts.get(scale), out=target, batched=self.batched_align)
            for (attr, crop, scale), target in zip(fields, targets, strict=True)
        ]

    def _graphed_windows(
        self, slots: Mapping[int, Slot], windows: list[list[int]], shifts: dict[float, list[list[float]]], batch: int
    ) -> Tensor:
        """Whole-frame refined frames (B, 3, Hp, Wp) through a CUDA graph of ``max(batch, B)`` windows; the windows
        are gathered (and aligned) straight into the graph's input buffers, a short batch padded with its last."""
        count, size = len(windows), max(batch, len(windows))
        t = len(windows[0])
        windows = windows + [windows[-1]] * (size - count)
        shifts = {scale: rows + rows[-t:] * (size - count) for scale, rows in shifts.items()}
        first = slots[windows[0][0]]
        box = (0, first.rainy.shape[-2], 0, first.rainy.shape[-1])
        key = ("window", size, t, *((tuple(term.shape), term.dtype) for term in (first.rainy, first.full, first.low)))
        graph = self.graphs.get(key)
        if graph is None:
            example = self._window_inputs(slots, windows, shifts, box)
            graph = self._graph(key, lambda r, f, lo: self.model.window_forward(r, f, lo, None)[1], example)
        else:
            self._window_inputs(slots, windows, shifts, box, out=graph.inputs)
        return graph.replay()[:count]


def _join(terms: list[Tensor]) -> Tensor:
    """Per-frame terms of single frames stacked into one batch; empty terms stay empty."""
    return torch.cat(terms) if terms[0].numel() else terms[0]


class FrameWorkers:
    """Threads that each compute whole frames or windows on the CPU, with few intra-op threads apiece.

    ``tiny``'s operations are small (a few channels at video resolution), and on a CPU most of them are too short for
    torch's intra-op threads to pay for waking each other: on this project's 2-core CPU a frame's per-frame and
    per-window work ran 1.2-1.4x faster on two threads than on one. Computing two frames at once, one per thread,
    keeps both cores busy without that synchronisation (``benchmarks/bench_cpu_revisions.py``). Each worker runs
    under ``torch.inference_mode`` with ``threads`` intra-op threads of its own; the threads start with the object,
    and the caller's thread count and torch's process-wide default (which threads that have not used torch yet adopt)
    are left as they were.

    Args:
        count: worker threads (>= 2).
        threads: intra-op threads of each worker.
    """

    def __init__(self, count: int, threads: int = 1) -> None:
        self.count = count
        self.threads = threads
        caller = torch.get_num_threads()
        # the initializer must not refer to this object: the idle threads would keep it (and themselves) alive; as
        # it is, the threads end when the pool is collected with its Derainer
        self._pool = ThreadPoolExecutor(
            count, thread_name_prefix="estinet-frame", initializer=_start_worker, initargs=(threads,)
        )
        # torch.set_num_threads also sets torch's process-wide default, which every thread that has not used torch
        # yet adopts later (a server's next job thread, say): start all workers now, then put the default back
        barrier = threading.Barrier(count)
        list(self._pool.map(lambda _: barrier.wait(timeout=60), range(count)))
        torch.set_num_threads(caller)

    def map(self, fn: Callable[[int], T], items: Iterable[int]) -> list[T]:
        """``[fn(i) for i in items]`` computed on the workers (without autograd); exceptions propagate."""

        def call(i: int) -> T:
            with torch.inference_mode():
                return fn(i)

        return list(self._pool.map(call, items))

    def close(self) -> None:
        """Stop the threads (after the running calls)."""
        self._pool.shutdown(wait=True)

    def __repr__(self) -> str:
        return f"FrameWorkers(count={self.count}, threads={self.threads})"


def _start_worker(threads: int) -> None:
    """A worker thread's set-up: ``threads`` intra-op threads for this thread only (with :class:`FrameWorkers`)."""
    torch.get_num_threads()  # torch's lazy per-thread set-up first: run later, it would adopt the process default
    torch.set_num_threads(threads)


def _canvas(term: Tensor, count: int, height: int, width: int) -> Tensor:
    """A whole-frame buffer (count, C, height, width) for the tile cores of ``term``; empty terms stay empty."""
    return term.new_empty(count, term.shape[1], height, width) if term.numel() else term


def _gather(
    slots: Mapping[int, Slot],
    windows: list[list[int]],
    attr: str,
    box: tuple[int, int, int, int],
    shifts: list[list[float]] | None,
    *,
    out: Tensor | None = None,
    batched: bool = False,
) -> Tensor:
    """(B, T, C, y1 - y0, x1 - x0): the windows' crops of a slot field, translated onto their centres by ``shifts``
    ((dy, dx) per window entry, row-major; None: not translated). An empty field gives an empty tensor.

    ``out``: write into this (B, T, C, h, w) buffer (contiguous) instead of a new one. ``batched``: one stack and a
    fixed number of kernels for the whole batch (:func:`~estinet.models.motion.translate_batch_into`) instead of a
    few calls per entry; the results are equal in float32.
    """
    y0, y1, x0, x1 = box
    if not getattr(slots[windows[0][0]], attr).numel():
        return getattr(slots[windows[0][0]], attr).new_zeros(0)
    crops = [[getattr(slots[j], attr)[:, y0:y1, x0:x1] for j in w] for w in windows]
    first = crops[0][0]
    if out is None:
        out = first.new_empty(len(windows), len(windows[0]), *first.shape)
    if shifts is None:
        torch.stack([crop for row in crops for crop in row], out=out.view(-1, *first.shape))
        return out
    if batched:
        stacked = torch.stack([crop for row in crops for crop in row])  # (B*T, C, h, w)
        translate_batch_into(out.view(-1, *first.shape), stacked, shifts)
        return out
    scratch = torch.empty_like(out[0, 0])
    for b, row in enumerate(crops):
        for t, crop in enumerate(row):
            dy, dx = shifts[b * len(row) + t]
            translate_into(out[b, t], crop, dy, dx, scratch)
    return out
