"""The glibc malloc settings for CPU inference: applied once, where glibc is the C library, and effective."""

from __future__ import annotations

import platform
import resource
import subprocess
import sys

import pytest

from estinet.allocator import keep_freed_memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
GLIBC_VERSION = tuple(int(v) for v in platform.libc_ver()[1].split(".")[:2]) if GLIBC else (0, 0)

# A child process that holds a 64 MiB array and prints the bytes malloc serves from separate mmap regions
# (mallinfo2's hblkhd): with the default settings the array is its own mapping, returned to the system when freed;
# with freed memory kept it lives in the heap, whose freed blocks are reused.
_CHILD = """
import ctypes, sys
import numpy as np
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
if sys.argv[1] == "keep":
    from estinet.allocator import keep_freed_memory
    assert keep_freed_memory()
a = np.ones(16 * 2**20, dtype=np.float32)
print(libc.mallinfo2().hblkhd)
"""


def _mmapped_bytes(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_keep_freed_memory_applies_once() -> None:
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True


@pytest.mark.skipif(GLIBC_VERSION < (2, 33), reason="mallinfo2 needs glibc 2.33+")
def test_large_blocks_come_from_the_heap_once_kept() -> None:
    assert _mmapped_bytes("default") >= 64 * 2**20  # its own mapping, given back (and faulted in anew) each time
    assert _mmapped_bytes("keep") < 2**20


def test_rusage_is_available() -> None:  # the benchmarks read peak memory this way
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0
