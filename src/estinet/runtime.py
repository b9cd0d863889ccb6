"""Rules that several layers share, each written once: devices, autocast, atomic files, 8-bit frames, dataset specs.

Nothing here changes process-wide state. torch and numpy are imported inside the functions that need them, so that
the light modules (:mod:`estinet.config`) can use the file and spec rules without loading torch.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from estinet.errors import DeviceError, EstinetError

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "DatasetSpec",
    "atomic_path",
    "autocast",
    "commit_file",
    "describe_os_error",
    "frames_to_uint8",
    "parse_dataset_spec",
    "remove_stale_partials",
    "resolve_device",
    "temp_sibling",
    "write_text_atomic",
]

ArrayOrTensor = TypeVar("ArrayOrTensor", "np.ndarray", "torch.Tensor")


# ---------------------------------------------------------------------------------------------------------------------
# devices and precision
# ---------------------------------------------------------------------------------------------------------------------


def resolve_device(
    spec: str | torch.device,
    *,
    local_rank: int | None = None,
    option: str = "device",
    error: type[EstinetError] | None = None,
) -> torch.device:
    """Turn ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps`` (or a :class:`torch.device`) into a usable device.

    Args:
        spec: the requested device. ``auto`` is CUDA where torch sees a GPU, else the CPU.
        local_rank: the process's local rank under torchrun; ``auto`` and ``cuda`` then mean ``cuda:LOCAL_RANK``.
            None: ``cuda`` stays without an index (the current device).
        option: the option's name in messages (``device``, ``train.device``).
        error: the exception class to raise (the caller's layer error; default :class:`DeviceError`).

    Returns:
        The device.

    Raises:
        EstinetError: (``error``) an unknown name, or CUDA / MPS / a GPU index that is not available here.
    """
    import torch

    fail = error or DeviceError
    text = spec if isinstance(spec, torch.device) else str(spec).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = text if isinstance(text, torch.device) else torch.device(text)
    except (RuntimeError, ValueError):
        raise fail(f"unknown device {str(spec)!r} for {option}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise fail(
                f"{option}={spec} was requested but CUDA is not available to torch {torch.__version__}; "
                f"use {option}=cpu or auto"
            )
        index = device.index if device.index is not None else local_rank
        if index is not None and index >= torch.cuda.device_count():
            rank = f" (LOCAL_RANK {local_rank})" if local_rank is not None else ""
            raise fail(
                f"{option}={spec} asks for cuda:{index}{rank}, but {torch.cuda.device_count()} CUDA device(s) are "
                "visible; use cuda:0, set CUDA_VISIBLE_DEVICES, or start at most that many processes per node"
            )
        return torch.device("cuda", index) if index is not None else device
    if device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise fail(f"{option}=mps but MPS is not available here; use {option}=cpu or auto")
    return device


def autocast(
    device: torch.device, dtype: torch.dtype | None, *, cache: bool = True
) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` to ``dtype`` on ``device``'s type, or a no-op context for ``dtype=None`` (full precision).

    ``cache=False`` turns off autocast's cache of cast weights (required while capturing CUDA graphs).
    """
    if dtype is None:
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device.type, dtype=dtype, cache_enabled=cache)


# ---------------------------------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------------------------------


def temp_sibling(path: Path) -> Path:
    """Hidden sibling written before the rename: ``dir/.stem.partial-<pid><suffix>``.

    It keeps the suffix because image and video libraries choose the format from it; the pid keeps two processes
    writing the same output apart.
    """
    return path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")


_PARTIAL_RE = re.compile(r"\.(?P<name>.+)\.(?:partial|replaced)-(?P<pid>\d+)(?P<suffix>.*)")


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def remove_stale_partials(path: str | Path) -> list[Path]:
    """Remove the hidden partial outputs for ``path`` that processes which no longer run left behind.

    A process killed with SIGKILL (or a power cut) cannot clean up its ``.NAME.partial-<pid>`` file or folder
    (:func:`temp_sibling`, frame folders) nor a ``.NAME.replaced-<pid>`` folder; the next writer of the same output
    removes them. Entries of live processes (another estinet writing the same output right now) are kept, and so is
    everything that does not follow estinet's naming.

    Args:
        path: the final output path whose partial siblings are looked for.

    Returns:
        The paths removed.
    """
    import shutil

    path = Path(path)
    removed: list[Path] = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _PARTIAL_RE.fullmatch(entry.name)
        if match is None or _process_alive(int(match["pid"])):
            continue
        name, suffix = match["name"], match["suffix"]
        if not (name + suffix == path.name or (name == path.stem and suffix == path.suffix)):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            pass  # not ours to fix; the run goes on
    return removed


_OS_ERROR_FIXES = {
    errno.EACCES: "permission denied; pick a location you can write to (or read), or fix its permissions",
    errno.EPERM: "operation not permitted; pick a location you can write to, or fix its permissions",
    errno.EROFS: "the file system is read-only; write to a folder on a writable disk",
    errno.ENOSPC: "no space left on the device; free some space or write to another disk (nothing was kept)",
    errno.EDQUOT: "disk quota exceeded; free some space or write to another disk (nothing was kept)",
    errno.EFBIG: "the file is too large for this file system; write to another disk",
    errno.ENOENT: "no such file or folder; check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder; check the path",
    errno.EISDIR: "it is a folder; give a file name",
    errno.EEXIST: "it already exists; pass --overwrite or pick another path",
    errno.ENAMETOOLONG: "the name is too long; pick a shorter path",
    errno.EIO: "an input/output error from the disk; check the device, then retry",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n) or close other programs",
    errno.ENOTEMPTY: "the folder is not empty; pick another path",
}
"""Errors a user can cause or meet (permissions, read-only media, full disks, bad paths), each with its fix."""


def describe_os_error(error: OSError) -> str | None:
    """One line for an :class:`OSError` a user can cause or fix (:data:`_OS_ERROR_FIXES`), or None for others.

    The line names the file (``error.filename``, when the OS reported one) and the fix, e.g.
    ``cannot write /media/ro/out.mp4: the file system is read-only; write to a folder on a writable disk``.
    """
    fix = _OS_ERROR_FIXES.get(error.errno) if isinstance(error.errno, int) else None
    if fix is None:
        return None
    name = error.filename2 if error.filename2 is not None else error.filename  # a rename's target is the output
    where = ""
    if name is not None:
        path = Path(os.fsdecode(name))
        match = _PARTIAL_RE.fullmatch(path.name)
        if match is not None:  # name the output, not estinet's hidden temporary sibling
            path = path.with_name(match["name"] + match["suffix"])
        where = f" {path}"
    return f"cannot write or read{where}: {fix}"


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not supported here (e.g. Windows); the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit_file(tmp: Path, path: Path) -> None:
    """Flush ``tmp`` to disk, rename it to ``path`` and flush the folder, so a crash leaves the old file or the new.

    Args:
        tmp: the finished temporary file, in the same folder as ``path``.
        path: the final name (replaced if it exists).
    """
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_folder(path.parent)


@contextlib.contextmanager
def atomic_path(path: str | Path, tmp: Path | None = None) -> Iterator[Path]:
    """Write a file atomically: yield a temporary name to write to; on success it becomes ``path``.

    The folder is created. The temporary file is in ``path``'s folder (so the rename is atomic) and is removed when
    the body raises (the previous ``path``, if any, stays as it was).

    Args:
        path: the final file.
        tmp: the temporary name (default :func:`temp_sibling`).

    Yields:
        The temporary path to write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path)
    tmp = tmp or temp_sibling(path)
    try:
        yield tmp
        commit_file(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (:func:`atomic_path`); returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def cache_dir(name: str) -> Path:
    """estinet's cache folder ``name``: ``$ESTINET_CACHE_DIR/name``, else ``$XDG_CACHE_HOME/estinet/name``, else
    ``~/.cache/estinet/name`` (not created here)."""
    if os.environ.get("ESTINET_CACHE_DIR"):
        return Path(os.environ["ESTINET_CACHE_DIR"]) / name
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "estinet" / name


# ---------------------------------------------------------------------------------------------------------------------
# 8-bit frames
# ---------------------------------------------------------------------------------------------------------------------


def frames_to_uint8(frames: ArrayOrTensor) -> ArrayOrTensor:
    """Float frames in [0, 1] to the uint8 values estinet saves: ``clip(rint(float32(x) * 255), 0, 255)``.

    The product is taken in float32 and rounded half to even (``np.rint`` / ``torch.round``). This is the rule of
    every frame estinet writes (derained outputs, rendered rain); the shipped weights' outputs were made with it.
    Scores use :func:`estinet.metrics.to_uint8` instead (float64, half up, the ``save_image`` convention the metric
    protocol fixes); the two differ only where ``x * 255`` falls exactly half-way between levels.

    Args:
        frames: float numpy array or torch tensor of any shape (any layout), values nominally in [0, 1].

    Returns:
        uint8 array or tensor of the same shape (and device), values 0..255.
    """
    import numpy as np

    if isinstance(frames, np.ndarray) or not hasattr(frames, "dim"):
        return np.clip(np.rint(np.asarray(frames, dtype=np.float32) * np.float32(255.0)), 0, 255).astype(np.uint8)
    import torch

    return frames.float().mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


# ---------------------------------------------------------------------------------------------------------------------
# dataset specs
# ---------------------------------------------------------------------------------------------------------------------


class DatasetSpec(NamedTuple):
    """A parsed ``KIND:PATH`` dataset spec.

    Attributes:
        kind: the kind, stripped and lower-cased (``ntu``, ``folders``, ``synthetic``, ``heldout``, ...).
        arg: what follows the first colon (a path, or rain presets for ``synthetic``/``heldout``), unchanged.
        has_colon: whether the spec had a colon at all.
    """

    kind: str
    arg: str
    has_colon: bool


def parse_dataset_spec(spec: str) -> DatasetSpec:
    """Split a ``KIND:PATH`` spec at its first colon (``ntu:/data/NTURain``, ``synthetic:heavy,light``).

    ``synthetic:PRESETS`` and ``heldout:PRESETS`` are the same idea, rain rendered over clean package sources:
    ``synthetic`` draws from the training sources (or given clean videos), ``heldout`` from the held-out sources
    that validation and the demo use.
    """
    kind, sep, arg = spec.partition(":")
    return DatasetSpec(kind.strip().lower(), arg, bool(sep))
