"""Keep freed memory in the process for reuse: glibc malloc settings for fast CPU inference.

By default glibc serves every allocation above a (dynamic) threshold with its own ``mmap`` and gives it back to the
system when freed. Inference at video resolutions allocates and frees tens of megabytes per convolution, so every op
then starts on fresh pages that the kernel must fault in and zero: on this project's 2-core CPU the kernel time
matched the compute time (docs/results/bench-cpu.md has the speed with it; ``benchmarks/bench_train_allocator.py``
compares training with and without it). :func:`keep_freed_memory` switches ``mmap`` off for the heap and raises the
trim threshold, so freed blocks are reused, at the cost of a somewhat higher peak resident memory. The settings are
process-wide, applied once, and only where the C library is glibc.

glibc's ``M_TOP_PAD`` is left at its default on purpose: a 64 MiB top pad gave no speed and made the resident memory
of a long ``derain_video`` grow by about 1.5 KB per frame, H.264 in and out (``benchmarks/bench_streaming.py
--length``, docs/results/streaming.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep and reuse freed memory instead of returning it to the system.

    Returns:
        True when the settings are in effect (now or from an earlier call), False where they cannot be applied
        (not Linux/glibc, or ``mallopt`` refused them).
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_MAX, 0) == 1
    ok = ok and mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1
    _applied = ok
    return ok
