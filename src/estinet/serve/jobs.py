"""The job queue of ``estinet serve``: one worker thread per device, one job per device at a time.

The next queued job goes to the first free device in the order they were given.

A job goes ``checking`` (one thread decodes the upload once: frame count, truncation, rainy preview;
:func:`~estinet.serve.uploads.check_frames`) -> ``queued`` (one first-in first-out queue that every device's worker
takes from) -> ``running`` (:meth:`estinet.inference.Derainer.derain_video`, which keeps the audio) -> ``finishing``
(a lossless result gets an H.264 preview) -> ``done``; or it ends ``failed`` (with the message the page shows) or
``cancelled``. Cancelling a queued job takes it off the queue; a running one stops at its next frame (the
``callback`` of ``derain_video`` raises :class:`~estinet.serve.uploads.JobCancelledError`, and ``derain_video``
removes its partial output). A job that did not finish keeps no files; a finished one keeps its result and previews
for ``keep_seconds`` after it ended, then :meth:`JobManager.sweep` removes it. Everything lives in one folder that
:meth:`JobManager.start` creates and :meth:`JobManager.stop` removes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from estinet.errors import EstinetError
from estinet.serve.uploads import (
    KEEP_PARTIAL_FLAG,
    KEEP_PARTIAL_OPTION,
    JobCancelledError,
    Limits,
    ServeError,
    SourceInfo,
    UploadError,
    check_frames,
    public_message,
)

__all__ = ["ACTIVE", "ENDED", "Job", "JobManager", "JobOptions"]

ACTIVE = ("checking", "queued", "running", "finishing")
"""States of a job that is not over (cancelling applies to these)."""

ENDED = ("done", "failed", "cancelled")
"""States of a job that is over (kept for ``keep_seconds``, then swept)."""


@dataclass(frozen=True)
class JobOptions:
    """What the page asked for.

    Attributes:
        model: a shipped weights name.
        motion: motion compensation (None: the model's setting).
        lossless: lossless FFV1 ``.mkv`` result instead of H.264 ``.mp4``.
        crf: x264 quality of an H.264 result (0-51, lower is better).
        tile: tile size in pixels (None: automatic, 0: whole frames).
        keep_partial: derain the frames of a truncated or damaged video that decode instead of refusing it.
    """

    model: str
    motion: bool | None = None
    lossless: bool = False
    crf: int = 18
    tile: int | None = None
    keep_partial: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The options as JSON types."""
        return dataclasses.asdict(self)


@dataclass(eq=False)  # a job is itself: compared by identity in the queues
class Job:
    """One upload and its deraining.

    Attributes:
        id: random hexadecimal id (the only handle the API gives out).
        name: the upload's shown name (:func:`~estinet.serve.uploads.display_name`).
        folder: the job's folder inside the manager's work folder.
        source: the stored upload: a video or image file, or a folder of extracted frames.
        options: what the page asked for.
        created: clock time of the upload.
        state: one of :data:`ACTIVE` or :data:`ENDED`.
        message: why a job failed (or what it is doing).
        info: the checked upload (frame count, size, rate), once checked.
        frames_checked: frames decoded by the check so far.
        frames_done: frames derained so far.
        device: the device that runs or ran it.
        started: clock time deraining started.
        finished: clock time the job ended.
        result: the result file (``done`` only).
        rainy_preview: the H.264 preview of the upload.
        derained_preview: the H.264 preview of the result (the result itself unless lossless).
        cancel: set to stop the job at its next frame.
    """

    id: str
    name: str
    folder: Path
    source: Path
    options: JobOptions
    created: float
    state: str = "checking"
    message: str = ""
    info: SourceInfo | None = None
    frames_checked: int = 0
    frames_done: int = 0
    device: str | None = None
    started: float | None = None
    finished: float | None = None
    result: Path | None = None
    rainy_preview: Path | None = None
    derained_preview: Path | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def download_name(self) -> str:
        """The result's file name for the browser: the upload's stem + ``_derained`` + the result's suffix."""
        stem = self.name.rsplit(".", 1)[0] if "." in self.name.strip(".") else self.name
        return f"{stem}_derained{self.result.suffix if self.result else '.mp4'}"


class JobManager:
    """The jobs of one server: a checking thread, one worker thread per device, a sweeper.

    Args:
        devices: torch devices (``cpu``, ``cuda:0``, ...), one worker each.
        limits: what an upload may be.
        keep_seconds: how long an ended job (and a finished job's files) is kept.
        work_dir: where the server's own folder is created (default: the system's temporary folder).
        max_pending: uploads being received, checked or queued at most (more are refused with 429).
        clock: monotonic seconds (replaceable in tests).
    """

    def __init__(
        self,
        devices: Sequence[str],
        limits: Limits,
        *,
        keep_seconds: float,
        work_dir: str | Path | None = None,
        max_pending: int = 16,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not devices:
            raise ServeError("at least one device is needed")
        self.devices = [str(d) for d in devices]
        self.limits = limits
        self.keep_seconds = float(keep_seconds)
        self.work_dir = Path(work_dir) if work_dir is not None else Path(tempfile.gettempdir())
        self.max_pending = max_pending
        self.clock = clock
        self.folder: Path | None = None
        """The server's own folder (created by :meth:`start`, removed by :meth:`stop`)."""
        self._cond = threading.Condition()
        self._jobs: dict[str, Job] = {}
        self._checking: deque[Job] = deque()
        self._queue: deque[Job] = deque()
        self._reserved = 0
        self._idle: set[str] = set()  # devices whose worker waits for a job
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # ----------------------------------------------------------------------------------------------------------------
    # life cycle
    # ----------------------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Create the work folder and start the threads."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix="estinet-serve-", dir=self.work_dir))
        self._threads = [threading.Thread(target=self._check_loop, name="estinet-serve-check", daemon=True)]
        for device in self.devices:
            self._threads.append(
                threading.Thread(target=self._work_loop, args=(device,), name=f"estinet-serve-{device}", daemon=True)
            )
        self._threads.append(threading.Thread(target=self._sweep_loop, name="estinet-serve-sweep", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel every job, wait for the threads (each stops at its next frame) and remove the work folder."""
        with self._cond:
            self._stopping.set()
            for job in self._jobs.values():
                job.cancel.set()
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    # ----------------------------------------------------------------------------------------------------------------
    # the API's side
    # ----------------------------------------------------------------------------------------------------------------

    def reserve(self) -> tuple[str, Path]:
        """A new job id and its empty folder, for an upload about to be received (release it with :meth:`submit`
        or :meth:`discard`).

        Raises:
            UploadError: (429) while ``max_pending`` uploads are being received, checked or queued.
        """
        if self.folder is None or self._stopping.is_set():
            raise UploadError("the server is not running", status=503)
        with self._cond:
            pending = self._reserved + len(self._checking) + len(self._queue)
            if pending >= self.max_pending:
                raise UploadError(f"{pending} videos are already waiting; try again when one has finished", status=429)
            self._reserved += 1
        job_id = secrets.token_hex(8)
        folder = self.folder / job_id
        folder.mkdir()
        return job_id, folder

    def discard(self, folder: Path) -> None:
        """Give back a reservation whose upload was refused, removing its folder."""
        with self._cond:
            self._reserved -= 1
        shutil.rmtree(folder, ignore_errors=True)

    def submit(self, job_id: str, folder: Path, name: str, source: Path, options: JobOptions) -> Job:
        """Queue a received upload for checking (the reservation becomes a job)."""
        job = Job(job_id, name, folder, source, options, created=self.clock())
        with self._cond:
            self._reserved -= 1
            self._jobs[job_id] = job
            self._checking.append(job)
            self._cond.notify_all()
        return job

    def get(self, job_id: str) -> Job | None:
        """The job with this id, or None (never existed, removed, or swept)."""
        with self._cond:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        """Every job, oldest first."""
        with self._cond:
            return list(self._jobs.values())

    def position(self, job: Job) -> int | None:
        """1 for the next job a free device takes, 2 for the one after, ...; None unless queued."""
        with self._cond:
            try:
                return self._queue.index(job) + 1
            except ValueError:
                return None

    def cancel(self, job_id: str) -> Job | None:
        """Cancel an active job, or remove an ended one (and its files) at once.

        A checking or queued job that no thread has taken ends ``cancelled`` now; a running one stops at its next
        frame (its ``cancel`` event is set; the thread ends it). Returns the job, or None when there is none.
        """
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            if job.state in ENDED:
                del self._jobs[job_id]
                shutil.rmtree(job.folder, ignore_errors=True)
                return job
            job.cancel.set()
            waiting = None
            if job in self._queue:
                waiting = self._queue
            elif job in self._checking:
                waiting = self._checking
            if waiting is not None:
                waiting.remove(job)
        if waiting is not None:
            self._end(job, "cancelled")
        return job

    def sweep(self, now: float | None = None) -> list[str]:
        """Remove the jobs that ended more than ``keep_seconds`` ago, with their files; returns their ids."""
        now = self.clock() if now is None else now
        with self._cond:
            expired = [
                job
                for job in self._jobs.values()
                if job.state in ENDED and job.finished is not None and now - job.finished >= self.keep_seconds
            ]
            for job in expired:
                del self._jobs[job.id]
        for job in expired:
            shutil.rmtree(job.folder, ignore_errors=True)
        return [job.id for job in expired]

    def snapshot(self, job: Job) -> dict[str, Any]:
        """The job as the status API shows it (JSON types only)."""
        now = self.clock()
        info = job.info
        fps = eta = None
        if job.started is not None and job.frames_done:
            elapsed = (job.finished if job.state == "done" and job.finished else now) - job.started
            fps = job.frames_done / elapsed if elapsed > 0 else None
            if fps and info is not None and job.state == "running":
                eta = max(0.0, (info.frames - job.frames_done) / fps)
        expires = None
        if job.finished is not None:
            expires = max(0.0, self.keep_seconds - (now - job.finished))
        done = job.state == "done"
        base = f"/api/jobs/{job.id}"
        return {
            "id": job.id,
            "name": job.name,
            "state": job.state,
            "cancelling": job.cancel.is_set() and job.state in ACTIVE,
            "message": job.message,
            "position": self.position(job),
            "options": job.options.as_dict(),
            "device": job.device,
            "frames_total": info.frames if info else None,
            "frames_checked": job.frames_checked,
            "frames_done": job.frames_done,
            "fps": round(fps, 3) if fps else None,
            "eta_seconds": round(eta, 1) if eta is not None else None,
            "width": info.width if info else None,
            "height": info.height if info else None,
            "has_audio": info.has_audio if info else None,
            "expires_in_seconds": round(expires, 1) if expires is not None else None,
            "rainy_url": f"{base}/rainy.mp4" if job.rainy_preview is not None and job.state != "cancelled" else None,
            "derained_url": f"{base}/derained.mp4" if done else None,
            "result_url": f"{base}/result" if done else None,
            "download_name": job.download_name if done else None,
        }

    # ----------------------------------------------------------------------------------------------------------------
    # the threads
    # ----------------------------------------------------------------------------------------------------------------

    def _next(self, waiting: deque[Job], state: str, device: str | None = None) -> Job | None:
        """Wait for the next job of ``waiting`` and mark it ``state``; None once stopping.

        A device worker leaves the job to an idle device named before it (``--device cuda --device cpu``: the GPU
        takes the next job whenever it is free, the CPU only while the GPU is busy).
        """

        def first_choice() -> bool:
            return device is None or not any(d in self._idle for d in self.devices[: self.devices.index(device)])

        with self._cond:
            if device is not None:
                self._idle.add(device)
                self._cond.notify_all()
            try:
                while not self._stopping.is_set() and not (waiting and first_choice()):
                    self._cond.wait()
            finally:
                self._idle.discard(device)
            self._cond.notify_all()  # a device after this one may take the next job
            if self._stopping.is_set():
                return None
            job = waiting.popleft()
            job.state = state
            if device is not None:
                job.device = device
            return job

    def _check_loop(self) -> None:
        while (job := self._next(self._checking, "checking")) is not None:
            with self._failures(job):
                preview = job.folder / "rainy.mp4"

                def checked(count: int, job: Job = job) -> None:
                    job.frames_checked = count

                info = check_frames(
                    job.source,
                    preview,
                    self.limits,
                    job.name,
                    keep_partial=job.options.keep_partial,
                    cancel=job.cancel,
                    progress=checked,
                )
                with self._cond:
                    job.info, job.rainy_preview = info, preview
                    if job.cancel.is_set():
                        raise JobCancelledError
                    job.state = "queued"
                    self._queue.append(job)
                    self._cond.notify_all()

    def _work_loop(self, device: str) -> None:
        while (job := self._next(self._queue, "running", device)) is not None:
            with self._failures(job):
                self._derain(job, device)
                self._end(job, "done")

    def _derain(self, job: Job, device: str) -> None:
        from estinet.inference import Derainer
        from estinet.serve.uploads import remove_path, transcode_preview

        options = job.options
        derainer = Derainer(options.model, device=device, motion=options.motion, tile=options.tile)
        result = job.folder / ("result.mkv" if options.lossless else "result.mp4")

        def frame_done(count: int) -> None:
            job.frames_done = count
            if job.cancel.is_set():
                raise JobCancelledError

        if job.cancel.is_set():
            raise JobCancelledError
        job.started = self.clock()  # frames/s and ETA count from here, not from loading the weights
        derainer.derain_video(
            job.source,
            result,
            lossless=options.lossless,
            crf=options.crf,
            progress=False,
            keep_partial_input=options.keep_partial,
            callback=frame_done,
        )
        preview = result
        if options.lossless:  # FFV1 does not play in browsers
            job.state = "finishing"
            preview = transcode_preview(result, job.folder / "derained.mp4", cancel=job.cancel)
        remove_path(job.source)
        job.result, job.derained_preview = result, preview

    @contextlib.contextmanager
    def _failures(self, job: Job) -> Iterator[None]:
        """End ``job`` ``cancelled`` or ``failed`` (with a message for the page) when its work raises."""
        try:
            yield
        except JobCancelledError:
            self._end(job, "cancelled")
        except (EstinetError, OSError) as error:
            hide = {str(job.source): job.name, str(job.folder): "the job's folder"}
            hide[KEEP_PARTIAL_FLAG] = KEEP_PARTIAL_OPTION
            if self.folder is not None:
                hide[str(self.folder)] = "the server's folder"
            self._end(job, "failed", public_message(error, hide))
        except Exception as error:  # a bug: keep the server running, and the traceback on its console
            traceback.print_exc(file=sys.stderr)
            self._end(job, "failed", f"internal error ({type(error).__name__}); see the server's console")

    def _end(self, job: Job, state: str, message: str = "") -> None:
        """Publish the job's end; a job that did not finish loses its files first (an ended state means gone)."""
        if state != "done":
            shutil.rmtree(job.folder, ignore_errors=True)
        with self._cond:
            job.state = state
            job.message = message
            job.finished = self.clock()
            if state != "done":
                job.result = job.rainy_preview = job.derained_preview = None

    def _sweep_loop(self) -> None:
        interval = min(30.0, max(0.05, self.keep_seconds / 4))
        while not self._stopping.wait(interval):
            self.sweep()
