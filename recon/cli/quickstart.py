"""The quickstart: train a small learned primal-dual, then evaluate it against FBP and TV.

Run ``make run`` (or ``recon-quickstart``). It

1. trains ``conf/experiment/quickstart/lpd.yaml`` (the full 10-iteration, 32-filter learned
   primal-dual on "ellipses", started from FBP, one image per step, bfloat16 convolutions where
   the CPU has them natively) for 3,400 steps or 8 minutes, whichever comes first (the
   learning rate anneals to zero at the deadline), writing checkpoints and TensorBoard logs,
2. evaluates the best checkpoint with FBP and TV (``protocol=ellipses/classical``'s tuned
   settings) on the test images through the ``recon-eval`` machinery,
3. prints the results table and the paths of the PNG grid and of the TensorBoard logs.

Any Hydra override is passed on to the training config, e.g.
``recon-quickstart trainer.max_steps=50 --test-size 10`` or ``trainer.max_time=null`` (steps
only, the same result on every machine).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from omegaconf import open_dict

from recon.cli.config import compose_config

__all__ = ["main", "run"]


def run(argv: Sequence[str] | None = None) -> dict:
    """Train, evaluate and report; returns the evaluation results by method.

    ``--out`` must not hold an earlier quickstart: both steps claim their folders
    (:func:`recon.runs.folders.claim_output_dir`) before writing anything.
    """
    from recon.cli.evaluate import claim_evaluation_dir, evaluate
    from recon.cli.train import train
    from recon.runs.folders import claim_output_dir, run_markers

    parser = argparse.ArgumentParser(prog="recon-quickstart", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory, new or empty (default: outputs/quickstart/<date>_<time>)",
    )
    parser.add_argument("--test-size", type=int, default=100, help="test images to evaluate")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the training config")
    args = parser.parse_args(argv)
    out = args.out or Path("outputs/quickstart") / time.strftime("%Y-%m-%d_%H-%M-%S")
    out = out.resolve()
    for step in ("train", "eval"):  # both refused before the first byte, not after training
        if run_markers(out / step):
            parser.error(f"{out / step} already holds a run; choose another --out")

    print(f"[1/2] training the quickstart learned primal-dual into {out}/train", flush=True)
    train_cfg = compose_config("config", ["experiment=quickstart/lpd", *args.overrides])
    claim_output_dir(out / "train", train_cfg)  # .hydra/config.yaml: load_run rebuilds from it
    start = time.perf_counter()
    result = train(train_cfg, output_dir=out / "train")
    minutes = (time.perf_counter() - start) / 60
    print(
        f"      {result['step']} steps in {minutes:.1f} min (stopped by {result['stopped_by']}), "
        f"best validation PSNR {result['best_psnr']:.2f} dB",
        flush=True,
    )

    print("[2/2] evaluating it against FBP and TV", flush=True)
    eval_cfg = compose_config(
        "eval", ["protocol=ellipses/classical", f"data.splits.test.size={args.test_size}"]
    )
    with open_dict(eval_cfg):
        eval_cfg.operator = train_cfg.operator  # evaluate on the geometry it was trained for
        eval_cfg.methods.lpd = {
            "_target_": "recon.checkpoints.load_run",
            "run_dir": str(out / "train"),
            "checkpoint": Path(result["checkpoint"]).name,
        }
    claim_evaluation_dir(out / "eval", eval_cfg)
    results = evaluate(eval_cfg, output_dir=out / "eval")
    print(f"\nPNG grid: {out}/eval/grid.png")
    print(f"TensorBoard: tensorboard --logdir {out}   (train/ and eval/)")
    return results


def main() -> None:
    """Console entry point ``recon-quickstart`` (exit status 0 on success)."""
    run()


if __name__ == "__main__":
    main()
