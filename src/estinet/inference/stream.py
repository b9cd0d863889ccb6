"""The streaming ring buffer: frames in one at a time, derained frames out one at a time (SPEC §2).

Memory stays flat in the video's length. Each incoming frame's displacement to the previous frame is estimated once
(:class:`~estinet.models.motion.StreamingMotion`, a batch of frames at a time) and accumulated into a float64
position relative to the first frame; the frame is padded once and its per-frame terms (``frame_features``: SICM,
the per-frame half of the coarse head, STIM's frame gates) are computed once. Frame, terms and position go into a
ring buffer. Output frame ``t`` uses the window ``window_indices(N, t, size)`` (reflection at the ends: ``[2, 1, 0,
1, 2]`` for ``t = 0``) and is computed as soon as frame ``t + size // 2`` has arrived (from then on its reflected
indices cannot depend on the video's length N) or when the stream ends. A window's displacements relative to its
centre are ``position[j] - position[t]`` for the *real* frame ``j`` behind each entry, so a reflected neighbour is
aligned exactly as that real frame would be. Only ``window_forward`` (alignment, STIM, head, ESTM) runs per window.
With ``batch`` B > 1 the per-frame work runs on groups of B frames and B consecutive windows share one
``window_forward`` call (this matters on GPUs, where small calls are launch-bound). The buffer holds at most ``2 *
(size // 2) + 2 * B - 1`` frames (5 for the 5-frame models with ``batch=1``).

The authors' release has no per-frame terms: its slots hold only the frames, and every window runs the whole
network (through the same seam). Its windows are our reflection, or the release's own padding rule
(:func:`official_window`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor

from estinet.errors import DerainError
from estinet.inference.plan import Plan
from estinet.inference.tiles import Tiler
from estinet.models.estinet import pad_to_multiple
from estinet.models.motion import StreamingMotion

__all__ = ["Slot", "StreamStats", "official_window", "stage_clock", "stream", "window_displacements"]


@dataclass
class StreamStats:
    """What one streaming run did (filled in while it runs).

    Attributes:
        frames_in: frames read.
        frames_out: frames produced.
        max_buffered: most frames held by the ring buffer at once.
        plan: the tile/batch plan used (set at the first frame).
        seconds: wall time per stage (``motion``, ``features``, ``windows``; :meth:`Derainer.derain_video` adds
            ``decode``, ``encode`` and ``convert``). On CUDA the stage times are exact only with ``profile=True``.
    """

    frames_in: int = 0
    frames_out: int = 0
    max_buffered: int = 0
    plan: Plan | None = None
    seconds: dict[str, float] = field(default_factory=dict)


class Slot(NamedTuple):
    """One buffered frame.

    Attributes:
        rainy: the padded rainy frame (3, Hp, Wp).
        full: its per-frame term (3, Hp, Wp), or empty.
        low: its STIM gate terms (C, Hp/s, Wp/s), or empty.
        position: its position relative to the first frame (2,) float64 on the CPU.
    """

    rainy: Tensor
    full: Tensor
    low: Tensor
    position: Tensor


@contextlib.contextmanager
def stage_clock(stats: StreamStats, stage: str, device: torch.device, profile: bool) -> Iterator[None]:
    """Add the wall time of the body to ``stats.seconds[stage]`` (synchronising CUDA first when ``profile``)."""
    sync = profile and device.type == "cuda"
    if sync:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    try:
        yield
    finally:
        if sync:
            torch.cuda.synchronize(device)
        stats.seconds[stage] = stats.seconds.get(stage, 0.0) + time.perf_counter() - start


def official_window(num_frames: int, centre: int) -> list[int]:
    """Window ``centre`` of the authors' padding rule; equals ``official_windows(num_frames)[centre]`` in O(1).

    The release pads ``f0..f(N-1)`` as ``[f0, f1] + [f0..f(N-1)] + [f(N-2), f(N-1)]`` and takes 5 consecutive entries.

    Args:
        num_frames: frames in the video, >= 1.
        centre: output frame, in ``[0, num_frames)``.

    Returns:
        5 frame indices.
    """
    if num_frames == 1:
        return [0] * 5

    def padded(j: int) -> int:
        if j < 2:
            return j
        if j <= num_frames + 1:
            return j - 2
        return num_frames - 2 if j == num_frames + 2 else num_frames - 1

    return [padded(j) for j in range(centre, centre + 5)]


def window_displacements(positions: Mapping[int, Tensor], windows: list[list[int]], centres: list[int]) -> Tensor:
    """(B, T, 2) float32 displacements ``position[j] - position[t]`` from float64 positions (2,) per frame.

    Reflected entries of a window map to real frames, so each uses that real frame's position.
    """
    pairs = zip(windows, centres, strict=True)
    rows = [torch.stack([positions[j] - positions[t] for j in window]) for window, t in pairs]
    return torch.stack(rows).float()


@dataclass
class _Run:
    """The state of one streaming run: the ring buffer, frames awaiting their per-frame work, the plan."""

    tiler: Tiler
    pad_multiple: int
    stats: StreamStats
    clock: Callable[[str], contextlib.AbstractContextManager[None]]
    motion: StreamingMotion | None = None
    slots: dict[int, Slot] = field(default_factory=dict)
    pending: list[Tensor] = field(default_factory=list)  # frames awaiting their per-frame work
    plan: Plan | None = None
    size: tuple[int, int] = (0, 0)
    count: int = 0  # frames read
    position: Tensor = field(default_factory=lambda: torch.zeros(2, dtype=torch.float64))  # of the latest frame

    def positions(self, frames: Tensor) -> list[Tensor]:
        """Positions (2,) float64 of consecutive ``frames`` (N, 3, H, W): one batched motion estimate, one transfer
        to the host, then the same sequential float64 sum as frame-by-frame estimation."""
        if self.motion is None:
            return [self.position] * frames.shape[0]
        with self.clock("motion"), torch.inference_mode():
            steps = self.motion.push_sequence(frames).to("cpu", torch.float64)  # (N, 2)
        out = []
        for step in steps:
            self.position = self.position + step
            out.append(self.position)
        return out

    def per_frame(self) -> None:
        """Estimate the pending frames' motion and compute their per-frame terms in one call each; move them into
        the buffer."""
        if not self.pending:
            return
        assert self.plan is not None
        first = self.count - len(self.pending)
        frames = torch.stack(self.pending)  # (N, 3, H, W)
        positions = self.positions(frames)
        with self.clock("features"), torch.inference_mode():
            padded, _ = pad_to_multiple(frames, self.pad_multiple)
            full, low = self.tiler.frame_features(padded, self.plan)  # (N, 3, Hp, Wp), (N, C, Hp/s, Wp/s)
        for k, position in enumerate(positions):
            self.slots[first + k] = Slot(
                padded[k], full[k] if full.numel() else full, low[k] if low.numel() else low, position
            )
        self.pending.clear()
        self.stats.max_buffered = max(self.stats.max_buffered, len(self.slots))

    def emit(self, centres: list[int], window: Callable[[int, int], list[int]], motion: bool) -> Iterator[Tensor]:
        """Per-window work for ``centres``; yields their (3, H, W) outputs in [0, 1]."""
        assert self.plan is not None
        windows = [window(self.count, t) for t in centres]
        with self.clock("windows"), torch.inference_mode():
            disp = None
            if motion:
                disp = window_displacements({k: slot.position for k, slot in self.slots.items()}, windows, centres)
            refined = self.tiler.window_forward(self.slots, windows, disp, self.plan)
            out = refined[:, :, : self.size[0], : self.size[1]].float().clamp(0.0, 1.0)
        for frame in out:
            self.stats.frames_out += 1
            yield frame


def _row(terms: Tensor, k: int) -> Tensor:
    """Frame ``k``'s per-frame terms; an empty tensor (a model without such terms) is shared by every frame."""
    return terms[k] if terms.numel() else terms


def stream(
    frames: Iterable[Tensor],
    tiler: Tiler,
    *,
    plan_for: Callable[[int, int], Plan],
    window: Callable[[int, int], list[int]],
    window_size: int,
    pad_multiple: int,
    motion: StreamingMotion | None,
    check: Callable[[Tensor, int, tuple[int, int] | None], Tensor],
    stats: StreamStats,
    profile: bool = False,
) -> Iterator[Tensor]:
    """Derain a stream of frames through the ring buffer (see the module docstring).

    Args:
        frames: (3, H, W) float tensors in [0, 1], all of one size.
        tiler: the prepared model's per-frame and per-window calls.
        plan_for: the plan for frames of (H, W).
        window: ``window(N, t)``: the frame indices of output ``t``'s window in a video of N frames.
        window_size: frames per window.
        pad_multiple: frames are padded to multiples of this.
        motion: the motion estimator, or None (no motion compensation).
        check: validates frame ``index`` against the first frame's size and moves it to the model's device.
        stats: filled in while it runs.
        profile: synchronise CUDA around each stage so that the stage times are exact.

    Yields:
        (3, H, W) float32 derained frames in [0, 1], one per input frame, in order.

    Raises:
        DerainError: for an empty stream (and as ``check``).
    """
    run = _Run(tiler, pad_multiple, stats, lambda stage: stage_clock(stats, stage, tiler.device, profile), motion)
    half_window = window_size // 2
    next_out = 0  # next frame to output

    def evict() -> None:
        for index in [k for k in run.slots if k < next_out - half_window]:
            del run.slots[index]

    for frame in frames:
        frame = check(frame, run.count, run.size if run.plan is not None else None)
        if run.plan is None:
            run.size = (int(frame.shape[-2]), int(frame.shape[-1]))
            run.plan = stats.plan = plan_for(*run.size)
        run.pending.append(frame)
        run.count += 1
        stats.frames_in = run.count
        if len(run.pending) < run.plan.batch:  # per-frame work runs on groups of `batch` frames
            continue
        run.per_frame()
        # windows next_out .. next_out + batch - 1 are final once frame (last centre + half_window) is in:
        # their reflected indices cannot depend on the video's length any more
        while next_out + run.plan.batch - 1 + half_window <= run.count - 1:
            centres = list(range(next_out, next_out + run.plan.batch))
            yield from run.emit(centres, window, motion is not None)
            next_out += len(centres)
            evict()
    if run.count == 0 or run.plan is None:
        raise DerainError("no frames to derain: the input is empty")
    run.per_frame()
    while next_out < run.count:  # the stream has ended: N = count fixes the reflection at the far end
        centres = list(range(next_out, min(run.count, next_out + run.plan.batch)))
        yield from run.emit(centres, window, motion is not None)
        next_out += len(centres)
        evict()
