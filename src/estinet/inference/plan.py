"""Memory planning and tile margins: how frames of one size are processed (whole or in tiles, how many at once).

``tile=None`` chooses automatically: the ring buffer (exact size) plus the measured working memory per pixel
(:data:`WORK_BYTES_PER_PIXEL`) must fit in :data:`MEMORY_SAFETY` of the available memory (``MemAvailable`` of
``/proc/meminfo`` on CPU; free plus cached-but-unused memory on CUDA), else the largest tile that fits is used.
``tile=N`` forces N-pixel cores; ``tile=0`` forces whole frames. The measurements behind the constants are in
``docs/results/streaming.md`` (``benchmarks/bench_streaming.py --memory`` and ``--margins``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from estinet.config import ModelConfig, preset_config
from estinet.errors import DerainError
from estinet.models.estinet import PAD_MULTIPLE

__all__ = [
    "CPU_PARALLEL_MAX_WORK",
    "CUDA_BATCHES",
    "CUDA_HALF_WINDOW_BYTES_PER_PIXEL",
    "DEFAULT_CUDA_CAP_GIB",
    "MEMORY_SAFETY",
    "OFFICIAL_ALIGN",
    "OFFICIAL_TILE_MARGIN",
    "WORK_BYTES_PER_PIXEL",
    "Footprint",
    "Plan",
    "align_up",
    "available_memory",
    "default_tile_margin",
    "footprint",
    "plan_frames",
    "sicm_receptive_radius",
]

OFFICIAL_TILE_MARGIN = 256
"""Tile overlap per side for the ``official`` variant: a conservative guess, not a measurement (its encoder reaches
1/32 and its fine net stacks 135 3x3 convs at full resolution); check with ``bench_streaming.py --margins``."""

OFFICIAL_ALIGN = 32
"""Tile alignment of the ``official`` variant (its ResNet-18 encoder downsamples to 1/32)."""

MEMORY_SAFETY = 0.5
"""Fraction of the available memory the automatic plan may use (the rest is headroom for the allocator, the
decoder, the encoder and everything else on the machine)."""

WORK_BYTES_PER_PIXEL: dict[str, tuple[float, float]] = {
    "tiny": (220.0, 1200.0),
    "small": (700.0, 3300.0),
    "paper": (2600.0, 21000.0),
    "official": (0.0, 17000.0),
}
"""Peak working memory (bytes per padded pixel) of one frame's features and of one window's forward, by preset
(``official``: per window only), the ring buffer not included (its size is exact): the largest of the CPU and CUDA
(fp32 and fp16 autocast) measurements in docs/results/streaming.md, rounded up. Autocast keeps fp32 copies, so half
precision is not counted as halving it. Custom widths are scaled by their SICM feature channels."""

CUDA_HALF_WINDOW_BYTES_PER_PIXEL: dict[str, float] = {"tiny": 700.0, "small": 1400.0}
"""Peak working memory (bytes per padded pixel) of one window's forward on CUDA with fp16 autocast, the ring buffer
not included, measured on an H200 (docs/results/bench-gpu.md, notes): tiny 600 (eager, batch 8 at 640x480) and 664
(the capture of a batch-4 CUDA graph at 1920x1080, whose pool holds the same as an eager call), small 1300 (eager,
batch 8 at 640x480); rounded up. Below the cross-device figures of :data:`WORK_BYTES_PER_PIXEL`, which include fp32
CPU runs."""

_DEFAULT_AVAILABLE = 8 << 30  # assumed when /proc/meminfo cannot be read

CUDA_BATCHES = (32, 16, 8, 4, 2, 1)
"""Batches the automatic CUDA plan tries, largest first (with CUDA graphs the per-frame cost falls up to about 32)."""

DEFAULT_CUDA_CAP_GIB: dict[str, float] = {"tiny": 4.0, "small": 8.0}
"""The memory cap (GiB of estimated peak) of the automatic CUDA plan by preset when none is given."""


def align_up(value: int, multiple: int) -> int:
    """``value`` rounded up to a multiple of ``multiple``."""
    return -(-value // multiple) * multiple


def sicm_receptive_radius(config: ModelConfig) -> int:
    """Receptive-field radius (pixels) of ESTINet's per-frame terms (:meth:`ESTINet.frame_features`).

    SICM reaches ``34 + 60 * blocks_per_stage`` pixels: each residual block adds two 3x3 convs at 1/2, 1/4, 1/8 and
    1/16 resolution, i.e. 2 * (2 + 4 + 8 + 16) = 60 pixels. The per-frame half of the coarse head adds
    ``head_kernel // 2``; the ``sicm-2dcnn`` head (three 3x3 convs, per frame) adds 3. The support of the input
    gradient of one output pixel (``benchmarks/bench_streaming.py --receptive-field``) agrees or is a pixel smaller.
    """
    radius = 34 + 60 * config.blocks_per_stage
    if config.variant == "sicm-2dcnn":
        return radius + 3
    return radius + config.head_kernel // 2


def default_tile_margin(config: ModelConfig) -> int:
    """Tile overlap per side: :func:`sicm_receptive_radius` rounded up to 16 (96 for ``tiny``, 160 for ``small`` and
    ``paper``); :data:`OFFICIAL_TILE_MARGIN` for ``official``.

    With its whole receptive field inside every crop, a tile core's full-resolution per-frame term is exactly that
    of the whole frame. STIM's gate term (pooled by ``temporal_stride``) reaches 16 pixels further and the per-window
    part (STIM's recurrence, ESTM) further still, but their outermost pixels weigh little; the window's largest
    displacement is added to the window margin because alignment reads ``x(p + d)``. The error of tiled against
    untiled output by margin is tabled in docs/results/streaming.md (``bench_streaming.py --margins``): these
    margins keep it near 1e-5 or below, two orders under the 1e-3 requirement.
    """
    if config.variant == "official":
        return OFFICIAL_TILE_MARGIN
    return align_up(sicm_receptive_radius(config), PAD_MULTIPLE)


def available_memory(device: torch.device) -> int | None:
    """Bytes that inference may still allocate on ``device``.

    CPU: ``MemAvailable`` from ``/proc/meminfo`` (None where that file does not exist). CUDA: the driver's free memory
    plus what PyTorch's caching allocator holds but does not use. Other devices: None (unknown).
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type == "cpu":
        try:
            with open("/proc/meminfo", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


class Plan(NamedTuple):
    """How frames of one size are processed.

    Attributes:
        tile: tile core size in pixels, or None for whole frames.
        margin: tile overlap per side (before adding the window's displacement).
        batch: frames per per-frame call and windows per window call.
        capacity: frames the ring buffer holds at most.
        estimated_bytes: estimated peak memory of the plan.
        available_bytes: memory that was available when it was made (None: unknown).
    """

    tile: int | None
    margin: int
    batch: int
    capacity: int
    estimated_bytes: int
    available_bytes: int | None


@dataclass(frozen=True)
class Footprint:
    """What the memory plan needs to know about a prepared model.

    Attributes:
        window_size: frames per window.
        pad_multiple: frames are padded to multiples of this (1: not padded).
        align: tile cores start at multiples of this.
        stored_per_pixel: exact ring-buffer bytes of one frame per padded pixel (frame + per-frame terms).
        frame_work_per_pixel: working bytes per pixel of one frame's per-frame terms.
        window_work_per_pixel: working bytes per pixel of one window's forward.
        max_window_pixels: most pixels one batch of windows may have (None: no limit).
    """

    window_size: int
    pad_multiple: int
    align: int
    stored_per_pixel: float
    frame_work_per_pixel: float
    window_work_per_pixel: float
    max_window_pixels: int | None


def footprint(config: ModelConfig, *, window_size: int, official: bool, half: bool, cuda: bool = False) -> Footprint:
    """The :class:`Footprint` of a model with ``config`` (``official``: the authors' release).

    Args:
        config: the model's config.
        window_size: frames per window.
        official: the authors' release (frames unpadded, no per-frame terms, cores aligned to 32).
        half: half-precision autocast (per-frame terms stored in 2 bytes).
        cuda: the model runs on CUDA (with ``half``: the measured :data:`CUDA_HALF_WINDOW_BYTES_PER_PIXEL` for the
            presets that have one).
    """
    rainy = 3 * 4.0
    if official:
        _, wf = WORK_BYTES_PER_PIXEL["official"]
        # the release's decoder upsamples 512-channel maps of all 5 frames to full resolution; PyTorch's channels_last
        # (NHWC) upsampling kernels index with 32 bits, so a batch of windows must stay below 2^31 elements there
        return Footprint(window_size, 1, OFFICIAL_ALIGN, rainy, 0.0, wf, (2**31 - 1) // (window_size * 512))
    element = 2.0 if half else 4.0
    low = 0.0 if config.variant == "sicm-2dcnn" else 16 * config.hidden_channels / config.temporal_stride**2
    ff, wf = WORK_BYTES_PER_PIXEL[config.preset]
    if cuda and half and config.preset in CUDA_HALF_WINDOW_BYTES_PER_PIXEL:
        wf = CUDA_HALF_WINDOW_BYTES_PER_PIXEL[config.preset]
    scale = config.feature_channels / preset_config("estinet", config.preset).feature_channels
    stored = rainy + element * (3 + low)  # FrameFeatures.full is the 3-channel per-frame residual term
    return Footprint(window_size, PAD_MULTIPLE, PAD_MULTIPLE, stored, ff * scale, wf * scale, None)


CPU_PARALLEL_MAX_WORK = 2 * 640 * 480 * 8
"""On CPUs, frames whose padded pixels times the model's SICM base channels (a measure of how long each operation
runs) are at most this are computed one per frame-parallel worker (:class:`~estinet.inference.tiles.FrameWorkers`);
larger ones one at a time, each operation on all threads. Measured on the 2-core AMD EPYC VM (``estinet bench NAME
--workers 1`` / ``2``, streaming): ``tiny`` (8 channels) at 640x480 1.3-1.4x faster with two workers, at 1280x720
1.07-1.12x, at 1920x1080 0.8x; ``small`` (24 channels) at 640x480 0.93x. Long operations keep intra-op threads
busy, and two frames' working sets no longer fit the caches."""


def _batch_options(batch: int | None, device: torch.device, workers: int = 1) -> list[int]:
    """Batches to try, largest first: a given batch halved while it does not fit; 32..1 on CUDA; on CPUs the number
    of frame-parallel workers, halved."""
    if batch is None and device.type != "cuda":
        batch = workers
    if batch is not None:
        return sorted({max(1, batch >> k) for k in range(batch.bit_length())}, reverse=True)
    return list(CUDA_BATCHES)


def plan_frames(
    height: int,
    width: int,
    fp: Footprint,
    *,
    tile: int | None,
    margin: int,
    batch: int | None,
    device: torch.device,
    available: int | None = None,
    cap: int | None = None,
    workers: int = 1,
) -> Plan:
    """Choose tiles and batch for frames of ``height`` x ``width``.

    Args:
        height: frame height in pixels.
        width: frame width in pixels.
        fp: the model's :class:`Footprint`.
        tile: None (automatic), 0 (whole frames) or the largest core size (a multiple of ``fp.align``).
        margin: tile overlap per side.
        batch: the largest batch to use (None: automatic).
        device: where it runs.
        available: bytes available (default: :func:`available_memory` of ``device``).
        cap: the most bytes the plan's estimated peak may reach (``--max-memory``), or None (no cap beyond
            :data:`MEMORY_SAFETY` of the available memory).
        workers: on CPUs, frames (windows) computed at once by frame-parallel workers: the automatic batch (each
            worker holds one frame's or one window's working memory, as a batch does).

    Returns:
        The :class:`Plan`.

    Raises:
        DerainError: when even the ring buffer or the smallest tile does not fit.
    """
    if available is None:
        available = available_memory(device)
    budget = (available if available is not None else _DEFAULT_AVAILABLE) * MEMORY_SAFETY
    if cap is not None:
        budget = min(budget, cap)
    align = fp.align
    hp, wp = align_up(height, fp.pad_multiple), align_up(width, fp.pad_multiple)
    half_window = fp.window_size // 2
    stored = fp.stored_per_pixel * hp * wp
    work = max(fp.frame_work_per_pixel, fp.window_work_per_pixel)

    def crop_pixels(size: int | None) -> int:
        if size is None:
            return hp * wp
        side = size + 2 * margin + 2 * align  # headroom for the displacement added to window margins
        return min(side, hp) * min(side, wp)

    def need(count: int, size: int | None) -> int:
        px = crop_pixels(size)
        if fp.max_window_pixels is not None and count * px > fp.max_window_pixels:
            return 1 << 62  # never fits
        return int((2 * half_window + 2 * count - 1) * stored + count * work * px)

    def make(size: int | None, count: int) -> Plan:
        return Plan(size, margin, count, 2 * half_window + 2 * count - 1, need(count, size), available)

    batches = _batch_options(batch, device, workers)
    if tile is not None:  # forced: whole frames (0) or a given tile size
        size = None if tile == 0 or tile >= max(hp, wp) else tile
        for count in batches:
            if need(count, size) <= budget:
                return make(size, count)
        if fp.max_window_pixels is not None and crop_pixels(size) > fp.max_window_pixels:
            largest = int(math.sqrt(fp.max_window_pixels)) // 32 * 32
            raise DerainError(
                f"official-variant windows of {width}x{height} exceed PyTorch's 2^31-element limit for one "
                f"tensor; pass tile=None (automatic) or a tile of at most {largest}"
            )
        return make(size, batches[-1])
    for count in batches:
        if need(count, None) <= budget:
            return make(None, count)
    count = batches[-1]
    size = align_up(max(hp, wp), align)
    while size > 2 * align:
        size = max(2 * align, min(size - align, align_up(size * 3 // 4, align)))  # shrink by ~1/4 each step
        if need(count, size) <= budget:
            return make(size, count)
    gib = need(count, size) / 2**30
    limit = (
        f"the {budget / 2**30:.1f} GiB memory cap (max_memory; raise it)"
        if cap is not None and cap <= budget
        else f"{budget / 2**30:.1f} GiB ({MEMORY_SAFETY:.0%} of what is available)"
    )
    raise DerainError(
        f"frames of {width}x{height} need about {gib:.1f} GiB even in {size}-pixel tiles, but only {limit} may be "
        "used; use a smaller preset, half precision (half=True), a GPU with more memory, or downscale the video"
    )
