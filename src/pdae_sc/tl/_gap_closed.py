"""Gap closed: the share of the gap from a reference to the noise floor that a method closes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["gap_closed"]

_KEYS = ("seed", "fold", "context", "condition")


def gap_closed(
    scores: pd.DataFrame,
    *,
    reference: str,
    floor: str = "oracle_half",
    metric: str = "energy_distance",
    per_condition: bool = False,
    methods: Sequence[str] | None = None,
) -> pd.DataFrame:
    """How much of the gap between a reference baseline and the noise floor each method closes.

    ``gap closed = (reference - method) / (reference - floor)``: 1 at the noise floor, 0 at
    the reference, negative when the method is worse than the reference. The formula does
    not depend on whether the metric is lower- or higher-is-better. The Virtual Cell
    Challenge scorer rescales its metrics between a mean-response baseline and a split-half
    replicate the same way; here the reference is any method of ``scores`` (e.g. the best
    simple baseline, or ``"mean_response"``) and the floor is ``"oracle_half"`` (half of the
    held-out cells against the other half).

    The overall figure is a ratio of means, ``(mean reference - mean method) / (mean
    reference - mean floor)`` over the conditions every method was scored on: per-condition
    ratios explode where the reference is already at the floor, so they are only given
    with ``per_condition=True``. The noise floor bounds the distribution metrics (energy
    distance, MMD); for the mean metrics the oracle half compares means of half as many
    cells and is not a floor.

    Parameters
    ----------
    scores
        Rows of :func:`pdae_sc.tl.evaluate` for several methods, joined with
        :func:`pandas.concat`: columns ``method``, ``condition`` and ``metric`` (and
        ``seed``, ``fold`` or ``context`` if present, which then tell the rows apart too).
    reference
        The method at 0 (a value of ``scores["method"]``).
    floor
        The method at 1.
    metric
        Column of ``scores`` to rescale.
    per_condition
        One row per condition and method instead of one per method.
    methods
        Methods to report (default: every method of ``scores``).

    Returns
    -------
    DataFrame with ``method``, ``metric`` (the mean score), ``reference``, ``floor`` (their
    means on the same conditions) and ``gap_closed``; with ``per_condition`` also the key
    columns (``condition`` and, where present, ``seed``, ``fold``, ``context``) and one
    row per condition. NaN where reference and floor coincide.

    Examples
    --------
    >>> scores = pd.DataFrame(
    ...     {
    ...         "condition": ["A", "B"] * 3,
    ...         "method": ["oracle_half"] * 2 + ["linear"] * 2 + ["pdae"] * 2,
    ...         "energy_distance": [0.0, 0.0, 0.4, 0.2, 0.1, 0.2],
    ...     }
    ... )
    >>> gap_closed(scores, reference="linear")[["method", "gap_closed"]]
            method  gap_closed
    0  oracle_half         1.0
    1       linear         0.0
    2         pdae         0.5
    """
    for col in ("method", "condition", metric):
        if col not in scores.columns:
            raise KeyError(
                f"scores has no column {col!r} ({list(scores.columns)}); pass rows of "
                "pdae.tl.evaluate joined with pd.concat, with a 'method' column."
            )
    present = list(dict.fromkeys(scores["method"]))
    for name, value in (("reference", reference), ("floor", floor)):
        if value not in present:
            raise ValueError(f"{name}={value!r} is not a method of scores: {present}.")
    keys = [k for k in _KEYS if k in scores.columns]
    table = scores.pivot_table(index=keys, columns="method", values=metric, aggfunc="mean")
    table = table.dropna(subset=[reference, floor])
    chosen = present if methods is None else list(methods)
    missing = [m for m in chosen if m not in table.columns]
    if missing:
        raise ValueError(f"methods {missing} are not in scores: {present}.")
    ref, low = table[reference], table[floor]
    rows = []
    for method in chosen:
        values = table[method]
        ok = values.notna()
        if per_condition:
            part = pd.DataFrame(
                {
                    "method": method,
                    metric: values,
                    "reference": ref,
                    "floor": low,
                    "gap_closed": _ratio(ref - values, ref - low),
                }
            )
            rows.append(part[ok].reset_index())
            continue
        r, f, v = ref[ok].mean(), low[ok].mean(), values[ok].mean()
        rows.append(
            pd.DataFrame(
                [
                    {
                        "method": method,
                        metric: v,
                        "reference": r,
                        "floor": f,
                        "gap_closed": _ratio(r - v, r - f),
                    }
                ]
            )
        )
    return pd.concat(rows, ignore_index=True)


def _ratio(num, den):
    """``num / den``, NaN where ``den`` is 0."""
    den = np.where(np.asarray(den, dtype=float) == 0.0, np.nan, den)
    out = np.asarray(num, dtype=float) / den
    return out if out.ndim else float(out)
