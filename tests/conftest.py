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


@pytest.fixture
def compose_cfg():
    """``compose_cfg(*overrides)``: the training config ``conf/config.yaml`` composed with
    ``overrides``, with Hydra's global state cleared before and after."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from recon.cli.config import CONF_DIR

    def _compose(*overrides: str):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose("config", overrides=list(overrides))

    yield _compose
    GlobalHydra.instance().clear()
