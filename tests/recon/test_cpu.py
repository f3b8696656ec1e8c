"""recon.cpu: the glibc malloc thresholds (speed only; results are unchanged)."""

from __future__ import annotations

import ctypes
import platform

import pytest

from recon.cpu import keep_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="needs glibc's mallopt")
def test_glibc_takes_both_thresholds():
    assert keep_freed_memory() is True
    assert keep_freed_memory(mmap_threshold=1024**2, trim_threshold=4 * 1024**2) is True


def test_without_mallopt_it_reports_false(monkeypatch):
    def no_libc(*args, **kwargs):
        raise OSError("no such library")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert keep_freed_memory() is False


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mmap_threshold": 0},
        {"trim_threshold": -5},
        {"mmap_threshold": 1.5},
        {"trim_threshold": True},
        {"mmap_threshold": 2**31},
    ],  # fmt: skip
)
def test_bad_thresholds_raise(kwargs):
    with pytest.raises(ValueError, match="threshold"):
        keep_freed_memory(**kwargs)
