"""Whether new cells' basal state lies within the range of the registered contexts.

``predict(targets, adata=new_cells)`` moves a user's cells by what was learned in the
registered contexts. That is covered when the new context differs from them only in its
basal state, and checked here in the one way the data allow before any perturbed cell of
the new context is measured: the new control cells' mean expression against the registered
contexts' control means. Inside their convex hull (a mix of the registered basal states,
e.g. a donor between two others) the move interpolates; outside it (a basal state no
registered context came near, e.g. a stimulated state after resting cells only) it
extrapolates, and the perturbations may act differently there.

:func:`basal_range` gives, per context of the new control cells, the distance of their
mean to that hull and its sampling noise (the root of the expected squared distance of a
context inside the range: the standard errors of the new mean and of the mix of registered
means that comes closest); ``ratio`` is the one over the other, near 1 for a context drawn
from the registered ones. How far above 1 is still noise depends on how many directions
the noise spreads over, its effective dimension ``dof``: few for data driven by a few
programmes, many for sparse counts. Under that noise the squared ratio is about
``chi2(dof) / dof``, which gives a ``p_value``. With many cells a departure too small to
matter is still beyond noise, so its size counts too: ``relative_distance``, the distance
beyond noise over the cells' own spread around their mean. The new cells lie outside the
registered range (``outside``) when ``p_value`` is below :data:`OUTSIDE_P` and
``relative_distance`` is at least :data:`OUTSIDE_RELATIVE`, and
:func:`~pdae_sc.model._warnings.warn_outside_basal_range` says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import nnls
from scipy.stats import chi2

from pdae_sc.data._sampler import RowGatherer

__all__ = [
    "OUTSIDE_P",
    "OUTSIDE_RELATIVE",
    "UNS_BASAL_RANGE",
    "ControlCells",
    "basal_range",
    "degrees_of_freedom",
    "distance_to_hull",
]

#: ``uns["pdae"]`` key of a new-cells prediction: the table of :func:`basal_range`.
UNS_BASAL_RANGE = "basal_range"
#: New cells lie outside the registered range (and ``predict`` warns) when the p-value of
#: their distance is below ``OUTSIDE_P`` and the distance beyond noise is at least
#: ``OUTSIDE_RELATIVE`` times the spread of the cells around their own mean.
OUTSIDE_P = 1e-4
OUTSIDE_RELATIVE = 0.25
#: Cells of each context used to estimate the effective dimension of the noise.
SAMPLE_CELLS = 400

_COLUMNS = [
    "context",
    "n_control_cells",
    "distance",
    "noise",
    "ratio",
    "dof",
    "p_value",
    "relative_distance",
    "outside",
    "nearest",
]


def distance_to_hull(points: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Euclidean distance of ``y`` to the convex hull of the rows of ``points``, and the mix.

    Returns the distance and the weights ``w`` (non-negative, summing to 1) of the hull's
    closest point ``w @ points``: non-negative least squares with the sum held to 1 by a
    heavily weighted extra row.
    """
    points = np.asarray(points, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(points) == 1:
        return float(np.linalg.norm(points[0] - y)), np.ones(1)
    centre = points.mean(axis=0)  # translation-invariant; keeps the extra row well scaled
    a, b = (points - centre).T, y - centre
    heavy = 1e3 * max(1.0, float(np.abs(a).max()), float(np.abs(b).max()))
    w, _ = nnls(np.vstack([a, np.full(len(points), heavy)]), np.append(b, heavy))
    w = w / w.sum()
    return float(np.linalg.norm(a @ w - b)), w


@dataclass(frozen=True)
class ControlCells:
    """The control cells of one context: a reader, their rows, mean and summed variance."""

    read: Callable[[np.ndarray], np.ndarray]
    rows: np.ndarray
    mean: np.ndarray
    variance: float  # sum over genes of the per-gene variance (ddof=1): tr(covariance)

    def centred_sample(self) -> np.ndarray:
        """Up to :data:`SAMPLE_CELLS` of the cells, evenly spaced, minus the mean (float64)."""
        take = np.unique(np.linspace(0, len(self.rows) - 1, SAMPLE_CELLS).astype(np.int64))
        return self.read(self.rows[take]).astype(np.float64) - self.mean


def _control_cells(read, rows: np.ndarray, batch_size: int) -> ControlCells:
    """The cells ``rows`` read by ``read``, their moments computed in chunks."""
    total = total_sq = 0.0
    for start in range(0, len(rows), batch_size):
        x = read(rows[start : start + batch_size]).astype(np.float64)
        total = total + x.sum(axis=0)
        total_sq = total_sq + (x * x).sum(axis=0)
    n = len(rows)
    mean = total / n
    var = np.clip((total_sq - n * mean * mean) / (n - 1), 0.0, None)
    return ControlCells(read, rows, mean, float(var.sum()))


def _registered_controls(registration, batch_size: int) -> tuple[list[str], list[ControlCells]]:
    """Name and control cells of each registered context with at least two control cells."""
    cells = registration.cells
    read = RowGatherer(registration.matrix)
    names, controls = [], []
    for k, name in enumerate(cells.context_names):
        rows = np.flatnonzero(cells.is_control & (cells.context_codes == k))
        if len(rows) >= 2:
            names.append(name)
            controls.append(_control_cells(read, rows, batch_size))
    return names, controls


def _squared_trace(x: np.ndarray) -> float:
    """``tr(C^2)`` of the covariance ``C`` of centred cells ``x``, unbiased for Gaussian cells.

    At least ``tr(C)^2 / rank``, its smallest value.
    """
    m = len(x)
    t = float((x * x).sum()) / (m - 1)
    gram = float(np.square(x @ x.T).sum()) / (m - 1) ** 2
    if m < 3:
        return gram
    unbiased = (m - 1) ** 2 / ((m - 2) * (m + 1)) * (gram - t * t / (m - 1))
    return max(unbiased, t * t / min(m - 1, x.shape[1]))


def degrees_of_freedom(parts: list[tuple[float, ControlCells]]) -> float:
    """Effective dimension ``tr(S)^2 / tr(S^2)`` of ``S = sum(c * covariance)`` over ``parts``.

    ``parts``: the coefficient ``c`` and the cells of each covariance; the traces of
    products are estimated from up to :data:`SAMPLE_CELLS` cells of each.
    """
    samples = [(c, cells.centred_sample()) for c, cells in parts]
    trace = sum(c * cells.variance for c, cells in parts)
    squared = 0.0
    for i, (ci, xi) in enumerate(samples):
        squared += ci * ci * _squared_trace(xi)
        for cj, xj in samples[i + 1 :]:
            cross = float(np.square(xi @ xj.T).sum()) / ((len(xi) - 1) * (len(xj) - 1))
            squared += 2 * ci * cj * cross
    n_genes = samples[0][1].shape[1]
    return float(np.clip(trace * trace / squared, 1.0, n_genes)) if squared > 0 else 1.0


def basal_range(registration, new, batch_size: int) -> pd.DataFrame:
    """Per context of the new control cells: how far outside the registered range they lie.

    The distance of their mean to the registered contexts' control means (module docstring).

    ``registration``: the model's :class:`~pdae_sc.model._registration.Registration`;
    ``new``: the :class:`~pdae_sc.model._new_cells.NewCells` read from the user's cells.
    Columns: ``context``, ``n_control_cells``, ``distance``, ``noise`` (its square the
    expected squared distance of a context inside the range), ``ratio``, ``dof`` (the
    effective dimension of that noise), ``p_value`` (of a distance at least as large for
    a context inside the range: the ``ratio`` squared against ``chi2(dof) / dof``),
    ``relative_distance`` (the distance beyond noise, ``sqrt(distance^2 - noise^2)``, over
    the new cells' spread around their mean, the root of their summed variance),
    ``outside`` (``p_value`` below :data:`OUTSIDE_P` and ``relative_distance`` at least
    :data:`OUTSIDE_RELATIVE`) and ``nearest`` (the registered context with the largest
    weight in the closest mix). Empty when the new cells have fewer than two control cells
    in every context or no registered context has two control cells.
    """
    names, registered = _registered_controls(registration, batch_size)
    means = np.array([cells.mean for cells in registered])
    cells = new.cells
    rows_out = []
    for code, context in enumerate(cells.context_names):
        rows = np.flatnonzero(cells.is_control & (cells.context_codes == code))
        if len(rows) < 2 or not names:
            continue
        controls = _control_cells(new.rows, rows, batch_size)
        distance, w = distance_to_hull(means, controls.mean)
        parts = [(1.0 / len(rows), controls)] + [
            (wk * wk / len(reg.rows), reg)
            for wk, reg in zip(w, registered, strict=True)
            if wk > 1e-3
        ]
        noise = float(np.sqrt(sum(c * part.variance for c, part in parts)))
        ratio = distance / noise if noise > 0 else (0.0 if distance == 0 else np.inf)
        dof = degrees_of_freedom(parts)
        p_value = float(chi2.sf(dof * ratio * ratio, dof))
        beyond_noise = np.sqrt(max(distance * distance - noise * noise, 0.0))
        spread = np.sqrt(controls.variance)
        relative = float(beyond_noise / spread) if spread > 0 else 0.0
        outside = bool(p_value < OUTSIDE_P and relative >= OUTSIDE_RELATIVE)
        nearest = names[int(np.argmax(w))]
        rows_out.append(
            [context, len(rows), distance, noise, ratio, dof, p_value, relative, outside, nearest]
        )
    return pd.DataFrame(rows_out, columns=_COLUMNS)
