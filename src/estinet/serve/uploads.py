"""What ``estinet serve`` does with an upload before a job may use it: names, zips, limits, checks and previews.

Nothing here trusts the client. Its file name is only shown (:func:`display_name`) and offered back as the download
name; the upload is stored as ``upload<suffix>`` in the job's folder, the suffix taken from a fixed list. A zip of
frames is checked before anything is extracted (:func:`extract_frames`): entry count, declared and actual
uncompressed size, absolute paths, ``..``, links and encryption; its images are written as ``00000001.png``, ... in
the natural order of their names, so an entry's name never becomes a path. :func:`probe` opens the result as
:func:`estinet.data.video_io.open_frames` would (so a text file named ``.mp4`` fails here), and :func:`check_frames`
decodes every frame once, which counts them against the frame limit, finds truncated files, and writes the
browser-playable rainy preview (H.264, yuv420p, even size) on the way.

Every refusal is an :class:`UploadError` whose message names the upload by its shown name, never by a server path.
"""

from __future__ import annotations

import re
import shutil
import stat
import threading
import unicodedata
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path, PurePosixPath

from estinet.errors import EstinetError

__all__ = [
    "MAX_PIXELS",
    "JobCancelledError",
    "Limits",
    "ServeError",
    "SourceInfo",
    "UploadError",
    "check_frames",
    "display_name",
    "extract_frames",
    "is_zip",
    "probe",
    "public_message",
    "stored_suffix",
    "transcode_preview",
]

MAX_PIXELS = 7680 * 4320
"""Largest frame (8K UHD) the server accepts; a larger one would be a memory bomb on a shared machine."""

PREVIEW_CRF = 23
"""x264 quality of the previews the page plays (the result itself uses the job's quality)."""

VIDEO_UPLOAD_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".wmv"})
"""Suffixes an uploaded video keeps on disk (FFmpeg guesses some containers by suffix); any other becomes ``.bin``."""

KEEP_PARTIAL_FLAG = "with --keep-partial-input (keep_partial=True)"
KEEP_PARTIAL_OPTION = "with the option 'damaged video: derain the frames that decode'"
"""How :mod:`estinet.data.video_io`'s advice for a damaged video is reworded for the page."""

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or the end record of an empty archive
_CHUNK = 1 << 20


class ServeError(EstinetError, ValueError):
    """Options ``estinet serve`` cannot start with (limits, devices, models)."""


class UploadError(ServeError):
    """An upload or option the server refuses; the message is shown in the page.

    Attributes:
        status: the HTTP status code to answer with (413 for limits, 422 for unusable content, 400 for options).
    """

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class JobCancelledError(Exception):
    """Raised inside a job's work when the job was cancelled; its outputs are removed."""


@dataclass(frozen=True)
class Limits:
    """What one upload may be.

    Attributes:
        max_upload_bytes: bytes of the uploaded file.
        max_frames: frames of the video (or images in a zip).
        max_unzip_bytes: total uncompressed bytes of the images a zip holds.
        max_zip_entries: entries (files and folders) a zip may list.
        max_pixels: width x height of a frame.
    """

    max_upload_bytes: int
    max_frames: int
    max_unzip_bytes: int
    max_zip_entries: int
    max_pixels: int = MAX_PIXELS

    @classmethod
    def from_megabytes(cls, max_upload_mb: float, max_frames: int) -> Limits:
        """Limits from the command-line units: a zip may unpack to 4x the upload limit and list 2 entries per frame
        (plus a few), room for the ``__MACOSX`` shadow files macOS adds."""
        if not max_upload_mb > 0:
            raise ServeError(f"max_upload_mb must be positive, got {max_upload_mb!r}")
        if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
            raise ServeError(f"max_frames must be a positive integer, got {max_frames!r}")
        upload = int(max_upload_mb * 1024 * 1024)
        return cls(upload, max_frames, 4 * upload, 2 * max_frames + 16)


@dataclass(frozen=True)
class SourceInfo:
    """A checked upload.

    Attributes:
        frames: decoded frames.
        width: frame width.
        height: frame height.
        fps: frame rate (25 for frame folders).
        has_audio: whether the video has an audio stream.
    """

    frames: int
    width: int
    height: int
    fps: Fraction
    has_audio: bool


_UNSAFE_NAME = re.compile(r"[^\w .()+,=@#&'-]")


def display_name(name: str | None, fallback: str = "upload") -> str:
    """The client's file name reduced to a safe label: last path component, no control or odd characters, at most
    80 characters, no leading dots. Only ever shown and offered as a download name, never used as a path."""
    text = unicodedata.normalize("NFC", name or "")
    text = re.split(r"[/\\]", text)[-1]
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")
    text = _UNSAFE_NAME.sub("_", text).strip(" .")
    if len(text) > 80:
        stem, dot, suffix = text.rpartition(".")
        text = stem[: 79 - len(suffix)] + dot + suffix if dot and len(suffix) <= 8 else text[:80]
    return text or fallback


def stored_suffix(name: str) -> str:
    """The suffix the upload is stored under: the client's (lower case) when it is a known video or image suffix,
    else ``.bin`` (FFmpeg then recognises the container from its content)."""
    from estinet.data.video_io import IMAGE_SUFFIXES

    suffix = PurePosixPath(display_name(name)).suffix.lower()
    return suffix if suffix in VIDEO_UPLOAD_SUFFIXES | IMAGE_SUFFIXES else ".bin"


def is_zip(path: Path) -> bool:
    """Whether the file starts like a zip archive (by content, not by name)."""
    with path.open("rb") as fh:
        return fh.read(4) in _ZIP_MAGIC


def public_message(error: BaseException, hide: dict[str, str]) -> str:
    """The error's message with every server path in ``hide`` replaced by what the user knows it as.

    Args:
        error: the exception.
        hide: ``{server path: replacement}``, applied longest path first (a file before its folder).
    """
    text = str(error)
    for path in sorted(hide, key=len, reverse=True):
        text = text.replace(path, hide[path])
    return " ".join(text.split())


def _entry_parts(info: zipfile.ZipInfo, label: str) -> tuple[str, ...]:
    """The entry's path components, refusing absolute paths, drive letters, ``..`` and links."""
    raw = info.filename.replace("\\", "/")
    parts = PurePosixPath(raw).parts
    if raw.startswith("/") or (parts and re.fullmatch(r"[A-Za-z]:", parts[0])) or ".." in parts:
        raise UploadError(
            f"{label}: the zip entry {display_name(raw)!r} points outside the archive (an absolute path or '..'); "
            "zip the frames folder itself"
        )
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UploadError(f"{label}: the zip entry {display_name(raw)!r} is a symbolic link; zip the frames themselves")
    if info.flag_bits & 0x1:
        raise UploadError(f"{label}: the zip is encrypted; upload an unencrypted zip of frames")
    return tuple(part for part in parts if part not in ("", "."))


def extract_frames(archive: Path, folder: Path, limits: Limits, label: str) -> int:
    """Extract the images of a zip of frames into ``folder`` as ``00000001.png``, ``00000002.jpg``, ...

    Images are the entries with an image suffix; hidden files, ``__MACOSX`` and other files are ignored. They must
    lie in one folder of the archive (the frames of one video) and are numbered in the natural order of their names.

    Args:
        archive: the uploaded zip.
        folder: an empty folder to extract into.
        limits: the entry count, image count and uncompressed size limits.
        label: the upload's shown name, for messages.

    Returns:
        The number of images extracted.

    Raises:
        UploadError: an unreadable, empty, encrypted or unsafe zip, or one over the limits (nothing is left in
            ``folder`` on errors other than a corrupt entry, which the caller removes with the job).
    """
    from estinet.data.video_io import IMAGE_SUFFIXES, natural_sort_key

    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as error:
        raise UploadError(f"{label} is not a readable zip archive ({error}); zip the frames folder again") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_zip_entries:
            raise UploadError(
                f"{label} lists {len(infos)} entries; this server accepts at most {limits.max_zip_entries} "
                f"(frames limit {limits.max_frames}, --max-frames)",
                status=413,
            )
        images: list[tuple[tuple[str, ...], zipfile.ZipInfo]] = []
        for info in infos:
            parts = _entry_parts(info, label)
            if info.is_dir() or not parts:
                continue
            if parts[-1].startswith(".") or "__MACOSX" in parts:
                continue
            if PurePosixPath(parts[-1]).suffix.lower() in IMAGE_SUFFIXES:
                images.append((parts, info))
        if not images:
            raise UploadError(
                f"{label} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); upload a video or a zip of the "
                "frames of one video"
            )
        folders = sorted({"/".join(parts[:-1]) or "." for parts, _ in images})
        if len(folders) > 1:
            shown = ", ".join(display_name(f, ".") for f in folders[:3])
            raise UploadError(
                f"{label} has images in {len(folders)} folders ({shown}{', ...' if len(folders) > 3 else ''}); "
                "zip the frames of one video, in one folder"
            )
        if len(images) > limits.max_frames:
            raise UploadError(
                f"{label} holds {len(images)} images; this server accepts at most {limits.max_frames} frames "
                "(--max-frames)",
                status=413,
            )
        declared = sum(info.file_size for _, info in images)
        if declared > limits.max_unzip_bytes:
            raise UploadError(
                f"{label} unpacks to {declared / 2**20:.0f} MiB; this server accepts at most "
                f"{limits.max_unzip_bytes / 2**20:.4g} MiB of frames",
                status=413,
            )
        images.sort(key=lambda item: natural_sort_key(item[0][-1]))
        written = 0
        for index, (parts, info) in enumerate(images, start=1):
            target = folder / f"{index:08d}{PurePosixPath(parts[-1]).suffix.lower()}"
            try:
                with zf.open(info) as src, target.open("xb") as dst:
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)
                        if written > limits.max_unzip_bytes:  # sizes in the archive can lie
                            raise UploadError(
                                f"{label} unpacks to more than {limits.max_unzip_bytes / 2**20:.4g} MiB of frames, "
                                "this server's limit",
                                status=413,
                            )
                        dst.write(chunk)
            except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as error:
                raise UploadError(
                    f"{label}: the zip entry {display_name(parts[-1])!r} cannot be read ({error}); zip the frames again"
                ) from None
    return len(images)


def probe(path: Path, limits: Limits, label: str) -> SourceInfo:
    """Open an upload (video file, image, or extracted frames folder) and check its frame size and announced count.

    Returns:
        What the container announces (``frames`` is the announced count, or 0 where it announces none);
        :func:`check_frames` finds the real count.

    Raises:
        UploadError: not a video or image FFmpeg / Pillow can read, frames too large, or more frames announced than
            the limit.
    """
    from estinet.data.video_io import open_frames

    hide = {str(path): label}
    try:
        with open_frames(path) as source:
            frames = source.num_frames or getattr(source, "announced_frames", None) or 0
            info = SourceInfo(frames, source.width, source.height, source.fps_fraction, source.has_audio)
    except EstinetError as error:
        raise UploadError(public_message(error, hide)) from None
    _check_size(info.width, info.height, limits, label)
    if info.frames > limits.max_frames:
        raise UploadError(
            f"{label} has {info.frames} frames; this server accepts at most {limits.max_frames} (--max-frames)",
            status=413,
        )
    return info


def _check_size(width: int, height: int, limits: Limits, label: str) -> None:
    if width * height > limits.max_pixels:
        raise UploadError(
            f"{label} has {width}x{height} frames; this server accepts at most {limits.max_pixels / 1e6:.1f} "
            "megapixels per frame",
            status=413,
        )


def check_frames(
    path: Path,
    preview: Path,
    limits: Limits,
    label: str,
    *,
    keep_partial: bool = False,
    cancel: threading.Event | None = None,
    progress: Callable[[int], None] | None = None,
) -> SourceInfo:
    """Decode every frame of an upload once: count them, and write the rainy preview the page plays.

    Args:
        path: the stored upload (video, image, or extracted frames folder).
        preview: the preview to write (``.mp4``: H.264 yuv420p, odd sizes padded to even).
        limits: the frame limit.
        label: the upload's shown name, for messages.
        keep_partial: keep the frames of a truncated or damaged video that decode instead of refusing it.
        cancel: stop (raising :class:`JobCancelledError`) at the next frame once set.
        progress: called with the frames decoded so far.

    Returns:
        The decoded frame count and the frame size, rate and audio.

    Raises:
        UploadError: an unreadable, truncated or damaged file, or more frames than the limit; no preview is left.
        JobCancelledError: when ``cancel`` was set.
    """
    from estinet.data.video_io import open_frames, open_writer

    hide = {str(path): label, str(preview): "the preview", KEEP_PARTIAL_FLAG: KEEP_PARTIAL_OPTION}
    try:
        with open_frames(path, keep_partial=keep_partial) as source:
            _check_size(source.width, source.height, limits, label)
            sink = open_writer(preview, source.fps_fraction, source.width, source.height, crf=PREVIEW_CRF)
            try:
                count = 0
                for frame in source:
                    count += 1
                    if count > limits.max_frames:
                        raise UploadError(
                            f"{label} has more than {limits.max_frames} frames, this server's limit (--max-frames)",
                            status=413,
                        )
                    if cancel is not None and cancel.is_set():
                        raise JobCancelledError
                    sink.write(frame)
                    if progress is not None:
                        progress(count)
                sink.close()
            except BaseException:
                sink.abort()
                raise
            return SourceInfo(count, source.width, source.height, source.fps_fraction, source.has_audio)
    except UploadError:
        raise
    except EstinetError as error:
        raise UploadError(public_message(error, hide)) from None


def transcode_preview(path: Path, preview: Path, *, cancel: threading.Event | None = None, audio: bool = True) -> Path:
    """Write a browser-playable H.264 copy of a video (for a lossless result, which browsers cannot play).

    Raises:
        JobCancelledError: when ``cancel`` was set (no preview is left).
    """
    from estinet.data.video_io import open_frames, open_writer

    with open_frames(path) as source:
        audio_from = path if audio and source.has_audio else None
        sink = open_writer(
            preview, source.fps_fraction, source.width, source.height, crf=PREVIEW_CRF, audio_from=audio_from
        )
        try:
            for frame in source:
                if cancel is not None and cancel.is_set():
                    raise JobCancelledError
                sink.write(frame)
            sink.close()
        except BaseException:
            sink.abort()
            raise
    return preview


def remove_path(path: Path) -> None:
    """Remove a file or folder, ignoring one that is gone."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
