"""Shared fixtures for the whole suite: a private system-matrix cache per test session."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _matrix_cache(tmp_path_factory):
    """Keep system matrices built by tests out of the user's cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TOMOLEARN_CACHE_DIR", str(tmp_path_factory.mktemp("tomolearn-cache")))
    yield
    mp.undo()
