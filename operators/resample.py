"""Resampling operators and a supersampled (accurate) 2D ray transform.

- :class:`Upsample`: an image on a grid refined ``factor`` times per axis, by piecewise-constant
  replication (``"nearest"``) or linear interpolation between pixel centres (``"linear"``,
  bilinear in 2D). Both keep constants constant and preserve the integral of the image.
- :class:`DetectorBinning`: the mean over groups of ``factor`` neighbouring samples along one
  axis, e.g. sub-rays of one detector element (a finite-width detector as a box average).
- :class:`SupersampledRayTransform`: ``A = B ∘ R_fine ∘ U`` for a :class:`~operators.FanBeam2D`
  or :class:`~operators.Parallel2D` geometry: the image upsampled to a ``grid_factor`` times
  finer grid, projected with ``detector_subsamples`` rays per detector element, the rays of each
  element averaged. Same domain and range as ``RayTransform(geometry)``, which models point
  detectors on the reconstruction grid: the pair is an accurate/approximate model pair.

All three are torch code with exact adjoints (the ray transform's own adjoint aside).

Example
-------
>>> import torch
>>> from operators import FanBeam2D, RayTransform
>>> g = FanBeam2D((64, 64), n_angles=60, n_detectors=96, source_distance=500.0,
...               detector_distance=500.0, pixel_size=2.0, detector_spacing=4.0)
>>> A = SupersampledRayTransform(g, grid_factor=2, detector_subsamples=4, backend="astra")
>>> A_approx = RayTransform(g, backend="astra")
>>> A.range_shape == A_approx.range_shape == (60, 96)
True
>>> Upsample((2, 2), 2)(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
tensor([[1., 1., 2., 2.],
        [1., 1., 2., 2.],
        [3., 3., 4., 4.],
        [3., 3., 4., 4.]])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from operators.base import ComposedOperator, LinearOperator, as_shape
from operators.ct import matrix_backend
from operators.ct.geometry import FanBeam2D, Parallel2D
from operators.ct.ray_transform import RayTransform

__all__ = ["DetectorBinning", "SupersampledRayTransform", "Upsample", "supersampled_geometry"]

_MODES = ("nearest", "linear")


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _interpolation_matrix(n: int, factor: int, mode: str) -> torch.Tensor:
    """The ``(n·factor, n)`` float64 matrix refining one axis of ``n`` cells ``factor`` times.

    ``nearest`` copies each cell into its ``factor`` sub-cells. ``linear`` interpolates linearly
    between cell centres at the sub-cell centres ``(i + 1/2)/factor − 1/2`` (in coarse cells) and
    holds the edge value beyond the outer centres (as ``F.interpolate(..., align_corners=False)``);
    every column then sums to ``factor``, so the integral is preserved.
    """
    fine = torch.arange(n * factor, dtype=torch.float64)
    if mode == "nearest":
        return (torch.div(fine, factor, rounding_mode="floor")[:, None] == torch.arange(n)).double()
    pos = ((fine + 0.5) / factor - 0.5).clamp(0.0, n - 1.0)
    left = pos.floor().long().clamp(max=n - 1)
    right = (left + 1).clamp(max=n - 1)
    weight = pos - left
    out = torch.zeros(n * factor, n, dtype=torch.float64)
    rows = torch.arange(n * factor)
    out.index_put_((rows, left), 1.0 - weight, accumulate=True)
    out.index_put_((rows, right), weight, accumulate=True)
    return out


class Upsample(LinearOperator):
    """Refine a grid ``factor`` times along every axis: ``shape -> [s * factor for s in shape]``.

    Parameters
    ----------
    shape : int or sequence of int
        The coarse grid (trailing dimensions of the input), e.g. ``(H, W)``.
    factor : int
        Refinement per axis.
    mode : {"nearest", "linear"}
        ``"nearest"``: piecewise-constant replication, the same function on a finer grid, so line
        integrals of the image do not change (``RayTransform(fine) ∘ Upsample`` equals
        ``RayTransform(coarse)`` for exact line-intersection kernels). ``"linear"``: separable
        linear (bilinear in 2D) interpolation between pixel centres, edges held constant; a
        smoother image model. Both map constants to constants and preserve the image's integral
        (sum × cell size).

    The adjoint sums (``nearest``) or distributes back with the transposed weights (``linear``).

    Example
    -------
    >>> U = Upsample((4, 4), 2, mode="linear")
    >>> U.range_shape
    (8, 8)
    >>> bool(torch.allclose(U(torch.ones(4, 4)), torch.ones(8, 8)))
    True
    """

    native_autograd = True

    def __init__(self, shape: int | Sequence[int], factor: int, *, mode: str = "nearest") -> None:
        shape = as_shape(shape)
        factor = _positive_int("factor", factor)
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        super().__init__(shape, tuple(s * factor for s in shape))
        self.factor = factor
        self.mode = mode
        self._axes = [_interpolation_matrix(n, factor, mode) for n in shape]
        self._copies: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}

    def _matrices(self, like: torch.Tensor) -> list[torch.Tensor]:
        key = (like.device, like.dtype)
        if key not in self._copies:
            self._copies[key] = [m.to(device=like.device, dtype=like.dtype) for m in self._axes]
        return self._copies[key]

    def _apply_axes(self, x: torch.Tensor, transpose: bool) -> torch.Tensor:
        # x is (B, *dims); axis d of the grid is tensor dimension d + 1.
        for d, m in enumerate(self._matrices(x)):
            x = torch.movedim(torch.movedim(x, d + 1, -1) @ (m if transpose else m.T), -1, d + 1)
        return x.contiguous()

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply_axes(x, transpose=False)

    def _rmatvec(self, y: torch.Tensor) -> torch.Tensor:
        return self._apply_axes(y, transpose=True)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, factor={self.factor}, mode={self.mode!r}"


class DetectorBinning(LinearOperator):
    """Mean over groups of ``factor`` consecutive samples along ``axis``.

    Maps ``range_shape`` with ``range_shape[axis]`` multiplied by ``factor`` (the domain: e.g.
    ``factor`` sub-rays per detector element) to ``range_shape``. Group ``k`` holds the samples
    ``k·factor, …, k·factor + factor − 1``. The adjoint copies each value into its group divided
    by ``factor``.

    Parameters
    ----------
    range_shape : int or sequence of int
        The binned shape, e.g. a sinogram ``(n_angles, n_detectors)``.
    factor : int
        Samples per group.
    axis : int
        Axis of ``range_shape`` to bin (negative counts from the end; default the last).

    Example
    -------
    >>> B = DetectorBinning((1, 2), 3)
    >>> B.domain_shape
    (1, 6)
    >>> B(torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]]))
    tensor([[2., 5.]])
    """

    native_autograd = True

    def __init__(self, range_shape: int | Sequence[int], factor: int, *, axis: int = -1) -> None:
        range_shape = as_shape(range_shape, name="range_shape")
        factor = _positive_int("factor", factor)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"axis must be an int, got {axis!r}")
        if not -len(range_shape) <= axis < len(range_shape):
            raise ValueError(f"axis {axis} is out of range for range_shape {range_shape}")
        axis %= len(range_shape)
        domain_shape = list(range_shape)
        domain_shape[axis] *= factor
        super().__init__(domain_shape, range_shape)
        self.factor = factor
        self.axis = axis

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        a = self.axis + 1  # tensor dimension of the binned axis (after the batch)
        n = self.range_shape[self.axis]
        return x.reshape(*x.shape[:a], n, self.factor, *x.shape[a + 1 :]).mean(dim=a + 1)

    def _rmatvec(self, y: torch.Tensor) -> torch.Tensor:
        return torch.repeat_interleave(y, self.factor, dim=self.axis + 1) / self.factor

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, factor={self.factor}, axis={self.axis}"


def supersampled_geometry(
    geometry: FanBeam2D | Parallel2D, *, grid_factor: int = 2, detector_subsamples: int = 4
) -> FanBeam2D | Parallel2D:
    """``geometry`` on a ``grid_factor`` times finer image grid with ``detector_subsamples``
    point detectors per element.

    The sub-detectors have spacing ``detector_spacing / detector_subsamples`` and sit at the
    midpoints of equal sub-intervals of each element, so their mean is the midpoint rule for the
    element's box average. The physical image extent, distances, detector width and angles are
    unchanged.

    Example
    -------
    >>> g = FanBeam2D((64, 64), n_angles=60, n_detectors=96, source_distance=500.0,
    ...               detector_distance=500.0, pixel_size=2.0, detector_spacing=4.0)
    >>> f = supersampled_geometry(g, grid_factor=2, detector_subsamples=4)
    >>> f.image_shape, f.pixel_size, f.n_detectors, f.detector_spacing
    ((128, 128), 1.0, 384, 1.0)
    """
    if not isinstance(geometry, (FanBeam2D, Parallel2D)):
        raise ValueError(f"geometry must be FanBeam2D or Parallel2D, got {type(geometry).__name__}")
    g = _positive_int("grid_factor", grid_factor)
    s = _positive_int("detector_subsamples", detector_subsamples)
    height, width = geometry.image_shape
    return dataclasses.replace(
        geometry,
        image_shape=(height * g, width * g),
        pixel_size=geometry.pixel_size / g,
        n_detectors=geometry.n_detectors * s,
        detector_spacing=geometry.detector_spacing / s,
    )


class SupersampledRayTransform(ComposedOperator):
    """The accurate 2D ray transform ``A = B ∘ R_fine ∘ U`` on the grid of ``geometry``.

    ``U`` = :class:`Upsample` by ``grid_factor``; ``R_fine`` = :class:`~operators.RayTransform`
    of :func:`supersampled_geometry` (``detector_subsamples`` rays per detector element);
    ``B`` = :class:`DetectorBinning` averaging each element's rays. Domain and range are those of
    ``RayTransform(geometry)`` (point detectors on the coarse grid), its cheaper approximation.
    Exact adjoint ``Uᵀ R_fineᵀ Bᵀ``; ``geometry`` is the coarse geometry (what FBP reads).

    Parameters
    ----------
    geometry : FanBeam2D or Parallel2D
        The reconstruction geometry.
    grid_factor : int
        Image-grid refinement (default 2).
    detector_subsamples : int
        Rays per detector element (default 4; 1 models point detectors).
    upsample_mode : {"nearest", "linear"}
        Image model on the fine grid, see :class:`Upsample`. Default ``"nearest"``: the image is
        the piecewise-constant function of its pixels. For fan beam, ASTRA's CPU kernel
        (``line_fanflat``, also behind the ``matrix`` backend) integrates exactly along each ray,
        so then ``R_fine ∘ U`` equals the coarse ray transform of the same rays and the model
        differs from ``RayTransform(geometry)`` by the detector width alone (parallel beam uses
        the interpolating Joseph kernel, where the finer grid also changes the result). Against
        projections of the continuous phantom (rendered at 512², 16 rays per element) this was
        the most accurate choice on random ellipses: relative error 0.97 % vs 1.37 % for
        ``"linear"`` and 1.17 % for ``RayTransform(geometry)`` (the geometry of
        ``conf/operator/ct_fan64_*.yaml``).
    backend, matrix_max_bytes, threads, chunk_size, cache_directory
        Passed to the fine :class:`~operators.RayTransform`.

    Example
    -------
    >>> g = Parallel2D((32, 32), n_angles=10, n_detectors=46)
    >>> A = SupersampledRayTransform(g, backend="astra")
    >>> A.ray_transform.geometry.range_shape, A.range_shape
    ((10, 184), (10, 46))
    """

    def __init__(
        self,
        geometry: FanBeam2D | Parallel2D,
        *,
        grid_factor: int = 2,
        detector_subsamples: int = 4,
        upsample_mode: str = "nearest",
        backend: str = "auto",
        matrix_max_bytes: int = matrix_backend.DEFAULT_MAX_BYTES,
        threads: int | None = None,
        chunk_size: int | None = None,
        cache_directory: str | None = None,
    ) -> None:
        fine = supersampled_geometry(
            geometry, grid_factor=grid_factor, detector_subsamples=detector_subsamples
        )
        upsample = Upsample(geometry.image_shape, grid_factor, mode=upsample_mode)
        ray = RayTransform(
            fine,
            backend=backend,
            matrix_max_bytes=matrix_max_bytes,
            threads=threads,
            chunk_size=chunk_size,
            cache_directory=cache_directory,
        )
        binning = DetectorBinning(geometry.range_shape, detector_subsamples, axis=-1)
        super().__init__(binning, ComposedOperator(ray, upsample))
        self.geometry = geometry
        self.grid_factor = grid_factor
        self.detector_subsamples = detector_subsamples
        self.upsample_mode = upsample_mode
        self.backend = backend
        self.upsample = upsample
        self.ray_transform = ray
        self.binning = binning

    def extra_repr(self) -> str:
        return (
            f"{self.geometry!r}, grid_factor={self.grid_factor}, "
            f"detector_subsamples={self.detector_subsamples}, "
            f"upsample_mode={self.upsample_mode!r}, backend={self.backend!r}"
        )
