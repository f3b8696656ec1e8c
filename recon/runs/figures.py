"""Labelled comparison figures of an evaluation: ``recon-eval``'s ``grid.png``.

One row per test image; columns ``truth | each method | each method's |error|``, every column
titled, every reconstruction labelled with its PSNR (dB) and SSIM against the truth. The truth
and the reconstructions share the truth's window (its min and max over the shown images); the
errors are shown on ``[0, (max − min) / 2]``, stated in their titles, so small errors stay
visible and two figures of the same images compare directly.

Example
-------
>>> import tempfile
>>> truth = torch.rand(2, 1, 16, 16)
>>> path = Path(tempfile.mkdtemp()) / "grid.png"
>>> save_comparison(truth, {"fbp": truth + 0.05 * torch.randn_like(truth)}, path).name
'grid.png'
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from data_tools.metrics import psnr, ssim
from recon.checkpoints import atomic_write_bytes

__all__ = ["comparison_figure", "save_comparison"]


def comparison_figure(truth: torch.Tensor, recons: dict[str, torch.Tensor], *, n: int = 4):
    """The labelled comparison figure (a matplotlib ``Figure``) of the first ``n`` images.

    Parameters
    ----------
    truth : torch.Tensor
        ``(B, 1, H, W)`` ground truth.
    recons : dict of str to torch.Tensor
        Method name to its ``(B, 1, H, W)`` reconstructions.
    n : int
        How many images (rows) to show.

    Example
    -------
    >>> truth = torch.zeros(1, 1, 8, 8)
    >>> fig = comparison_figure(truth, {"fbp": truth + 0.1})
    >>> [ax.get_title() for ax in fig.axes]
    ['truth', 'fbp', '|fbp − truth|']
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    t = truth[:n, 0].detach().double().cpu()
    shown = {name: r[:n, 0].detach().double().cpu() for name, r in recons.items()}
    low, high = float(t.min()), float(t.max())
    half = (high - low) / 2 if high > low else 1.0
    columns, rows = 1 + 2 * len(shown), len(t)
    fig = Figure(figsize=(1.9 * columns, 2.0 * rows + 0.3))
    axes = fig.subplots(rows, columns, squeeze=False)
    titles = ["truth", *shown, *(f"|{name} − truth|" for name in shown)]
    for ax, title in zip(axes[0], titles, strict=True):
        ax.set_title(title, fontsize=9)
    for i in range(rows):
        truth_i = t[i][None, None]
        # each image's own range, as in metrics.json; a constant image gets range 1
        flat = {} if float(t[i].max() - t[i].min()) > 0 else {"data_range": 1.0}
        axes[i, 0].imshow(t[i].numpy(), cmap="gray", vmin=low, vmax=high)
        axes[i, 0].set_ylabel(f"image {i}", fontsize=8)
        for j, x in enumerate(shown.values(), start=1):
            estimate = x[i][None, None]
            p = float(psnr(estimate, truth_i, ndim=2, **flat))
            s = float(ssim(estimate, truth_i, ndim=2, **flat))
            axes[i, j].imshow(x[i].numpy(), cmap="gray", vmin=low, vmax=high)
            axes[i, j].set_xlabel(f"{p:.2f} dB, SSIM {s:.3f}", fontsize=8)
            error = (x[i] - t[i]).abs()
            axes[i, j + len(shown)].imshow(error.numpy(), cmap="magma", vmin=0.0, vmax=half)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"window [{low:.3g}, {high:.3g}]; errors on [0, {half:.3g}]", fontsize=8)
    fig.tight_layout()
    return fig


def save_comparison(
    truth: torch.Tensor,
    recons: dict[str, torch.Tensor],
    path: str | os.PathLike[str],
    *,
    n: int = 4,
    dpi: int = 100,
) -> Path:
    """Save :func:`comparison_figure` as a PNG at ``path`` (atomically) and return ``path``.

    The image is ``1.9·(1 + 2·methods)`` by ``2·rows + 0.3`` inches at ``dpi``.
    """
    import io

    buffer = io.BytesIO()
    comparison_figure(truth, recons, n=n).savefig(buffer, format="png", dpi=dpi)
    path = Path(path)
    atomic_write_bytes(buffer.getvalue(), path)
    return path
