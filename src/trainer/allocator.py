"""The CPU memory allocator's policy: keep freed memory for reuse.

Training allocates and frees the same large temporaries every step. glibc's malloc, left to
itself, serves blocks above a threshold with fresh ``mmap`` pages and gives them back to the
OS when freed, and it moves that threshold as the program runs: so whether a step's
temporaries cost page faults (the kernel zeroing every page on first touch) depends on what
was allocated before. On this project's 2-core CPU that made the same CNN step take 51 to
69 ms from one process to the next (``python -m benchmarks.models --only cnn``).

:func:`keep_freed_memory` fixes glibc's thresholds instead (``mallopt``): blocks under
32 MiB come from the heap and are reused, and up to 1 GiB of freed heap stays with the
process, as tcmalloc or jemalloc would keep it (the allocators PyTorch's CPU performance guide
recommends). ``python -m trainer`` applies it unless ``keep_freed_memory=false``, in every
process of the run (``trainer.callbacks.ProcessSettings``); the benchmarks apply it to both
sides unless ``--system-allocator``.

The cost is memory: a process keeps up to ~1 GiB of freed memory it could have returned.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters, from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 << 20  # glibc's own ceiling for its moving threshold
TRIM_THRESHOLD = 1 << 30
TOP_PAD = 64 << 20

_kept = False  # whether keep_freed_memory ran successfully in this process


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    # musl and other C libraries have no mallopt (or no thresholds to set)
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None


def keep_freed_memory() -> bool:
    """Fix glibc's malloc thresholds so that freed blocks are kept and reused (see the module
    docstring). Returns whether it was applied: False off glibc, where nothing changes."""
    libc = _glibc()
    if libc is None:
        return False
    settings = ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
                (_M_TOP_PAD, TOP_PAD))
    global _kept
    _kept = all(libc.mallopt(parameter, value) == 1 for parameter, value in settings)
    return _kept


def keeping_freed_memory() -> bool:
    """Whether :func:`keep_freed_memory` has been applied in this process (a process started
    by ``spawn`` begins without it)."""
    return _kept


def description(applied: bool) -> str:
    """One line for a log or a benchmark header."""
    if applied:
        return (f"glibc malloc keeps freed memory (mmap threshold {MMAP_THRESHOLD >> 20} MiB, "
                f"trim threshold {TRIM_THRESHOLD >> 20} MiB)")
    return "the system allocator's defaults"
