"""``recon-train``'s defaults, read from the shipped configs for training from Python.

The numbers live once, in ``conf/`` (``trainer/default.yaml``, ``optim/adamw.yaml`` and the
``seed`` of ``config.yaml``); :meth:`recon.training.Trainer.supervised` and the command line
read the same files. In an installed wheel the configs ship inside the package
(``recon/conf``); in a checkout they are the top-level ``conf/``.

Example
-------
>>> trainer_defaults()["batch_size"], default_seed()
(8, 0)
>>> import torch
>>> default_optimizer(lr=0.01)([torch.nn.Parameter(torch.zeros(1))]).defaults["lr"]
0.01
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

__all__ = ["config_dir", "default_optimizer", "default_seed", "trainer_defaults"]

_HERE = Path(__file__).resolve()


def config_dir() -> Path:
    """The directory of ``config.yaml`` and ``eval.yaml``: packaged, else the checkout's.

    Raises ``FileNotFoundError`` when neither exists (a broken install).

    Example
    -------
    >>> (config_dir() / "trainer" / "default.yaml").is_file()
    True
    """
    recon = _HERE.parents[1]
    for candidate in (recon / "conf", recon.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"no Hydra configs found beside {recon} (recon/conf in a wheel, conf/ in a "
        "checkout): reinstall tomolearn"
    )


def trainer_defaults() -> dict[str, Any]:
    """The :class:`~recon.training.Trainer` settings of ``conf/trainer/default.yaml``."""
    return OmegaConf.to_container(OmegaConf.load(config_dir() / "trainer" / "default.yaml"))


def default_seed() -> int:
    """The ``seed`` of ``conf/config.yaml``."""
    return int(OmegaConf.load(config_dir() / "config.yaml").seed)


def default_optimizer(**overrides: Any) -> Callable[..., Any]:
    """The optimiser factory of ``conf/optim/adamw.yaml`` (``overrides`` replace its keys,
    e.g. ``lr``); ``factory(parameters)`` builds the optimiser.

    Raises ``ValueError`` naming a key the config does not have.
    """
    from hydra.utils import instantiate

    node = OmegaConf.load(config_dir() / "optim" / "adamw.yaml")
    known = [key for key in node if not str(key).startswith("_")]
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ValueError(f"the optimiser config has no {unknown}; its keys: {known}")
    return instantiate(node, **overrides)
