"""Streaming video and frame-folder I/O built on PyAV (FFmpeg), Pillow and numpy.

Reading
    :func:`open_frames` opens any FFmpeg-readable video file, a folder of images or a single image and returns a
    :class:`FrameSource`: an iterable of uint8 RGB frames of shape (H, W, 3) in [0, 255] that decodes one frame at a
    time (memory stays flat with video length). :func:`read_all` stacks a small clip into one (T, H, W, 3) array.

Writing
    :func:`open_writer` returns a :class:`FrameSink` that encodes H.264 (``.mp4``/``.m4v``/``.mov``/``.mkv``), MPEG-4
    Part 2 (``.avi``), a lossless stream (``kind="lossless"``: FFV1 in ``.mkv``/``.avi``, libx264rgb at QP 0 in
    ``.mp4``/``.mov``) or a folder of PNG frames (a path without suffix, or ``kind="frames"``). Output is atomic: it is
    written under a hidden temporary sibling name and renamed to the final name only when ``close()`` succeeds.

Conversion rules (documented choices)
    * Grayscale (``1``, ``L``) and palette (``P``) images are expanded to RGB without loss.
    * Alpha (``LA``, ``RGBA``, ``P`` with transparency, ...) is **dropped, not composited**: the colour channels are
      kept unchanged, because a video frame is opaque content and compositing would alter the colours wherever alpha
      is below 255. A :class:`FrameConversionWarning` says so once per source.
    * 16-bit images (``I;16`` grayscale, 16-bit LA/RGB/RGBA PNG or TIFF) are scaled to 8 bit with rounding,
      ``round(v * 255 / 65535)``; 32-bit integer images (``I``) are read as 16-bit data clipped to [0, 65535];
      float images (``F``) are assumed to lie in [0, 1]. Each warns once per source that precision was lost.
    * ``CMYK``/``YCbCr`` are converted by Pillow (naive CMYK, no colour profile; CMYK warns).
    * Video frames with more than 8 bits per component (e.g. ``yuv420p10le``) are converted to ``rgb24`` (warns once).
    * EXIF orientation of images is not applied: pixels are used as stored, like frames extracted from a video.
      A video's display rotation (multiples of 90 degrees) is applied, so frames come out as players show them.
    * Nothing is ever resized. H.264 and MPEG-4 in yuv420p need even sizes, so odd-sized frames are padded at the
      bottom/right by edge replication and the true size is stored in the container's ``comment`` tag as
      ``estinet_size=WxH`` (that tag survives in mp4, mov, mkv and avi); :func:`open_frames` crops it back. Lossless
      outputs store odd sizes directly.
    * Encoded YUV streams are converted and tagged as BT.601 limited range, and decoding honours the colour tags of
      the input. Both directions use swscale with accurate rounding and full-resolution chroma, which removes the
      -1 grey-level bias of swscale's defaults (a derainer's brightness bias is measured on such frames).

Audio
    ``open_writer(..., audio_from=video)`` copies the first audio stream of ``video`` into the output without
    re-encoding when the output container accepts its codec (AAC into mp4/mkv, ...), and transcodes it to AAC
    otherwise (PCM is always transcoded for mp4, where players rarely support it). A source without audio adds none.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, Interpolation
from PIL import Image, UnidentifiedImageError

from estinet.errors import EstinetError
from estinet.runtime import commit_file, frames_to_uint8, remove_stale_partials, temp_sibling

__all__ = [
    "DEFAULT_FPS",
    "FRAME_FOLDER_MARKER",
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "WRITER_KINDS",
    "FrameConversionWarning",
    "FrameFolderWriter",
    "FrameSink",
    "FrameSource",
    "ImageSequenceSource",
    "IncompleteVideoWarning",
    "OddSizeWarning",
    "VideoFileSource",
    "VideoIOError",
    "VideoWriter",
    "fps_to_fraction",
    "frame_names",
    "image_to_rgb",
    "natural_sort_key",
    "open_frames",
    "open_writer",
    "read_all",
    "read_image",
    "write_video",
]

DEFAULT_FPS = 25.0
"""Frame rate reported for image folders and single images unless ``open_frames(..., fps=)`` overrides it."""

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
"""Suffixes (lower case) read as still images; everything else is handed to FFmpeg."""

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".avi"})
"""Suffixes (lower case) that :func:`open_writer` can write as video files."""

WRITER_KINDS = ("h264", "mpeg4", "lossless", "frames")
"""Values accepted by ``open_writer(..., kind=)``; ``None`` picks by suffix."""

_SIZE_TAG_KEY = "comment"
_SIZE_TAG_RE = re.compile(r"estinet_size=(\d+)x(\d+)")
_NATURAL_SPLIT_RE = re.compile(r"(\d+)")
_AAC_SAMPLE_RATES = frozenset({96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000})
_AAC_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "4.0", 5: "5.0", 6: "5.1", 8: "7.1"}
_BT601 = 6  # AVCOL_SPC/PRI/TRC_SMPTE170M: what swscale's default RGB <-> YUV conversion implements
_LIMITED_RANGE = 1  # AVCOL_RANGE_MPEG
# swscale's default RGB <-> YUV 4:2:0 path rounds with a bias of about -1.2 grey levels and point-samples chroma
# (mean absolute error 3.4 on a smooth test clip). Accurate rounding with full-resolution chroma input (encode) and
# interpolation (decode) removes the bias and brings that error to 0.5, for about 2 ms per 640x480 frame on decode.
_ENCODE_FLAGS = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INP
_DECODE_FLAGS = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT


class VideoIOError(EstinetError, ValueError):
    """A video, image or output path that cannot be used; the message names the path and the fix."""


class FrameConversionWarning(UserWarning):
    """A frame was converted to 8-bit RGB with loss (alpha dropped, bit depth reduced, colour model approximated)."""


class IncompleteVideoWarning(UserWarning):
    """A truncated or damaged video was read as far as it decodes (``open_frames(..., keep_partial=True)``)."""


class OddSizeWarning(UserWarning):
    """An odd-sized frame is stored padded to even size (H.264 / MPEG-4 in yuv420p need even sizes)."""


# ---------------------------------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------------------------------


def fps_to_fraction(fps: float | Fraction) -> Fraction:
    """Turn a frame rate into the exact fraction an encoder needs.

    Integer rates stay integers, NTSC rates snap to ``n * 1000 / 1001`` (29.97 -> 30000/1001, 23.976 -> 24000/1001,
    59.94 -> 60000/1001) and other rates become the nearest fraction with denominator at most 1001 (12.5 -> 25/2).

    Args:
        fps: Frames per second, > 0 and finite. A :class:`~fractions.Fraction` is returned unchanged.

    Returns:
        The frame rate as a positive :class:`~fractions.Fraction`.

    Raises:
        VideoIOError: If ``fps`` is not a positive finite number.
    """
    if isinstance(fps, Fraction):
        if fps <= 0:
            raise VideoIOError(f"frame rate must be > 0, got {fps}; pass e.g. fps=25")
        return fps
    try:
        value = float(fps)
    except (TypeError, ValueError) as error:
        raise VideoIOError(f"frame rate must be a number, got {fps!r}; pass e.g. fps=25") from error
    if not math.isfinite(value) or value <= 0:
        raise VideoIOError(f"frame rate must be a positive finite number, got {fps!r}; pass e.g. fps=25")
    nearest = round(value)
    if nearest > 0 and abs(value - nearest) < 1e-6 * max(1.0, value):
        return Fraction(nearest)
    ntsc = value * 1.001
    nearest_ntsc = round(ntsc)
    if nearest_ntsc > 0 and abs(ntsc - nearest_ntsc) < 1e-3:
        return Fraction(nearest_ntsc * 1000, 1001)
    return Fraction(value).limit_denominator(1001)


def natural_sort_key(name: str | Path) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders digit runs by value, so ``2.png`` sorts before ``10.png``.

    Args:
        name: A file name or path (only the final component is used).

    Returns:
        A tuple usable as ``sorted(..., key=natural_sort_key)``; text compares case-insensitively.
    """
    text = Path(name).name
    parts = _NATURAL_SPLIT_RE.split(text)
    key: list[tuple[int, int | str]] = []
    for index, part in enumerate(parts):
        if index % 2:  # a digit run
            key.append((0, int(part)))
        elif part:
            key.append((1, part.lower()))
    key.append((2, text))  # ties (e.g. "01" vs "1") fall back to the exact name, keeping the order total
    return tuple(key)


def _warn_once(message: str, key: str, warned: set[str] | None) -> None:
    """Emit a :class:`FrameConversionWarning` unless ``key`` is already in ``warned``."""
    if warned is not None:
        if key in warned:
            return
        warned.add(key)
    warnings.warn(message, FrameConversionWarning, stacklevel=3)


def _scale_16_to_8(values: np.ndarray) -> np.ndarray:
    """Scale integers in [0, 65535] to uint8 with rounding: ``round(v * 255 / 65535)``; any shape."""
    wide = np.clip(values.astype(np.int64), 0, 65535)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def _is_16bit_colour(image: Image.Image) -> bool:
    """True for RGB/RGBA/LA images whose file stores 16 bits per sample (Pillow would truncate them to 8)."""
    if image.mode not in ("RGB", "RGBA", "LA"):
        return False
    for tile in getattr(image, "tile", None) or []:
        args = tile.args if hasattr(tile, "args") else tile[3]
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if isinstance(rawmode, str) and ";16" in rawmode:
            return True
    return False


def _read_16bit_colour(path: Path) -> np.ndarray:
    """Decode a 16-bit-per-sample RGB(A)/LA still image with FFmpeg; returns uint16 (H, W, 3) in [0, 65535]."""
    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
            return frame.to_ndarray(format="rgb48le")
    except (av.FFmpegError, StopIteration, OSError) as error:
        raise VideoIOError(f"cannot decode the 16-bit image {path}: {error}; re-export it as an 8-bit PNG") from error


def image_to_rgb(image: Image.Image, *, name: str = "image", warned: set[str] | None = None) -> np.ndarray:
    """Convert a Pillow image of any common mode to an 8-bit RGB array (see the module docstring for the rules).

    Args:
        image: An opened Pillow image. 16-bit RGB(A)/LA files are not handled here (Pillow truncates them on load);
            :func:`read_image` routes those through FFmpeg.
        name: How to name the image in warnings and errors (usually its path).
        warned: A set of warning keys already emitted; conversions warn once per key and add it. ``None`` warns
            every time.

    Returns:
        uint8 array of shape (H, W, 3), values in [0, 255].

    Raises:
        VideoIOError: If the mode cannot be converted to RGB.
    """
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8).copy()
    if mode in ("L", "1"):
        gray = np.asarray(image.convert("L"), dtype=np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("LA", "La", "PA", "RGBA", "RGBa") or (mode == "P" and "transparency" in image.info):
        _warn_once(f"{name}: alpha channel discarded (colour channels kept as stored, not composited)", "alpha", warned)
        if mode in ("LA", "La"):
            gray = np.asarray(image.convert("LA"), dtype=np.uint8)[:, :, 0]
            return np.repeat(gray[:, :, None], 3, axis=2)
        return np.asarray(image.convert("RGBA"), dtype=np.uint8)[:, :, :3].copy()
    if mode == "P":
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    if mode.startswith("I;16") or mode == "I":
        _warn_once(f"{name}: 16-bit samples rounded to 8 bits (precision lost)", "16bit", warned)
        gray = _scale_16_to_8(np.asarray(image))
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        _warn_once(f"{name}: float samples assumed in [0, 1] and rounded to 8 bits (precision lost)", "float", warned)
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0)
        gray = frames_to_uint8(values)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "CMYK":
        _warn_once(f"{name}: CMYK converted to RGB without a colour profile (approximate)", "cmyk", warned)
    try:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except (ValueError, OSError) as error:
        raise VideoIOError(
            f"{name}: image mode {mode!r} cannot be converted to RGB ({error}); re-export it as an 8-bit RGB PNG"
        ) from error


def read_image(path: str | Path, *, warned: set[str] | None = None) -> np.ndarray:
    """Read one still image as 8-bit RGB.

    Args:
        path: An image file (png, jpg, jpeg, bmp, tif, tiff, webp, or anything Pillow reads).
        warned: Warning keys already emitted (see :func:`image_to_rgb`).

    Returns:
        uint8 array of shape (H, W, 3), values in [0, 255].

    Raises:
        VideoIOError: If the file is missing, not an image, truncated or of an unsupported mode.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoIOError(f"image {path} does not exist; check the path")
    try:
        with Image.open(path) as image:
            if _is_16bit_colour(image):
                _warn_once(f"{path}: 16-bit samples rounded to 8 bits (precision lost)", "16bit", warned)
                if image.mode in ("RGBA", "LA"):
                    _warn_once(
                        f"{path}: alpha channel discarded (colour channels kept as stored, not composited)",
                        "alpha",
                        warned,
                    )
                return _scale_16_to_8(_read_16bit_colour(path))
            image.load()
            return image_to_rgb(image, name=str(path), warned=warned)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise VideoIOError(f"cannot read image {path} ({error}); re-export it or remove it") from error


def _image_header_size(path: Path) -> tuple[int, int]:
    """(width, height) from an image file's header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise VideoIOError(f"cannot read image {path} ({error}); re-export it or remove it") from error


def _check_frame(frame: Any, width: int, height: int, where: str) -> np.ndarray:
    """Validate a frame for writing: uint8 (height, width, 3); returns it C-contiguous."""
    if not isinstance(frame, np.ndarray):
        raise VideoIOError(f"{where}: frames must be numpy arrays, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise VideoIOError(
            f"{where}: frames must be uint8 in [0, 255], got dtype {frame.dtype}; convert with "
            "np.clip(np.rint(x * 255), 0, 255).astype(np.uint8) for [0, 1] floats"
        )
    if frame.shape != (height, width, 3):
        raise VideoIOError(
            f"{where}: expected a frame of shape (H, W, 3) = ({height}, {width}, 3), got {frame.shape}; "
            "every frame must match the size given to open_writer (RGB, channels last)"
        )
    return np.ascontiguousarray(frame)


# ---------------------------------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------------------------------


class FrameSource(ABC):
    """A stream of uint8 RGB frames from a video file, an image folder or a single image.

    Iterating yields arrays of shape (H, W, 3), dtype uint8, values in [0, 255], one at a time (nothing is decoded
    ahead). A source can be iterated again (it restarts from the first frame); use one iteration at a time. Use it
    as a context manager or call :meth:`close`.

    Attributes:
        path: The path that was opened.
        kind: ``"video"``, ``"folder"`` or ``"image"``.
        fps: Frames per second (``DEFAULT_FPS`` for images unless overridden).
        width: Frame width in pixels.
        height: Frame height in pixels.
        num_frames: Number of frames, or ``None`` when the container does not record it (e.g. mkv).
        has_audio: Whether the source has an audio stream (always ``False`` for images).
    """

    path: Path
    kind: str
    fps: float
    width: int
    height: int
    num_frames: int | None
    has_audio: bool

    @property
    def fps_fraction(self) -> Fraction:
        """The frame rate as an exact fraction (e.g. 30000/1001), ready for :func:`open_writer`."""
        return fps_to_fraction(self.fps)

    @abstractmethod
    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield frames of shape (H, W, 3), uint8, in display order."""

    @abstractmethod
    def close(self) -> None:
        """Release file handles; the source cannot be iterated afterwards."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(path={str(self.path)!r}, {self.width}x{self.height}, fps={self.fps:g}, "
            f"num_frames={self.num_frames}, has_audio={self.has_audio})"
        )


class ImageSequenceSource(FrameSource):
    """Frames from a list of image files (a folder in natural order, or one image).

    Every file's size is checked from its header when the source is created, so a mixed-size folder fails before
    any decoding work.

    Args:
        path: The folder or image that was opened (reported in errors).
        files: Image files in frame order; must not be empty.
        fps: Frame rate to report.
        kind: ``"folder"`` or ``"image"``.

    Raises:
        VideoIOError: If ``files`` is empty, a file is unreadable, or sizes differ.
    """

    def __init__(self, path: Path, files: list[Path], *, fps: float = DEFAULT_FPS, kind: str = "folder") -> None:
        if not files:
            raise VideoIOError(
                f"folder {path} contains no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                "point to a folder of frames or a video file"
            )
        self.path = path
        self.kind = kind
        fps_to_fraction(fps)  # validates
        self.fps = float(fps)
        self.frame_paths: list[Path] = list(files)
        self.width, self.height = _image_header_size(files[0])
        for file in files[1:]:
            size = _image_header_size(file)
            if size != (self.width, self.height):
                raise VideoIOError(
                    f"{file} is {size[0]}x{size[1]} but {files[0]} is {self.width}x{self.height}; all frames in "
                    f"{path} must have the same size (resize or remove the odd one out)"
                )
        self.num_frames = len(files)
        self.has_audio = False
        self._warned: set[str] = set()
        self._closed = False

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._closed:
            raise VideoIOError(f"{self.path} was closed; open it again with open_frames()")
        for file in self.frame_paths:
            frame = read_image(file, warned=self._warned)
            if frame.shape[:2] != (self.height, self.width):
                raise VideoIOError(
                    f"{file} is {frame.shape[1]}x{frame.shape[0]} but the frames of {self.path} are "
                    f"{self.width}x{self.height}; was the file replaced while reading?"
                )
            yield frame

    def __len__(self) -> int:
        return len(self.frame_paths)

    def close(self) -> None:
        self._closed = True


def _size_tag(container: Any) -> tuple[int, int] | None:
    """The ``estinet_size=WxH`` true frame size stored in the container's comment, if any."""
    for key, value in container.metadata.items():
        if key.lower() == _SIZE_TAG_KEY:
            match = _SIZE_TAG_RE.search(str(value))
            if match:
                return int(match.group(1)), int(match.group(2))
    return None


def _frames_from_duration(stream: Any, rate: Any) -> int | None:
    """Frames implied by a video stream's own recorded duration (mkv's per-stream ``DURATION`` tag), or None.

    The container's duration is not used: it covers the audio too, which may outlast the video.
    """
    if not rate:
        return None
    seconds = None
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    else:
        for key, value in stream.metadata.items():
            if key.upper() == "DURATION":
                match = re.fullmatch(r"(\d+):(\d+):(\d+(?:\.\d*)?)", str(value).strip())
                if match:
                    seconds = int(match[1]) * 3600 + int(match[2]) * 60 + float(match[3])
    if not seconds or seconds <= 0:
        return None
    return round(seconds * float(rate))


def _frame_to_rgb(frame: Any) -> np.ndarray:
    """Convert a decoded PyAV video frame to a uint8 (H, W, 3) RGB array (honours the frame's colour tags)."""
    return frame.to_ndarray(format="rgb24", interpolation=_DECODE_FLAGS)


class VideoFileSource(FrameSource):
    """Frames decoded from a video file with PyAV, one at a time.

    The first frame is decoded when the source opens, so a corrupt or frame-less file fails immediately. The
    ``estinet_size=WxH`` tag written by :class:`VideoWriter` for odd sizes is honoured by cropping the padding. A
    display rotation (phone videos recorded upright) is applied, like FFmpeg's autorotate, so frames come out the
    way players show them (flips in the display matrix are ignored; angles other than multiples of 90 degrees are
    ignored with a warning); ``width``/``height`` describe the rotated frames.

    A video that ends before the frame count its container announces (a download or copy cut short, a damaged
    file) raises :class:`VideoIOError` at the end of the iteration, naming how many frames decoded of how many were
    announced, unless ``keep_partial`` is true: then the frames that decode are kept and an
    :class:`IncompleteVideoWarning` says how many. The count comes from the stream header (mp4, mov, avi) or, where
    the container has none (mkv, webm), from the video stream's recorded duration times its frame rate.

    Args:
        path: An FFmpeg-readable video file.
        fps: Report this frame rate instead of the container's (decoding is unaffected).
        keep_partial: keep the frames of a truncated or damaged video (with a warning) instead of failing.

    Attributes:
        announced_frames: the frame count the container announces (exact or from its duration), or None.
        frames_decoded: frames yielded by the latest complete iteration.

    Raises:
        VideoIOError: If the file cannot be opened, has no video stream or no decodable frame.
    """

    def __init__(self, path: Path, *, fps: float | None = None, keep_partial: bool = False) -> None:
        self.path = path
        self.kind = "video"
        self.keep_partial = bool(keep_partial)
        self.frames_decoded = 0
        self._warned: set[str] = set()
        self._closed = False
        self._container = self._open_container()
        stream = self._container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if fps is not None:
            fps_to_fraction(fps)  # validates
            self.fps = float(fps)
        elif rate:
            self.fps = float(rate)
        else:
            self.fps = DEFAULT_FPS
        self.num_frames = int(stream.frames) if stream.frames else None
        self._exact_count = self.num_frames is not None
        self.announced_frames = self.num_frames if self.num_frames is not None else _frames_from_duration(stream, rate)
        self.has_audio = len(self._container.streams.audio) > 0
        self._frames = self._decode(self._container)
        try:
            self._first = next(self._frames, None)
        except VideoIOError:
            self._container.close()
            raise
        if self._first is None:
            self._container.close()
            raise VideoIOError(f"video {path} contains no decodable video frames; re-export it or use another file")
        coded_w, coded_h = self._first.width, self._first.height
        self._coded_size = (coded_w, coded_h)
        self._crop = (coded_w, coded_h)
        tag = _size_tag(self._container)
        if tag is not None and coded_w - tag[0] in (0, 1) and coded_h - tag[1] in (0, 1):
            self._crop = tag  # padding added for yuv420p; crop it off when reading
        rotation = int(self._first.rotation)
        self._rot90 = 0  # counter-clockwise quarter turns, as np.rot90 counts them
        if rotation % 90:
            _warn_once(
                f"{path}: display rotation of {rotation} degrees is not a multiple of 90 and is ignored",
                "rotation",
                self._warned,
            )
        else:
            self._rot90 = (rotation // 90) % 4
        self.width, self.height = self._crop if self._rot90 % 2 == 0 else self._crop[::-1]
        self._used = False

    def _open_container(self) -> Any:
        try:
            container = av.open(str(self.path))
        except (av.FFmpegError, OSError) as error:
            raise VideoIOError(
                f"cannot read {self.path} as a video ({error}); check that the file is complete and is a video "
                "FFmpeg can decode (mp4, mkv, avi, mov, ...)"
            ) from error
        if not container.streams.video:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
            container.close()
            raise VideoIOError(
                f"{self.path} has no video stream (streams: {kinds}); pass a video file, an image or a frame folder"
            )
        container.streams.video[0].thread_type = "AUTO"
        return container

    def _decode(self, container: Any) -> Iterator[Any]:
        """Yield decoded PyAV frames of the first video stream, turning FFmpeg errors into :class:`VideoIOError`."""
        index = 0
        try:
            for frame in container.decode(video=0):
                yield frame
                index += 1
        except av.FFmpegError as error:
            if self.keep_partial and index > 0:
                self._incomplete(index, f"decoding failed after {index} frames ({error})")
                return
            of = f" of the {self.announced_frames} it announces" if self.announced_frames else ""
            raise VideoIOError(
                f"{self.path} is corrupt: decoding failed after {index} frames{of} ({error}); re-encode or repair it, "
                "or keep the frames that decode with --keep-partial-input (keep_partial=True)"
            ) from error

    def _incomplete(self, decoded: int, what: str) -> None:
        warnings.warn(
            f"{self.path} is truncated or damaged: {what}; keeping the {decoded} frames that decode "
            "(keep_partial / --keep-partial-input)",
            IncompleteVideoWarning,
            stacklevel=4,
        )

    def _check_complete(self, decoded: int) -> None:
        """Refuse (or, with ``keep_partial``, warn about) a video that ended before its announced frame count."""
        self.frames_decoded = decoded
        expected = self.announced_frames
        if expected is None:
            return
        # an exact count from the header must be met; one derived from a duration may be off by rounding
        slack = 0 if self._exact_count else max(1, expected // 50)
        if decoded >= expected - slack:
            return
        what = f"{decoded} of the {expected} frames its container announces decoded"
        if self.keep_partial:
            self._incomplete(decoded, what)
            return
        raise VideoIOError(
            f"{self.path} is truncated or damaged: {what}; repair or re-download it, or keep the {decoded} frames "
            "with --keep-partial-input (keep_partial=True)"
        )

    def _to_rgb(self, frame: Any, index: int) -> np.ndarray:
        if (frame.width, frame.height) != self._coded_size:
            raise VideoIOError(
                f"{self.path} changes resolution at frame {index} from {self._coded_size[0]}x{self._coded_size[1]} "
                f"to {frame.width}x{frame.height}; re-encode it at one fixed size"
            )
        fmt = frame.format
        if fmt is not None and max((c.bits for c in fmt.components), default=8) > 8:
            _warn_once(
                f"{self.path}: {fmt.name} frames converted to 8-bit rgb24 (precision lost)", "highbit", self._warned
            )
        rgb = _frame_to_rgb(frame)
        if self._crop != self._coded_size:
            rgb = np.ascontiguousarray(rgb[: self._crop[1], : self._crop[0]])
        if self._rot90:
            rgb = np.ascontiguousarray(np.rot90(rgb, k=self._rot90))
        return rgb

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._closed:
            raise VideoIOError(f"{self.path} was closed; open it again with open_frames()")
        if self._used:  # restart: reopen rather than seek, which is exact for every container
            self._container.close()
            self._container = self._open_container()
            self._frames = self._decode(self._container)
            self._first = next(self._frames, None)
        self._used = True
        first, self._first = self._first, None
        if first is None:
            return
        yield self._to_rgb(first, 0)
        count = 1
        for index, frame in enumerate(self._frames, start=1):
            yield self._to_rgb(frame, index)
            count += 1
        self._check_complete(count)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._first = None
            self._container.close()


def open_frames(path: str | Path, *, fps: float | None = None, keep_partial: bool = False) -> FrameSource:
    """Open a video file, an image folder or a single image as a streaming :class:`FrameSource`.

    A folder yields its images (suffixes in :data:`IMAGE_SUFFIXES`, hidden files skipped) in natural order by name
    (``2.png`` before ``10.png``); other files in it are ignored. A single image is a one-frame source. Any other
    file is decoded with FFmpeg.

    Args:
        path: Video file, image folder or image file.
        fps: Frame rate to report. For folders and images the default is :data:`DEFAULT_FPS`; for videos it
            replaces the container's rate (useful when that is wrong).
        keep_partial: for a video that is truncated or damaged, keep the frames that decode (with an
            :class:`IncompleteVideoWarning`) instead of raising :class:`VideoIOError` when the iteration ends.

    Returns:
        An open :class:`FrameSource`; close it (or use ``with``).

    Raises:
        VideoIOError: If the path is missing, the folder has no images or mixed sizes, or the file is unreadable.
    """
    path = Path(path)
    if fps is not None:
        fps_to_fraction(fps)
    if path.is_dir():
        files = [
            entry
            for entry in path.iterdir()
            if entry.suffix.lower() in IMAGE_SUFFIXES and not entry.name.startswith(".") and entry.is_file()
        ]
        files.sort(key=natural_sort_key)
        return ImageSequenceSource(path, files, fps=DEFAULT_FPS if fps is None else fps, kind="folder")
    if not path.exists():
        raise VideoIOError(f"{path} does not exist; pass an existing video file, image or folder of frames")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSequenceSource(path, [path], fps=DEFAULT_FPS if fps is None else fps, kind="image")
    return VideoFileSource(path, fps=fps, keep_partial=keep_partial)


def read_all(path: str | Path, *, fps: float | None = None) -> np.ndarray:
    """Read every frame of a small clip into memory.

    Args:
        path: Video file, image folder or image (see :func:`open_frames`).
        fps: Passed to :func:`open_frames` (has no effect on the pixels).

    Returns:
        uint8 array of shape (T, H, W, 3), values in [0, 255].

    Raises:
        VideoIOError: As :func:`open_frames`.
    """
    with open_frames(path, fps=fps) as source:
        return np.stack(list(source), axis=0)


# ---------------------------------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------------------------------


def _check_size(width: int, height: int) -> tuple[int, int]:
    for label, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise VideoIOError(f"frame {label} must be a positive integer, got {value!r}")
    return int(width), int(height)


class FrameSink(ABC):
    """Destination for uint8 RGB frames; atomic (the final path appears only after a successful :meth:`close`).

    Use as a context manager: an exception inside the ``with`` block calls :meth:`abort`, which deletes the
    temporary output and leaves any existing file at ``path`` untouched.

    Attributes:
        path: Final output path.
        fps: Frame rate as an exact fraction.
        width: Frame width in pixels.
        height: Frame height in pixels.
        frames_written: Frames accepted so far.
    """

    path: Path
    fps: Fraction
    width: int
    height: int
    frames_written: int

    @abstractmethod
    def write(self, frame: np.ndarray) -> None:
        """Append one frame: uint8 array of shape (height, width, 3), values in [0, 255]."""

    @abstractmethod
    def close(self) -> None:
        """Finish the output and move it to :attr:`path`. Raises :class:`VideoIOError` if no frame was written."""

    @abstractmethod
    def abort(self) -> None:
        """Discard the temporary output; :attr:`path` is left as it was."""

    def __enter__(self) -> FrameSink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


FRAME_FOLDER_MARKER = ".estinet-frames"
"""File in every frame folder estinet writes, listing the frames it wrote (one name a line)."""


def frame_names(files: list[Path]) -> list[str]:
    """Output names that keep the input frames' names: ``stem.png`` (``name.png`` where two stems collide)."""
    names = [f"{file.stem}.png" for file in files]
    if len(set(names)) != len(names):
        names = [file.name if file.suffix.lower() == ".png" else f"{file.name}.png" for file in files]
    return names


def _estinet_frames(folder: Path) -> set[str] | None:
    """The frame names an estinet frame folder lists in its marker, or None when it has no marker."""
    try:
        return set((folder / FRAME_FOLDER_MARKER).read_text(encoding="utf-8").split("\n")) - {""}
    except (OSError, UnicodeDecodeError):
        return None


class FrameFolderWriter(FrameSink):
    """Write frames as lossless PNG files in a folder: the given ``names``, or ``00000001.png``, ``00000002.png``, ...

    The frames go to a hidden sibling folder that is renamed to ``path`` on :meth:`close`; a hidden
    :data:`FRAME_FOLDER_MARKER` file in it lists the frames written. With ``overwrite=True`` an existing folder is
    replaced only if it is such an estinet output holding nothing but the frames its marker lists: ``--overwrite``
    never deletes files estinet did not write (a folder of the user's own images is refused).

    Args:
        path: Output folder.
        fps: Frame rate (not stored in PNGs; kept for the caller).
        width: Frame width in pixels.
        height: Frame height in pixels.
        overwrite: Replace an existing output.
        compress_level: PNG zlib level 0-9 (lossless at every level; higher is smaller and slower).
        names: file names of the frames in order (e.g. :func:`frame_names` of an input folder's files, so that
            output frames keep the input's names); frames past the list are numbered ``00000001.png``, ...

    Raises:
        VideoIOError: If ``path`` exists and ``overwrite`` is false, or cannot be replaced safely.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float | Fraction,
        width: int,
        height: int,
        *,
        overwrite: bool = False,
        compress_level: int = 3,
        names: list[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.fps = fps_to_fraction(fps)
        self.width, self.height = _check_size(width, height)
        self.frames_written = 0
        self._compress_level = int(compress_level)
        self._names = list(names or [])
        if len(set(self._names)) != len(self._names) or any(
            not n or "/" in n or n.startswith(".") or not n.lower().endswith(".png") for n in self._names
        ):
            raise VideoIOError(f"frame names for {self.path} must be distinct plain '*.png' file names")
        self._written: list[str] = []
        if self.path.exists() or self.path.is_symlink():
            if not overwrite:
                raise VideoIOError(
                    f"{self.path} already exists; pass overwrite=True (CLI: --overwrite) or pick another path"
                )
            if self.path.is_dir():
                ours = _estinet_frames(self.path)
                entries = [p.name for p in self.path.iterdir() if p.name != FRAME_FOLDER_MARKER]
                foreign = sorted(name for name in entries if ours is None or name not in ours)
                if foreign:
                    listed = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
                    why = "it is not a frame folder estinet wrote" if ours is None else "estinet did not write"
                    raise VideoIOError(
                        f"refusing to overwrite {self.path}: it holds files {why} ({listed}); --overwrite only "
                        "replaces estinet's own outputs, so delete them yourself or pick another path"
                    )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(self.path)
        self._tmp = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")
        if self._tmp.exists():
            shutil.rmtree(self._tmp)
        self._tmp.mkdir()
        self._done = False

    def write(self, frame: np.ndarray) -> None:
        if self._done:
            raise VideoIOError(f"writer for {self.path} is closed; open a new one")
        frame = _check_frame(frame, self.width, self.height, str(self.path))
        index = self.frames_written
        name = self._names[index] if index < len(self._names) else f"{index + 1:08d}.png"
        if index >= len(self._names) and name in self._names:
            raise VideoIOError(f"frame {index + 1} of {self.path} would replace {name}; give a name for every frame")
        Image.fromarray(frame, mode="RGB").save(self._tmp / name, compress_level=self._compress_level)
        self._written.append(name)
        self.frames_written += 1

    def close(self) -> None:
        if self._done:
            return
        if self.frames_written == 0:
            self.abort()
            raise VideoIOError(f"no frames were written to {self.path}; nothing was saved")
        self._done = True
        try:
            (self._tmp / FRAME_FOLDER_MARKER).write_text("".join(f"{n}\n" for n in self._written), encoding="utf-8")
            if self.path.is_dir():
                old = self.path.with_name(f".{self.path.name}.replaced-{os.getpid()}")
                os.replace(self.path, old)
                os.replace(self._tmp, self.path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                if self.path.exists():
                    self.path.unlink()
                os.replace(self._tmp, self.path)
        except BaseException:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise

    def abort(self) -> None:
        self._done = True
        shutil.rmtree(self._tmp, ignore_errors=True)


def _aac_layout(layout: Any) -> str:
    """A standard channel layout name AAC accepts for a source layout (unnamed layouts map by channel count)."""
    count = layout.nb_channels
    if count in _AAC_LAYOUTS:
        return _AAC_LAYOUTS[count]
    return "stereo"


class _AudioCarrier:
    """Moves the first audio stream of a source file into an output container (remux, or AAC transcode).

    Audio timestamps are shifted by the source video stream's start time, because the output video starts at 0:
    what played together in the source plays together in the output (MPEG-TS sources start at e.g. 1.4 s).
    """

    def __init__(self, source: Path, output: Any, output_suffix: str) -> None:
        try:
            self._input = av.open(str(source))
        except (av.FFmpegError, OSError) as error:
            raise VideoIOError(
                f"cannot read audio from {source} ({error}); pass audio_from=None to skip audio"
            ) from error
        self._output = output
        self.active = bool(self._input.streams.audio)
        if not self.active:
            self._input.close()
            return
        in_stream = self._input.streams.audio[0]
        self._shift = Fraction(0)  # seconds
        if self._input.streams.video:
            video = self._input.streams.video[0]
            if video.start_time is not None and video.time_base is not None:
                self._shift = video.start_time * video.time_base
        codec_name = in_stream.codec_context.name
        self.copy = True
        self._out_stream: Any = None
        if not (output_suffix in (".mp4", ".m4v") and codec_name.startswith("pcm_")):
            try:
                self._out_stream = output.add_stream_from_template(in_stream)
            except (ValueError, av.FFmpegError):
                self._out_stream = None
        if self._out_stream is None:  # the container cannot hold this codec: transcode to AAC
            self.copy = False
            source_rate = in_stream.codec_context.sample_rate
            rate = source_rate if source_rate in _AAC_SAMPLE_RATES else 48000
            layout = _aac_layout(in_stream.codec_context.layout)
            self._out_stream = output.add_stream("aac", rate=rate)
            self._out_stream.layout = layout
            self._resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
            self._rate = rate
            self._samples: int | None = None  # output sample clock, started from the first decoded frame
        self._packets = self._input.demux(in_stream)
        self._pending: Any = None
        self._exhausted = False

    def _emit(self, packet: Any) -> None:
        if self.copy:
            if self._shift:
                delta = round(self._shift / packet.time_base)
                packet.pts = packet.pts - delta if packet.pts is not None else None
                packet.dts = packet.dts - delta
            packet.stream = self._out_stream
            self._output.mux(packet)
            return
        for frame in packet.decode():
            self._encode(frame)

    def _encode(self, frame: Any) -> None:
        if self._samples is None:
            start = frame.time if frame is not None and frame.time is not None else 0.0
            self._samples = max(0, round((start - float(self._shift)) * self._rate))
        for resampled in self._resampler.resample(frame):
            resampled.pts = self._samples
            resampled.time_base = Fraction(1, self._rate)
            self._samples += resampled.samples
            for out_packet in self._out_stream.encode(resampled):
                self._output.mux(out_packet)

    def pump(self, until: float | None) -> None:
        """Mux source audio up to ``until`` seconds (all of it when ``None``), keeping the output interleaved."""
        if not self.active or self._exhausted:
            return
        while True:
            packet = self._pending if self._pending is not None else next(self._packets, None)
            self._pending = None
            if packet is None:
                self._exhausted = True
                return
            if packet.size == 0 or packet.dts is None:
                continue
            stamp = packet.pts if packet.pts is not None else packet.dts
            if until is not None and float(stamp * packet.time_base - self._shift) > until:
                self._pending = packet
                return
            self._emit(packet)

    def finish(self) -> None:
        """Mux the rest of the audio, flush the encoder (when transcoding) and close the source."""
        if not self.active:
            return
        self.pump(None)
        if not self.copy:
            self._encode(None)
            for out_packet in self._out_stream.encode(None):
                self._output.mux(out_packet)
        self.close()

    def close(self) -> None:
        if self.active:
            self.active = False
            self._input.close()


X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
"""x264 speed presets; :class:`VideoWriter` uses ``veryfast`` by default: 2x faster than ``medium`` at 640x480 and
CRF 18 (7.1 vs 13.9 ms per frame on the project's 2-core EPYC, ``benchmarks/bench_streaming.py --encoders``), with
files no larger on that clip."""


class VideoWriter(FrameSink):
    """Encode frames into a video file with PyAV; see :func:`open_writer` for the codec choice.

    Args:
        path: Output file; its suffix picks the container (one of :data:`VIDEO_SUFFIXES`).
        fps: Frame rate; converted with :func:`fps_to_fraction` (29.97 is stored as 30000/1001).
        width: Frame width in pixels (odd sizes are padded for yuv420p codecs and cropped back on reading).
        height: Frame height in pixels.
        kind: ``"h264"``, ``"mpeg4"``, ``"lossless"``, or ``None`` for the suffix's default.
        crf: x264 constant rate factor 0-51 (lower = better; 18 is visually lossless). Ignored by MPEG-4 (which uses
            a fixed high-quality quantiser) and by lossless outputs.
        audio_from: Copy the audio of this media file into the output (see the module docstring).
        overwrite: Replace an existing output file.
        x264_preset: x264 speed preset (:data:`X264_PRESETS`) of H.264 and lossless-x264 outputs; slower presets give
            smaller files at the same quality.

    Raises:
        VideoIOError: For an existing output without ``overwrite``, an unsupported suffix/kind, a bad size, rate,
            crf or preset, or an unreadable ``audio_from``.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float | Fraction,
        width: int,
        height: int,
        *,
        kind: str | None = None,
        crf: int = 18,
        audio_from: str | Path | None = None,
        overwrite: bool = False,
        x264_preset: str = "veryfast",
    ) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_SUFFIXES:
            raise VideoIOError(
                f"cannot write a video to {self.path}: use one of {', '.join(sorted(VIDEO_SUFFIXES))}, "
                "or a path without suffix for a PNG frame folder"
            )
        if kind is None:
            kind = "mpeg4" if suffix == ".avi" else "h264"
        if kind not in ("h264", "mpeg4", "lossless"):
            raise VideoIOError(f"unknown video kind {kind!r} for {self.path}; use one of {', '.join(WRITER_KINDS)}")
        if isinstance(crf, bool) or not isinstance(crf, int | np.integer) or not 0 <= crf <= 51:
            raise VideoIOError(f"crf must be an integer in [0, 51], got {crf!r}; 18 is visually lossless")
        if x264_preset not in X264_PRESETS:
            raise VideoIOError(f"unknown x264 preset {x264_preset!r}; use one of {', '.join(X264_PRESETS)}")
        self.fps = fps_to_fraction(fps)
        self.width, self.height = _check_size(width, height)
        self.kind = kind
        self.frames_written = 0
        if self.path.is_dir():
            raise VideoIOError(f"{self.path} is a folder; pick a file name for the video")
        if self.path.exists() and not overwrite:
            raise VideoIOError(
                f"{self.path} already exists; pass overwrite=True (CLI: --overwrite) or pick another path"
            )
        audio_path = Path(audio_from) if audio_from is not None else None
        if audio_path is not None and not audio_path.exists():
            raise VideoIOError(f"audio source {audio_path} does not exist; pass audio_from=None to skip audio")
        if audio_path is not None and (audio_path.is_dir() or audio_path.suffix.lower() in IMAGE_SUFFIXES):
            audio_path = None  # frame folders and images have no audio

        if kind == "lossless" and suffix in (".mkv", ".avi"):
            codec, pix_fmt, options, needs_even = "ffv1", "bgr0", {}, False
        elif kind == "lossless":
            codec, pix_fmt, options, needs_even = "libx264rgb", "rgb24", {"qp": "0", "preset": x264_preset}, False
        elif kind == "mpeg4":
            codec, pix_fmt, options, needs_even = "mpeg4", "yuv420p", {}, True
        else:
            codec, pix_fmt, needs_even = "libx264", "yuv420p", True
            # swscale's RGB -> 4:2:0 conversion (see _ENCODE_FLAGS) produces centre-sited chroma: say so in the VUI,
            # or decoders assume H.264's usual left siting and shift the chroma by a quarter pixel.
            options = {"crf": str(int(crf)), "preset": x264_preset, "chroma_sample_location": "center"}
        if codec not in av.codecs_available:
            raise VideoIOError(f"this PyAV build has no {codec} encoder, needed for {self.path}; try kind='lossless'")
        self._pad = (self.height % 2 if needs_even else 0, self.width % 2 if needs_even else 0)
        if any(self._pad):
            padded = f"{self.width + self._pad[1]}x{self.height + self._pad[0]}"
            edges = " and ".join(e for e, n in (("right column", self._pad[1]), ("bottom row", self._pad[0])) if n)
            warnings.warn(
                f"{self.path}: {codec} in yuv420p needs even sizes, so the {self.width}x{self.height} frames are "
                f"stored as {padded} (the {edges} repeated); estinet reads them back at {self.width}x{self.height} "
                "but other players show the extra line; write a lossless video (--lossless) or a frame folder to "
                "store the size exactly",
                OddSizeWarning,
                stacklevel=3,
            )

        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(self.path)
        self._tmp = temp_sibling(self.path)
        self._tmp.unlink(missing_ok=True)
        self._done = False
        self._audio: _AudioCarrier | None = None
        try:
            self._container = av.open(str(self._tmp), mode="w")
        except (av.FFmpegError, OSError) as error:
            raise VideoIOError(f"cannot create {self._tmp} ({error}); check the folder is writable") from error
        try:
            if any(self._pad):
                self._container.metadata[_SIZE_TAG_KEY] = f"estinet_size={self.width}x{self.height}"
            stream = self._container.add_stream(codec, rate=self.fps)
            stream.width = self.width + self._pad[1]
            stream.height = self.height + self._pad[0]
            stream.pix_fmt = pix_fmt
            if pix_fmt == "yuv420p":
                context = stream.codec_context
                context.colorspace = _BT601
                context.color_primaries = _BT601
                context.color_trc = _BT601
                context.color_range = _LIMITED_RANGE
            if codec == "mpeg4":
                # fixed-quantiser mode instead of the 200 kb/s default bit rate; PyAV cannot set the per-frame
                # quantiser, so FFmpeg's default one applies (measured: as close to the input as x264 at CRF 18)
                stream.codec_context.qscale = True
            stream.options = options
            self._stream = stream
            if audio_path is not None:
                carrier = _AudioCarrier(audio_path, self._container, suffix)
                self._audio = carrier if carrier.active else None
        except BaseException:
            self.abort()
            raise

    def write(self, frame: np.ndarray) -> None:
        if self._done:
            raise VideoIOError(f"writer for {self.path} is closed; open a new one")
        frame = _check_frame(frame, self.width, self.height, str(self.path))
        if any(self._pad):
            frame = np.pad(frame, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        if self._stream.pix_fmt == "yuv420p":  # convert here, with accurate rounding, rather than in the encoder
            video_frame = video_frame.reformat(
                format="yuv420p",
                dst_colorspace=Colorspace.ITU601,
                dst_color_range=ColorRange.MPEG,
                interpolation=_ENCODE_FLAGS,
            )
        video_frame.pts = self.frames_written
        video_frame.time_base = 1 / self.fps
        try:
            for packet in self._stream.encode(video_frame):
                self._container.mux(packet)
            self.frames_written += 1
            if self._audio is not None:
                self._audio.pump(self.frames_written / float(self.fps))
        except av.FFmpegError as error:
            raise VideoIOError(f"encoding frame {self.frames_written} of {self.path} failed ({error})") from error

    def close(self) -> None:
        if self._done:
            return
        if self.frames_written == 0:
            self.abort()
            raise VideoIOError(f"no frames were written to {self.path}; nothing was saved")
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            if self._audio is not None:
                self._audio.finish()
            self._container.close()
            self._done = True
            commit_file(self._tmp, self.path)
        except BaseException as error:
            self.abort()
            if isinstance(error, av.FFmpegError):
                raise VideoIOError(f"finishing {self.path} failed ({error}); nothing was saved") from error
            raise

    def abort(self) -> None:
        self._done = True
        if self._audio is not None:
            self._audio.close()
        container = getattr(self, "_container", None)
        if container is not None:
            with contextlib.suppress(av.FFmpegError, OSError):
                container.close()
        self._tmp.unlink(missing_ok=True)


def open_writer(
    path: str | Path,
    fps: float | Fraction,
    width: int,
    height: int,
    *,
    kind: str | None = None,
    crf: int = 18,
    audio_from: str | Path | None = None,
    overwrite: bool = False,
    x264_preset: str = "veryfast",
    names: list[str] | None = None,
) -> FrameSink:
    """Open an atomic frame writer chosen by ``kind`` or by the path's suffix.

    ============================  =======================================================================
    path / kind                   output
    ============================  =======================================================================
    ``.mp4 .m4v .mov .mkv``       H.264 (libx264, yuv420p, ``crf``), tagged BT.601 limited range
    ``.avi``                      MPEG-4 Part 2 (yuv420p, fixed high-quality quantiser)
    ``kind="lossless"``           FFV1 (RGB) in ``.mkv``/``.avi``; libx264rgb QP 0 in ``.mp4``/``.mov``
    no suffix or ``"frames"``     folder of PNGs ``00000001.png``, ``00000002.png``, ...
    ============================  =======================================================================

    An existing output is refused unless ``overwrite=True`` (checked here, before any work).

    Args:
        path: Output file or folder.
        fps: Frame rate, e.g. 25, 29.97 (stored as 30000/1001) or a :class:`~fractions.Fraction`.
        width: Frame width in pixels (any size; odd sizes round-trip exactly in size).
        height: Frame height in pixels.
        kind: ``"h264"``, ``"mpeg4"``, ``"lossless"``, ``"frames"``, or ``None`` for the suffix's default.
        crf: x264 constant rate factor 0-51 for H.264 outputs.
        audio_from: Media file whose first audio stream is copied into a video output (ignored with a warning for
            frame-folder outputs; a source without audio, an image or a frame folder adds none).
        overwrite: Replace an existing output.
        x264_preset: x264 speed preset of H.264 and lossless-x264 outputs (:data:`X264_PRESETS`).
        names: frame file names of a frame-folder output (see :class:`FrameFolderWriter`); ignored for videos.

    Returns:
        A :class:`FrameSink`; write uint8 (height, width, 3) frames, then close it (or use ``with``).

    Raises:
        VideoIOError: See :class:`VideoWriter` and :class:`FrameFolderWriter`.
    """
    path = Path(path)
    if kind is not None and kind not in WRITER_KINDS:
        raise VideoIOError(f"unknown writer kind {kind!r} for {path}; use one of {', '.join(WRITER_KINDS)} or None")
    if kind == "frames" or (kind is None and path.suffix == ""):
        if audio_from is not None:
            warnings.warn(
                f"a PNG frame folder ({path}) cannot hold audio; the audio of {audio_from} is not written",
                UserWarning,
                stacklevel=2,
            )
        return FrameFolderWriter(path, fps, width, height, overwrite=overwrite, names=names)
    if path.suffix == "":
        raise VideoIOError(f"cannot tell the container for {path}; add a suffix such as .mp4 or .mkv")
    return VideoWriter(
        path,
        fps,
        width,
        height,
        kind=kind,
        crf=crf,
        audio_from=audio_from,
        overwrite=overwrite,
        x264_preset=x264_preset,
    )


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float | Fraction,
    **kwargs: Any,
) -> Path:
    """Write frames to ``path`` in one call (size taken from the first frame).

    Args:
        path: Output file or folder (see :func:`open_writer`).
        frames: uint8 arrays of shape (H, W, 3), or one (T, H, W, 3) array.
        fps: Frame rate.
        **kwargs: Passed to :func:`open_writer` (``kind``, ``crf``, ``audio_from``, ``overwrite``).

    Returns:
        The final output path.

    Raises:
        VideoIOError: If ``frames`` is empty or a frame is invalid, or as :func:`open_writer`.
    """
    iterator = iter(frames)
    first = next(iterator, None)
    if first is None:
        raise VideoIOError(f"no frames given for {path}; nothing was saved")
    if not isinstance(first, np.ndarray) or first.ndim != 3:
        raise VideoIOError(f"{path}: frames must be (H, W, 3) uint8 arrays, got {getattr(first, 'shape', first)!r}")
    with open_writer(path, fps, first.shape[1], first.shape[0], **kwargs) as sink:
        sink.write(first)
        for frame in iterator:
            sink.write(frame)
    return sink.path
