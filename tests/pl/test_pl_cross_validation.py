"""pl.cross_validation on a hand-made scores table (no training)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes

import pdae_sc as pdae
from pdae_sc import pl

METHODS = ["pdae", "control", "additive", "linear", "oracle_half"]
CONDITIONS = ["LCK+stim", "ZAP70+stim", "LAT+stim"]
# energy distance per method (rows) and condition (columns): linear best, control worst
ENERGY = {
    "pdae": [0.06, 0.09, 0.05],
    "control": [0.60, 0.55, 0.70],
    "additive": [0.10, 0.14, 0.12],
    "linear": [0.03, 0.04, 0.02],
    "oracle_half": [0.00, 0.01, -0.01],
}


@pytest.fixture
def scores():
    rows = []
    for m in METHODS:
        for c, e in zip(CONDITIONS, ENERGY[m], strict=True):
            rows.append(
                {
                    "fold": 0,
                    "condition": c,
                    "context": "all",
                    "kind": "combination",
                    "method": m,
                    "n_pred": 100,
                    "n_true": 100,
                    "energy_distance": e,
                    "mean_l2": 10 * e,
                    "pearson_delta": 1.0 - e,
                }
            )
    return pd.DataFrame(rows)


def _tick_methods(ax):
    return [t.get_text().replace(" (noise floor)", "") for t in ax.get_yticklabels()]


def _points(ax, method):
    (coll,) = [c for c in ax.collections if c.get_gid() == f"conditions:{method}"]
    return np.asarray(coll.get_offsets())


def test_one_point_per_condition_and_method(scores):
    snap = scores.copy()
    ax = pl.cross_validation(scores)
    assert isinstance(ax, Axes)
    # best first, the noise floor at the bottom
    assert _tick_methods(ax) == ["linear", "pdae", "additive", "control", "oracle_half"]
    ticks = dict(zip(_tick_methods(ax), ax.get_yticks(), strict=True))
    for m in METHODS:
        pts = _points(ax, m)
        assert len(pts) == len(CONDITIONS)
        np.testing.assert_allclose(sorted(pts[:, 0]), sorted(ENERGY[m]))
        np.testing.assert_allclose(pts[:, 1], ticks[m])
    # one connecting line per condition, plus the dashed noise-floor line
    floor = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert len(floor) == 1
    np.testing.assert_allclose(floor[0].get_xdata()[0], np.mean(ENERGY["oracle_half"]))
    joined = [ln for ln in ax.lines if len(ln.get_xdata()) == len(METHODS)]
    assert len(joined) == len(CONDITIONS)
    assert "lower is better" in ax.get_xlabel()
    assert "3 held-out conditions" in ax.get_title()
    pd.testing.assert_frame_equal(scores, snap)


def test_higher_is_better_metric_reverses_the_order(scores):
    ax = pl.cross_validation(scores, metric="pearson_delta")
    assert _tick_methods(ax) == ["linear", "pdae", "additive", "control", "oracle_half"]
    assert "higher is better" in ax.get_xlabel()
    scores["pearson_delta"] = -scores["pearson_delta"]  # now control is best
    ax = pl.cross_validation(scores, metric="pearson_delta")
    assert _tick_methods(ax)[0] == "control"


def test_uses_ax_and_verdict_as_title(scores, tmp_path):
    cv = pdae.tl.CrossValidation(
        scores, "energy_distance", "PDAE does not beat linear (the best simple baseline) on 0 of 3"
    )
    fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
    out = pl.cross_validation(cv, ax=ax)
    assert out is ax
    assert plt.get_fignums() == [fig.number]
    assert ax.get_title(loc="left").replace("\n", " ").startswith("PDAE does not beat linear")
    fig.savefig(tmp_path / "cross_validation.png", dpi=100)
    assert (tmp_path / "cross_validation.png").stat().st_size > 0


def test_without_noise_floor_and_with_missing_values(scores):
    table = scores[scores["method"] != "oracle_half"].copy()
    table.loc[table.index[0], "energy_distance"] = np.nan
    ax = pl.cross_validation(table)
    assert "oracle_half" not in _tick_methods(ax)
    assert not [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert sum(len(_points(ax, m)) for m in METHODS[:-1]) == 4 * len(CONDITIONS) - 1


def test_errors(scores):
    with pytest.raises(KeyError, match=r"metric='energy'.*energy_distance"):
        pl.cross_validation(scores, metric="energy")
    with pytest.raises(KeyError, match="metric='fold'"):
        pl.cross_validation(scores, metric="fold")
    with pytest.raises(KeyError, match="'condition'"):
        pl.cross_validation(scores.drop(columns="condition"))
    with pytest.raises(TypeError, match="CrossValidation"):
        pl.cross_validation(scores.to_numpy())
    with pytest.raises(TypeError, match="ax"):
        pl.cross_validation(scores, ax="left")
    with pytest.raises(ValueError, match="no finite values"):
        pl.cross_validation(scores.assign(energy_distance=np.nan))
