"""genrt.allocator: glibc's malloc tuned here and, through the environment, in the processes started from here;
a value the user set stands."""
import os
import platform

import pytest

from genrt import allocator

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)


def test_malloc_arenas_bound_here_and_in_workers_unless_set(clean_env, monkeypatch):
    took = allocator.bound_malloc_arenas()
    assert os.environ["MALLOC_ARENA_MAX"] == str(allocator.MALLOC_ARENAS)       # uvicorn's workers inherit it
    assert took == GLIBC
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert not allocator.bound_malloc_arenas() and os.environ["MALLOC_ARENA_MAX"] == "4"   # the user's value stands


def test_freed_memory_is_kept_here_and_in_started_processes_unless_set(clean_env, monkeypatch):
    took = allocator.retain_freed_memory()
    assert os.environ["MALLOC_MMAP_THRESHOLD_"] == str(256 << 20)
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == str(1 << 30)
    assert took == GLIBC
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    assert not allocator.retain_freed_memory()                  # one of them set by the user: nothing changes
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "0" and "MALLOC_MMAP_THRESHOLD_" not in os.environ


def test_without_glibc_nothing_changes_but_the_environment(clean_env, monkeypatch):
    monkeypatch.setattr(allocator, "_mallopt", lambda: None)
    assert not allocator.retain_freed_memory() and not allocator.bound_malloc_arenas()


def test_mallopt_is_looked_up_on_linux_only(monkeypatch):
    """Windows cannot open CDLL(None) (a TypeError there), macOS has no glibc: neither is asked."""
    def refuse(*args):
        raise AssertionError("CDLL opened off Linux")
    monkeypatch.setattr(allocator.ctypes, "CDLL", refuse)
    for platform in ("win32", "darwin"):
        monkeypatch.setattr(allocator.sys, "platform", platform)
        assert allocator._mallopt() is None
