"""Many videos in one run: inputs expanded, outputs named, finished outputs skipped, the work spread over devices.

:func:`derain_many` derains every input into one output folder, ``<folder>/<input stem>.mp4`` by default, and writes a
JSON :class:`Report`. Each output is written by :func:`estinet.inference.video.derain_video`, which encodes under a
hidden temporary name and renames it when complete, so an output that exists is complete: a rerun of the same command
skips it (``overwrite=True`` redoes it) and a temporary file left by a killed run is never taken for a finished one.
A broken input is recorded as failed and the run goes on.

Where the work runs:

- in this process, on one device (the CPU, or one GPU);
- in spawned worker processes, one per CUDA device (``device="auto"`` or ``"cuda"`` with several GPUs, or a list such
  as ``"cuda:0,cuda:1"``), or ``jobs`` CPU workers that share the cores;
- as Ray tasks (``ray="auto"`` or a cluster address), one per video, on any machine of the cluster.

Every worker derains a video exactly as a single process would (same model, same options, one video per worker at a
time), so the outputs do not depend on which worker made them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
import re
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from estinet import __version__, runtime
from estinet.errors import DerainError, EstinetError

if TYPE_CHECKING:
    from torch import nn

    from estinet.inference.derainer import Derainer

__all__ = [
    "FORMATS",
    "REPORT_NAME",
    "BatchWarning",
    "FileResult",
    "Job",
    "Report",
    "derain_many",
    "expand_inputs",
    "failure_message",
    "is_many",
    "plan_jobs",
    "read_input_list",
]

FORMATS = ("mp4", "mkv", "frames")
"""Output formats: H.264 in ``.mp4`` or ``.mkv`` (FFV1 / x264 RGB with ``lossless``), or a PNG frame folder."""

REPORT_NAME = "estinet-report.json"
"""The report's file name inside the output folder (unless a report path is given)."""

Status = Literal["ok", "skipped", "failed", "pending"]

_GLOB_CHARS = re.compile(r"[*?\[]")

_REPORT_INTERVAL = 2.0
"""Seconds between two rewrites of the report while a run goes on (it is always written at the end)."""


class BatchWarning(UserWarning):
    """A warning raised while one input of a many-video run was derained, raised again in the calling process."""


# ---------------------------------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One input and the output it is derained into.

    Attributes:
        input: video file, frame folder or image.
        output: the output video file or (format ``frames``) folder.
    """

    input: Path
    output: Path


@dataclass
class FileResult:
    """What happened to one input.

    Attributes:
        input: the input path, as given or expanded.
        output: the output path.
        status: ``ok`` (derained now), ``skipped`` (the output already existed), ``failed``, or ``pending`` (not
            finished; only in a report written while running or after an interruption).
        frames: frames written (``ok`` only).
        seconds: wall time of deraining this input, decoding and encoding included (``ok`` and ``failed``).
        error: one line naming the problem and the fix (``failed`` only).
        worker: where it ran: ``cpu``, ``cuda:1``, or ``HOST cuda`` / ``HOST cpu`` for a Ray task.
        warnings: warnings raised while deraining it, one line each.
        traceback: the traceback of an unexpected error (a bug; please report it), else None.
    """

    input: str
    output: str
    status: Status = "pending"
    frames: int | None = None
    seconds: float | None = None
    error: str | None = None
    worker: str | None = None
    warnings: list[str] = field(default_factory=list)
    traceback: str | None = None


@dataclass
class Report:
    """The outcome of a :func:`derain_many` run, one :class:`FileResult` per input in input order.

    Attributes:
        output_dir: the output folder.
        files: one result per input.
        weights: the weights used (name or path; the class name for a model object).
        workers: the local workers (``["cpu"]``, ``["cuda:0", "cuda:1"]``), or ``["ray"]``.
        seconds: wall time of the whole run.
        path: where the report was last written (None if not yet).
    """

    output_dir: str
    files: list[FileResult]
    weights: str
    workers: list[str]
    seconds: float = 0.0
    path: Path | None = None

    def counts(self) -> dict[str, int]:
        """Inputs per status: ``{"ok": ..., "skipped": ..., "failed": ..., "pending": ...}``."""
        counts = dict.fromkeys(("ok", "skipped", "failed", "pending"), 0)
        for result in self.files:
            counts[result.status] += 1
        return counts

    @property
    def failed(self) -> list[FileResult]:
        """The results of the inputs that failed."""
        return [result for result in self.files if result.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (what :meth:`write` saves)."""
        return {
            "estinet": __version__,
            "output_dir": self.output_dir,
            "weights": self.weights,
            "workers": self.workers,
            "seconds": round(self.seconds, 3),
            "counts": self.counts(),
            "files": [asdict(result) for result in self.files],
        }

    def write(self, path: str | Path) -> Path:
        """Write the report as JSON, atomically (a reader sees the previous report or this one, never a part).

        Returns:
            ``path``.
        """
        self.path = runtime.write_text_atomic(path, json.dumps(self.to_dict(), indent=1) + "\n")
        return self.path


def failure_message(exc: BaseException) -> str:
    """One line for an input that failed: estinet's own message, an operating-system error's, or the type and text
    of an unexpected error (a bug)."""
    if isinstance(exc, EstinetError):
        message = str(exc)
    elif isinstance(exc, OSError):
        message = runtime.describe_os_error(exc) or str(exc)
    else:
        message = f"{type(exc).__name__}: {exc} (unexpected; the report holds the traceback, please report it)"
    return " ".join(message.split())


# ---------------------------------------------------------------------------------------------------------------------
# inputs and output names
# ---------------------------------------------------------------------------------------------------------------------


def _has_glob(text: str) -> bool:
    return _GLOB_CHARS.search(text) is not None


def _folder_videos(folder: Path) -> list[Path]:
    """The video files directly inside ``folder`` (hidden files skipped), in natural order by name."""
    from estinet.data.video_io import VIDEO_SUFFIXES, natural_sort_key

    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    videos = [e for e in entries if e.suffix.lower() in VIDEO_SUFFIXES and not e.name.startswith(".") and e.is_file()]
    return sorted(videos, key=natural_sort_key)


def is_many(inputs: Sequence[str | Path], *, inputs_from: str | Path | None = None) -> bool:
    """Whether the inputs ask for a many-video run rather than one input into one output.

    They do when there is a list file, not exactly one input, a glob pattern (that is not itself an existing path),
    or a folder holding video files (a folder of images is one input: a video as frames).

    Args:
        inputs: paths or glob patterns.
        inputs_from: a list file (see :func:`read_input_list`).

    Returns:
        True for a many-video run.
    """
    if inputs_from is not None or len(inputs) != 1:
        return True
    path = Path(inputs[0])
    if not path.exists() and _has_glob(str(inputs[0])):
        return True
    return path.is_dir() and bool(_folder_videos(path))


def read_input_list(path: str | Path) -> list[str]:
    """Read a list of inputs: one path or glob pattern a line, ``-`` for standard input.

    Blank lines and lines starting with ``#`` are skipped, ``~`` is expanded, and a relative entry is taken relative
    to the list file's folder (relative to the current folder for standard input), so a list works from anywhere.

    Args:
        path: the list file, or ``-``.

    Returns:
        The entries, as paths or patterns.

    Raises:
        DerainError: the list file cannot be read.
    """
    if str(path) == "-":
        text, base = sys.stdin.read(), Path()
    else:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = runtime.describe_os_error(exc) if isinstance(exc, OSError) else None
            raise DerainError(
                f"cannot read the input list {path}: {why or exc}; pass a UTF-8 text file with one path or glob a line"
            ) from None
        base = path.parent
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = os.path.expanduser(line)
        entries.append(entry if os.path.isabs(entry) else str(base / entry))
    return entries


def expand_inputs(inputs: Iterable[str | Path], *, inputs_from: str | Path | None = None) -> list[Path]:
    """Turn paths, folders, glob patterns and a list file into the list of inputs, each once, in a fixed order.

    - a glob pattern (``clips/*.mp4``, ``data/**/*.mkv``) expands to its matches in natural order (a pattern that
      matches nothing warns with :class:`BatchWarning`);
    - a folder that holds video files expands to those videos (not recursive; other files in it are ignored);
    - a folder without videos is one input (a video as frames), and so is any other path, existing or not (a missing
      file fails on its own, the others go on);
    - ``inputs_from`` adds the entries of :func:`read_input_list`, expanded the same way, after ``inputs``.

    A file reached twice (e.g. by a folder and a pattern) is kept at its first place.

    Args:
        inputs: paths or glob patterns.
        inputs_from: a list file, or ``-`` for standard input.

    Returns:
        The inputs.

    Raises:
        DerainError: nothing to derain (no inputs, or only patterns that match nothing).
    """
    from estinet.data.video_io import natural_sort_key

    entries = [str(item) for item in inputs]
    if inputs_from is not None:
        entries += read_input_list(inputs_from)
    paths: list[Path] = []
    for entry in entries:
        path = Path(entry)
        if not path.exists() and _has_glob(entry):
            matches = sorted(glob.glob(entry, recursive=True), key=natural_sort_key)
            if not matches:
                warnings.warn(f"{entry} matches no file; check the pattern", BatchWarning, stacklevel=2)
            found = [Path(match) for match in matches]
        else:
            found = [path]
        for item in found:
            paths.extend((_folder_videos(item) or [item]) if item.is_dir() else [item])
    seen: set[str] = set()
    unique = []
    for path in paths:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    if not unique:
        what = f"{', '.join(entries)} matched no file" if entries else "no inputs were given"
        raise DerainError(f"nothing to derain: {what}; pass video files, folders of videos or glob patterns")
    return unique


def _base_name(path: Path) -> str:
    """An input's name in its output: the file's stem, or a folder's whole name."""
    return path.name if path.is_dir() else path.stem


def _disambiguate(paths: Sequence[Path]) -> list[str]:
    """Names for inputs that share a stem: each stem prefixed by the fewest parent folder names that no other input
    of the group shares (``a/clip.mp4``, ``b/clip.mp4`` -> ``a__clip``, ``b__clip``); where folders cannot tell two
    apart (``clip.mp4`` and ``clip.mkv`` of one folder), the suffix joins the stem (``clip_mp4``, ``clip_mkv``). The
    plain stems where even that fails (the caller then refuses the clash)."""
    stems = [_base_name(p) for p in paths]
    folders = [Path(os.path.abspath(p)).parent.parts[1:] for p in paths]
    suffixed = [f"{s}_{p.suffix[1:]}" if p.suffix and not p.is_dir() else s for s, p in zip(stems, paths, strict=True)]
    depth = max(len(f) for f in folders)

    def label(index: int, k: int, names: list[str]) -> str:
        kept = folders[index][len(folders[index]) - min(k, len(folders[index])) :]  # the last k folder names
        return "__".join([*kept, names[index]])

    for names, shallowest in ((stems, 1), (suffixed, 0)):
        chosen = []
        for index in range(len(paths)):
            for k in range(shallowest, depth + 1):
                mine = label(index, k, names).casefold()
                if all(label(j, k, names).casefold() != mine for j in range(len(paths)) if j != index):
                    chosen.append(label(index, k, names))
                    break
        if len(chosen) == len(paths):
            return chosen
    return stems


def plan_jobs(inputs: Sequence[Path], out_dir: str | Path, output_format: str = "mp4") -> list[Job]:
    """Name every input's output: ``<out_dir>/<stem>.<format>`` (``<out_dir>/<stem>`` for frames).

    Inputs that share a stem (compared without case, as on macOS and Windows disks) are named by their folders
    (:func:`_disambiguate`): ``a/clip.mp4`` and ``b/clip.mp4`` become ``a__clip.mp4`` and ``b__clip.mp4``. The names
    depend only on the set of inputs, so a rerun of the same command finds the same outputs. Frame-folder names have
    their dots replaced by ``_`` (a dot would read as a video suffix).

    Args:
        inputs: the inputs (:func:`expand_inputs`).
        out_dir: the output folder.
        output_format: one of :data:`FORMATS`.

    Returns:
        One :class:`Job` per input, in input order.

    Raises:
        DerainError: an unknown format, two inputs that would still write one output, or an output that would
            replace an input.
    """
    if output_format not in FORMATS:
        raise DerainError(f"unknown output format {output_format!r}; use one of {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    names = [_base_name(p) for p in inputs]
    groups: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        groups.setdefault(name.casefold(), []).append(index)
    for members in groups.values():
        if len(members) > 1:
            for index, name in zip(members, _disambiguate([inputs[i] for i in members]), strict=True):
                names[index] = name
    if output_format == "frames":
        names = [name.replace(".", "_") for name in names]
    suffix = "" if output_format == "frames" else f".{output_format}"
    jobs = [Job(path, out_dir / f"{name}{suffix}") for path, name in zip(inputs, names, strict=True)]
    taken: dict[str, Job] = {}
    for job in jobs:
        other = taken.setdefault(job.output.name.casefold(), job)
        if other is not job:
            raise DerainError(
                f"inputs {other.input} and {job.input} would both write {job.output}; rename one of them or derain "
                "them into separate folders"
            )
    sources = {os.path.realpath(p): p for p in inputs}
    for job in jobs:
        if os.path.realpath(job.output) in sources:
            raise DerainError(
                f"output {job.output} would replace the input {sources[os.path.realpath(job.output)]}; pick an output "
                "folder that holds no inputs"
            )
    return jobs


# ---------------------------------------------------------------------------------------------------------------------
# one input
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Settings:
    """Everything a worker needs besides its device: the :class:`Derainer` options and the output options.

    Picklable, because it is sent to worker processes and Ray tasks.
    """

    weights: Any
    options: dict[str, Any]  # the Derainer's keyword arguments besides device and threads
    video: dict[str, Any]  # derain_video's output keyword arguments (overwrite, lossless, crf, ...)

    def derainer(self, device: str, threads: int | None) -> Derainer:
        """A :class:`Derainer` with these options on ``device`` (``threads`` torch threads when given)."""
        from estinet.inference.derainer import Derainer

        return Derainer(self.weights, device=device, threads=threads, **self.options)


def _failed(job: Job, error: str, worker: str | None = None) -> FileResult:
    return FileResult(str(job.input), str(job.output), "failed", error=error, worker=worker)


def _derain_one(derainer: Derainer, job: Job, settings: _Settings, *, worker: str, progress: bool) -> FileResult:
    """Derain one input; any error becomes a failed result (KeyboardInterrupt and the like still propagate)."""
    from estinet.inference.video import derain_video

    result = FileResult(str(job.input), str(job.output), worker=worker)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)  # each input's own warnings, even when an earlier one had them
        try:
            derain_video(
                derainer,
                job.input,
                job.output,
                progress=progress,
                **settings.video,
            )
        except Exception as exc:
            result.status, result.error = "failed", failure_message(exc)
            if not isinstance(exc, EstinetError | OSError):
                result.traceback = traceback.format_exc()
        else:
            result.status, result.frames = "ok", derainer.last_stats.frames_out
    result.seconds = round(time.perf_counter() - start, 3)
    result.warnings = [" ".join(str(w.message).split()) for w in caught]
    return result


# ---------------------------------------------------------------------------------------------------------------------
# local workers
# ---------------------------------------------------------------------------------------------------------------------


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _local_workers(device: str, jobs: int | None, threads: int | None) -> list[tuple[str, int | None]]:
    """(device, torch threads) of each local worker: every CUDA device for ``auto``/``cuda``, each device of a comma
    list, or ``jobs`` CPU workers; the cores are shared between workers unless ``threads`` is given."""
    import torch

    from estinet.inference.derainer import resolve_device

    specs = [spec.strip().lower() for spec in str(device).split(",") if spec.strip()]
    if not specs:
        raise DerainError(f"device {device!r} names no device; use auto, cpu, cuda, cuda:N or a list cuda:0,cuda:1")
    if specs in (["auto"], ["cuda"]) and torch.cuda.is_available():
        devices = [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    else:
        devices = [str(resolve_device(spec)) for spec in specs]
    kinds = {torch.device(d).type for d in devices}
    if len(kinds) > 1:
        raise DerainError(
            f"device {device!r} mixes {' and '.join(sorted(kinds))} workers, whose outputs differ in rounding; "
            "list devices of one kind"
        )
    if kinds == {"cpu"}:
        devices = devices * (jobs or 1) if len(devices) == 1 else devices
    elif jobs is not None:
        raise DerainError(
            f"jobs={jobs} sets the number of CPU workers; on {', '.join(devices)} one worker runs per device listed "
            "(e.g. device='cuda:0,cuda:0' for two workers on one GPU)"
        )
    if len(devices) == 1:
        return [(devices[0], threads)]
    share = threads or max(1, _cpu_count() // len(devices))
    return [(d, share) for d in devices]


_WORKER: dict[str, Any] = {}
"""A worker process's state: its name, settings, and Derainer (or the error that stopped it being built)."""


def _init_worker(slots: Any, settings: _Settings) -> None:
    """Start a worker process: take one (name, device, threads) slot and build the Derainer there once."""
    name, device, threads = slots.get()
    _WORKER.update(name=name, settings=settings)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the caller built the same Derainer first and showed its warnings
            _WORKER["derainer"] = settings.derainer(device, threads)
    except Exception as exc:
        _WORKER["error"] = failure_message(exc)


def _work(job: Job) -> FileResult:
    """Derain one input in a worker process."""
    if "error" in _WORKER:
        return _failed(job, f"the worker on {_WORKER['name']} could not start: {_WORKER['error']}", _WORKER["name"])
    return _derain_one(_WORKER["derainer"], job, _WORKER["settings"], worker=_WORKER["name"], progress=False)


def _pool_results(
    todo: list[tuple[int, Job]], slots: list[tuple[str, int | None]], settings: _Settings, stack: contextlib.ExitStack
) -> Iterator[tuple[int, FileResult]]:
    """Derain ``todo`` in spawned worker processes, one per slot; yield (index, result) as each input finishes.

    The processes are stopped (queued inputs cancelled) when ``stack`` closes.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")  # CUDA cannot be used in a forked child
    queue = context.Queue()
    repeated = len({device for device, _ in slots}) < len(slots)
    for number, (device, threads) in enumerate(slots, 1):  # a name per worker: "cuda:1", or "cpu worker 2"
        queue.put((f"{device} worker {number}" if repeated else device, device, threads))
    executor = ProcessPoolExecutor(len(slots), mp_context=context, initializer=_init_worker, initargs=(queue, settings))
    stack.callback(executor.shutdown, wait=True, cancel_futures=True)
    futures = {executor.submit(_work, job): (index, job) for index, job in todo}

    def results() -> Iterator[tuple[int, FileResult]]:
        for future in as_completed(futures):
            index, job = futures[future]
            try:
                result = future.result()
            except BrokenProcessPool:
                result = _failed(
                    job,
                    "a worker process died (killed, or out of memory) before this input was done; rerun the same "
                    "command to derain what is missing",
                )
            yield index, result

    return results()


# ---------------------------------------------------------------------------------------------------------------------
# Ray
# ---------------------------------------------------------------------------------------------------------------------


def import_ray() -> Any:
    """The ``ray`` module, imported now (only many-video runs with ``ray`` need it).

    Raises:
        DerainError: Ray is not installed.
    """
    try:
        import ray
    except ImportError:
        raise DerainError(
            "--ray needs Ray, which is not installed here; install it with: pip install 'estinet[ray]'"
        ) from None
    return ray


def _ray_task(job: Job, settings: _Settings, device: str, threads: int | None) -> FileResult:
    """One Ray task: derain one input on this node (``device`` is ``cuda``, the GPU Ray assigned, or ``cpu``)."""
    import socket

    worker = f"{socket.gethostname()} {device}"
    try:
        derainer = settings.derainer(device, threads)
    except Exception as exc:
        return _failed(job, failure_message(exc), worker)
    return _derain_one(derainer, job, settings, worker=worker, progress=False)


def _ray_results(
    todo: list[tuple[int, Job]],
    settings: _Settings,
    *,
    address: str,
    device: str,
    threads: int | None,
    max_retries: int,
    stack: contextlib.ExitStack,
) -> Iterator[tuple[int, FileResult]]:
    """Derain ``todo`` as Ray tasks (one per input); yield (index, result) as each input finishes.

    Connects to the cluster at ``address`` (``auto``: ``RAY_ADDRESS``, else the cluster ``ray start`` started on this
    machine, else a new local one) unless this process is already connected. A task whose worker dies is retried up
    to ``max_retries`` times; errors inside a task (a broken input) are results, not retried. When ``stack`` closes,
    unfinished tasks are cancelled and a cluster started here is shut down.
    """
    import logging

    ray = import_ray()
    from ray.exceptions import RayError

    if not ray.is_initialized():
        try:
            ray.init(address=None if address == "auto" else address, logging_level=logging.WARNING)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise DerainError(
                f"cannot reach a Ray cluster at {address}: {' '.join(str(exc).split())}; start one with "
                "`ray start --head` or pass --ray auto"
            ) from None
        stack.callback(ray.shutdown)
    spec = str(device).strip().lower()
    gpus = ray.cluster_resources().get("GPU", 0)
    if spec == "auto":
        use_gpu = gpus >= 1
    elif spec == "cpu":
        use_gpu = False
    elif spec.startswith("cuda") and "," not in spec:
        if gpus < 1:
            raise DerainError(f"device {device!r} was asked for but the Ray cluster has no GPU; use cpu or auto")
        use_gpu = True
    else:
        raise DerainError(
            f"device {device!r} cannot be used with Ray, which places each task itself; use auto, cpu or cuda"
        )
    cpus = threads or 1
    resources = {"num_gpus": 1, "num_cpus": 1} if use_gpu else {"num_cpus": cpus}
    remote = ray.remote(_ray_task).options(max_retries=max_retries, retry_exceptions=False, **resources)
    shared = ray.put(settings)
    task_device, task_threads = ("cuda", threads) if use_gpu else ("cpu", cpus)
    pending = {}

    def cancel() -> None:
        for ref in pending:
            with contextlib.suppress(Exception):  # already finished or gone: nothing to stop
                ray.cancel(ref, force=True)

    stack.callback(cancel)
    for index, job in todo:  # absolute paths: a task may run in another folder, on another machine
        absolute = Job(Path(os.path.abspath(job.input)), Path(os.path.abspath(job.output)))
        pending[remote.remote(absolute, shared, task_device, task_threads)] = (index, job)

    def results() -> Iterator[tuple[int, FileResult]]:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                index, job = pending.pop(ref)
                try:
                    result = ray.get(ref)
                    result.input, result.output = str(job.input), str(job.output)
                except RayError as exc:
                    result = _failed(
                        job,
                        f"the Ray task did not finish ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}; "
                        f"retried up to {max_retries} times if its worker died); rerun the same command to derain "
                        "what is missing",
                    )
                yield index, result

    return results()


# ---------------------------------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------------------------------


def _portable_weights(weights: Any) -> Any:
    """Weights files as absolute paths (workers may run in another folder); names and models unchanged."""
    if not isinstance(weights, str | Path):
        return weights
    parts = str(weights).split(",")
    if all(Path(part).is_file() for part in parts):
        return ",".join(os.path.abspath(part) for part in parts)
    return weights


def _check_count(name: str, value: Any, minimum: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        raise DerainError(f"{name} must be an integer >= {minimum}, got {value!r}")


def derain_many(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    inputs_from: str | Path | None = None,
    weights: str | Path | nn.Module = "tiny",
    device: str = "auto",
    output_format: str = "mp4",
    overwrite: bool = False,
    report: str | Path | None = None,
    jobs: int | None = None,
    ray: str | None = None,
    max_retries: int = 3,
    tile: int | None = None,
    tile_margin: int | None = None,
    half: bool | None = None,
    batch: int | None = None,
    threads: int | None = None,
    workers: int | None = None,
    motion: bool | None = None,
    official_windows: bool = False,
    max_memory: float | None = None,
    cuda_graphs: bool | None = None,
    backend: str = "torch",
    onnx_dir: str | Path | None = None,
    compile: bool = False,
    lift_veil: bool = False,
    lossless: bool = False,
    crf: int = 18,
    x264_preset: str = "veryfast",
    keep_partial_input: bool = False,
    progress: bool = False,
    on_result: Callable[[FileResult], None] | None = None,
) -> Report:
    """Derain many videos into one folder, skipping finished outputs and going on past broken inputs.

    Every input becomes ``<out_dir>/<stem>.<output_format>`` (:func:`plan_jobs`; inputs that share a stem are named
    by their folders). Outputs that exist are complete (they are renamed into place only when finished) and are
    skipped unless ``overwrite``; a broken input is recorded as failed and the others go on. The report is written
    to ``report`` (default ``<out_dir>/estinet-report.json``) atomically, every few seconds while the run goes on,
    at the end, and after an interruption (unfinished inputs are ``pending``). Warnings raised while deraining an
    input are raised again here as :class:`BatchWarning` (``"<input>: <message>"``).

    Where it runs: with ``ray``, as one Ray task per input (``num_gpus=1`` where the device is CUDA, else
    ``num_cpus=threads or 1``), each retried up to ``max_retries`` times if its worker dies; otherwise in this
    process when there is one worker, or in one spawned process per worker: every CUDA device for ``device="auto"``
    (when torch sees a GPU) or ``"cuda"``, each device of a list such as ``"cuda:0,cuda:1"``, or ``jobs`` CPU workers
    for ``device="cpu"`` (default 1; the cores are shared between them unless ``threads`` is given).

    Args:
        inputs: video files, frame folders, images, folders of videos and glob patterns (:func:`expand_inputs`).
        out_dir: the output folder (created).
        inputs_from: a list file of more inputs, one a line, or ``-`` for standard input (:func:`read_input_list`).
        weights: as :class:`~estinet.inference.Derainer` (a model object is sent to every worker).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, or a comma list of CUDA devices (one worker each).
        output_format: ``mp4`` or ``mkv`` (H.264; lossless: x264 RGB or FFV1) or ``frames`` (PNG folders).
        overwrite: redo outputs that exist (only estinet's own, as :func:`~estinet.inference.video.derain_video`).
        report: where to write the JSON report (default ``<out_dir>/estinet-report.json``).
        jobs: CPU worker processes (CPU only; default 1).
        ray: ``auto`` or a Ray cluster address (``host:port``, ``ray://host:10001``) to run on Ray; None: locally.
        max_retries: Ray retries of a task whose worker died (>= 0).
        tile: as :class:`~estinet.inference.Derainer`.
        tile_margin: as :class:`~estinet.inference.Derainer`.
        half: as :class:`~estinet.inference.Derainer`.
        batch: as :class:`~estinet.inference.Derainer`.
        threads: torch threads per worker (and CPUs per Ray task on the CPU); None: shared out automatically.
        workers: as :class:`~estinet.inference.Derainer` (CPU frame-parallel threads within each worker).
        motion: as :class:`~estinet.inference.Derainer`.
        official_windows: as :class:`~estinet.inference.Derainer`.
        max_memory: as :class:`~estinet.inference.Derainer` (per worker).
        cuda_graphs: as :class:`~estinet.inference.Derainer`.
        backend: as :class:`~estinet.inference.Derainer`.
        onnx_dir: as :class:`~estinet.inference.Derainer`.
        compile: as :class:`~estinet.inference.Derainer` (each worker compiles for its own frame sizes).
        lift_veil: as :class:`~estinet.inference.Derainer`.
        lossless: lossless video outputs.
        crf: x264 quality of H.264 outputs.
        x264_preset: x264 speed preset.
        keep_partial_input: derain what decodes of truncated input videos instead of failing them.
        progress: a progress bar per input (in-process runs only).
        on_result: called with each input's result as it is known (skipped ones first), in this process.

    Returns:
        The :class:`Report` (also written as JSON); ``report.failed`` lists the inputs that failed.

    Raises:
        DerainError: nothing to derain, clashing output names, an output folder that is a file, invalid options,
            Ray missing or unreachable. These are raised before any input is derained.
        WeightsError: weights that cannot be loaded.
    """
    start = time.perf_counter()
    _check_count("jobs", jobs, 1)
    _check_count("max_retries", max_retries, 0)
    if ray is not None and jobs is not None:
        raise DerainError("jobs sets local CPU workers; with Ray each task is a worker (threads sets its CPUs)")
    out = Path(out_dir)
    from estinet.data.video_io import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    if out.exists() and not out.is_dir():
        raise DerainError(f"output {out} is a file; many inputs derain into a folder, so pass a folder (-o derained/)")
    if not out.exists() and out.suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES:
        raise DerainError(f"output {out} looks like a file; many inputs derain into a folder (-o derained/)")
    planned = plan_jobs(expand_inputs(inputs, inputs_from=inputs_from), out, output_format)
    report_path = Path(report) if report is not None else out / REPORT_NAME
    if any(os.path.realpath(report_path) == os.path.realpath(job.output) for job in planned):
        raise DerainError(f"the report {report_path} would replace an output; pick another report path")
    settings = _Settings(
        weights=_portable_weights(weights),
        options={
            "tile": tile,
            "tile_margin": tile_margin,
            "half": half,
            "batch": batch,
            "workers": workers,
            "motion": motion,
            "official_windows": official_windows,
            "max_memory": max_memory,
            "cuda_graphs": cuda_graphs,
            "backend": backend,
            "onnx_dir": None if onnx_dir is None else str(onnx_dir),
            "compile": bool(compile),
            "lift_veil": bool(lift_veil),
        },
        video={
            "overwrite": overwrite,
            "lossless": lossless,
            "crf": crf,
            "x264_preset": x264_preset,
            "keep_partial_input": keep_partial_input,
        },
    )
    results = [FileResult(str(job.input), str(job.output)) for job in planned]
    todo = []
    for index, job in enumerate(planned):
        if not overwrite and (job.output.exists() or job.output.is_symlink()):
            results[index].status = "skipped"
        else:
            todo.append((index, job))

    # the Derainer is built here first, so that bad weights or options fail once, before any worker starts
    slots = [("ray", threads)] if ray is not None else _local_workers(device, jobs, threads)
    in_process = ray is None and len(slots) == 1
    # the check on the CPU cannot use CUDA graphs: the workers do
    check = dataclasses.replace(settings, options={**settings.options, "cuda_graphs": None})
    derainer = settings.derainer(*slots[0]) if in_process else check.derainer("cpu", None)
    name = str(weights) if isinstance(weights, str | Path) else type(weights).__name__
    outcome = Report(str(out), results, name, [slot[0] for slot in slots])
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:  # stops the workers, however the run ends
        try:
            if not todo:
                runs: Iterator[tuple[int, FileResult]] = iter(())
            elif ray is not None:
                del derainer
                runs = _ray_results(
                    todo, settings, address=ray, device=device, threads=threads, max_retries=max_retries, stack=stack
                )
            elif not in_process:
                del derainer
                runs = _pool_results(todo, slots, settings, stack)
            else:
                worker = str(derainer.device)
                runs = ((i, _derain_one(derainer, job, settings, worker=worker, progress=progress)) for i, job in todo)
        except BaseException:
            stack.close()
            if created:
                with contextlib.suppress(OSError):
                    out.rmdir()  # nothing was written: leave nothing behind
            raise
        written = 0.0
        try:
            if on_result is not None:
                for result in results:
                    if result.status == "skipped":
                        on_result(result)
            for index, result in runs:
                results[index] = result
                for message in result.warnings:
                    warnings.warn(f"{result.input}: {message}", BatchWarning, stacklevel=2)
                if on_result is not None:
                    on_result(result)
                if time.perf_counter() - written > _REPORT_INTERVAL:
                    outcome.seconds = time.perf_counter() - start
                    outcome.write(report_path)
                    written = time.perf_counter()
        finally:
            outcome.seconds = time.perf_counter() - start
            outcome.write(report_path)
    return outcome
