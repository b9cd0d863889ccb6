"""The :class:`Derainer` API: options, model preparation, and frames / clips / per-window reference in and out.

Convolution weights are put in channels_last layout by default on every device (4-D weights only; the 3x3x3 weights
of ESTM's :class:`~estinet.models.estm.TemporalConv3d`, which it computes as one 2-D conv per temporal tap, get
strides that make each tap's 2-D slice channels_last; real ``nn.Conv3d`` weights are left alone), because oneDNN's
NCHW path reorders every activation on the small channel counts of ``tiny`` (speed-ups in docs/results/). Half
precision: fp16 autocast on CUDA (default), bf16 autocast on CPU with ``half=True`` (off by default).

Streaming lives in :mod:`estinet.inference.stream`, tiles in :mod:`estinet.inference.tiles`, the memory plan in
:mod:`estinet.inference.plan` and file input/output in :mod:`estinet.inference.video`.
"""

from __future__ import annotations

import copy
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from estinet import runtime
from estinet.config import ModelConfig, preset_config
from estinet.data.windows import window_indices
from estinet.errors import DerainError
from estinet.inference.compiled import CompiledSeam
from estinet.inference.plan import (
    CPU_PARALLEL_MAX_WORK,
    DEFAULT_CUDA_CAP_GIB,
    OFFICIAL_ALIGN,
    Plan,
    align_up,
    default_tile_margin,
    footprint,
    plan_frames,
)
from estinet.inference.stream import StreamStats, official_window, stage_clock, stream, window_displacements
from estinet.inference.tiles import FrameWorkers, Tiler
from estinet.models.estinet import PAD_MULTIPLE, ESTINet
from estinet.models.estm import TemporalConv3d
from estinet.models.motion import StreamingMotion, pair_displacements
from estinet.models.official import OfficialESTINet
from estinet.models.veil import lift_veil

__all__ = [
    "BACKENDS",
    "Derainer",
    "TileSizeWarning",
    "channels_last_taps",
    "prepare_model",
    "resolve_device",
    "tile_cost",
]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """:func:`estinet.runtime.resolve_device` raising :class:`DerainError` (``"auto"``: CUDA when available)."""
    return runtime.resolve_device(device, error=DerainError)


def channels_last_taps(weight: Tensor) -> Tensor:
    """A copy of a (O, C, 3, 3, 3) TemporalConv3d weight whose per-tap 2-D slices ``[:, :, k]`` are channels_last."""
    out_ch, in_ch, _, kh, kw = weight.shape
    strides = (kh * kw * in_ch, 1, out_ch * kh * kw * in_ch, kw * in_ch, in_ch)
    strided = torch.empty_strided(weight.shape, strides, dtype=weight.dtype, device=weight.device)
    strided.copy_(weight)
    return strided


def prepare_model(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
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
                module.weight.data = channels_last_taps(weight.data)
            elif weight.dim() == 4:  # Conv2d / ConvTranspose2d; 5-D Conv3d weights cannot be channels_last
                module.weight.data = weight.data.contiguous(memory_format=torch.channels_last)
    return model


def _load(weights: str | Path | nn.Module, config: ModelConfig | None) -> tuple[nn.Module, ModelConfig]:
    """The model (a copy of a given module) and its config."""
    if isinstance(weights, nn.Module):
        model = copy.deepcopy(weights)
        if isinstance(model, OfficialESTINet):
            return model, config or preset_config("official", "paper")
        if isinstance(model, ESTINet):
            if config is not None and config != model.config:
                raise DerainError(
                    f"config {config} does not describe the given model (its config is {model.config}); "
                    "leave config=None"
                )
            return model, model.config
        raise TypeError(
            f"weights must be a weights name/path or an ESTINet/OfficialESTINet module, got "
            f"{type(weights).__name__}; build models with estinet.models.build_model"
        )
    if isinstance(weights, str | Path):
        if config is not None:
            raise DerainError("config is only used with a model object; weights files carry their own config")
        from estinet.checkpoint import load_model

        return load_model(weights, device="cpu")
    raise TypeError(
        f"weights must be a shipped name, a file path, 'COARSE,FINE' or a model, got {type(weights).__name__}"
    )


BACKENDS: tuple[str, ...] = ("torch", "onnxruntime")
"""What runs the per-frame and per-window work (:class:`Derainer`'s ``backend``)."""

MIN_TILE_ALIGNS = 2
"""Tiles are at least this many alignment steps (32 pixels; 64 for ``official``): the automatic plan's smallest."""

MAX_TILE_COST = 16.0
"""Above this ratio of computed to output pixels (:func:`tile_cost`) a forced tile size warns."""


class TileSizeWarning(UserWarning):
    """A forced tile size was raised to the minimum, or is so small that margins dominate the work."""


def tile_cost(tile: int, margin: int) -> float:
    """Pixels computed per output pixel with square ``tile`` cores and ``margin`` pixels of overlap per side."""
    return ((tile + 2 * margin) / tile) ** 2


def _check_count(name: str, value: Any, *, minimum: int, unit: str = "") -> None:
    """Refuse ``value`` unless it is an int (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a non-negative" if minimum == 0 else "a positive"
        raise DerainError(f"{name} must be {kind} integer{unit}, got {value!r}")


class Derainer:
    """Remove rain from videos with a trained ESTINet (or any variant, or the authors' release).

    Args:
        weights: a shipped name (``tiny``, ...), a ``.safetensors`` file, a training checkpoint, ``COARSE,FINE`` for
            the authors' two released checkpoints (all through :func:`estinet.checkpoint.load_model`, which never
            unpickles arbitrary objects), or an already-built :class:`ESTINet` / :class:`OfficialESTINet` (copied,
            the caller's module is left untouched).
        config: the config of a model object (defaults to ``model.config``; ``official`` needs none).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        tile: tile core size in pixels (rounded up to a multiple of 16, or 32 for ``official``, and raised to at
            least twice that with a :class:`TileSizeWarning`; sizes whose margins make the work more than 16x
            warn too); 0 forces whole frames; None chooses from the available memory.
        tile_margin: tile overlap per side in pixels (default :func:`default_tile_margin`: the receptive radius of
            the per-frame features).
        half: half precision: fp16 autocast on CUDA, bf16 autocast on CPU. None: on for CUDA, off for CPU.
        batch: at most this many frames per per-frame call and windows per ``window_forward`` call (halved while it
            does not fit in memory; None: on CPU the number of workers, on CUDA the largest of 32, ..., 1 that fits
            under max_memory). Outputs do not depend on it beyond float rounding.
        threads: ``torch.set_num_threads(threads)`` (process-wide) when given.
        workers: on CPU, how many frames' per-frame work and windows' per-window work run at once, each on its own
            thread with ``threads / workers`` intra-op threads, torch's or ONNX Runtime's
            (:class:`~estinet.inference.tiles.FrameWorkers`; a batch is split among them). None: one per torch
            thread where a frame's operations are short (``tiny`` up to about twice 640x480's pixels,
            :meth:`workers_for`), one frame at a time otherwise (docs/results/cpu-speed.md); 1: one frame at a
            time, each operation on all threads. Outputs do not depend on it beyond float rounding.
        channels_last: channels_last convolution weights (None: on; measured 1.3-1.5x faster on a CPU for ``tiny``,
            and the usual layout for convolutions on GPUs).
        motion: global motion compensation (None: the model's config; always off for ``official``).
        official_windows: for ``official``, use the release's window padding instead of reflection.
        profile: synchronise CUDA around each stage so that :attr:`last_stats` times are exact.
        variant: the architecture the weights must have (e.g. ``estinet``, ``official``); None accepts any.
        keep_freed_memory: on CPU, make glibc keep freed memory for reuse (process-wide, see
            :mod:`estinet.allocator`).
        max_memory: the most GiB the memory plan's estimated peak may reach (tiles and batch are chosen under it).
            None: on CUDA the preset's default (:data:`~estinet.inference.plan.DEFAULT_CUDA_CAP_GIB`: 4 for
            ``tiny``, 8 for ``small``), elsewhere no cap beyond half of the available memory.
        cuda_graphs: replay the whole-frame per-frame and per-window calls as CUDA graphs (a short last batch is
            padded to the plan's batch). None: on for CUDA with models that have per-frame terms; needs CUDA.
        backend: ``torch`` or ``onnxruntime``: the per-frame and per-window work run by ONNX Runtime on the CPU from
            exported graphs (:mod:`estinet.inference.ort`); streaming, tiles, motion and files are the same. Needs
            ``pip install 'estinet[onnx]'``; ``device`` must be the CPU (``auto`` means the CPU for it), ``half``
            selects fp16 graphs, ``channels_last`` does not apply to them, and :meth:`derain_per_window` stays the
            torch reference.
        onnx_dir: for ``onnxruntime``, an ``estinet export`` folder of these weights (checked against them); None
            exports to a cache folder on first use (:func:`estinet.export.cached_export`).
        compile: compile the per-frame and per-window calls with ``torch.compile`` for fixed shapes
            (:mod:`estinet.inference.compiled`: seconds to a minute per frame size, cached on disk; the time is in
            :meth:`setup_seconds`); with CUDA graphs the compiled calls are captured. Torch backend, ESTINet
            variants with per-frame terms, one CPU worker. Outputs equal the plain calls' to float rounding.
        lift_veil: also lift the veiling haze of the rain, estimated per frame by the model's veil head from the
            derained and the rainy frame (``model.veil_head``, :mod:`estinet.models.veil`; float32, whole frames, any
            backend). Weights with a veil head keep the veil unless this is on; weights without one cannot take it.

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
        workers: int | None = None,
        channels_last: bool | None = None,
        motion: bool | None = None,
        official_windows: bool = False,
        profile: bool = False,
        variant: str | None = None,
        keep_freed_memory: bool = True,
        max_memory: float | None = None,
        cuda_graphs: bool | None = None,
        backend: str = "torch",
        onnx_dir: str | Path | None = None,
        compile: bool = False,
        lift_veil: bool = False,
    ) -> None:
        if backend not in BACKENDS:
            raise DerainError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if onnx_dir is not None and backend != "onnxruntime":
            raise DerainError("onnx_dir is only used by backend='onnxruntime'")
        self.backend = backend
        if threads is not None:
            _check_count("threads", threads, minimum=1)
            torch.set_num_threads(threads)
        self.device = resolve_device("cpu" if backend == "onnxruntime" and str(device) == "auto" else device)
        if backend == "onnxruntime" and self.device.type != "cpu":
            raise DerainError(
                f"the onnxruntime backend runs on the CPU, not {self.device}; pass device='cpu' (--device cpu), or "
                "use the torch backend on GPUs"
            )
        if keep_freed_memory and self.device.type == "cpu":
            from estinet.allocator import keep_freed_memory as keep

            keep()
        model, config = _load(weights, config)
        if variant is not None and variant != config.variant:
            from estinet.checkpoint import WeightsError

            raise WeightsError(
                f"weights {weights if isinstance(weights, str | Path) else type(weights).__name__!s} are a "
                f"{config.variant!r} model ({config.preset} preset), not {variant!r}; pass weights trained for "
                f"{variant!r} or drop the variant option"
            )
        self.config: ModelConfig = config
        head = getattr(model, "veil", None)
        if lift_veil and head is None:
            raise DerainError(
                f"these {config.preset} weights have no veil head (model.veil_head), so they cannot lift the veil; "
                "drop --lift-veil (lift_veil=False) or use weights trained with one"
            )
        self.veil_head: nn.Module | None = copy.deepcopy(head).float().to(self.device).eval() if lift_veil else None
        """The veil estimate applied to every output frame (float32), or None (the veil stays as the model left it)."""
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
        margin = default_tile_margin(config) if tile_margin is None else tile_margin
        _check_count("tile_margin", margin, minimum=0, unit=" (pixels)")
        self.tile_margin = align_up(margin, self.align)
        self.tile = self._check_tile(tile)
        if batch is not None:
            _check_count("batch", batch, minimum=1, unit=" (windows per forward)")
        self.batch = batch
        if half is None:
            half = self.device.type == "cuda"
        self.precision = "fp32"
        """``fp32``, ``fp16`` (CUDA autocast, or the onnxruntime backend's fp16 graphs) or ``bf16`` (CPU autocast)."""
        if half:
            self.precision = "bf16" if backend == "torch" and self.device.type != "cuda" else "fp16"
        self.amp_dtype: torch.dtype | None = None
        if backend == "torch":
            self.amp_dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[self.precision]
        self.channels_last = True if channels_last is None else bool(channels_last)
        self.profile = profile
        if max_memory is not None and (isinstance(max_memory, bool) or not max_memory > 0):
            raise DerainError(f"max_memory must be a positive number of GiB, got {max_memory!r}")
        if max_memory is None and self.device.type == "cuda":
            max_memory = DEFAULT_CUDA_CAP_GIB.get(config.preset)
        self.max_memory = max_memory
        """The plan's memory cap in GiB (None: none beyond half of what is available)."""
        graphable = not self.is_official and config.variant != "sicm-2dcnn"
        if cuda_graphs and self.device.type != "cuda":
            raise DerainError(
                f"cuda_graphs needs a CUDA device, not {self.device}; drop --cuda-graphs (cuda_graphs=None)"
            )
        if cuda_graphs and not graphable:
            raise DerainError(f"cuda_graphs is not supported for the {config.variant!r} variant; pass None or False")
        self.cuda_graphs = bool(self.device.type == "cuda" and graphable if cuda_graphs is None else cuda_graphs)
        self.compile = bool(compile)
        if self.compile and (backend != "torch" or not graphable):
            what = f"the {backend} backend" if backend != "torch" else f"the {config.variant!r} variant"
            raise DerainError(f"compile is not supported for {what}; drop compile (--compile)")
        if self.compile and workers is not None and workers > 1:
            raise DerainError(
                "compile runs one CPU worker (compiled calls are not shared between threads); pass workers=1 or "
                "drop compile"
            )
        self.workers = 1 if self.compile else self._worker_count(workers)
        """Frames (windows) computed at once by CPU frame-parallel workers (1: one at a time; :meth:`workers_for`)."""
        self._workers_given = workers is not None
        pool = FrameWorkers(self.workers, max(1, torch.get_num_threads() // self.workers)) if self.workers > 1 else None
        self.model = prepare_model(model, self.device, self.channels_last)
        if backend == "onnxruntime":
            from estinet.inference.ort import ort_tiler

            self.tiler = ort_tiler(
                self.model,
                config,
                align=self.align,
                precision=self.precision,
                onnx_dir=onnx_dir,
                workers=pool,
            )
        else:
            self.tiler = Tiler(
                CompiledSeam(self.model) if self.compile else self.model,
                self.align,
                config.temporal_stride,
                self.device,
                self.amp_dtype,
                batched_align=self.device.type == "cuda",
                cuda_graphs=self.cuda_graphs,
                workers=pool,
            )
        """The per-frame and per-window calls, whole or in tiles."""
        # ring-buffer terms are half precision only under autocast (onnxruntime's come back as float32)
        self.footprint = footprint(
            config,
            window_size=self.window_size,
            official=self.is_official,
            half=self.amp_dtype is not None,
            cuda=self.device.type == "cuda",
        )
        gm = getattr(self.model, "motion", None)
        self._motion_args: dict[str, Any] = {
            "max_shift": getattr(gm, "max_shift", None),
            "max_size": getattr(gm, "max_size", 256),
            "min_confidence": getattr(gm, "min_confidence", 0.1),
        }
        self.last_stats = StreamStats()
        """Statistics of the latest (or running) streaming call."""
        self.last_compare: Path | None = None
        """The side-by-side output of the latest :meth:`derain_video` call, if it wrote one."""

    def _worker_count(self, workers: int | None) -> int:
        """CPU frame-parallel workers for the ``workers`` option (None: one per torch thread); 1 off the CPU."""
        if workers is not None:
            _check_count("workers", workers, minimum=1, unit=" (frames at once)")
            if self.device.type != "cpu" and workers > 1:
                raise DerainError(f"workers is for the CPU; on {self.device} batches run as one call (pass batch)")
        if self.device.type != "cpu":
            return 1
        return torch.get_num_threads() if workers is None else workers

    def _check_tile(self, tile: int | None) -> int | None:
        if tile is None:
            return None
        if isinstance(tile, bool) or not isinstance(tile, int) or tile < 0:
            raise DerainError(f"tile must be None (automatic), 0 (whole frames) or a positive size, got {tile!r}")
        if tile == 0:
            return 0
        size = align_up(tile, self.align)
        smallest = MIN_TILE_ALIGNS * self.align
        if size < smallest:
            warnings.warn(
                f"tile {tile} raised to {smallest} pixels: tiles are multiples of {self.align} and each recomputes a "
                f"{self.tile_margin}-pixel margin on every side, so {size}-pixel tiles would compute "
                f"{tile_cost(size, self.tile_margin):.0f}x the pixels of the frame; {smallest} is the smallest tile "
                "the automatic plan uses (omit tile for automatic, 0 for whole frames)",
                TileSizeWarning,
                stacklevel=3,
            )
            size = smallest
        if tile_cost(size, self.tile_margin) > MAX_TILE_COST:
            warnings.warn(
                f"{size}-pixel tiles with {self.tile_margin}-pixel margins compute about "
                f"{tile_cost(size, self.tile_margin):.0f}x the pixels of the frame, so deraining is that much slower; "
                f"tiles of at least {2 * self.tile_margin} pixels keep it under 4x (omit tile for automatic, 0 for "
                "whole frames)",
                TileSizeWarning,
                stacklevel=3,
            )
        return size

    def __repr__(self) -> str:
        return (
            f"Derainer(variant={self.config.variant!r}, preset={self.config.preset!r}, device={str(self.device)!r}, "
            f"backend={self.backend!r}, precision={self.precision}, motion={self.motion}, tile={self.tile}, "
            f"batch={self.batch}, workers={self.workers}, max_memory={self.max_memory}, cuda_graphs={self.cuda_graphs}"
            f"{', compile=True' if self.compile else ''}{', lift_veil=True' if self.veil_head is not None else ''})"
        )

    def setup_seconds(self) -> float:
        """Seconds of one-off set-up so far: ``torch.compile`` compilation and CUDA-graph capture (0 without
        either)."""
        return self.tiler.setup_seconds()

    def plan_for(self, height: int, width: int, available: int | None = None) -> Plan:
        """Choose tiles and batch for frames of ``height`` x ``width`` (:func:`~estinet.inference.plan.plan_frames`).

        Args:
            height: frame height in pixels.
            width: frame width in pixels.
            available: bytes available (default: :func:`~estinet.inference.plan.available_memory` of the device).

        Returns:
            The :class:`~estinet.inference.plan.Plan`.

        Raises:
            DerainError: when even the ring buffer or the smallest tile does not fit.
        """
        return plan_frames(
            height,
            width,
            self.footprint,
            tile=self.tile,
            margin=self.tile_margin,
            batch=self.batch,
            device=self.device,
            available=available,
            cap=None if self.max_memory is None else int(self.max_memory * 2**30),
            workers=self.workers_for(height, width),
        )

    def workers_for(self, height: int, width: int) -> int:
        """Frame-parallel workers used for frames of ``height`` x ``width``: :attr:`workers` where a frame's operations
        are short (padded pixels x SICM base channels at most :data:`~estinet.inference.plan.CPU_PARALLEL_MAX_WORK`),
        else 1."""
        if self.workers == 1 or self._workers_given:
            return self.workers
        pixels = align_up(height, self.align) * align_up(width, self.align)
        return self.workers if pixels * getattr(self.config, "base_channels", 64) <= CPU_PARALLEL_MAX_WORK else 1

    def _window(self, num_frames: int, centre: int) -> list[int]:
        if self.official_windows:
            return official_window(num_frames, centre)
        return window_indices(num_frames, centre, self.window_size, "reflect")

    def derain_tensors(self, frames: Iterable[Tensor]) -> Iterator[Tensor]:
        """Derain a stream of frames (the core generator; :mod:`estinet.inference.stream`).

        Args:
            frames: (3, H, W) float tensors in [0, 1] on any device, all of one size.

        Yields:
            (3, H, W) float32 derained frames in [0, 1] on :attr:`device`, one per input frame, in order.

        Raises:
            DerainError: for an empty stream or a frame of another shape.
        """
        self.last_stats = StreamStats()
        inputs: deque[Tensor] = deque()  # with a veil to lift: the input frames not yet output, in order

        def check(frame: Tensor, index: int, size: tuple[int, int] | None) -> Tensor:
            frame = self._check_tensor(frame, index, size)
            if self.veil_head is not None:
                inputs.append(frame)
            return frame

        outputs = stream(
            frames,
            self.tiler,
            plan_for=self.plan_for,
            window=self._window,
            window_size=self.window_size,
            pad_multiple=self.footprint.pad_multiple,
            motion=StreamingMotion(**self._motion_args) if self.motion else None,
            check=check,
            stats=self.last_stats,
            profile=self.profile,
        )
        if self.veil_head is None:
            yield from outputs
            return
        for out in outputs:
            with torch.inference_mode(), stage_clock(self.last_stats, "veil", self.device, self.profile):
                out = self.lift(out[None], inputs.popleft()[None])[0]
            yield out

    def lift(self, derained: Tensor, rainy: Tensor) -> Tensor:
        """Lift the veil of derained frames (:attr:`veil_head` estimates it from them and their rainy frames).

        Args:
            derained: (B, 3, H, W) derained frames in [0, 1] (the veil kept), on :attr:`device`.
            rainy: (B, 3, H, W) the rainy frames they came from.

        Returns:
            (B, 3, H, W) float32 in [0, 1].

        Raises:
            DerainError: without a veil head (``lift_veil`` off).
        """
        if self.veil_head is None:
            raise DerainError("this Derainer keeps the veil; create it with lift_veil=True to lift it")
        derained = derained.float()
        return lift_veil(derained, self.veil_head(derained, rainy.float())).clamp_(0.0, 1.0)

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
                with stage_clock(self.last_stats, "convert", self.device, self.profile):
                    # read-only arrays (np.asarray of a PIL image, memory maps) are copied: torch warns on them
                    array = np.ascontiguousarray(array) if array.flags.writeable else np.array(array, order="C")
                    tensor = torch.from_numpy(array).to(self.device).permute(2, 0, 1)
                    tensor = tensor.float().div_(255.0)
                yield tensor

        for out in self.derain_tensors(tensors()):
            with stage_clock(self.last_stats, "convert", self.device, self.profile):
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
                disp = window_displacements(positions, [window], [t]).to(self.device)
                with runtime.autocast(self.device, self.amp_dtype):
                    refined = self.model(clip, disp if self.motion else torch.zeros_like(disp))[1]
                out = refined.float().clamp(0.0, 1.0)  # (1, 3, H, W)
                if self.veil_head is not None:
                    out = self.lift(out, frames[t][None])
                outputs.append(out[0])
        return torch.stack(outputs)

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
        keep_partial_input: bool = False,
        callback: Callable[[int], None] | None = None,
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
                beside ``dst`` (a video: ``.mp4``, or ``.mkv`` when lossless, beside a frame folder or image); a
                path names it. :attr:`last_compare` holds its path afterwards.
            overwrite: replace existing outputs (otherwise they are refused before any work).
            lossless: lossless video (FFV1 in .mkv/.avi, x264 RGB QP 0 in .mp4/.mov).
            crf: x264 quality for H.264 outputs (0-51; 18 is visually lossless).
            progress: show a tqdm progress bar (frames/s and ETA).
            x264_preset: x264 speed preset (``veryfast`` default; ``medium`` makes smaller files, more slowly).
            keep_partial_input: derain the frames of a truncated or damaged input video that decode (with a
                warning) instead of refusing it.
            callback: called with the number of frames derained so far after each output frame is handed to the
                encoder (progress for a caller without a terminal); an exception it raises stops the run and, as any
                error, leaves no output behind (how ``estinet serve`` cancels a job).

        Returns:
            The output path.

        Raises:
            VideoIOError: unreadable input, refused or unwritable output.
            DerainError: the output would replace the input, or an image output for a multi-frame input.
        """
        from estinet.inference.video import derain_video

        return derain_video(
            self,
            src,
            dst,
            compare=compare,
            overwrite=overwrite,
            lossless=lossless,
            crf=crf,
            progress=progress,
            x264_preset=x264_preset,
            keep_partial_input=keep_partial_input,
            callback=callback,
        )
