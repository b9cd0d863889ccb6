"""Files in and out: derain a video, frame folder or image into a video, frame folder or image.

Decoding and encoding go through :mod:`estinet.data.video_io`; the decoder and the encoder run on background threads
(:class:`BackgroundReader`, :class:`BackgroundWriter`) so that they overlap the model. Every output appears under
its final name only once it is complete: an error or interruption leaves nothing behind (for the comparison output
too).
"""

from __future__ import annotations

import queue
import shutil
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from estinet import runtime
from estinet.errors import DerainError

if TYPE_CHECKING:
    from estinet.data.video_io import FrameSink
    from estinet.inference.derainer import Derainer

__all__ = ["BackgroundReader", "BackgroundWriter", "SingleFrameWarning", "derain_main", "derain_video", "report"]


class SingleFrameWarning(UserWarning):
    """A one-frame input (an image): the models remove little rain without neighbouring frames."""


def derain_video(
    derainer: Derainer,
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
    """:meth:`Derainer.derain_video`: decode ``src``, derain, encode ``dst`` on a background thread.

    Arguments, return value and errors are those of :meth:`Derainer.derain_video`; decode and encode times are added
    to ``derainer.last_stats.seconds``.
    """
    from tqdm import tqdm

    from estinet.data.video_io import open_frames

    src, dst = Path(src), Path(dst)
    compare_path = _compare_path(dst, compare, lossless)
    derainer.last_compare = compare_path
    for out in [dst] + ([compare_path] if compare_path else []):
        if _same_place(out, src):
            raise DerainError(f"output {out} is the input {src}; pick another output path")
    with open_frames(src, keep_partial=keep_partial_input) as source:
        sinks = _open_sinks(
            source, src, dst, compare_path, overwrite=overwrite, lossless=lossless, crf=crf, preset=x264_preset
        )
        rainy_queue: deque[np.ndarray] = deque()
        total = source.num_frames or getattr(source, "announced_frames", None)
        bar = tqdm(total=total, unit="frame", desc=src.name, disable=not progress, dynamic_ncols=True)
        reader: BackgroundReader | None = None
        writer = BackgroundWriter(sinks)
        try:
            reader = BackgroundReader(iter(source), depth=2 * READ_AHEAD if derainer.device.type == "cuda" else 4)

            def decoded() -> Iterator[np.ndarray]:
                for frame in reader:
                    if compare_path is not None:
                        rainy_queue.append(frame)
                    yield frame

            for done, out in enumerate(derainer.derain_frames(decoded()), start=1):
                writer.put(out, rainy_queue.popleft() if compare_path is not None else None)
                bar.update(1)
                if callback is not None:
                    callback(done)
            writer.finish()
            start = time.perf_counter()
            _close_all(sinks)
            writer.seconds += time.perf_counter() - start
        except BaseException:
            writer.stop()
            if reader is not None:
                reader.stop()
            for sink in sinks:
                sink.abort()
            raise
        finally:
            bar.close()
            derainer.last_stats.seconds["decode"] = reader.seconds if reader is not None else 0.0
            derainer.last_stats.seconds["encode"] = writer.seconds
    if derainer.last_stats.frames_out == 1:
        warnings.warn(
            f"{src} is a single frame: the models find rain mostly by how it moves between frames and remove little "
            "of it from one image (README, 'Limits'); derain the video it comes from where you can",
            SingleFrameWarning,
            stacklevel=2,
        )
    return sinks[0].path


def _compare_path(dst: Path, compare: bool | str | Path, lossless: bool = False) -> Path | None:
    """The side-by-side output: ``<dst stem>_compare<dst suffix>``; a video (``.mp4``, lossless ``.mkv``) beside a
    frame-folder or image output, because a comparison is for watching."""
    if compare is False or compare is None:
        return None
    if compare is not True:
        return Path(compare)
    from estinet.data.video_io import IMAGE_SUFFIXES

    if dst.suffix == "" or dst.suffix.lower() in IMAGE_SUFFIXES:
        return dst.with_name(f"{dst.name if dst.suffix == '' else dst.stem}_compare{'.mkv' if lossless else '.mp4'}")
    return dst.with_name(f"{dst.stem}_compare{dst.suffix}")


def _same_place(out: Path, src: Path) -> bool:
    """Whether writing ``out`` would replace ``src``: compared after resolving links and ``..`` (``sub/../in.mp4``
    is ``in.mp4`` even while ``sub`` does not exist), and by inode where both exist (hard links)."""
    import os

    if not src.exists():
        return False
    real_src = src.resolve()
    if out.resolve() == real_src or Path(os.path.normpath(os.path.abspath(out))).resolve() == real_src:
        return True
    try:
        return out.exists() and os.path.samefile(out, src)
    except OSError:
        return False


READ_AHEAD = 32
"""Decoded frames the reader keeps ahead of the model on CUDA (twice the largest automatic batch would idle less,
but each waiting 1080p frame is 6 MB); 4 on CPU."""


class BackgroundReader:
    """Decode input frames on a worker thread, so that decoding overlaps the model (and the encoder).

    Iterating yields the source's frames in order; an error of the source is raised in the consumer at the frame
    where it happened. At most ``depth`` decoded frames wait (memory stays flat in the video length).

    Args:
        frames: the source's frame iterator.
        depth: decoded frames queued at most.
    """

    _END = object()

    def __init__(self, frames: Iterator[np.ndarray], depth: int = 4) -> None:
        self._frames = frames
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stopped = threading.Event()
        self.seconds = 0.0  # time the worker spent decoding (overlapped with the model)
        self._thread = threading.Thread(target=self._run, name="estinet-decoder", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        """Queue ``item`` unless stopped (waking up regularly to notice a stop); False once stopped."""
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            while not self._stopped.is_set():
                start = time.perf_counter()
                frame = next(self._frames, self._END)
                self.seconds += time.perf_counter() - start
                if not self._put(frame) or frame is self._END:
                    return
        except BaseException as error:  # handed to the consumer, in order
            self._put(error)

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            item = self._queue.get()
            if item is self._END:
                self._thread.join()
                return
            if isinstance(item, BaseException):
                self._thread.join()
                raise item
            yield item

    def stop(self) -> None:
        """End the worker without decoding the rest (on errors and interruptions)."""
        self._stopped.set()
        self._thread.join()


class BackgroundWriter:
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
    from estinet.data.video_io import IMAGE_SUFFIXES, frame_names, open_writer

    fps: Fraction = source.fps_fraction
    audio = src if getattr(source, "has_audio", False) else None
    names = frame_names(source.frame_paths) if getattr(source, "kind", None) == "folder" else None
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
                        names=names if path == dst else None,
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
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


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

    Kept for library callers; the ``derain`` command builds the same :class:`Derainer` and calls :func:`report`.
    """
    from estinet.inference.derainer import Derainer

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
    options = {"compare": compare, "overwrite": overwrite, "lossless": lossless, "crf": crf, "progress": progress}
    report(derainer, input, output, x264_preset=x264_preset, **options)
    return 0


def report(derainer: Derainer, src: str | Path, dst: str | Path, **options: Any) -> Path:
    """Derain one file (:func:`derain_video` with ``options``) and print what was written, and how fast.

    Returns:
        The output path.
    """
    start = time.perf_counter()
    path = derain_video(derainer, src, dst, **options)
    elapsed = time.perf_counter() - start
    stats = derainer.last_stats
    fps = stats.frames_out / elapsed if elapsed > 0 else float("inf")
    tiles = "whole frames" if stats.plan is None or stats.plan.tile is None else f"{stats.plan.tile}px tiles"
    frames = "1 frame" if stats.frames_out == 1 else f"{stats.frames_out} frames"
    print(f"wrote {path} ({frames} in {elapsed:.1f} s, {fps:.2f} frames/s, {derainer!r}, {tiles})")
    compare = getattr(derainer, "last_compare", None)
    if compare is not None:
        print(f"wrote {compare} (side by side: rainy | derained)")
    return path
