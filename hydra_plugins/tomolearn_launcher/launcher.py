"""Hydra's submitit launchers, resuming a requeued training job from its last checkpoint.

``hydra-submitit-launcher`` already makes each job *checkpointable* in submitit's sense: when a
job is about to hit its time limit (or is preempted), submitit sends it a signal, calls the
job's ``checkpoint()`` and resubmits what that returns (at most ``max_num_timeout`` times on
SLURM; three times with the local executor). Its ``checkpoint()`` resubmits the job with the
same overrides, so a ``recon-train`` job would start again from step 0, or refuse the output
directory it had filled. These subclasses add ``resume=true`` to the overrides of the
resubmission (for configs that have a top-level ``resume`` key, i.e. ``recon-train``), so the
requeued job continues from its newest checkpoint in the same output directory, with the exact
resume of :class:`recon.training.Trainer`. A ``recon-eval`` job (no ``resume`` key) simply runs
again.

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

__all__ = ["ResumingLocalLauncher", "ResumingSlurmLauncher", "with_resume"]

log = logging.getLogger(__name__)

_RESUME = re.compile(r"^(\+\+|\+|~)?resume(=|$)")


def with_resume(overrides: Sequence[str]) -> list[str]:
    """``overrides`` with any ``resume`` override replaced by ``resume=true``.

    Example
    -------
    >>> with_resume(["seed=1"])
    ['seed=1', 'resume=true']
    """
    return [o for o in overrides if not _RESUME.match(o)] + ["resume=true"]


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
        log.warning("requeueing the job with overrides %s", " ".join(sweep_overrides))
        return submitit.helpers.DelayedSubmission(self, sweep_overrides, *rest, **kwargs)


class ResumingLocalLauncher(_ResumeOnRequeue, submitit_launcher.LocalLauncher):
    """``submitit_local`` whose requeued training jobs resume (see the module docstring)."""


class ResumingSlurmLauncher(_ResumeOnRequeue, submitit_launcher.SlurmLauncher):
    """``submitit_slurm`` whose requeued training jobs resume (see the module docstring)."""
