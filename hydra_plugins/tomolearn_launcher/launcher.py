"""Hydra's submitit launchers, resuming a requeued training job from its last checkpoint.

``hydra-submitit-launcher`` already makes each job *checkpointable* in submitit's sense: when a
job is about to hit its time limit (or is preempted), submitit sends it a signal, calls the
job's ``checkpoint()`` and resubmits what that returns (at most ``max_num_timeout`` times on
SLURM; three times with the local executor). Its ``checkpoint()`` resubmits the job with the
same overrides, so a ``recon-train`` job would start again from step 0, or refuse the output
directory it had filled. These subclasses add ``resume=true`` to the overrides of the
resubmission (for configs that have a top-level ``resume`` key, i.e. ``recon-train``), so the
requeued job continues from its newest checkpoint in the same output directory, with the exact
resume of :class:`recon.training.Trainer`. A ``recon-eval`` job (an ``overwrite`` key, no
``resume`` key) runs again with ``overwrite=true``: its folder was claimed by its first start,
and the requeued job may replace what that one left.

Used by ``conf/hydra/launcher/local.yaml`` and ``slurm.yaml``::

    recon-train -m hydra/launcher=slurm hydra.launcher.partition=gpu optim.lr=1e-3,3e-3

Example
-------
>>> with_resume(["optim.lr=0.001", "resume=false"])
['optim.lr=0.001', 'resume=true']
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from hydra_plugins.hydra_submitit_launcher import submitit_launcher

__all__ = ["ResumingLocalLauncher", "ResumingSlurmLauncher", "with_resume", "with_true"]

log = logging.getLogger(__name__)


def with_true(overrides: Sequence[str], key: str) -> list[str]:
    """``overrides`` with any override of the top-level ``key`` replaced by ``key=true``.

    Example
    -------
    >>> with_true(["seed=1", "+overwrite=false"], "overwrite")
    ['seed=1', 'overwrite=true']
    """
    pattern = re.compile(rf"^(\+\+|\+|~)?{re.escape(key)}(=|$)")
    return [o for o in overrides if not pattern.match(o)] + [f"{key}=true"]


def with_resume(overrides: Sequence[str]) -> list[str]:
    """``overrides`` with any ``resume`` override replaced by ``resume=true``.

    Example
    -------
    >>> with_resume(["seed=1"])
    ['seed=1', 'resume=true']
    """
    return with_true(overrides, "resume")


class _ResumeOnRequeue:
    """Mixin: ``checkpoint()`` resubmits the job with ``resume=true``."""

    config: Any

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """What submitit resubmits after a time limit: this job, with ``resume=true`` added.

        submitit calls it in the job's process when the time-limit signal arrives, with the
        arguments the job was started with (``sweep_overrides, job_dir_key, job_num, job_id,
        singleton_state``).

        Example
        -------
        >>> from omegaconf import OmegaConf
        >>> launcher = ResumingLocalLauncher(submitit_folder="sweep/.submitit/%j")
        >>> launcher.config = OmegaConf.create({"resume": False})
        >>> launcher.checkpoint(["seed=1"], "hydra.sweep.dir", 0, "0", {}).args[0]
        ['seed=1', 'resume=true']
        """
        import submitit

        sweep_overrides, *rest = args
        if self.config is not None and "resume" in self.config:
            sweep_overrides = with_resume(sweep_overrides)
        elif self.config is not None and "overwrite" in self.config:
            sweep_overrides = with_true(sweep_overrides, "overwrite")
        log.warning("requeueing the job with overrides %s", " ".join(sweep_overrides))
        return submitit.helpers.DelayedSubmission(self, sweep_overrides, *rest, **kwargs)


class ResumingLocalLauncher(_ResumeOnRequeue, submitit_launcher.LocalLauncher):
    """``submitit_local`` whose requeued training jobs resume (see the module docstring)."""


class ResumingSlurmLauncher(_ResumeOnRequeue, submitit_launcher.SlurmLauncher):
    """``submitit_slurm`` whose requeued training jobs resume (see the module docstring)."""
