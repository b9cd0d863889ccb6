"""Streaming sliding-window inference, overlapping tiles, and the :class:`Derainer` API (SPEC §2).

Streaming
    Frames are read one at a time and derained frames are written one at a time, so memory stays flat in the video's
    length. Each incoming frame's displacement to the previous frame is estimated once (:class:`StreamingMotion`) and
    accumulated into a float64 position relative to the first frame; the frame is padded to a multiple of 16 once
    and its per-frame terms (:meth:`ESTINet.frame_features`: SICM, the per-frame half of the coarse head, STIM's
    frame gates) are computed once. Frame, terms and position go into a small ring buffer. Output frame ``t`` uses the
    window ``window_indices(N, t, size)`` (reflection at the ends: ``[2, 1, 0, 1, 2]`` for ``t = 0``) and is computed
    as soon as frame ``t + size // 2`` has arrived (from then on its reflected indices cannot depend on the video's
    length N) or when the stream ends. A window's displacements relative to its centre are ``position[j] -
    position[t]`` for the *real* frame ``j`` behind each entry, so a reflected neighbour is aligned exactly as that
    real frame would be. Only :meth:`ESTINet.window_forward` (alignment, STIM, head, ESTM) runs per window. With
    ``batch`` B > 1 the per-frame work runs on groups of B frames and B consecutive windows share one
    ``window_forward`` call (this matters on GPUs, where small calls are launch-bound). The ring buffer holds at most
    ``2 * (size // 2) + 2 * B - 1`` frames (5 for the 5-frame models with ``batch=1``).

    The per-window reference (:meth:`Derainer.derain_per_window`) recomputes everything for every window:
    ``model.forward`` on the reflected window with the displacements from the same positions (pair displacements of
    the whole clip by :func:`pair_displacements`, accumulated in float64). Streaming equals it to about 2e-6.

    The ``official`` variant (the authors' release) has no per-frame/per-window split: the ring buffer holds the raw
    frames and every window runs the plain ``forward``. Its windows are our reflection by default, or the release's
    own padding rule (:func:`estinet.models.official.official_windows`) with ``official_windows=True``.

Tiles
    Frames that do not fit in memory are processed in overlapping tiles; motion is still estimated on whole frames.
    Tile cores start at multiples of 16 (32 for ``official``, whose encoder reaches 1/32) of the padded frame and
    margins are multiples of 16, so each tile sees the whole frame's downsampling grid, and a tile at the frame's edge
    sees the frame's own edge. The per-frame terms are computed per tile (crop = core + margin on each side, clipped
    to the frame) and the cores pasted into whole-frame buffers; the per-window part runs per tile again, with the
    margin widened by the window's largest displacement, and the cores of the refined frames are pasted back. The
    margin is the receptive radius of the per-frame terms (:func:`default_tile_margin`: 96 px for ``tiny``, 160 for
    ``small`` and ``paper``; measured error against untiled output about 1e-6 to 1e-5, table there).

    ``tile=None`` chooses automatically: the ring buffer (exact size) plus the measured working memory per pixel
    (:data:`WORK_BYTES_PER_PIXEL`) must fit in :data:`MEMORY_SAFETY` of the available memory (``MemAvailable`` of
    ``/proc/meminfo`` on CPU; free plus cached-but-unused memory on CUDA), else the largest tile that fits is used.
    ``tile=N`` forces N-pixel cores; ``tile=0`` forces whole frames.

Speed
    Convolution weights are put in channels_last layout by default on every device (4-D weights only; the 3x3x3
    weights of ESTM's :class:`~estinet.models.estm.TemporalConv3d`, which it computes as one 2-D conv per temporal
    tap, get strides that make each tap's 2-D slice channels_last; real ``nn.Conv3d`` weights are left alone). On the
    small channel counts of ``tiny`` this measured 1.3-1.5x faster on a 2-core AVX-512 CPU, where oneDNN's NCHW path
    reorders every activation. Half precision: fp16 autocast on CUDA (default), bf16 autocast on CPU with
    ``half=True`` (off by default). Measured numbers and where the time goes: ``benchmarks/bench_streaming.py``.
"""

from __future__ import annotations

import contextlib
import copy
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from estinet import runtime
from estinet.config import ModelConfig, preset_config
from estinet.data.windows import window_indices
from estinet.errors import EstinetError
from estinet.models.estinet import PAD_MULTIPLE, ESTINet, pad_to_multiple
from estinet.models.estm import TemporalConv3d
from estinet.models.motion import StreamingMotion, centre_shifts, pair_displacements, translate_into
from estinet.models.official import OfficialESTINet

if TYPE_CHECKING:
    from estinet.data.video_io import FrameSink

__all__ = [
    "MEMORY_SAFETY",
    "OFFICIAL_TILE_MARGIN",
    "WORK_BYTES_PER_PIXEL",
    "DerainError",
    "Derainer",
    "Plan",
    "StreamStats",
    "available_memory",
    "default_tile_margin",
    "derain_main",
    "official_window",
    "resolve_device",
    "sicm_receptive_radius",
    "tile_spans",
]

OFFICIAL_TILE_MARGIN = 256
"""Tile overlap per side for the ``official`` variant. Not measured (its tiled run did not finish inside the GPU time
this was written with); the release's ResNet-18 encoder reaches 1/32 and its fine net stacks 135 3x3 convs at full
resolution, so this is a conservative guess: check ``benchmarks/bench_streaming.py --margins --presets official``."""


def sicm_receptive_radius(config: ModelConfig) -> int:
    """Receptive-field radius (pixels) of ESTINet's per-frame terms (:meth:`ESTINet.frame_features`).

    SICM reaches ``34 + 60 * blocks_per_stage`` pixels: each residual block adds two 3x3 convs at 1/2, 1/4, 1/8 and
    1/16 resolution, i.e. 2 * (2 + 4 + 8 + 16) = 60 pixels. The per-frame half of the coarse head adds
    ``head_kernel // 2``; the ``sicm-2dcnn`` head (three 3x3 convs, per frame) adds 3. Measured as the support of the
    input gradient of one output pixel (``benchmarks/bench_streaming.py --receptive-field``): 94 pixels for ``tiny``
    (1 block per stage) and 154 for ``small`` (2 blocks), so the rule is exact or a pixel generous.
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
    displacement is added to the window margin because alignment reads ``x(p + d)``. Measured maximum
    error of tiled against untiled output (H100, fp32 without TF32, random weights, 480x640 frames panning 1.5 px per
    frame, 128-pixel tile cores, ``benchmarks/bench_streaming.py --margins``):

    ======  =======  =======  =======  =======  =======  =======  =======
    margin  0        32       64       96       128      160      192
    ======  =======  =======  =======  =======  =======  =======  =======
    tiny    7.3e-01  3.0e-01  1.6e-02  2.8e-06  1.3e-06  1.3e-06  1.2e-06
    small   1.0e+00  1.0e+00  6.8e-01  5.7e-02  9.6e-04  1.5e-05  1.5e-05
    paper   7.9e-01  3.0e-01  1.2e-01  1.7e-02  2.7e-04  1.7e-06  1.8e-06
    ======  =======  =======  =======  =======  =======  =======  =======

    The chosen margins (96, 160, 160) keep the error near 1e-5 or below, two orders under the 1e-3 requirement.
    """
    if config.variant == "official":
        return OFFICIAL_TILE_MARGIN
    return _align_up(sicm_receptive_radius(config), PAD_MULTIPLE)


MEMORY_SAFETY = 0.5
"""Fraction of the available memory the automatic plan may use (the rest is headroom for the allocator, the
decoder, the encoder and everything else on the machine)."""

OFFICIAL_ALIGN = 32
"""Tile alignment of the ``official`` variant (its ResNet-18 encoder downsamples to 1/32)."""

WORK_BYTES_PER_PIXEL: dict[str, tuple[float, float]] = {
    "tiny": (220.0, 1200.0),
    "small": (700.0, 3300.0),
    "paper": (2600.0, 21000.0),
    "official": (0.0, 17000.0),
}
"""Peak working memory (bytes per padded pixel) of one frame's features and of one window's forward, by preset
(``official``: per window only), the ring buffer not included (its size is exact). ``benchmarks/bench_streaming.py
--memory`` measures the slope between 240x320 and 480x640 frames: peak RSS on a CPU (tiny 171 / 1036, small 656 /
2741), the CUDA allocator's peak on an H100 in fp32 (tiny 207 / 1058, small 654 / 3132, paper 2545 / 20600, official
13072 per window) and under fp16 autocast (tiny 175 / 1110, small 530 / 1763, paper 1807 / 10351, official 16659:
autocast keeps fp32 copies, so half precision is not counted as halving it). The values are the largest of these,
rounded up. Custom widths are scaled by their SICM feature channels relative to the preset's."""

_DEFAULT_AVAILABLE = 8 << 30  # assumed when /proc/meminfo cannot be read


class DerainError(EstinetError, ValueError):
    """Inputs, options or resources that inference cannot work with; the message names the value and the fix."""


# ---------------------------------------------------------------------------------------------------------------------
# devices, memory, tiles
# ---------------------------------------------------------------------------------------------------------------------


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """:func:`estinet.runtime.resolve_device` raising :class:`DerainError` (``"auto"``: CUDA when available)."""
    return runtime.resolve_device(device, error=DerainError)


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


def _align_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


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
    core = _align_up(-(-length // count), align)
    spans = []
    for start in range(0, length, core):
        stop = min(length, start + core)
        spans.append((start, stop, max(0, start - margin), min(length, stop + margin)))
    return spans


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


# ---------------------------------------------------------------------------------------------------------------------
# plans and statistics
# ---------------------------------------------------------------------------------------------------------------------


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


class _Slot(NamedTuple):
    """One buffered frame: (padded) rainy frame (3, Hp, Wp), per-frame terms ``full`` (3, Hp, Wp) and ``low``
    (C, Hp/s, Wp/s) (empty for ``official``), and its position (2,) float64 on the CPU."""

    rainy: Tensor
    full: Tensor
    low: Tensor
    position: Tensor


# ---------------------------------------------------------------------------------------------------------------------
# model preparation
# ---------------------------------------------------------------------------------------------------------------------


def _channels_last_taps(weight: Tensor) -> Tensor:
    """A copy of a (O, C, 3, 3, 3) TemporalConv3d weight whose per-tap 2-D slices ``[:, :, k]`` are channels_last."""
    out_ch, in_ch, _, kh, kw = weight.shape
    strides = (kh * kw * in_ch, 1, out_ch * kh * kw * in_ch, kw * in_ch, in_ch)
    strided = torch.empty_strided(weight.shape, strides, dtype=weight.dtype, device=weight.device)
    strided.copy_(weight)
    return strided


def _prepare_model(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """Move to ``device``, eval mode, no gradients; optionally channels_last convolution weights."""
    model = model.to(device).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    if channels_last:
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if not isinstance(weight, Tensor):
                continue
            if isinstance(module, TemporalConv3d) and weight.shape[2:] == (3, 3, 3):
                module.weight.data = _channels_last_taps(weight.data)
            elif weight.dim() == 4:  # Conv2d / ConvTranspose2d; 5-D Conv3d weights cannot be channels_last
                module.weight.data = weight.data.contiguous(memory_format=torch.channels_last)
    return model


# ---------------------------------------------------------------------------------------------------------------------
# the Derainer
# ---------------------------------------------------------------------------------------------------------------------


class Derainer:
    """Remove rain from videos with a trained ESTINet (or any variant, or the authors' release).

    Args:
        weights: a shipped name (``tiny``, ...), a ``.safetensors`` file, a training checkpoint, ``COARSE,FINE`` for
            the authors' two released checkpoints (all through :func:`estinet.checkpoint.load_model`, which never
            unpickles arbitrary objects), or an already-built :class:`ESTINet` / :class:`OfficialESTINet` (copied,
            the caller's module is left untouched).
        config: the config of a model object (defaults to ``model.config``; ``official`` needs none).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        tile: tile core size in pixels (rounded up to a multiple of 16, or 32 for ``official``); 0 forces whole
            frames; None chooses from the available memory.
        tile_margin: tile overlap per side in pixels (default :func:`default_tile_margin`: the receptive radius of
            the per-frame features).
        half: half precision: fp16 autocast on CUDA, bf16 autocast on CPU. None: on for CUDA, off for CPU.
        batch: at most this many frames per per-frame call and windows per ``window_forward`` call (halved while it
            does not fit in memory; None: 1 on CPU, where 2 measured slower, and on CUDA the largest of 8, 4, 2, 1
            that fits). Outputs do not depend on it beyond float rounding.
        threads: ``torch.set_num_threads(threads)`` (process-wide) when given.
        channels_last: channels_last convolution weights (None: on; measured 1.3-1.5x faster on a CPU for ``tiny``,
            and the usual layout for convolutions on GPUs).
        motion: global motion compensation (None: the model's config; always off for ``official``).
        official_windows: for ``official``, use the release's window padding instead of reflection.
        profile: synchronise CUDA around each stage so that :attr:`last_stats` times are exact.
        variant: the architecture the weights must have (e.g. ``estinet``, ``official``); None accepts any.
        keep_freed_memory: on CPU, make glibc keep freed memory for reuse (process-wide, see
            :mod:`estinet.allocator`).

    Raises:
        WeightsError: weights that cannot be loaded (missing, corrupt, another architecture).
        DerainError: invalid options.
        TypeError: ``weights`` of an unsupported type.
    """

    def __init__(
        self,
        weights: str | Path | nn.Module = "tiny",
        *,
        config: ModelConfig | None = None,
        device: str | torch.device = "auto",
        tile: int | None = None,
        tile_margin: int | None = None,
        half: bool | None = None,
        batch: int | None = None,
        threads: int | None = None,
        channels_last: bool | None = None,
        motion: bool | None = None,
        official_windows: bool = False,
        profile: bool = False,
        variant: str | None = None,
        keep_freed_memory: bool = True,
    ) -> None:
        if threads is not None:
            if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
                raise DerainError(f"threads must be a positive integer, got {threads!r}")
            torch.set_num_threads(threads)
        self.device = resolve_device(device)
        if keep_freed_memory and self.device.type == "cpu":
            from estinet.allocator import keep_freed_memory as keep

            keep()
        if isinstance(weights, nn.Module):
            model = copy.deepcopy(weights)
            if isinstance(model, OfficialESTINet):
                config = config or preset_config("official", "paper")
            elif isinstance(model, ESTINet):
                if config is not None and config != model.config:
                    raise DerainError(
                        f"config {config} does not describe the given model (its config is {model.config}); "
                        "leave config=None"
                    )
                config = model.config
            else:
                raise TypeError(
                    f"weights must be a weights name/path or an ESTINet/OfficialESTINet module, got "
                    f"{type(weights).__name__}; build models with estinet.models.build_model"
                )
        elif isinstance(weights, str | Path):
            if config is not None:
                raise DerainError("config is only used with a model object; weights files carry their own config")
            from estinet.checkpoint import load_model

            model, config = load_model(weights, device="cpu")
        else:
            raise TypeError(
                f"weights must be a shipped name, a file path, 'COARSE,FINE' or a model, got {type(weights).__name__}"
            )
        if variant is not None and variant != config.variant:
            from estinet.checkpoint import WeightsError

            raise WeightsError(
                f"weights {weights if isinstance(weights, str | Path) else type(weights).__name__!s} are a "
                f"{config.variant!r} model ({config.preset} preset), not {variant!r}; pass weights trained for "
                f"{variant!r} or drop the variant option"
            )
        self.config: ModelConfig = config
        self.is_official = isinstance(model, OfficialESTINet)
        self.window_size = int(model.num_frames)
        self.centre = int(model.centre)
        self.align = OFFICIAL_ALIGN if self.is_official else PAD_MULTIPLE
        if motion and self.is_official:
            raise DerainError("the official variant has no motion compensation; pass motion=None or False")
        if official_windows and not self.is_official:
            raise DerainError(f"official_windows only applies to the official variant, not {config.variant!r}")
        self.official_windows = bool(official_windows)
        self.motion = False if self.is_official else bool(config.motion_compensation if motion is None else motion)
        self.motion = self.motion and self.window_size > 1
        self.tile = self._check_tile(tile)
        margin = default_tile_margin(config) if tile_margin is None else tile_margin
        if isinstance(margin, bool) or not isinstance(margin, int) or margin < 0:
            raise DerainError(f"tile_margin must be a non-negative integer (pixels), got {tile_margin!r}")
        self.tile_margin = _align_up(margin, self.align)
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
            raise DerainError(f"batch must be a positive integer (windows per forward), got {batch!r}")
        self.batch = batch
        if half is None:
            half = self.device.type == "cuda"
        self.amp_dtype: torch.dtype | None = None
        if half:
            self.amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        self.channels_last = True if channels_last is None else bool(channels_last)
        self.profile = profile
        self.model = _prepare_model(model, self.device, self.channels_last)
        gm = getattr(self.model, "motion", None)
        self._motion_args: dict[str, Any] = {
            "max_shift": getattr(gm, "max_shift", None),
            "max_size": getattr(gm, "max_size", 256),
            "min_confidence": getattr(gm, "min_confidence", 0.1),
        }
        self.last_stats = StreamStats()
        """Statistics of the latest (or running) streaming call."""

    def _check_tile(self, tile: int | None) -> int | None:
        if tile is None:
            return None
        if isinstance(tile, bool) or not isinstance(tile, int) or tile < 0:
            raise DerainError(f"tile must be None (automatic), 0 (whole frames) or a positive size, got {tile!r}")
        return 0 if tile == 0 else _align_up(tile, self.align)

    def __repr__(self) -> str:
        precision = {None: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[self.amp_dtype]
        return (
            f"Derainer(variant={self.config.variant!r}, preset={self.config.preset!r}, device={str(self.device)!r}, "
            f"precision={precision}, motion={self.motion}, tile={self.tile}, batch={self.batch})"
        )

    # -----------------------------------------------------------------------------------------------------------------
    # memory plan
    # -----------------------------------------------------------------------------------------------------------------
    def _stored_bytes_per_pixel(self) -> float:
        """Exact ring-buffer bytes per padded pixel of one frame."""
        rainy = 3 * 4.0
        if self.is_official:
            return rainy
        element = 2.0 if self.amp_dtype is not None else 4.0
        cfg = self.config
        low = 0.0
        if cfg.variant != "sicm-2dcnn":
            low = 16 * cfg.hidden_channels / cfg.temporal_stride**2
        return rainy + element * (3 + low)  # FrameFeatures.full is the 3-channel per-frame residual term

    def _work_bytes_per_pixel(self) -> tuple[float, float]:
        """Working memory (bytes per pixel) of one frame's features and of one window's forward."""
        if self.is_official:
            ff, wf = WORK_BYTES_PER_PIXEL["official"]
        else:
            ff, wf = WORK_BYTES_PER_PIXEL[self.config.preset]
            reference = preset_config("estinet", self.config.preset).feature_channels
            scale = self.config.feature_channels / reference
            ff, wf = ff * scale, wf * scale
        return ff, wf

    def plan_for(self, height: int, width: int, available: int | None = None) -> Plan:
        """Choose tiles and batch for frames of ``height`` x ``width``.

        Args:
            height: frame height in pixels.
            width: frame width in pixels.
            available: bytes available (default: :func:`available_memory` of the device).

        Returns:
            The :class:`Plan`.

        Raises:
            DerainError: when even the ring buffer or the smallest tile does not fit.
        """
        if available is None:
            available = available_memory(self.device)
        budget = (available if available is not None else _DEFAULT_AVAILABLE) * MEMORY_SAFETY
        align = self.align
        hp, wp = (height, width) if self.is_official else (_align_up(height, 16), _align_up(width, 16))
        half_window = self.window_size // 2
        stored = self._stored_bytes_per_pixel() * hp * wp
        ff, wf = self._work_bytes_per_pixel()
        margin = self.tile_margin

        def crop_pixels(tile: int | None) -> int:
            if tile is None:
                return hp * wp
            side = tile + 2 * margin + 2 * align  # headroom for the displacement added to window margins
            return min(side, hp) * min(side, wp)

        # the release's decoder upsamples 512-channel maps of all 5 frames to full resolution; PyTorch's channels_last
        # (NHWC) upsampling kernels index with 32 bits, so a batch of windows must stay below 2^31 elements there
        max_pixels = (2**31 - 1) // (self.window_size * 512) if self.is_official else None

        def need(batch: int, tile: int | None) -> int:
            px = crop_pixels(tile)
            if max_pixels is not None and batch * px > max_pixels:
                return 1 << 62  # never fits
            return int((2 * half_window + 2 * batch - 1) * stored + batch * max(ff, wf) * px)

        if self.batch is not None:  # an upper bound: halved while it does not fit
            batches = sorted({max(1, self.batch >> k) for k in range(self.batch.bit_length())}, reverse=True)
        elif self.device.type == "cuda":
            batches = [8, 4, 2, 1]
        else:
            batches = [1]

        def make(tile: int | None, batch: int) -> Plan:
            return Plan(tile, margin, batch, 2 * half_window + 2 * batch - 1, need(batch, tile), available)

        if self.tile is not None:  # forced: whole frames (0) or a given tile size
            tile = None if self.tile == 0 or self.tile >= max(hp, wp) else self.tile
            for batch in batches:
                if need(batch, tile) <= budget:
                    return make(tile, batch)
            if max_pixels is not None and crop_pixels(tile) > max_pixels:
                raise DerainError(
                    f"official-variant windows of {width}x{height} exceed PyTorch's 2^31-element limit for one "
                    f"tensor; pass tile=None (automatic) or a tile of at most {int(math.sqrt(max_pixels)) // 32 * 32}"
                )
            return make(tile, batches[-1])
        for batch in batches:
            if need(batch, None) <= budget:
                return make(None, batch)
        batch = batches[-1]
        tile = _align_up(max(hp, wp), align)
        while tile > 2 * align:
            tile = max(2 * align, min(tile - align, _align_up(tile * 3 // 4, align)))  # shrink by ~1/4 each step
            if need(batch, tile) <= budget:
                return make(tile, batch)
        gib = need(batch, tile) / 2**30
        raise DerainError(
            f"frames of {width}x{height} need about {gib:.1f} GiB even in {tile}-pixel tiles, but only "
            f"{budget / 2**30:.1f} GiB ({MEMORY_SAFETY:.0%} of what is available) may be used; use a smaller preset, "
            "half precision (half=True), a GPU with more memory, or downscale the video"
        )

    # -----------------------------------------------------------------------------------------------------------------
    # helpers
    # -----------------------------------------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        return runtime.autocast(self.device, self.amp_dtype)

    @contextlib.contextmanager
    def _clock(self, stats: StreamStats, stage: str) -> Iterator[None]:
        sync = self.profile and self.device.type == "cuda"
        if sync:
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            if sync:
                torch.cuda.synchronize(self.device)
            stats.seconds[stage] = stats.seconds.get(stage, 0.0) + time.perf_counter() - start

    def _window(self, num_frames: int, centre: int) -> list[int]:
        if self.is_official and self.official_windows:
            return official_window(num_frames, centre)
        return window_indices(num_frames, centre, self.window_size, "reflect")

    @staticmethod
    def _displacements(positions: Mapping[int, Tensor], windows: list[list[int]], centres: list[int]) -> Tensor:
        """(B, T, 2) float32 displacements ``position[j] - position[t]`` from float64 positions (2,) per frame.

        Reflected entries of a window map to real frames, so each uses that real frame's position.
        """
        pairs = zip(windows, centres, strict=True)
        rows = [torch.stack([positions[j] - positions[t] for j in window]) for window, t in pairs]
        return torch.stack(rows).float()

    # -----------------------------------------------------------------------------------------------------------------
    # per-frame and per-window work
    # -----------------------------------------------------------------------------------------------------------------
    def _features(self, padded: Tensor, plan: Plan) -> tuple[Tensor, Tensor]:
        """Per-frame terms of padded frames (N, 3, Hp, Wp), whole or in tiles (pasting the cores).

        Returns:
            ``full`` (N, 3, Hp, Wp) and ``low`` (N, 16*hidden, Hp/s, Wp/s) (empty for ``sicm-2dcnn``).
        """
        model = self.model
        assert isinstance(model, ESTINet)
        hp, wp = padded.shape[-2:]
        ys = tile_spans(hp, plan.tile, plan.margin, self.align)
        xs = tile_spans(wp, plan.tile, plan.margin, self.align)
        if len(ys) == 1 and len(xs) == 1:
            with self._autocast():
                feats = model.frame_features(padded)
            return feats.full, feats.low
        s = self.config.temporal_stride
        full = low = None
        for y0, y1, py0, py1 in ys:
            for x0, x1, px0, px1 in xs:
                with self._autocast():
                    feats = model.frame_features(padded[:, :, py0:py1, px0:px1])
                if full is None or low is None:
                    n = padded.shape[0]
                    full = feats.full.new_empty(n, feats.full.shape[1], hp, wp)
                    low = (
                        feats.low.new_empty(n, feats.low.shape[1], hp // s, wp // s) if feats.low.numel() else feats.low
                    )
                full[:, :, y0:y1, x0:x1] = feats.full[:, :, y0 - py0 : y1 - py0, x0 - px0 : x1 - px0]
                if low.numel():
                    low[:, :, y0 // s : y1 // s, x0 // s : x1 // s] = feats.low[
                        :, :, (y0 - py0) // s : (y1 - py0) // s, (x0 - px0) // s : (x1 - px0) // s
                    ]
        assert full is not None and low is not None
        return full, low

    def _windows_forward(
        self, slots: dict[int, _Slot], windows: list[list[int]], disp: Tensor | None, plan: Plan
    ) -> Tensor:
        """Refined centre frames (B, 3, Hp, Wp) (padded; unclamped for ESTINet) of a batch of windows."""
        model = self.model
        first = slots[windows[0][0]].rainy
        hp, wp = first.shape[-2:]
        extra = 0
        if disp is not None and plan.tile is not None:
            extra = math.ceil(float(disp.abs().max()))
        margin = _align_up(plan.margin + extra, self.align)
        ys = tile_spans(hp, plan.tile, margin, self.align)
        xs = tile_spans(wp, plan.tile, margin, self.align)
        disp_dev = disp.to(self.device) if disp is not None else None

        s = self.config.temporal_stride
        shifts: dict[float, list[list[float]]] = {}
        if disp_dev is not None and not self.is_official:
            # the shifts align_to_centre applies (so streaming equals the per-window forward)
            for scale in (1.0, 1.0 / s):
                shifts[scale] = centre_shifts(disp_dev, scale).detach().to("cpu", torch.float64).tolist()

        def gather(attr: str, y0: int, y1: int, x0: int, x1: int, scale: float) -> Tensor:
            """(B, T, C, y1 - y0, x1 - x0): the windows' crops of a slot field, translated onto their centres."""
            crops = [[getattr(slots[j], attr)[:, y0:y1, x0:x1] for j in w] for w in windows]
            if not shifts:
                return torch.stack([torch.stack(row) for row in crops])
            first_crop = crops[0][0]
            out = first_crop.new_empty(len(windows), len(windows[0]), *first_crop.shape)
            scratch = torch.empty_like(out[0, 0])
            for b, row in enumerate(crops):
                for t, crop in enumerate(row):
                    dy, dx = shifts[scale][b * len(row) + t]
                    translate_into(out[b, t], crop, dy, dx, scratch)
            return out

        def run(py0: int, py1: int, px0: int, px1: int) -> Tensor:
            if self.is_official:
                rainy = torch.stack([torch.stack([slots[j].rainy[:, py0:py1, px0:px1] for j in w]) for w in windows])
                with self._autocast():
                    return model(rainy)[1]
            # aligned while gathered: one copy per frame instead of a stack and then a translation
            rainy = gather("rainy", py0, py1, px0, px1, 1.0)
            full = gather("full", py0, py1, px0, px1, 1.0)
            if slots[windows[0][0]].low.numel():
                low = gather("low", py0 // s, py1 // s, px0 // s, px1 // s, 1.0 / s)
            else:
                low = full.new_zeros(0)
            assert isinstance(model, ESTINet)
            with self._autocast():
                return model.window_forward(rainy, full, low, None)[1]

        if len(ys) == 1 and len(xs) == 1:
            return run(0, hp, 0, wp)
        out = first.new_empty(len(windows), 3, hp, wp)
        for y0, y1, py0, py1 in ys:
            for x0, x1, px0, px1 in xs:
                part = run(py0, py1, px0, px1)
                out[:, :, y0:y1, x0:x1] = part[:, :, y0 - py0 : y1 - py0, x0 - px0 : x1 - px0]
        return out

    # -----------------------------------------------------------------------------------------------------------------
    # streaming
    # -----------------------------------------------------------------------------------------------------------------
    def derain_tensors(self, frames: Iterable[Tensor]) -> Iterator[Tensor]:
        """Derain a stream of frames (the core generator; see the module docstring).

        Args:
            frames: (3, H, W) float tensors in [0, 1] on any device, all of one size.

        Yields:
            (3, H, W) float32 derained frames in [0, 1] on :attr:`device`, one per input frame, in order.

        Raises:
            DerainError: for an empty stream or a frame of another shape.
        """
        stats = StreamStats()
        self.last_stats = stats
        half_window = self.window_size // 2
        slots: dict[int, _Slot] = {}
        pending: list[tuple[Tensor, Tensor]] = []  # (frame, position) of frames awaiting their per-frame work
        motion = StreamingMotion(**self._motion_args) if self.motion else None
        position = torch.zeros(2, dtype=torch.float64)
        plan: Plan | None = None
        size: tuple[int, int] | None = None
        count = 0  # frames read
        next_out = 0  # next frame to output

        def evict() -> None:
            for index in [k for k in slots if k < next_out - half_window]:
                del slots[index]

        for frame in frames:
            frame = self._check_tensor(frame, count, size)
            if plan is None:
                size = (int(frame.shape[-2]), int(frame.shape[-1]))
                plan = self.plan_for(*size)
                stats.plan = plan
            if motion is not None:
                with self._clock(stats, "motion"), torch.inference_mode():
                    position = position + motion.push(frame[None])[0].to("cpu", torch.float64)  # (2,)
            pending.append((frame, position))
            count += 1
            stats.frames_in = count
            if len(pending) < plan.batch:  # per-frame work runs on groups of `batch` frames
                continue
            self._per_frame(pending, count, slots, plan, stats)
            # windows next_out .. next_out + batch - 1 are final once frame (last centre + half_window) is in:
            # their reflected indices cannot depend on the video's length any more
            while next_out + plan.batch - 1 + half_window <= count - 1:
                centres = list(range(next_out, next_out + plan.batch))
                yield from self._emit(slots, centres, count, plan, size, stats)
                next_out += len(centres)
                evict()
        if count == 0 or plan is None or size is None:
            raise DerainError("no frames to derain: the input is empty")
        self._per_frame(pending, count, slots, plan, stats)
        while next_out < count:  # the stream has ended: N = count fixes the reflection at the far end
            centres = list(range(next_out, min(count, next_out + plan.batch)))
            yield from self._emit(slots, centres, count, plan, size, stats)
            next_out += len(centres)
            evict()

    def _check_tensor(self, frame: Tensor, index: int, size: tuple[int, int] | None) -> Tensor:
        if not isinstance(frame, Tensor) or frame.dim() != 3 or frame.shape[0] != 3:
            shape = tuple(frame.shape) if isinstance(frame, Tensor) else type(frame).__name__
            raise DerainError(f"frame {index} must be a (3, H, W) tensor in [0, 1], got {shape}")
        if not frame.is_floating_point():
            raise DerainError(f"frame {index} must be floating point in [0, 1], got {frame.dtype}; divide uint8 by 255")
        if size is not None and tuple(frame.shape[-2:]) != size:
            raise DerainError(
                f"frame {index} is {frame.shape[-1]}x{frame.shape[-2]} but the first frame is {size[1]}x{size[0]}; "
                "every frame of a video must have the same size"
            )
        return frame.to(self.device, torch.float32)

    def _per_frame(
        self,
        pending: list[tuple[Tensor, Tensor]],
        count: int,
        slots: dict[int, _Slot],
        plan: Plan,
        stats: StreamStats,
    ) -> None:
        """Pad the pending frames and compute their per-frame terms in one call; move them into ``slots``."""
        if not pending:
            return
        first = count - len(pending)
        if self.is_official:
            for k, (frame, position) in enumerate(pending):
                slots[first + k] = _Slot(frame, frame.new_zeros(0), frame.new_zeros(0), position)
        else:
            with self._clock(stats, "features"), torch.inference_mode():
                padded, _ = pad_to_multiple(torch.stack([frame for frame, _ in pending]))  # (N, 3, Hp, Wp)
                full, low = self._features(padded, plan)
            for k, (_, position) in enumerate(pending):
                slots[first + k] = _Slot(padded[k], full[k], low[k] if low.numel() else low, position)
        pending.clear()
        stats.max_buffered = max(stats.max_buffered, len(slots))

    def _emit(
        self,
        slots: dict[int, _Slot],
        centres: list[int],
        num_frames: int,
        plan: Plan,
        size: tuple[int, int],
        stats: StreamStats,
    ) -> Iterator[Tensor]:
        """Per-window work for ``centres``; yields their (3, H, W) outputs in [0, 1]."""
        windows = [self._window(num_frames, t) for t in centres]
        with self._clock(stats, "windows"), torch.inference_mode():
            disp = None
            if self.motion:
                disp = self._displacements({k: slot.position for k, slot in slots.items()}, windows, centres)
            refined = self._windows_forward(slots, windows, disp, plan)
            out = refined[:, :, : size[0], : size[1]].float().clamp(0.0, 1.0)
        for frame in out:
            stats.frames_out += 1
            yield frame

    # -----------------------------------------------------------------------------------------------------------------
    # convenience front ends
    # -----------------------------------------------------------------------------------------------------------------
    def derain_frames(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Derain uint8 RGB frames as a generator (streaming; memory flat in the number of frames).

        Args:
            frames: uint8 arrays of shape (H, W, 3), values in [0, 255], all of one size (e.g. a
                :func:`~estinet.data.video_io.open_frames` source).

        Yields:
            uint8 (H, W, 3) derained frames, rounded and clipped exactly as a saved frame would be, one per input.

        Raises:
            DerainError: for an empty input or a frame of another shape or dtype.
        """

        def tensors() -> Iterator[Tensor]:  # runs inside derain_tensors, after it has set last_stats
            for index, array in enumerate(frames):
                if not isinstance(array, np.ndarray) or array.ndim != 3 or array.shape[2] != 3:
                    shape = getattr(array, "shape", type(array).__name__)
                    raise DerainError(f"frame {index} must be a uint8 (H, W, 3) RGB array, got {shape}")
                if array.dtype != np.uint8:
                    raise DerainError(
                        f"frame {index} must be uint8 in [0, 255], got {array.dtype}; convert with "
                        "np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)"
                    )
                with self._clock(self.last_stats, "convert"):
                    tensor = torch.from_numpy(np.ascontiguousarray(array)).to(self.device).permute(2, 0, 1)
                    tensor = tensor.float().div_(255.0)
                yield tensor

        for out in self.derain_tensors(tensors()):
            with self._clock(self.last_stats, "convert"):
                array = runtime.frames_to_uint8(out).permute(1, 2, 0).cpu().numpy()
            yield array

    def derain_clip(self, frames: Tensor) -> Tensor:
        """Derain a whole clip held in memory (streaming internally).

        Args:
            frames: (T, 3, H, W) float in [0, 1].

        Returns:
            (T, 3, H, W) float32 in [0, 1] (not rounded), on the device of ``frames``.
        """
        if not isinstance(frames, Tensor) or frames.dim() != 4 or frames.shape[1] != 3:
            shape = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
            raise DerainError(f"frames must be a (T, 3, H, W) tensor in [0, 1], got {shape}")
        outputs = [out.to(frames.device) for out in self.derain_tensors(iter(frames))]
        return torch.stack(outputs)

    def derain_per_window(self, frames: Tensor) -> Tensor:
        """The per-window reference: every window recomputes everything (no streaming, no tiles).

        For each frame ``t``: the window ``window_indices(T, t, size)`` (or the release's windows), displacements
        ``position[j] - position[t]`` from positions accumulated (float64) over the clip's pair displacements
        (:func:`~estinet.models.motion.pair_displacements`), then ``model.forward(window, displacement)`` and its
        refined centre frame, clamped to [0, 1]. Streaming must equal this to about 1e-5.

        Args:
            frames: (T, 3, H, W) float in [0, 1].

        Returns:
            (T, 3, H, W) float32 in [0, 1], on :attr:`device`.
        """
        if not isinstance(frames, Tensor) or frames.dim() != 4 or frames.shape[1] != 3:
            raise DerainError(f"frames must be a (T, 3, H, W) tensor in [0, 1], got {tuple(frames.shape)}")
        frames = frames.to(self.device, torch.float32)
        count = frames.shape[0]
        positions = dict.fromkeys(range(count), torch.zeros(2, dtype=torch.float64))
        with torch.inference_mode():
            if self.motion and count > 1:
                pair, _ = pair_displacements(frames[None], **self._motion_args)  # (1, T-1, 2)
                steps = pair[0].to("cpu", torch.float64)
                acc = torch.zeros(2, dtype=torch.float64)
                for k in range(1, count):
                    acc = acc + steps[k - 1]  # the same sequential float64 sum as streaming
                    positions[k] = acc
            outputs = []
            for t in range(count):
                window = self._window(count, t)
                clip = frames[window][None]  # (1, T, 3, H, W)
                with self._autocast():
                    if self.is_official:
                        refined = self.model(clip)[1]
                    else:
                        disp = self._displacements(positions, [window], [t]).to(self.device)
                        refined = self.model(clip, disp if self.motion else torch.zeros_like(disp))[1]
                outputs.append(refined[0].float().clamp(0.0, 1.0))
        return torch.stack(outputs)

    # -----------------------------------------------------------------------------------------------------------------
    # files
    # -----------------------------------------------------------------------------------------------------------------
    def derain_video(
        self,
        src: str | Path,
        dst: str | Path,
        *,
        compare: bool | str | Path = False,
        overwrite: bool = False,
        lossless: bool = False,
        crf: int = 18,
        progress: bool = True,
        x264_preset: str = "veryfast",
    ) -> Path:
        """Derain a video file, frame folder or image into a video, frame folder or image.

        The output keeps the input's size, frame rate, frame count and audio (:mod:`estinet.data.video_io`). Every
        output appears under its final name only once it is complete: an error or interruption leaves nothing
        behind (for the comparison video too).

        Args:
            src: video file, folder of frames, or image.
            dst: ``.mp4``/``.mkv``/``.mov``/``.avi`` video (H.264 by default), a folder (PNG frames; a path without
                suffix) or, for a one-frame input, an image file.
            compare: also write a side-by-side (rainy | derained) output: True names it ``<dst stem>_compare``
                beside ``dst``; a path names it.
            overwrite: replace existing outputs (otherwise they are refused before any work).
            lossless: lossless video (FFV1 in .mkv/.avi, x264 RGB QP 0 in .mp4/.mov).
            crf: x264 quality for H.264 outputs (0-51; 18 is visually lossless).
            progress: show a tqdm progress bar (frames/s and ETA).
            x264_preset: x264 speed preset (``veryfast`` default; ``medium`` makes smaller files, more slowly).

        Returns:
            The output path.

        Raises:
            VideoIOError: unreadable input, refused or unwritable output.
            DerainError: the output would replace the input, or an image output for a multi-frame input.
        """
        from tqdm import tqdm

        from estinet.data.video_io import open_frames

        src, dst = Path(src), Path(dst)
        compare_path = _compare_path(dst, compare)
        for out in [dst] + ([compare_path] if compare_path else []):
            if out.exists() and src.exists() and out.resolve() == src.resolve():
                raise DerainError(f"output {out} is the input file; pick another output path")
        with open_frames(src) as source:
            sinks = _open_sinks(
                source, src, dst, compare_path, overwrite=overwrite, lossless=lossless, crf=crf, preset=x264_preset
            )
            rainy_queue: deque[np.ndarray] = deque()
            bar = tqdm(total=source.num_frames, unit="frame", desc=src.name, disable=not progress, dynamic_ncols=True)
            decode = 0.0
            writer = _BackgroundWriter(sinks)
            try:

                def decoded() -> Iterator[np.ndarray]:
                    nonlocal decode
                    iterator = iter(source)
                    while True:
                        start = time.perf_counter()
                        frame = next(iterator, None)
                        decode += time.perf_counter() - start
                        if frame is None:
                            return
                        if compare_path is not None:
                            rainy_queue.append(frame)
                        yield frame

                for out in self.derain_frames(decoded()):
                    writer.put(out, rainy_queue.popleft() if compare_path is not None else None)
                    bar.update(1)
                writer.finish()
                start = time.perf_counter()
                _close_all(sinks)
                writer.seconds += time.perf_counter() - start
            except BaseException:
                writer.stop()
                for sink in sinks:
                    sink.abort()
                raise
            finally:
                bar.close()
                self.last_stats.seconds["decode"] = decode
                self.last_stats.seconds["encode"] = writer.seconds
        return sinks[0].path


# ---------------------------------------------------------------------------------------------------------------------
# output helpers
# ---------------------------------------------------------------------------------------------------------------------


def _compare_path(dst: Path, compare: bool | str | Path) -> Path | None:
    if compare is False or compare is None:
        return None
    if compare is True:
        return dst.with_name(f"{dst.stem}_compare{dst.suffix}")
    return Path(compare)


class _BackgroundWriter:
    """Encode output frames on a worker thread, so that encoding overlaps the model.

    PyAV (FFmpeg) and NumPy release the GIL while they work, so on a multi-core machine the encoder runs beside
    torch. At most ``depth`` frames wait in the queue (memory stays flat in the video length). An error on the worker
    is raised in the caller at its next :meth:`put` or at :meth:`finish`; the worker then discards what is queued.

    Args:
        sinks: the output sink and, optionally, the comparison sink (written ``rainy | derained``).
        depth: queued frames at most.
    """

    def __init__(self, sinks: list[Any], depth: int = 4) -> None:
        self._sinks = sinks
        self._queue: queue.Queue[tuple[np.ndarray, np.ndarray | None] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._stopped = False
        self.seconds = 0.0  # time the worker spent encoding (overlapped with the model)
        self._thread = threading.Thread(target=self._run, name="estinet-encoder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None or self._stopped:
                continue  # drain without writing
            out, rainy = item
            start = time.perf_counter()
            try:
                self._sinks[0].write(out)
                if rainy is not None:
                    self._sinks[1].write(np.concatenate([rainy, out], axis=1))
            except BaseException as error:  # handed to the caller
                self._error = error
            self.seconds += time.perf_counter() - start

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, out: np.ndarray, rainy: np.ndarray | None) -> None:
        """Queue one derained frame (and its rainy frame for the comparison output)."""
        self._raise()
        self._queue.put((out, rainy))

    def _join(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def finish(self) -> None:
        """Wait until every queued frame is written; raise the worker's error, if any."""
        self._join()
        self._raise()

    def stop(self) -> None:
        """Discard queued frames and end the worker (on errors and interruptions)."""
        self._stopped = True
        self._join()


class _ImageSink:
    """Atomic single-image output (for a one-frame input written to ``.png``/``.jpg``/...)."""

    def __init__(self, path: Path, width: int, height: int, *, overwrite: bool) -> None:
        from estinet.data.video_io import VideoIOError

        self.path = path
        self.width, self.height = width, height
        self.frames_written = 0
        if path.exists() and not overwrite:
            raise VideoIOError(f"{path} already exists; pass overwrite=True (CLI: --overwrite) or pick another path")
        if path.is_dir():
            raise VideoIOError(f"{path} is a folder; pick an image file name or a folder path without suffix")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = runtime.temp_sibling(path)
        self._frame: np.ndarray | None = None

    def write(self, frame: np.ndarray) -> None:
        if self._frame is not None:
            raise DerainError(
                f"{self.path} is an image but the input has more than one frame; write a video (.mp4) or a folder"
            )
        self._frame = frame
        self.frames_written = 1

    def close(self) -> None:
        from PIL import Image

        if self._frame is None:
            raise DerainError(f"no frame was written to {self.path}; nothing was saved")
        with runtime.atomic_path(self.path, self._tmp) as tmp:
            Image.fromarray(self._frame, mode="RGB").save(tmp)

    def abort(self) -> None:
        self._tmp.unlink(missing_ok=True)


def _open_sinks(
    source: Any,
    src: Path,
    dst: Path,
    compare: Path | None,
    *,
    overwrite: bool,
    lossless: bool,
    crf: int,
    preset: str,
) -> list[Any]:
    """Open the output (and comparison) writers before any work; on failure nothing is left open."""
    from estinet.data.video_io import IMAGE_SUFFIXES, open_writer

    fps: Fraction = source.fps_fraction
    audio = src if getattr(source, "has_audio", False) else None
    kind = "lossless" if lossless else None
    sinks: list[Any] = []
    try:
        for path, width in [(dst, source.width)] + ([(compare, 2 * source.width)] if compare else []):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                if source.num_frames not in (None, 1):
                    raise DerainError(
                        f"{path} is an image but {src} has {source.num_frames} frames; write a video (.mp4) or a "
                        "folder (a path without suffix)"
                    )
                sinks.append(_ImageSink(path, width, source.height, overwrite=overwrite))
            else:
                sinks.append(
                    open_writer(
                        path,
                        fps,
                        width,
                        source.height,
                        kind=kind,
                        crf=crf,
                        audio_from=audio,
                        overwrite=overwrite,
                        x264_preset=preset,
                    )
                )
    except BaseException:
        for sink in sinks:
            sink.abort()
        raise
    return sinks


def _close_all(sinks: list[FrameSink | _ImageSink]) -> None:
    """Close the comparison output first, then the main one; if the main one fails, remove the comparison too."""
    for sink in sinks[1:]:
        sink.close()
    try:
        sinks[0].close()
    except BaseException:
        for sink in sinks[1:]:
            _remove_output(sink.path)
        raise


def _remove_output(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------------------------
# CLI entry
# ---------------------------------------------------------------------------------------------------------------------


def derain_main(
    input: str | Path,
    output: str | Path,
    weights: str = "tiny",
    device: str = "auto",
    tile: int | None = None,
    threads: int | None = None,
    compare: bool | str | Path = False,
    overwrite: bool = False,
    half: bool | None = None,
    batch: int | None = None,
    lossless: bool = False,
    crf: int = 18,
    motion: bool | None = None,
    official_windows: bool = False,
    tile_margin: int | None = None,
    progress: bool = True,
    x264_preset: str = "veryfast",
) -> int:
    """``estinet derain INPUT -o OUTPUT``: derain one video, frame folder or image and print a summary line.

    Args:
        input: video file, frame folder or image.
        output: output video, frame folder or (one-frame input) image.
        weights: shipped name, weights file, training checkpoint or ``COARSE,FINE``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        tile: tile core size (None: automatic, 0: whole frames).
        threads: CPU threads for torch.
        compare: also write a side-by-side comparison (True: ``<output>_compare``; or a path).
        overwrite: replace existing outputs.
        half: half precision (None: fp16 on CUDA, fp32 on CPU; True on CPU: bf16).
        batch: windows per forward (None: automatic).
        lossless: lossless video output.
        crf: H.264 quality.
        motion: motion compensation override (None: the model's setting).
        official_windows: the release's window padding (``official`` weights only).
        tile_margin: tile overlap per side in pixels.
        progress: show a progress bar.
        x264_preset: x264 speed preset of H.264 outputs.

    Returns:
        0 on success (errors raise: VideoIOError, WeightsError, DerainError).
    """
    derainer = Derainer(
        weights,
        device=device,
        tile=tile,
        tile_margin=tile_margin,
        half=half,
        batch=batch,
        threads=threads,
        motion=motion,
        official_windows=official_windows,
    )
    start = time.perf_counter()
    path = derainer.derain_video(
        input,
        output,
        compare=compare,
        overwrite=overwrite,
        lossless=lossless,
        crf=crf,
        progress=progress,
        x264_preset=x264_preset,
    )
    elapsed = time.perf_counter() - start
    stats = derainer.last_stats
    fps = stats.frames_out / elapsed if elapsed > 0 else float("inf")
    tiles = "whole frames" if stats.plan is None or stats.plan.tile is None else f"{stats.plan.tile}px tiles"
    print(f"wrote {path} ({stats.frames_out} frames in {elapsed:.1f} s, {fps:.2f} frames/s, {derainer!r}, {tiles})")
    return 0
