"""Photoacoustic phantoms: random branching vessels and balls, drawn in pixel units.

Both phantoms use the grid of :mod:`data_tools.phantoms.common`, but their sizes are in pixels,
so a larger shape gives a larger field of view, not a finer rendering. Row 0 is the sensor row
and is kept at zero over a margin of a few pixels.

Example
-------
>>> vessels(32, seed=0).shape, balls(32, n=2, seed=0).shape
(torch.Size([32, 32]), torch.Size([2, 32, 32]))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch

from data_tools.phantoms.common import (
    check_count,
    check_int_range,
    check_range,
    check_shape,
    generator_device,
    make_generator,
    uniform,
)

__all__ = ["balls", "disc_mask", "vessel_tree", "vessels"]


# Smooth random walk of the vessel centre lines: the heading turns by a curvature that follows an
# AR(1) process kappa <- _CURVATURE_MEMORY * kappa + N(0, _CURVATURE_STD²) per step of 1 px
# (stationary std of kappa ≈ 0.023 rad/px; the heading drifts by about 1 rad per 100 px).
_STEP_PX = 1.0
_CURVATURE_MEMORY = 0.9
_CURVATURE_STD = 0.01
_MAX_BRANCHES_PER_TREE = 32
# Length budget of a root branch, in steps, as a fraction of max(H, W); a child gets the parent's
# remaining budget scaled by its radius ratio, so finer vessels are shorter.
_ROOT_LENGTH = 1.5


def _zero_margin(images: torch.Tensor, margin: int) -> torch.Tensor:
    if margin > 0:
        images[..., :margin, :] = 0.0
    return images


def _smoothstep(t: torch.Tensor) -> torch.Tensor:
    t = t.clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def vessel_tree(
    height: int,
    width: int,
    *,
    root_radius: float,
    min_radius: float,
    branch_probability: float,
    margin: int,
    generator: torch.Generator | None = None,
    disc_radius: float | None = None,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Centre lines of one branching vessel tree on an ``height × width`` image, as
    ``(points (S+1, 2), radii (S,))`` per branch, in (row, col) pixel coordinates.

    The walk and the branching rules are those of :func:`vessels`, which renders these trees. The
    root runs both ways from a random point below ``margin`` (with ``disc_radius``, in pixels: a
    uniformly random point of the disc of that radius around the image centre, below the
    margin where the disc allows): the first two branches start at the same point. Where a
    vessel branches, its radius drops (Murray's law) and a child branch starts at that point.

    Raises
    ------
    ValueError
        If the shape is not positive, ``min_radius`` is not positive or exceeds ``root_radius``,
        ``branch_probability`` lies outside [0, 1], or ``margin`` outside [0, height).

    Example
    -------
    >>> tree = vessel_tree(64, 64, root_radius=2.0, min_radius=0.5, branch_probability=0.05,
    ...                    margin=4, generator=torch.Generator().manual_seed(0))
    >>> points, radii = tree[0]
    >>> points.shape[1], points.shape[0] == radii.shape[0] + 1, float(radii.max()) <= 2.0
    (2, True, True)
    """
    height, width = check_shape((height, width))
    check_range("radii (min_radius, root_radius)", (min_radius, root_radius), strict=True)
    check_range("branch_probability", (branch_probability, branch_probability))
    if branch_probability > 1.0:
        raise ValueError(f"branch_probability must lie in [0, 1], got {branch_probability!r}")
    margin = _check_margin(margin, height)
    device = generator_device(generator)
    root_length = _ROOT_LENGTH * max(height, width)
    start = uniform(0.0, 1.0, 3, generator).tolist()
    if disc_radius is None:
        row = margin + root_radius + start[0] * max(height - 1 - margin - root_radius, 0.0)
        col = start[1] * (width - 1)
    else:  # uniform in the disc: radius ∝ √u, angle 2πu
        rho, angle = float(disc_radius) * math.sqrt(start[0]), 2.0 * math.pi * start[1]
        row = max((height - 1) / 2 + rho * math.sin(angle), float(margin))
        col = (width - 1) / 2 + rho * math.cos(angle)
    # Each queued branch: start point, heading, radius and length budget in steps. The root is a
    # vessel through the start point: two branches in opposite directions.
    heading = 2.0 * math.pi * start[2]
    queue = [
        (row, col, heading + math.pi, root_radius, int(root_length / 2)),
        (row, col, heading, root_radius, int(root_length / 2)),
    ]
    branches = []
    while queue:
        row, col, heading, radius, budget = queue.pop()
        # One row of draws per step: curvature noise, branching test, split fraction, angle.
        draws = torch.rand((budget, 4), generator=generator, dtype=torch.float64, device=device)
        noise = torch.special.ndtri(draws[:, 0].clamp(1e-12, 1 - 1e-12)).tolist()
        u_branch, u_split, u_angle = (draws[:, j].tolist() for j in (1, 2, 3))
        points, radii = [(row, col)], []
        kappa = 0.0
        for k in range(budget):
            if u_branch[k] < branch_probability:
                # Murray's law: r³ = r1³ + r2³ with the flow split f : 1 - f, f ~ U(0.25, 0.75).
                f = 0.25 + 0.5 * u_split[k]
                r1, r2 = radius * f ** (1 / 3), radius * (1 - f) ** (1 / 3)
                child_budget = int((budget - k) * r2 / radius)
                room = len(branches) + len(queue) + 1 < _MAX_BRANCHES_PER_TREE
                if min(r1, r2) >= min_radius and child_budget > 0 and room:
                    side = 1.0 if u_angle[k] < 0.5 else -1.0
                    angle = math.radians(20.0 + 40.0 * abs(2.0 * u_angle[k] - 1.0))  # 20°-60°
                    queue.append((row, col, heading + side * angle, r2, child_budget))
                    heading -= side * 0.5 * angle
                    radius = r1
            kappa = _CURVATURE_MEMORY * kappa + _CURVATURE_STD * noise[k]
            heading += kappa
            row -= _STEP_PX * math.sin(heading)  # heading 0 points right, π/2 up (to row 0)
            col += _STEP_PX * math.cos(heading)
            points.append((row, col))
            radii.append(radius)
            slack = radius + 1.0
            if not (-slack <= row <= height - 1 + slack and -slack <= col <= width - 1 + slack):
                break
        branches.append(
            (torch.tensor(points, dtype=torch.float64), torch.tensor(radii, dtype=torch.float64))
        )
    return branches


def _render_tubes(
    branches: list[tuple[torch.Tensor, torch.Tensor]], height: int, width: int
) -> torch.Tensor:
    """Max over the soft tubes of all branches: 1 inside radius, a 1-px smooth edge, 0 outside.

    Segments are taken in runs of 16 consecutive ones, each evaluated on its own bounding box.
    """
    image = torch.zeros((height, width), dtype=torch.float64)
    run = 16
    for points, radii in branches:
        for s in range(0, radii.numel(), run):
            e = min(s + run, radii.numel())
            a, b, r = points[s:e], points[s + 1 : e + 1], radii[s:e, None, None]
            ends = points[s : e + 1]
            reach = float(r.max()) + 1.0
            r0 = max(math.floor(float(ends[:, 0].min()) - reach), 0)
            r1 = min(math.ceil(float(ends[:, 0].max()) + reach) + 1, height)
            c0 = max(math.floor(float(ends[:, 1].min()) - reach), 0)
            c1 = min(math.ceil(float(ends[:, 1].max()) + reach) + 1, width)
            if r0 >= r1 or c0 >= c1:
                continue
            rows = torch.arange(r0, r1, dtype=torch.float64)[:, None]
            cols = torch.arange(c0, c1, dtype=torch.float64)[None, :]
            a_r, a_c = a[:, 0, None, None], a[:, 1, None, None]
            d_r, d_c = (b[:, 0] - a[:, 0])[:, None, None], (b[:, 1] - a[:, 1])[:, None, None]
            length2 = (d_r**2 + d_c**2).clamp_min(1e-12)
            t = (((rows - a_r) * d_r + (cols - a_c) * d_c) / length2).clamp(0.0, 1.0)
            dist = torch.hypot(rows - a_r - t * d_r, cols - a_c - t * d_c)
            tube = _smoothstep(r + 0.5 - dist).amax(dim=0)
            image[r0:r1, c0:c1] = torch.maximum(image[r0:r1, c0:c1], tube)
    return image


def vessels(
    shape: int | Sequence[int],
    *,
    n: int | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    n_trees: Sequence[int] = (1, 4),
    branch_probability: Sequence[float] = (0.02, 0.05),
    radius: Sequence[float] = (0.5, 3.0),
    amplitude: Sequence[float] = (0.3, 1.0),
    margin: int = 4,
    disc_radius: float | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Random branching blood vessels, a photoacoustic phantom (docs/guide/photoacoustics.md §5).

    Each image holds ``U{n_trees}`` vessel trees. A tree's root vessel runs both ways from a
    uniformly random point below the margin, in a random direction; every centre line is a smooth
    random walk of 1-px steps (the heading turns by an AR(1) curvature and drifts by about 1 rad
    per 100 px). At every step a vessel branches with a probability drawn once per image from
    U(``branch_probability``); the radii follow Murray's law ``r³ = r1³ + r2³`` with a flow split
    f : 1 − f, f ~ U(0.25, 0.75); the child leaves at 20°–60° and the parent turns half as far the
    other way. A branch is not made if a radius would fall below ``radius[0]`` or the tree already
    has 32 branches. Root radii are U(mid, ``radius[1]``) with mid the centre of ``radius``, so the
    children span the rest of the range. The root has a length budget of 1.5·max(H, W) steps
    (half each way) and a child the parent's remaining budget times ``r_child / r_parent``, so finer
    vessels are shorter; a walk also ends when it leaves the image.

    Each tree is a soft tube (1 inside the radius, a smooth 1-px edge) times an amplitude
    U(``amplitude``); the trees are summed, clipped to [0, 1], and the first ``margin`` rows (the
    sensor row 0 and its neighbours) are set to 0. Sizes are in pixels, so a larger ``shape``
    gives a larger field of view, not a finer rendering.

    With ``disc_radius`` (for a ring or arc array around the object), the trees start inside
    the disc of radius ``R = disc_radius · min(H, W) / 2`` pixels centred on the image, and
    the image is multiplied by a mask that is 1 up to ``R − 1`` pixels from the centre, falls
    smoothly (smoothstep) to 0 at ``R`` and is 0 beyond: no pressure outside the disc.

    Parameters
    ----------
    shape : int or (int, int)
        Image shape ``(H, W)``.
    n : int, optional
        Number of images; ``None`` (default) gives one image without a batch dimension.
    generator : torch.Generator, optional
        Source of randomness; give this or ``seed``, not both (neither: torch's global one).
    seed : int, optional
        Seed of a fresh generator.
    n_trees : (int, int), optional
        Inclusive range of the number of trees per image.
    branch_probability : (float, float), optional
        Range of the per-step branching probability.
    radius : (float, float), optional
        Range of vessel radii in pixels.
    amplitude : (float, float), optional
        Range of the tree amplitudes.
    margin : int, optional
        Rows at the top (the sensor side) that are kept at zero (0 for a ring array).
    disc_radius : float, optional
        Keep the vessels inside a disc centred on the image, of radius ``disc_radius`` times
        half the smaller side, in (0, 1]; default: no disc.
    dtype : torch.dtype, optional
        Floating dtype of the result (default float32).
    device : torch.device or str, optional
        Device of the result (default CPU).

    Returns
    -------
    torch.Tensor
        ``(H, W)`` if ``n`` is None, else ``(n, H, W)``, in [0, 1].

    Raises
    ------
    ValueError
        If both ``generator`` and ``seed`` are given, or an argument is out of range.

    Examples
    --------
    >>> x = vessels(128, seed=0)
    >>> x.shape, float(x.min()) >= 0.0, float(x.max()) <= 1.0, float(x[:4].abs().max())
    (torch.Size([128, 128]), True, True, 0.0)
    >>> x = vessels(64, seed=0, margin=0, disc_radius=0.8)   # zero beyond 0.8 · 32 = 25.6 px
    >>> r = torch.hypot(*torch.meshgrid(torch.arange(64.0) - 31.5, torch.arange(64.0) - 31.5,
    ...                                 indexing="ij"))
    >>> float(x[r >= 25.6].abs().max()), bool(x.max() > 0)
    (0.0, True)
    """
    height, width = check_shape(shape)
    count = check_count(n)
    gen = make_generator(generator, seed)
    tree_lo, tree_hi = check_int_range("n_trees", n_trees, low=0)
    p_lo, p_hi = check_range("branch_probability", branch_probability)
    if p_hi > 1.0:
        raise ValueError(f"branch_probability must lie in [0, 1], got {branch_probability!r}")
    r_lo, r_hi = check_range("radius", radius, strict=True)
    a_lo, a_hi = check_range("amplitude", amplitude)
    margin = _check_margin(margin, height)
    disc_px = None
    if disc_radius is not None:
        if isinstance(disc_radius, bool) or not isinstance(disc_radius, (int, float)):
            raise ValueError(f"disc_radius must be a number in (0, 1] or None, got {disc_radius!r}")
        if not 0.0 < disc_radius <= 1.0:
            raise ValueError(
                f"disc_radius must lie in (0, 1] (a fraction of half the smaller side), got "
                f"{disc_radius!r}"
            )
        disc_px = float(disc_radius) * min(height, width) / 2

    images = torch.zeros((count, height, width), dtype=torch.float64)
    for i in range(count):
        n_tree = int(
            torch.randint(tree_lo, tree_hi + 1, (1,), generator=gen, device=generator_device(gen))
        )
        p_branch = float(uniform(p_lo, p_hi, 1, gen))
        for _ in range(n_tree):
            r_root, amp = uniform(0.0, 1.0, 2, gen).tolist()
            r_root = 0.5 * (r_lo + r_hi) + 0.5 * (r_hi - r_lo) * r_root
            amp = a_lo + (a_hi - a_lo) * amp
            tree = vessel_tree(
                height,
                width,
                root_radius=r_root,
                min_radius=r_lo,
                branch_probability=p_branch,
                margin=margin,
                generator=gen,
                disc_radius=disc_px,
            )
            images[i] += amp * _render_tubes(tree, height, width)
    images = _zero_margin(images.clamp_(0.0, 1.0), margin)
    if disc_px is not None:
        images *= disc_mask(height, width, disc_px)
    images = images.to(dtype=dtype, device=device)
    return images[0] if n is None else images


def disc_mask(height: int, width: int, radius: float) -> torch.Tensor:
    """A float64 ``(H, W)`` mask of the disc of ``radius`` pixels centred on the image: 1 up to
    ``radius − 1`` from the centre, a smoothstep down to 0 at ``radius``, 0 beyond.

    Example
    -------
    >>> m = disc_mask(8, 8, 3.0)
    >>> float(m[4, 4]), float(m[0, 0]), float(m[4, 7])       # centre, corner, 3.5 px out
    (1.0, 0.0, 0.0)
    """
    rows = torch.arange(height, dtype=torch.float64)[:, None] - (height - 1) / 2
    cols = torch.arange(width, dtype=torch.float64)[None, :] - (width - 1) / 2
    return _smoothstep(radius - torch.hypot(rows, cols))


def _check_margin(margin: int, height: int) -> int:
    if isinstance(margin, bool) or not isinstance(margin, int) or not 0 <= margin < height:
        raise ValueError(f"margin must be an int in [0, H), got {margin!r}")
    return margin


def balls(
    shape: int | Sequence[int],
    *,
    n: int | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    n_balls: Sequence[int] = (1, 5),
    radius: Sequence[float] = (3.0, 16.0),
    amplitude: Sequence[float] = (0.3, 1.0),
    kind: Literal["mixed", "disc", "gaussian"] = "mixed",
    margin: int = 4,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Random discs and Gaussian blobs, a photoacoustic phantom (docs/guide/photoacoustics.md §5).

    Each image holds ``U{n_balls}`` objects with radius U(``radius``) pixels and amplitude
    U(``amplitude``), centred uniformly where they fit inside the image below the margin. A disc
    is 1 inside its radius with a smooth 1-px edge; a Gaussian is ``exp(-d² / (2 σ²))`` with
    ``σ = radius / 2``. With ``kind="mixed"`` each object is a disc or a Gaussian with probability
    1/2. The objects are summed, clipped to [0, 1], and the first ``margin`` rows (the sensor side)
    are set to 0. Sizes are in pixels.

    Parameters
    ----------
    shape : int or (int, int)
        Image shape ``(H, W)``.
    n : int, optional
        Number of images; ``None`` (default) gives one image without a batch dimension.
    generator : torch.Generator, optional
        Source of randomness; give this or ``seed``, not both (neither: torch's global one).
    seed : int, optional
        Seed of a fresh generator.
    n_balls : (int, int), optional
        Inclusive range of the number of objects per image.
    radius : (float, float), optional
        Range of radii in pixels.
    amplitude : (float, float), optional
        Range of amplitudes.
    kind : {"mixed", "disc", "gaussian"}, optional
        Which objects to draw.
    margin : int, optional
        Rows at the top (the sensor side) that are kept at zero.
    dtype : torch.dtype, optional
        Floating dtype of the result (default float32).
    device : torch.device or str, optional
        Device of the result (default CPU).

    Returns
    -------
    torch.Tensor
        ``(H, W)`` if ``n`` is None, else ``(n, H, W)``, in [0, 1].

    Raises
    ------
    ValueError
        If both ``generator`` and ``seed`` are given, or an argument is out of range.

    Examples
    --------
    >>> x = balls(64, n=3, seed=0, kind="disc")
    >>> x.shape, bool((x >= 0).all() and (x <= 1).all()), float(x[:, :4].abs().max())
    (torch.Size([3, 64, 64]), True, 0.0)
    """
    height, width = check_shape(shape)
    count = check_count(n)
    gen = make_generator(generator, seed)
    lo, hi = check_int_range("n_balls", n_balls, low=0)
    r_lo, r_hi = check_range("radius", radius, strict=True)
    a_lo, a_hi = check_range("amplitude", amplitude)
    if kind not in ("mixed", "disc", "gaussian"):
        raise ValueError(f"kind must be 'mixed', 'disc' or 'gaussian', got {kind!r}")
    margin = _check_margin(margin, height)

    gen_device = generator_device(gen)
    rows = torch.arange(height, dtype=torch.float64)[:, None]
    cols = torch.arange(width, dtype=torch.float64)[None, :]
    images = torch.zeros((count, height, width), dtype=torch.float64)
    for i in range(count):
        k = int(torch.randint(lo, hi + 1, (1,), generator=gen, device=gen_device))
        draws = torch.rand((k, 5), generator=gen, dtype=torch.float64, device=gen_device).cpu()
        r = r_lo + (r_hi - r_lo) * draws[:, 0]
        amp = a_lo + (a_hi - a_lo) * draws[:, 1]
        # Centres where the object fits (if it can): rows in [margin + r, H - 1 - r], cols alike.
        row_lo = (margin + r).clamp(max=height - 1.0)
        row_hi = (height - 1.0 - r).clamp(min=row_lo)
        col_lo = r.clamp(max=width - 1.0)
        col_hi = (width - 1.0 - r).clamp(min=col_lo)
        row_c = (row_lo + (row_hi - row_lo) * draws[:, 2])[:, None, None]
        col_c = (col_lo + (col_hi - col_lo) * draws[:, 3])[:, None, None]
        is_disc = draws[:, 4] < 0.5 if kind == "mixed" else torch.full((k,), kind == "disc")
        dist = torch.hypot(rows - row_c, cols - col_c)  # (k, H, W)
        rr = r[:, None, None]
        disc = _smoothstep(rr + 0.5 - dist)
        gauss = torch.exp(-0.5 * (dist / (0.5 * rr)) ** 2)
        objects = torch.where(is_disc[:, None, None], disc, gauss)
        images[i] = (amp[:, None, None] * objects).sum(dim=0)
    images = _zero_margin(images.clamp_(0.0, 1.0), margin)
    images = images.to(dtype=dtype, device=device)
    return images[0] if n is None else images
