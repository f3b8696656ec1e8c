"""Where the configs are, found in one place for every entry point.

In an installed wheel the configs ship inside the package (``recon/conf``); in a checkout they are
the top-level ``conf/``. Users add their own config directories with ``--config-dir`` (or
``hydra.searchpath``) and may override any group there.

Example
-------
>>> (config_dir() / "config.yaml").is_file()
True
"""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

# one implementation, shared with training from Python (recon.training.defaults)
from recon.training.defaults import config_dir

__all__ = ["CONF_DIR", "compose_config", "config_dir"]


#: The config directory of this installation (see :func:`config_dir`).
CONF_DIR: Path = config_dir()


def compose_config(name: str, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Compose ``name`` (``"config"`` for training, ``"eval"`` for evaluation) with overrides,
    outside any running Hydra app (for the quickstart, tests and notebooks).

    Example
    -------
    >>> cfg = compose_config("config", ["experiment=quickstart/lpd"])
    >>> cfg.model._target_
    'recon.unrolled.LearnedPrimalDual'
    """
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return compose(name, overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()
