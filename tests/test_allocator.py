"""trainer.allocator: glibc's malloc keeps freed memory, on by default in the app."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trainer import allocator, config


def test_applies_on_glibc_and_says_so():
    if allocator._glibc() is None:
        pytest.skip("not glibc: nothing to set")
    assert allocator.keep_freed_memory() is True
    assert allocator.keep_freed_memory() is True  # idempotent
    assert "keeps freed memory" in allocator.description(True)
    assert allocator.description(False) == "the system allocator's defaults"


def test_freed_memory_is_reused_not_returned():
    """A freed 8 MiB block comes back at the same address once the thresholds are fixed:
    no fresh mmap (and its page faults) for the next one. Run in a fresh process, so that
    this process's allocator state cannot decide the outcome."""
    if allocator._glibc() is None:
        pytest.skip("not glibc")
    probe = (
        "import ctypes, sys\n"
        "from trainer import allocator\n"
        "libc = ctypes.CDLL('libc.so.6')\n"
        "libc.malloc.restype = ctypes.c_void_p\n"
        "libc.free.argtypes = [ctypes.c_void_p]\n"
        "if sys.argv[1] == 'keep':\n"
        "    allocator.keep_freed_memory()\n"
        "first = libc.malloc(8 << 20); libc.free(first)\n"
        "second = libc.malloc(8 << 20)\n"
        "print(first == second)\n"
    )
    kept = subprocess.run([sys.executable, "-c", probe, "keep"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert kept == "True"


def test_config_key_is_on_by_default_and_must_be_a_bool():
    assert config.Config().keep_freed_memory is True
    with pytest.raises(config.ConfigError) as error:
        config.check_overrides(["keep_freed_memory=sometimes"])
    assert error.value.key == "keep_freed_memory"
