"""The quickstart: train a small learned primal-dual, then evaluate it against FBP and TV.

Run ``make run`` (or ``recon-quickstart``). It

1. trains ``conf/experiment/quickstart.yaml`` (the full 10-iteration, 32-filter learned
   primal-dual on "ellipses", started from FBP, 3,400 steps of one image with bfloat16
   convolutions where the CPU has them natively: about 9 minutes on 2 CPU cores), writing
   checkpoints and TensorBoard logs,
2. evaluates the best checkpoint with FBP and TV (``experiment=ellipses_classical``'s tuned
   settings) on the test images through the ``recon-eval`` machinery,
3. prints the results table and the paths of the PNG grid and of the TensorBoard logs.

Any Hydra override is passed on to the training config, e.g.
``recon-quickstart trainer.max_steps=50 --test-size 10``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf, open_dict

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def _compose(name: str, overrides: Sequence[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(name, overrides=list(overrides))


def run(argv: Sequence[str] | None = None) -> dict:
    """Train, evaluate and report; returns the evaluation results by method."""
    from recon.evaluate import evaluate
    from recon.train import train

    parser = argparse.ArgumentParser(prog="recon-quickstart", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (default: outputs/quickstart/<date>_<time>)",
    )
    parser.add_argument("--test-size", type=int, default=100, help="test images to evaluate")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the training config")
    args = parser.parse_args(argv)
    out = args.out or Path("outputs/quickstart") / time.strftime("%Y-%m-%d_%H-%M-%S")
    out = out.resolve()

    print(f"[1/2] training the quickstart learned primal-dual into {out}/train", flush=True)
    train_cfg = _compose("config", ["experiment=quickstart", *args.overrides])
    start = time.perf_counter()
    result = train(train_cfg, output_dir=out / "train")
    minutes = (time.perf_counter() - start) / 60
    print(
        f"      {result['step']} steps in {minutes:.1f} min, best validation PSNR "
        f"{result['best_psnr']:.2f} dB",
        flush=True,
    )

    print("[2/2] evaluating it against FBP and TV", flush=True)
    eval_cfg = _compose(
        "eval",
        [
            "experiment=ellipses_classical",
            f"data.splits.test.size={args.test_size}",
        ],
    )
    with open_dict(eval_cfg):
        eval_cfg.operator = train_cfg.operator  # evaluate on the geometry it was trained for
        eval_cfg.methods.lpd = {
            "_target_": "recon.train.load_trained",
            "model": OmegaConf.to_container(train_cfg.model),
            "checkpoint": result["checkpoint"],
        }
    results = evaluate(eval_cfg, output_dir=out / "eval")
    print(f"\nPNG grid: {out}/eval/grid.png")
    print(f"TensorBoard: tensorboard --logdir {out}   (train/ and eval/)")
    GlobalHydra.instance().clear()
    return results


def main() -> None:
    """Console entry point ``recon-quickstart`` (exit status 0 on success)."""
    run()


if __name__ == "__main__":
    main()
