r"""Benchmark of the generative regularisers on sparse-angle CT, in and out of distribution.

``python -m benchmarks.generative`` runs the issue's comparison end to end on one machine:

1. **Data** (``--data``, default ``conf/data/few_ellipses_5pct.yaml``): 64² images of a few random
   ellipses (Poisson(4), at most 8, positive; ``--data smooth_ellipses_5pct``: the same ellipses
   as smooth bumps; ``--data ellipses_5pct``: dival's ~40), parallel beam
   with 15 angles (``conf/operator/parallel64_15.yaml``), Gaussian noise 5 % of the mean ``|y|``,
   measurements simulated on a 2× finer grid. Test image ``i`` is sample ``i`` of the test split
   (the images ``recon-eval`` sees); its *out-of-distribution* twin is the same ellipses plus a
   small bright disc (radius 0.1 on [-1, 1]², i.e. 3.2 px, value +0.6, centred inside the object),
   simulated anew. The generators never saw such a disc.
2. **Generators**: the AE, VAE and WGAN-GP of ``conf/model/{ae,vae,gan}.yaml`` trained on the
   train split's images by the :class:`~recon.training.Trainer` with
   :class:`~recon.training.tasks.AutoencoderTask`, :class:`~recon.training.tasks.VAETask` and
   :class:`~recon.training.tasks.AdversarialTask` (its settings, optimisers and schedule from
   ``experiment=generative/gan``). Runs live under ``--work-dir`` (default
   ``outputs/benchmarks/generative``) and resume, so a second call reuses finished trainings.
3. **Tuning** on the validation split with :func:`recon.runs.search.grid_search` (mean PSNR):
   TV's λ, the hard formulation's α, the soft and sparse-deviation formulations' λ and μ. A value
   chosen at either end of its grid is flagged (printed, and ``at_grid_edge`` in the JSON).
4. **Test**: FBP (Hann), TV and the three formulations per generator, on the in-distribution
   images and their out-of-distribution twins. Reported: PSNR/SSIM (data range of each truth),
   the PSNR inside the feature's region (the disc dilated by one pixel), the fraction of the
   disc's contrast recovered, :math:`\operatorname{mean}_{\text{disc}}(\hat x - x_{\text{ID}})
   / 0.6`, seconds per image (wall clock and CPU time of this process), operator applications
   per image and restarts.

It prints a markdown table, writes JSON (``--out``) and a PNG (``--png``; both in
``bench_results/generative/``) of three
out-of-distribution images: truth, TV, and each formulation of the first generator, then the
errors. ``--n-angles`` and ``--noise`` change the problem, not the generators: they see only
images, so a work dir's generators serve every problem of their family. ``--quick`` shrinks
everything (32², tiny networks, a few dozen training steps) to check the pipeline (about 15 CPU
seconds); its numbers mean nothing.

Cost of the full run, measured in CPU time of one core (64², channels 16, batch 16): data 0.013 s
per image (8000 training images: 2 min); training 0.31 s per AE step and 0.33 s per VAE step
(3000 steps: 16 min each), 2.7 s per GAN step with 5 critic steps (1000 steps: 45 min); a
latent-search iteration 0.010–0.012 s per image and restart, so 9 s per image and formulation
(200 iterations, 4 restarts), 22 min of tuning (19 grid points, 8 validation images) and 18 min
of testing (3 formulations, 40 images) per generator. In all about 3.3 CPU hours for
``--models ae,vae,gan`` and 1 hour for ``--models ae``; ``--threads 2`` shortens the wall time.

Example
-------
::

    python -m benchmarks.generative --quick --models ae --work-dir /tmp/gen
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from functools import partial
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from benchmarks.common import RESULTS, write_json
from data_tools.datasets import sample_generator
from data_tools.noise import GaussianNoise
from data_tools.phantoms import ellipses_image, phantom_family
from data_tools.simulate import downsample, simulate
from operators import Parallel2D, RayTransform
from recon.checkpoints import load_trained
from recon.classical import FBP, TV
from recon.cli.config import compose_config, config_dir
from recon.data import build_split
from recon.generative import HardGenerative, SoftGenerative, SparseDeviationGenerative
from recon.runs.evaluation import image_grid, run_method, stack_split, summarize
from recon.runs.search import grid_edges, grid_search
from recon.training import Trainer
from recon.training.tasks import AutoencoderTask, VAETask, as_task

MODELS: tuple[str, ...] = ("ae", "vae", "gan")
FORMULATIONS = {
    "hard": HardGenerative,
    "soft": SoftGenerative,
    "sparse": SparseDeviationGenerative,
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of one benchmark run (``FULL`` or ``QUICK``)."""

    image_size: int
    n_angles: int
    train_images: int
    val_images: int
    test_images: int
    steps: dict[str, int]  # training steps per model (GAN: generator steps)
    batch_size: int
    channels: int
    latent_dim: int
    n_iter: int  # latent-search iterations
    n_restarts: int
    tv_iter: int
    grids: dict[str, dict[str, list[float]]]
    disc_radius: float = 0.1  # on [-1, 1]²
    disc_value: float = 0.6


FULL = Settings(
    image_size=64,
    n_angles=15,
    train_images=8000,
    val_images=8,
    test_images=20,
    steps={"ae": 3000, "vae": 3000, "gan": 1000},
    batch_size=16,
    channels=16,
    latent_dim=128,
    n_iter=200,
    n_restarts=4,
    tv_iter=500,
    grids={
        "tv": {"lam": [0.25, 0.5, 1.0, 2.0, 4.0]},
        "hard": {"alpha": [0.1, 1.0, 10.0]},
        "soft": {"lam": [3.0, 10.0, 30.0, 100.0], "mu": [0.001, 0.01]},
        "sparse": {"lam": [3.0, 10.0, 30.0, 100.0], "mu": [0.01, 0.1]},
    },
)

QUICK = Settings(
    image_size=32,
    n_angles=15,
    train_images=128,
    val_images=2,
    test_images=2,
    steps={"ae": 30, "vae": 30, "gan": 3},
    batch_size=8,
    channels=4,
    latent_dim=16,
    n_iter=10,
    n_restarts=2,
    tv_iter=50,
    grids={
        "tv": {"lam": [0.5, 2.0]},
        "hard": {"alpha": [0.1, 10.0]},
        "soft": {"lam": [3.0, 30.0], "mu": [0.01]},
        "sparse": {"lam": [3.0, 30.0], "mu": [0.1]},
    },
)


# --------------------------------------------------------------------------- data
#: ``--data`` choices: ``conf/data/<name>.yaml``. The default, a handful of ellipses per image, is
#: the in-distribution family of the protocol; ``smooth_ellipses_5pct`` draws the same ellipses as
#: smooth bumps, not piecewise constant (TV still reaches 40.8 dB on its validation images, the
#: AE 27.6 after 2000 steps); ``ellipses_5pct`` (dival's ~40 ellipses) is harder than a
#: 128-dimensional autoencoder can represent.
DATA_CONFIGS: tuple[str, ...] = ("few_ellipses_5pct", "smooth_ellipses_5pct", "ellipses_5pct")


def data_config(settings: Settings, name: str = DATA_CONFIGS[0]) -> DictConfig:
    """``conf/data/<name>.yaml`` with the split sizes of ``settings``."""
    cfg = OmegaConf.load(config_dir() / "data" / f"{name}.yaml")
    cfg.splits.train.size = settings.train_images
    cfg.splits.validation.size = settings.val_images
    cfg.splits.test.size = settings.test_images
    return cfg


def _disc(centre: tuple[float, float], settings: Settings) -> torch.Tensor:
    return torch.tensor(
        [[settings.disc_value, settings.disc_radius, settings.disc_radius, *centre, 0.0]],
        dtype=torch.float64,
    )


def ood_test_pairs(geometry: Parallel2D, data_cfg, settings: Settings) -> dict[str, torch.Tensor]:
    """In-distribution test pairs and their out-of-distribution twins (with a bright disc).

    Returns ``x_id, y_id`` (sample ``i`` of the test split), ``x_ood, y_ood``, the coarse disc
    images ``disc`` (the disc's contribution to ``x_ood``), all ``(N, 1, ...)``.
    """
    factor = int(data_cfg.factor)
    noise = GaussianNoise(relative=float(data_cfg.noise.relative))
    seed = int(data_cfg.splits.test.seed)
    draw = phantom_family(data_cfg.splits.test.phantom)
    size = geometry.image_shape
    out: dict[str, list[torch.Tensor]] = {k: [] for k in ("x_id", "y_id", "x_ood", "y_ood", "disc")}
    for i in range(settings.test_images):
        gen = sample_generator(seed, i)  # as recon.data: phantom first, then noise
        render = draw(gen)
        x, y = simulate(render, geometry, factor=factor, noise=noise, generator=gen)
        gen_ood = sample_generator(seed + 1, i)
        for _ in range(100):  # a centre inside the object, away from the border
            centre = (torch.rand(2, generator=gen_ood, dtype=torch.float64) - 0.5).tolist()
            disc = ellipses_image(_disc(centre, settings), size, dtype=torch.float32)
            if float(x[disc > 0].mean()) > 0.1:
                break
        disc_params = _disc(centre, settings)

        def phantom(s, r=render, d=disc_params):
            return r(s) + ellipses_image(d, s, dtype=torch.float32)

        x_ood, y_ood = simulate(phantom, geometry, factor=factor, noise=noise, generator=gen_ood)
        fine = ellipses_image(disc_params, [n * factor for n in size], dtype=torch.float32)
        for key, value in zip(out, (x, y, x_ood, y_ood, downsample(fine, factor)), strict=True):
            out[key].append(value[None])
    return {k: torch.stack(v) for k, v in out.items()}


def feature_metrics(
    estimate: torch.Tensor,
    truth: torch.Tensor,
    x_id: torch.Tensor,
    disc: torch.Tensor,
    value: float,
) -> dict[str, float]:
    """PSNR inside the feature's region and the fraction of its contrast recovered.

    The region is every pixel the disc touches, dilated by one pixel; the data range is each
    truth's max − min. The contrast is the mean of ``estimate − x_id`` over the pixels at least
    three quarters inside the disc, divided by the disc's value (1: fully recovered, 0: lost).

    Example
    -------
    >>> x = torch.zeros(1, 1, 8, 8); disc = torch.zeros(1, 1, 8, 8); disc[..., 3:5, 3:5] = 0.5
    >>> feature_metrics(x + disc, x + disc, x, disc, 0.5)["contrast"]
    1.0
    """
    region = F.max_pool2d((disc > 0).float(), 3, stride=1, padding=1) > 0
    core = disc >= 0.75 * value
    data_range = (truth.flatten(1).amax(1) - truth.flatten(1).amin(1)).double()
    psnrs, contrasts = [], []
    for i in range(truth.shape[0]):
        err = (estimate[i] - truth[i])[region[i]].double().square().mean()
        psnrs.append(float(10 * torch.log10(data_range[i] ** 2 / err.clamp_min(1e-20))))
        contrasts.append(float((estimate[i] - x_id[i])[core[i]].double().mean() / value))
    return {
        "feature_psnr": sum(psnrs) / len(psnrs),
        "contrast": sum(contrasts) / len(contrasts),
    }


# --------------------------------------------------------------------------- generators
def build_model(kind: str, settings: Settings) -> torch.nn.Module:
    """The model of ``conf/model/{kind}.yaml`` at the benchmark's size."""
    cfg = OmegaConf.load(config_dir() / "model" / f"{kind}.yaml")
    if kind == "gan":
        for part in ("generator", "critic"):
            cfg[part].channels = settings.channels
        cfg.generator.image_size = settings.image_size
        cfg.generator.latent_dim = settings.latent_dim
    else:
        cfg.image_size, cfg.channels = settings.image_size, settings.channels
        cfg.latent_dim = settings.latent_dim
    return instantiate(cfg)


def gan_trainer(
    model: torch.nn.Module,
    x_train: torch.Tensor,
    settings: Settings,
    out_dir: Path,
    *,
    seed: int,
    progress: bool,
) -> Trainer:
    """The WGAN-GP's trainer: the task, optimisers and schedule of ``experiment=generative/gan``
    (``AdversarialTask``, one Adam per group, constant rate, no clipping), the benchmark's sizes:
    ``settings.batch_size`` images per critic update, a checkpoint every quarter of the run and a
    samples grid every tenth."""
    steps = settings.steps["gan"]
    cfg = compose_config("config", ["experiment=generative/gan"])
    task = as_task(instantiate(cfg.objective, op=None))
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_cfg.update(
        max_steps=steps,
        batch_size=task.n_critic * settings.batch_size,
        ckpt_every=max(1, steps // 4),
        val_every=max(1, steps // 10),
        progress=progress,
    )
    return Trainer(
        model,
        train_data=TensorDataset(x_train),
        val_data=None,
        task=task,
        out_dir=out_dir,
        optimizer=instantiate(cfg.optim),
        seed=seed,
        **trainer_cfg,
    )


def train_model(
    kind: str,
    x_train: torch.Tensor,
    x_val: torch.Tensor,
    settings: Settings,
    work_dir: Path,
    *,
    seed: int,
    progress: bool,
) -> tuple[torch.nn.Module, dict]:
    """Train (or resume / reuse) one generator; returns it in eval mode and a summary."""
    torch.manual_seed(seed)
    model = build_model(kind, settings)
    out_dir = work_dir / kind
    resume = (out_dir / "checkpoints").is_dir()  # reuse (or continue) an earlier run
    steps = settings.steps[kind]
    started, cpu_started = time.perf_counter(), time.process_time()
    if kind == "gan":
        trainer = gan_trainer(model, x_train, settings, out_dir, seed=seed, progress=progress)
        result = trainer.fit(resume=resume)
        summary = {"steps": result["step"], "last": result["last_loss"]}
    else:
        task = AutoencoderTask() if kind == "ae" else VAETask(noise_std=0.1)
        trainer = Trainer(
            model,
            train_data=TensorDataset(x_train),
            val_data=TensorDataset(x_val),
            task=task,  # logs the samples grid of decoded codes with each validation
            out_dir=out_dir,
            max_steps=steps,
            batch_size=settings.batch_size,
            optimizer=partial(torch.optim.AdamW, lr=1e-3),
            warmup_steps=min(100, steps // 10),
            ckpt_every=max(1, steps // 4),
            val_every=max(1, steps // 4),
            seed=seed,
            progress=progress,
        )
        result = trainer.fit(resume=resume)
        if (out_dir / "checkpoints" / "best.pt").is_file():
            load_trained(model, out_dir / "checkpoints" / "best.pt")
        summary = {"steps": result["step"], "val_psnr": result["best_psnr"]}
    summary["train_seconds"] = time.perf_counter() - started
    summary["train_cpu_seconds"] = time.process_time() - cpu_started
    return model.eval(), summary


def _claim_work_dir(work_dir: Path, data: str) -> None:
    """Record which data config ``work_dir``'s generators train on (``data.txt``), and refuse to
    resume generators trained on another family: they would be tested out of distribution."""
    marker = work_dir / "data.txt"
    if marker.is_file():
        found = marker.read_text().strip()
        if found != data:
            raise SystemExit(
                f"{work_dir} holds generators trained on --data {found}, not {data}: "
                "give another --work-dir"
            )
        return
    if any((work_dir / kind).exists() for kind in MODELS):
        raise SystemExit(
            f"{work_dir} holds training runs of unknown data ({marker} is missing): "
            "give another --work-dir, or write the data config's name into that file"
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(data + "\n")


# --------------------------------------------------------------------------- the benchmark
def _tune(name, make, grid, y_val, x_val, op, batch_size) -> dict:
    """Grid search on validation: ``{params, val_psnr, cpu_seconds, at_grid_edge}``."""
    cpu = time.process_time()
    best, table = grid_search(make, grid, y_val, x_val, op, batch_size=batch_size)
    cpu = time.process_time() - cpu
    edges = grid_edges(best, grid)
    note = f"; at the edge of the grid: {', '.join(edges)}" if edges else ""
    print(
        f"  tuned {name}: {best} (validation PSNR {table[0]['psnr']:.2f}, {cpu:.0f} CPU s{note})",
        flush=True,
    )
    return {"params": best, "val_psnr": table[0]["psnr"], "cpu_seconds": cpu, "at_grid_edge": edges}


def table(results: dict[str, dict]) -> str:
    """The results as a markdown table."""
    header = (
        "| method | params | restarts | ID PSNR | ID SSIM | OOD PSNR | feature PSNR | "
        "feature contrast | s/image | CPU s/image | op appl./image |"
    )
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        params = ", ".join(f"{k}={v:g}" for k, v in r["params"].items()) or "-"
        lines.append(
            f"| {name} | {params} | {r['restarts']} | {r['id_psnr']:.2f} | {r['id_ssim']:.3f} | "
            f"{r['ood_psnr']:.2f} | {r['feature_psnr']:.2f} | {r['contrast']:.2f} | "
            f"{r['seconds_per_image']:.3f} | {r['cpu_seconds_per_image']:.3f} | "
            f"{r['op_applications_per_image']:.0f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked: ``args.settings`` (``FULL`` or ``QUICK`` with ``--n-angles``),
    ``args.models`` (a list) and the output paths filled in."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.generative")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the pipeline")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: ae,vae,gan")
    parser.add_argument("--work-dir", default=None, help="training runs (resumed when present)")
    parser.add_argument("--out", default=None, help="JSON results")
    parser.add_argument("--png", default=None, help="out-of-distribution image grid")
    parser.add_argument("--batch-size", type=int, default=16, help="images per reconstruction call")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--data", default=DATA_CONFIGS[0], choices=DATA_CONFIGS, help="image family (conf/data)"
    )
    parser.add_argument("--n-angles", type=int, default=None, help="projection angles (default 15)")
    parser.add_argument(
        "--noise", type=float, default=None, help="relative noise level (default: the data's)"
    )
    args = parser.parse_args(argv)
    args.settings = QUICK if args.quick else FULL
    if args.n_angles is not None:
        if args.n_angles < 1:
            raise SystemExit(f"--n-angles must be a positive int, got {args.n_angles}")
        args.settings = dataclasses.replace(args.settings, n_angles=args.n_angles)
    if args.noise is not None and not args.noise >= 0:
        raise SystemExit(f"--noise must be a non-negative number, got {args.noise}")
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown or not args.models:
        raise SystemExit(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    suffix = "_quick" if args.quick else ""
    args.work_dir = Path(args.work_dir or f"outputs/benchmarks/generative{suffix}")
    args.out = Path(args.out or RESULTS / "generative" / f"generative{suffix}.json")
    args.png = Path(args.png or RESULTS / "generative" / f"generative{suffix}_ood.png")
    return args


@dataclasses.dataclass
class Problem:
    """The benchmark's CT problem and its data: training images, validation pairs and the
    in- and out-of-distribution test pairs of :func:`ood_test_pairs`."""

    geometry: Parallel2D
    op: RayTransform
    data_cfg: DictConfig
    x_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    test: dict[str, torch.Tensor]


def build_problem(args: argparse.Namespace) -> Problem:
    """Geometry, ``matrix`` operator and data of ``--data`` (with ``--noise``) at the sizes of
    ``args.settings``."""
    settings = args.settings
    size = settings.image_size
    geometry = Parallel2D((size, size), n_angles=settings.n_angles)
    op = RayTransform(geometry, backend="matrix")
    data_cfg = data_config(settings, args.data)
    if args.noise is not None:
        data_cfg.noise.relative = args.noise
    t0 = time.perf_counter()
    x_train = stack_split(build_split(data_cfg, "train", geometry))[0]
    x_val, y_val = stack_split(build_split(data_cfg, "validation", geometry))
    test = ood_test_pairs(geometry, data_cfg, settings)
    print(
        f"data: {len(x_train)} train, {len(x_val)} validation, {settings.test_images} test "
        f"images of {size}² ({time.perf_counter() - t0:.0f} s)",
        flush=True,
    )
    return Problem(geometry, op, data_cfg, x_train, x_val, y_val, test)


def build_methods(
    args: argparse.Namespace, problem: Problem
) -> tuple[dict[str, tuple[str, torch.nn.Module, int]], dict[str, dict], dict[str, dict]]:
    """FBP, TV and every formulation of every trained generator, tuned on validation:
    ``{name: (generator kind or "-", reconstructor, restarts)}``, the tuning and the training
    summaries."""
    settings = args.settings
    y_val, x_val, op = problem.y_val, problem.x_val, problem.op
    tuned: dict[str, dict] = {}
    methods: dict[str, tuple[str, torch.nn.Module, int]] = {"fbp": ("-", FBP(filter="hann"), 1)}
    tuned["tv"] = _tune(
        "tv",
        lambda p: TV(n_iter=settings.tv_iter, **p),
        settings.grids["tv"],
        y_val,
        x_val,
        op,
        args.batch_size,
    )
    methods["tv"] = ("-", TV(n_iter=settings.tv_iter, **tuned["tv"]["params"]), 1)
    training = {}
    for kind in args.models:
        print(f"training {kind} for {settings.steps[kind]} steps", flush=True)
        model, training[kind] = train_model(
            kind,
            problem.x_train,
            x_val,
            settings,
            args.work_dir,
            seed=args.seed,
            progress=not args.quick,
        )
        for formulation, cls in FORMULATIONS.items():
            common = {
                "generator": model,
                "n_iter": settings.n_iter,
                "n_restarts": settings.n_restarts,
                "seed": args.seed,
            }

            def make(params, cls=cls, common=common):
                return cls(**common, **params)

            name = f"{kind}/{formulation}"
            tuned[name] = _tune(
                name, make, settings.grids[formulation], y_val, x_val, op, args.batch_size
            )
            methods[name] = (kind, make(tuned[name]["params"]), settings.n_restarts)
    return methods, tuned, training


def measure(
    methods: dict[str, tuple[str, torch.nn.Module, int]],
    tuned: dict[str, dict],
    problem: Problem,
    settings: Settings,
    batch_size: int,
) -> tuple[dict[str, dict], dict[str, torch.Tensor]]:
    """Every method on the in- and out-of-distribution test images: the results by method and
    the out-of-distribution reconstructions."""
    test, op = problem.test, problem.op
    results: dict[str, dict] = {}
    recons_ood: dict[str, torch.Tensor] = {}
    for name, (kind, method, restarts) in methods.items():
        cpu = time.process_time()
        x_id, s_id, ops_id = run_method(method, test["y_id"], op, batch_size=batch_size)
        x_ood, s_ood, _ = run_method(method, test["y_ood"], op, batch_size=batch_size)
        cpu = (time.process_time() - cpu) / (2 * settings.test_images)
        recons_ood[name] = x_ood
        id_metrics, ood_metrics = summarize(x_id, test["x_id"]), summarize(x_ood, test["x_ood"])
        feature = feature_metrics(
            x_ood, test["x_ood"], test["x_id"], test["disc"], settings.disc_value
        )
        results[name] = {
            "model": kind,
            "params": tuned.get(name, {}).get("params", {}),
            "restarts": restarts,
            "id_psnr": id_metrics["psnr_mean"],
            "id_ssim": id_metrics["ssim_mean"],
            "ood_psnr": ood_metrics["psnr_mean"],
            "ood_ssim": ood_metrics["ssim_mean"],
            **feature,
            "seconds_per_image": (s_id + s_ood) / 2,
            "cpu_seconds_per_image": cpu,
            "op_applications_per_image": ops_id,
        }
        print(f"  {name}: ID {results[name]['id_psnr']:.2f} dB", flush=True)
    return results, recons_ood


def report(results: dict[str, dict]) -> dict[str, float]:
    """Print the table and the best generative method; return each one's gain over TV (dB)."""
    print(table(results))
    tv_psnr = results["tv"]["id_psnr"]
    gain = {n: r["id_psnr"] - tv_psnr for n, r in results.items() if r["model"] != "-"}
    if gain:
        best_name = max(gain, key=gain.get)
        print(
            f"\nbest generative method in distribution: {best_name}, "
            f"{gain[best_name]:+.2f} dB vs TV"
        )
    return gain


def save_grid(png: Path, x_ood: torch.Tensor, recons_ood: dict, models: list[str]) -> None:
    """Three out-of-distribution images: truth, TV and each formulation of the first generator,
    then their errors."""
    shown = ["tv"] + [f"{models[0]}/{f}" for f in FORMULATIONS]
    grid = image_grid(x_ood, {n: recons_ood[n] for n in shown}, n=3)
    from skimage.io import imsave

    png.parent.mkdir(parents=True, exist_ok=True)
    imsave(png, grid, check_contrast=False)
    print(f"wrote {png} (rows: images; columns: truth, {', '.join(shown)}, then their errors)")


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns the JSON-able results."""
    args = parse_args(argv)
    _claim_work_dir(args.work_dir, args.data)
    if args.threads:
        torch.set_num_threads(args.threads)
    started, cpu_started = time.perf_counter(), time.process_time()
    settings = args.settings
    problem = build_problem(args)
    methods, tuned, training = build_methods(args, problem)
    results, recons_ood = measure(methods, tuned, problem, settings, args.batch_size)
    gain = report(results)
    save_grid(args.png, problem.test["x_ood"], recons_ood, args.models)
    summary = {
        "settings": dataclasses.asdict(settings),
        "quick": bool(args.quick),
        "data": args.data,
        "geometry": f"parallel {settings.image_size}², {settings.n_angles} angles, "
        f"{problem.geometry.n_detectors} detectors, "
        f"{100 * float(problem.data_cfg.noise.relative):g} % Gaussian noise",
        "models": args.models,
        "training": training,
        "tuned": tuned,
        "results": results,
        "gain_over_tv_db": gain,
        "threads": torch.get_num_threads(),
        "wall_seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
    }
    write_json(summary, args.out)
    return summary


if __name__ == "__main__":
    main()
