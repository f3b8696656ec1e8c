"""torch.distributed set-up from the environment that torchrun or SLURM gives every process.

:class:`~recon.training.Trainer` does the distributed training itself once a process group
exists: it wraps the model in ``DistributedDataParallel``, gives each rank its share of every
epoch's permutation (its own rank-aware sampler, the equivalent of
:class:`torch.utils.data.DistributedSampler`, which is why this module has none), all-reduces
the logged loss, and lets rank 0 alone validate and write checkpoints and TensorBoard logs.
This module only starts that process group, from the environment:

- **torchrun** sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
  ``MASTER_PORT``::

      torchrun --standalone --nproc-per-node=2 -m recon.cli.train experiment=quickstart/lpd \\
          trainer=ddp hydra.run.dir=outputs/ddp

- **SLURM** (``srun``, or Hydra's submitit launcher with ``tasks_per_node > 1``) sets
  ``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``, ``SLURM_JOB_NODELIST`` and
  ``SLURM_JOB_ID``; the first node of the job is the rendezvous host and the port is derived
  from the job id (or taken from ``MASTER_PORT``).

The backend is gloo on CPU and nccl on CUDA (each rank takes the GPU of its local rank).
``trainer=ddp`` (``conf/trainer/ddp.yaml``) turns this on for ``recon.cli.train``; without a
torchrun or SLURM environment it trains in one process. Give every rank the same
``hydra.run.dir``: each rank runs ``hydra.main``, and rank 0's output directory is used by all.
The global batch is ``WORLD_SIZE × trainer.batch_size``.
"""

from __future__ import annotations

import atexit
import datetime
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "DistEnv",
    "detect_environment",
    "first_host",
    "init_distributed",
    "is_main_process",
    "parameter_spread",
    "setup_training",
    "shared_path",
]

log = logging.getLogger(__name__)

BACKENDS = ("auto", "gloo", "nccl")
_SETTINGS = {"backend", "timeout_s"}


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands in a distributed job, as its environment says.

    ``source`` is ``"torchrun"``, ``"slurm"`` or ``"none"`` (a single process). ``master_addr``
    and ``master_port`` are the rendezvous point (``None`` for a single process).
    """

    rank: int
    world_size: int
    local_rank: int
    master_addr: str | None
    master_port: int | None
    source: str


def first_host(nodelist: str) -> str:
    """The first host name of a SLURM node list (``SLURM_JOB_NODELIST``).

    Example
    -------
    >>> first_host("gpu[007-010,012],cpu3")
    'gpu007'
    >>> first_host("node12")
    'node12'
    """
    nodelist = nodelist.strip()
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist)
    if not nodelist or match is None:
        raise ValueError(f"cannot read a host from the SLURM node list {nodelist!r}")
    prefix, ranges = match.group(1), match.group(2)
    if ranges is None:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first


def detect_environment(environ: Mapping[str, str] | None = None) -> DistEnv:
    """Read rank, world size, local rank and rendezvous point from torchrun's or SLURM's variables.

    torchrun's variables win when both are present (torchrun inside a SLURM allocation). A SLURM
    job of one task, or no such variables at all, is a single process.

    Example
    -------
    >>> detect_environment({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1",
    ...                     "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"})
    DistEnv(rank=1, world_size=2, local_rank=1, master_addr='127.0.0.1', master_port=29500, source='torchrun')
    >>> detect_environment({"SLURM_PROCID": "3", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1",
    ...                     "SLURM_JOB_NODELIST": "gpu[04-05]", "SLURM_JOB_ID": "123456"}).master_addr
    'gpu04'
    >>> detect_environment({}).source
    'none'
    """  # noqa: E501
    env = os.environ if environ is None else environ

    def integer(name: str) -> int:
        try:
            return int(env[name])
        except ValueError:
            raise ValueError(
                f"environment variable {name}={env[name]!r} is not an integer"
            ) from None

    if "RANK" in env and "WORLD_SIZE" in env:
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if name not in env:
                raise ValueError(f"RANK and WORLD_SIZE are set but {name} is not (use torchrun)")
        return DistEnv(
            rank=integer("RANK"),
            world_size=integer("WORLD_SIZE"),
            local_rank=integer("LOCAL_RANK") if "LOCAL_RANK" in env else 0,
            master_addr=env["MASTER_ADDR"],
            master_port=integer("MASTER_PORT"),
            source="torchrun",
        )
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        if not nodelist:
            raise ValueError("SLURM_NTASKS > 1 but neither SLURM_JOB_NODELIST nor SLURM_NODELIST")
        if "MASTER_PORT" in env:
            port = integer("MASTER_PORT")
        else:  # one port per job, so that jobs sharing a node do not collide
            port = 15000 + integer("SLURM_JOB_ID") % 40000 if "SLURM_JOB_ID" in env else 29500
        return DistEnv(
            rank=integer("SLURM_PROCID"),
            world_size=integer("SLURM_NTASKS"),
            local_rank=integer("SLURM_LOCALID") if "SLURM_LOCALID" in env else 0,
            master_addr=env.get("MASTER_ADDR") or first_host(nodelist),
            master_port=port,
            source="slurm",
        )
    return DistEnv(0, 1, 0, None, None, "none")


def init_distributed(
    *,
    backend: str = "auto",
    device: str = "cpu",
    timeout_s: float = 600,
    environ: Mapping[str, str] | None = None,
) -> tuple[DistEnv, str]:
    """Start the default process group from the environment; return it and this rank's device.

    Parameters
    ----------
    backend : {"auto", "gloo", "nccl"}
        ``auto``: nccl when ``device`` is CUDA, else gloo.
    device : str
        ``"cpu"`` or ``"cuda"`` (or ``"cuda:K"``); with CUDA each rank takes ``cuda:LOCAL_RANK``.
    timeout_s : float
        Rendezvous and collective timeout.
    environ : mapping or None
        The environment to read (``os.environ`` by default).

    Returns
    -------
    (DistEnv, str)
        The environment and the device this rank trains on. A single process (world size 1)
        starts no process group.

    Raises
    ------
    ValueError
        For an unknown backend, nccl without CUDA, or an inconsistent environment.

    Example
    -------
    >>> init_distributed(environ={})  # no torchrun, no SLURM: one process, nothing started
    (DistEnv(rank=0, world_size=1, local_rank=0, master_addr=None, master_port=None, source='none'), 'cpu')
    """  # noqa: E501
    if backend not in BACKENDS:
        raise ValueError(f"unknown distributed backend {backend!r}; choose one of {BACKENDS}")
    info = detect_environment(environ)
    cuda = str(device).startswith("cuda")
    if cuda:
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested, but CUDA is not available")
        device = f"cuda:{info.local_rank}" if info.world_size > 1 else str(device)
        torch.cuda.set_device(torch.device(device))
    if backend == "auto":
        backend = "nccl" if cuda else "gloo"
    if backend == "nccl" and not cuda:
        raise ValueError("the nccl backend needs trainer.device=cuda; use gloo on CPU")
    if info.world_size == 1:
        return info, str(device)
    if not 0 <= info.rank < info.world_size:
        raise ValueError(f"rank {info.rank} is outside a world of size {info.world_size}")
    if dist.is_initialized():
        if dist.get_world_size() != info.world_size or dist.get_rank() != info.rank:
            raise RuntimeError("a different torch.distributed process group is already running")
        return info, str(device)
    dist.init_process_group(
        backend,
        init_method=f"tcp://{info.master_addr}:{info.master_port}",
        rank=info.rank,
        world_size=info.world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    atexit.register(_destroy)
    log.info(
        "torch.distributed (%s, from %s): rank %d of %d, device %s",
        backend,
        info.source,
        info.rank,
        info.world_size,
        device,
    )
    return info, str(device)


def _destroy() -> None:
    """At exit: all ranks meet, then tear the group down together (a rank that tore down
    alone while another was still in gloo's shutdown made that one abort, now and then)."""
    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        except Exception:  # noqa: BLE001 - a peer already gone: tear down regardless
            log.warning("torch.distributed: no barrier at exit (a rank has already left)")
        dist.destroy_process_group()


def is_main_process() -> bool:
    """Rank 0 of the process group, or, before it starts, of the environment (torchrun, SLURM).

    Example
    -------
    >>> is_main_process()  # a plain process is its own rank 0
    True
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return detect_environment().rank == 0


def shared_path(path: str | os.PathLike[str]) -> Path:
    """Rank 0's ``path`` on every rank (itself when no process group runs).

    Each rank of a torchrun job runs ``hydra.main`` and may get its own time-stamped run
    directory; this makes every rank write (or, for ranks > 0, not write) in rank 0's.

    Example
    -------
    >>> shared_path("outputs/run")
    PosixPath('outputs/run')
    """
    path = Path(path)
    if not (dist.is_available() and dist.is_initialized()):
        return path
    shared = [str(path)]
    dist.broadcast_object_list(shared, src=0)
    if shared[0] != str(path):
        log.warning(
            "rank %d: output directory %s differs from rank 0's %s; using rank 0's "
            "(give every rank the same hydra.run.dir)",
            dist.get_rank(),
            path,
            shared[0],
        )
    return Path(shared[0])


def setup_training(
    trainer_cfg: dict[str, Any], output_dir: str | os.PathLike[str]
) -> tuple[dict[str, Any], Path]:
    """The hook of ``recon.cli.train``: start torch.distributed if ``trainer_cfg`` asks for it.

    Pops ``trainer_cfg["distributed"]`` (``{backend, timeout_s}``, from ``trainer=ddp``); when
    present, starts the process group from the environment, sets this rank's device, makes all
    ranks use rank 0's ``output_dir`` and stops ranks > 0 from writing to log files. Returns the
    Trainer's keyword arguments and the output directory.

    Example
    -------
    >>> kwargs, out = setup_training({"max_steps": 10, "device": "cpu"}, "outputs/run")
    >>> kwargs, out
    ({'max_steps': 10, 'device': 'cpu'}, PosixPath('outputs/run'))
    """
    trainer_cfg = dict(trainer_cfg)
    options = trainer_cfg.pop("distributed", None)
    if options is None:
        return trainer_cfg, Path(output_dir)
    unknown = set(options) - _SETTINGS
    if unknown:
        raise ValueError(
            f"unknown keys {sorted(unknown)} in trainer.distributed; known: {sorted(_SETTINGS)}"
        )
    if detect_environment().rank != 0:
        _silence_file_logs()
    info, device = init_distributed(
        backend=options.get("backend", "auto"),
        device=trainer_cfg.get("device", "cpu"),
        timeout_s=float(options.get("timeout_s", 600)),
    )
    if info.world_size == 1:
        log.info("trainer=ddp without a torchrun or SLURM multi-task environment: one process")
    trainer_cfg["device"] = device
    return trainer_cfg, shared_path(output_dir)


def _silence_file_logs() -> None:
    """Ranks > 0 keep logging to the console only: rank 0 alone writes the job's log file."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()


def parameter_spread(module: torch.nn.Module) -> float:
    """Largest difference of any parameter between ranks (0.0 without a process group).

    DistributedDataParallel keeps the ranks' parameters identical; ``recon.cli.train`` checks this
    at the end of a distributed run and logs the result.

    Example
    -------
    >>> parameter_spread(torch.nn.Linear(2, 2))
    0.0
    """
    if not (dist.is_available() and dist.is_initialized()):
        return 0.0
    flat = torch.cat([p.detach().reshape(-1).double() for p in module.parameters()])
    if dist.get_backend() != "nccl":
        flat = flat.cpu()
    high, low = flat.clone(), flat.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    spread = float((high - low).abs().max())
    if dist.get_rank() == 0:
        level = logging.INFO if spread == 0 else logging.WARNING
        log.log(
            level, "parameters of the %d ranks differ by at most %g", dist.get_world_size(), spread
        )
    return spread
