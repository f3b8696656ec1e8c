r"""Angular coverage of a scan, and Parker weights for fan-beam short scans (used by ``fbp``).

:func:`angular_coverage` finds what a set of projection angles covers on the circle that matters
(``π`` for parallel beam, ``2π`` for fan beam): a full scan, one contiguous arc (a short or
limited-angle scan) and the gaps inside it. :func:`parker_weights` are the weights of Parker
(Med. Phys. 9, 1982) in the generalised form of Wesarg et al. (Med. Phys. 29, 2002) for any arc
between ``π + fan angle`` and ``2π``, as ASTRA's ``ShortScan`` option applies them.
:func:`coverage_problem` says in words what FBP cannot weight.

Example
-------
>>> import numpy as np
>>> c = angular_coverage(np.deg2rad(np.arange(0, 200, 1.0)), period=2 * np.pi)
>>> c.full, round(float(np.degrees(c.span)), 1), c.gaps
(False, 199.0, ())
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "GAP_FACTOR",
    "AngularCoverageWarning",
    "MIN_GAP",
    "Coverage",
    "angular_coverage",
    "coverage_problem",
    "parker_weights",
]

#: A spacing between neighbouring angles counts as a gap when it exceeds ``GAP_FACTOR`` times the
#: median spacing and :data:`MIN_GAP` (so irregular or random angles are not flagged).
GAP_FACTOR: float = 4.0
#: The smallest spacing (radians, 5°) that can count as a gap.
MIN_GAP: float = math.radians(5.0)


class AngularCoverageWarning(UserWarning):
    """FBP/FDK were given angles they cannot weight properly (gaps, too short a scan)."""


@dataclasses.dataclass(frozen=True)
class Coverage:
    """What a set of projection angles covers on a circle of circumference ``period``.

    Attributes
    ----------
    period : float
        ``π`` (parallel beam: θ and θ + π measure the same lines) or ``2π`` (fan beam).
    full : bool
        No gap anywhere on the circle: a full scan (uniform weights, no Parker weights).
    start : float
        Where the scanned arc begins (the angle after the largest gap, in [0, period)); 0 when
        ``full``.
    span : float
        The arc from its first to its last angle (radians); ``period`` when ``full``.
    step : float
        The median spacing between neighbouring angles (radians).
    gaps : tuple of (float, float)
        The gaps inside the arc, as (from, to) angles in [0, period) (radians), each wider than
        ``max(GAP_FACTOR * step, MIN_GAP)``; for parallel beam also the missing wedge outside it.
    """

    period: float
    full: bool
    start: float
    span: float
    step: float
    gaps: tuple[tuple[float, float], ...]


def angular_coverage(angles: Sequence[float] | np.ndarray, *, period: float) -> Coverage:
    """Analyse projection angles (radians) reduced modulo ``period`` (see :class:`Coverage`).

    The largest spacing between neighbouring angles on the circle, if it is a gap, is where the
    scan stops: the arc runs from the angle after it to the angle before it. Every other gap lies
    inside the arc.

    Example
    -------
    >>> import numpy as np
    >>> deg = np.concatenate([np.arange(0, 60, 1.5), np.arange(90, 180, 1.5)])
    >>> c = angular_coverage(np.deg2rad(deg), period=np.pi)
    >>> c.full, [tuple(round(float(np.degrees(v)), 1) for v in g) for g in c.gaps]
    (False, [(58.5, 90.0)])
    """
    a = np.sort(np.mod(np.asarray(angles, dtype=np.float64).ravel(), period))
    if a.size == 0:
        raise ValueError("angles is empty: give at least one projection angle")
    after = np.diff(np.append(a, a[0] + period))  # spacing after each sorted angle
    nonzero = after[after > 1e-9 * period]
    step = float(np.median(nonzero)) if nonzero.size else period
    threshold = max(GAP_FACTOR * step, MIN_GAP)
    k = int(np.argmax(after))
    if after[k] <= threshold:
        return Coverage(period=period, full=True, start=0.0, span=period, step=step, gaps=())
    start = float(a[(k + 1) % a.size])
    span = float(period - after[k])
    # For parallel beam, the wedge outside the arc is itself missing; for fan beam it is the
    # (expected) rest of the turn of a short scan.
    inside = [i for i in np.flatnonzero(after > threshold) if i != k or period < 2 * math.pi]
    gaps = tuple((float(a[i]), float((a[i] + after[i]) % period)) for i in inside)
    return Coverage(period=period, full=False, start=start, span=span, step=step, gaps=gaps)


def coverage_problem(coverage: Coverage, *, fan_angle: float | None = None) -> str | None:
    """A sentence naming what FBP cannot weight in ``coverage``, or ``None`` if nothing.

    Parallel beam (``fan_angle=None``) needs every direction in [0, π); fan beam needs a full
    turn or one contiguous arc of at least ``π + fan_angle`` (a short scan) without gaps. Each
    angle counts for one step: 0°, 1°, …, 199° cover 200°.

    Example
    -------
    >>> import numpy as np
    >>> print(coverage_problem(angular_coverage(np.deg2rad(np.arange(0, 90, 2)), period=np.pi)))
    the angles cover 90.0° of the 180° that parallel-beam FBP needs (no angle between 88.0°
    and 180.0°)
    """
    deg = math.degrees
    gaps = ", ".join(
        f"no angle between {deg(a):.1f}° and {deg(b) or deg(coverage.period):.1f}°"
        for a, b in coverage.gaps
    )
    if fan_angle is None:
        if coverage.full:
            return None
        # Each angle stands for one step: 0°, 1.5°, …, 178.5° cover 180°.
        missing = sum((b - a) % coverage.period - coverage.step for a, b in coverage.gaps)
        covered = deg(coverage.period - missing)
        return f"the angles cover {covered:.1f}° of the 180° that parallel-beam FBP needs ({gaps})"
    problems = []
    if coverage.gaps:
        problems.append(f"the scan has gaps ({gaps})")
    needed = math.pi + fan_angle
    if not coverage.full and coverage.span + 1.01 * coverage.step < needed:
        problems.append(
            f"the scan covers {deg(coverage.span + coverage.step):.1f}°, less than the "
            f"180° + fan angle = {deg(needed):.1f}° that a fan-beam short scan needs"
        )
    return "; ".join(problems) or None


def parker_weights(
    angles: Sequence[float] | np.ndarray,
    fan_angles: Sequence[float] | np.ndarray,
    *,
    start: float,
    span: float,
) -> np.ndarray:
    r"""Parker weights ``(n_angles, n_detectors)`` for a fan-beam arc ``[start, start + span]``.

    With ``β`` the angle from the start of the arc, ``γ`` the signed fan angle of a detector
    (``atan(s / R)``, ``s`` the detector coordinate at the isocentre, positive along ``+u``) and
    ``Γ = (span − π) / 2``, the weight is (Parker's formula with ``−γ`` for ``γ``: in this
    project's geometry the ray ``(β, γ)`` is measured again as ``(β + π − 2γ, −γ)``)

    .. math::

        w = \begin{cases}
            \sin^2\!\big(\tfrac{π}{4}\,\tfrac{β}{Γ + γ}\big) & 0 ≤ β < 2(Γ + γ) \\
            1 & 2(Γ + γ) ≤ β ≤ π + 2γ \\
            \sin^2\!\big(\tfrac{π}{4}\,\tfrac{π + 2Γ − β}{Γ − γ}\big) & π + 2γ < β ≤ π + 2Γ,
        \end{cases}

    so the two measurements of every line add up to 1 and the FBP integral runs over the arc
    once (no factor ½). ``Γ`` may exceed the detector's half fan angle (an overscan, up to a full
    turn: Wesarg et al. 2002). Rays with ``|γ| > Γ`` (an arc too short for the detector) get
    weights clipped to [0, 1].

    Example
    -------
    >>> import numpy as np
    >>> beta = np.deg2rad([0.0, 100.0, 200.0])
    >>> parker_weights(beta, [0.0], start=0.0, span=np.deg2rad(200.0)).round(3).ravel().tolist()
    [0.0, 1.0, 0.0]
    """
    beta = np.mod(np.asarray(angles, dtype=np.float64) - start, 2 * math.pi)[:, None]
    beta = np.minimum(beta, span)  # angles at the very end of the arc may round past it
    gamma = np.asarray(fan_angles, dtype=np.float64)[None, :]
    big = (span - math.pi) / 2
    rise = np.maximum(big + gamma, 1e-12)
    fall = np.maximum(big - gamma, 1e-12)
    w = np.ones((beta.shape[0], gamma.shape[1]))
    first = beta < 2 * rise
    w = np.where(first, np.sin(math.pi / 4 * np.clip(beta / rise, 0, 2)) ** 2, w)
    last = beta > span - 2 * fall
    tail = np.sin(math.pi / 4 * np.clip((span - beta) / fall, 0, 2)) ** 2
    return np.where(last, np.minimum(w, tail), w)
