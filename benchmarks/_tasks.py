"""Benchmark tasks shared by the real-data scripts: data, held-out split, baselines, scoring.

Each task is a training AnnData, the observed cells of held-out conditions and how to
predict them (targets, context). Real tasks read ``../shared/data`` (or the copy bundled in
the package for Datlinger 2017); simulated ones call :func:`pdae_sc.data.simulate`.

Tasks:

- ``clean``: simulation, Gaussian basal law, 10 perturbations, 100 genes, 10 held-out doubles;
- ``counts``: the same generator with negative-binomial counts (library sizes varying),
  normalised + log1p as a user would, 300 genes, 10 held-out doubles;
- ``datlinger_combo``: Datlinger 2017 CROP-seq, knockout + TCR stimulation as a combination
  (``"LCK+stim"``), every second knockout held out in the stimulated state, 500 HVGs;
- ``datlinger_context``: the same cells, stimulation as a *context* (``context_keys``), the
  same knockouts held out in the stimulated context and predicted from its cells;
- ``papalexi_context``: Papalexi 2021 ECCITE-seq singles, replicate as context, every second
  target with at least 50 cells in ``rep_3`` held out there and predicted there.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scvi

import pdae_sc as pdae

SHARED = Path(
    os.environ.get("PDAE_SHARED_DATA", Path(__file__).parents[1] / ".." / "shared" / "data")
)
BASELINES = ("control", "pooled", "additive", "linear", "mean_response")
MIN_TEST_CELLS = 50  # fewer held-out cells make the energy distance too noisy to rank methods


@dataclass
class Task:
    """A held-out prediction task."""

    name: str
    train: ad.AnnData
    test: ad.AnnData
    targets: list[str]
    context_key: str | None = None
    context: str | None = None
    setup: dict = field(default_factory=dict)
    reference: str | None = None  # a training condition whose cells are a baseline too


def dense(x) -> np.ndarray:
    """A dense float64 copy of a matrix (sparse or dense)."""
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)


def _hvg(adata: ad.AnnData, n_top: int) -> ad.AnnData:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.highly_variable_genes(adata, n_top_genes=n_top, flavor="seurat")
    return adata[:, adata.var["highly_variable"].to_numpy()].copy()


def _split(adata: ad.AnnData, held: list[str], key: str = "perturbation"):
    test_mask = adata.obs[key].astype(str).isin(held).to_numpy()
    return adata[~test_mask].copy(), adata[test_mask].copy()


def simulation_task(kind: str, seed: int = 0) -> Task:
    counts = kind == "counts"
    adata = pdae.data.simulate(
        n_perturbations=10,
        n_genes=300 if counts else 100,
        n_cells_per_condition=100,
        counts=counts,
        seed=seed,
    )
    if counts:  # the counts as a user gets them, then normalise + log1p
        raw = ad.AnnData(adata.layers["counts"].copy(), obs=adata.obs[["perturbation"]].copy())
        raw.var_names = adata.var_names
        pdae.pp.normalize_counts(raw)
        adata = raw
    split = pdae.data.split_perturbations(adata, holdout="doubles", n_holdout=10, seed=seed)
    held = sorted(adata.obs["perturbation"][split == "test"].astype(str).unique())
    train, test = _split(adata, held)
    setup = {"counts_layer": "counts"} if counts else {}
    return Task(kind, train, test, held, setup=setup)


def datlinger(n_top: int = 500) -> ad.AnnData:
    adata = pdae.datasets.datlinger2017()
    pdae.pp.normalize_counts(adata)
    return _hvg(adata, n_top)


def datlinger_combo(n_top: int = 500) -> Task:
    adata = datlinger(n_top)
    genes = sorted(set(adata.obs["target"].astype(str)) - {"ctrl"})
    held = [f"{g}+stim" for g in genes[::2]]
    train, test = _split(adata, held)
    return Task(
        "datlinger_combo", train, test, held, setup={"counts_layer": "counts"}, reference="stim"
    )


def datlinger_context(n_top: int = 500) -> Task:
    adata = datlinger(n_top)
    adata.obs["perturbation"] = adata.obs["target"].astype(str)
    genes = sorted(set(adata.obs["perturbation"]) - {"ctrl"})
    held = genes[::2]
    stim = (adata.obs["state"] == "stimulated").to_numpy()
    test_mask = stim & adata.obs["perturbation"].isin(held).to_numpy()
    return Task(
        "datlinger_context",
        adata[~test_mask].copy(),
        adata[test_mask].copy(),
        held,
        context_key="state",
        context="stimulated",
        setup={"counts_layer": "counts", "context_keys": ["state"]},
    )


def papalexi() -> ad.AnnData:
    """Papalexi 2021 singles (non-targeting as ``"ctrl"``, replicate in ``obs["rep"]``)."""
    raw = ad.read_h5ad(SHARED / "papalexi2021_eccite_subset.h5ad")
    adata = ad.AnnData(
        raw.X.astype(np.float32),
        obs=pd.DataFrame(
            {
                "perturbation": raw.obs["target"].astype(str).replace({"non-targeting": "ctrl"}),
                "rep": raw.obs["bio_rep"].astype(str),
            },
            index=raw.obs_names,
        ),
        var=pd.DataFrame(index=raw.var_names),
    )
    pdae.pp.normalize_counts(adata)
    return adata


def papalexi_context(context: str = "rep_3") -> Task:
    adata = papalexi()
    in_ctx = (adata.obs["rep"] == context).to_numpy()
    # targets with enough cells in the held-out replicate for a stable energy distance
    n_in_ctx = adata.obs["perturbation"][in_ctx].value_counts()
    targets = sorted(t for t in n_in_ctx.index[n_in_ctx >= MIN_TEST_CELLS] if t != "ctrl")
    held = targets[::2]
    test_mask = in_ctx & adata.obs["perturbation"].isin(held).to_numpy()
    return Task(
        "papalexi_context",
        adata[~test_mask].copy(),
        adata[test_mask].copy(),
        held,
        context_key="rep",
        context=context,
        setup={"counts_layer": "counts", "context_keys": ["rep"]},
    )


TASKS = {
    "clean": lambda seed=0: simulation_task("clean", seed),
    "counts": lambda seed=0: simulation_task("counts", seed),
    "datlinger_combo": lambda seed=0: datlinger_combo(),
    "datlinger_context": lambda seed=0: datlinger_context(),
    "papalexi_context": lambda seed=0: papalexi_context(),
}


def fit_pdae(
    task: Task,
    seed: int,
    model_kwargs: dict | None = None,
    train_kwargs: dict | None = None,
    before_training: Callable[[pdae.model.PDAE], None] | None = None,
) -> tuple[pdae.model.PDAE, float]:
    """A PDAE set up on a copy of the task's training cells and trained with seed ``seed``.

    ``before_training``: called with the built model before ``train`` (e.g. to change its
    starting weights). Returns the model and the seconds ``train`` took (a speed figure on
    an idle machine).
    """
    scvi.settings.seed = seed
    train = task.train.copy()
    pdae.model.PDAE.setup_anndata(train, "perturbation", control_group="ctrl", **task.setup)
    model = pdae.model.PDAE(train, **(model_kwargs or {}))
    if before_training is not None:
        before_training(model)
    t0 = time.perf_counter()
    model.train(enable_progress_bar=False, **(train_kwargs or {}))
    return model, time.perf_counter() - t0


def protocol_cells(task: Task) -> int:
    """Cells every method predicts per target: the smallest pool any method draws from.

    That is the control cells of the target context (the pool of the control, additive,
    linear and mean-response baselines), or the reference condition's cells if fewer.
    Every method, PDAE included, predicts this many cells from as many distinct source
    cells, drawn without replacement, so no cell is counted twice and every method's
    score is equally noisy (the user guide, *Comparing methods fairly*).
    """
    n = control_cells(task).n_obs
    if task.reference is not None:
        n = min(n, int((task.train.obs["perturbation"] == task.reference).sum()))
    return int(n)


def predict_under_protocol(
    task: Task, model: pdae.model.PDAE, seed: int, **predict_kwargs
) -> ad.AnnData:
    """``model.predict`` of the task's targets in its context, :func:`protocol_cells` each.

    ``predict_kwargs``: more arguments of ``predict`` (``method``, ``source``).
    """
    return model.predict(
        task.targets,
        n_cells=protocol_cells(task),
        context=task.context,
        seed=seed,
        **predict_kwargs,
    )


def baselines(task: Task, seed: int = 0, n_cells: int | None = None) -> dict[str, ad.AnnData]:
    """Predictions of every baseline (and the oracle half) for the task's targets.

    For a context task every baseline predicts in the target context
    (:func:`pdae_sc.tl.predict_baseline` with ``context_key``): ``control`` is its control
    cells, ``additive`` those shifted by the knockout's mean change in the other contexts.
    ``n_cells`` defaults to :func:`protocol_cells`: each baseline draws that many distinct
    cells without replacement.
    """
    n_cells = protocol_cells(task) if n_cells is None else n_cells
    ctx = {"context_key": task.context_key, "context": task.context} if task.context_key else {}
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for method in BASELINES:
            out[method] = pdae.tl.predict_baseline(
                task.train, task.targets, method=method, n_cells=n_cells, seed=seed, **ctx
            )
    if task.reference is not None:  # e.g. the stimulated control for "KO+stim" targets
        pool = np.flatnonzero((task.train.obs["perturbation"] == task.reference).to_numpy())
        rng = np.random.default_rng(seed)
        idx = np.concatenate(
            [rng.choice(pool, n_cells, replace=n_cells > len(pool)) for _ in task.targets]
        )
        ref = task.train[idx].copy()
        ref.obs["pdae_source_cell"] = ref.obs_names.astype(str)
        ref.obs_names = [f"reference_{i}" for i in range(ref.n_obs)]
        ref.obs["perturbation"] = np.repeat(task.targets, n_cells)
        ref.uns["pdae"] = {"method": f"{task.reference}_cells"}
        out[f"{task.reference}_cells"] = ref
    out["oracle_half"] = pdae.tl.predict_baseline(
        task.train, task.targets, method="oracle_half", adata_true=task.test, seed=seed
    )
    return out


def scored_baselines(task: Task, seed: int, n_cells: int | None = None) -> list[pd.DataFrame]:
    """:func:`score` of every prediction of :func:`baselines`, one table per method.

    Each table has the columns ``method``, ``seed`` and ``fit_s`` (NaN: nothing is trained)
    added, as the rows of a model's own predictions have them.
    """
    return [
        labelled_score(task, pred, seed, method, fit_s=float("nan"))
        for method, pred in baselines(task, seed=seed, n_cells=n_cells).items()
    ]


def control_cells(task: Task) -> ad.AnnData:
    """The control cells that define 'no effect' for the task (the target context's)."""
    obs = task.train.obs
    mask = (obs["perturbation"].astype(str) == "ctrl").to_numpy()
    if task.context_key is not None:
        mask = mask & (obs[task.context_key].astype(str) == task.context).to_numpy()
    return task.train[mask]


def score(task: Task, pred: ad.AnnData, seed: int = 0) -> pd.DataFrame:
    """:func:`pdae_sc.tl.evaluate` of a prediction against the held-out cells."""
    truth = task.test
    if pred.uns.get("pdae", {}).get("method") == "oracle_half":
        truth = task.test[pred.uns["pdae"]["oracle_reference_cells"]]
    return pdae.tl.evaluate(pred, truth, adata_control=control_cells(task), seed=seed)


def labelled_score(
    task: Task, pred: ad.AnnData, seed: int, method: str, **columns
) -> pd.DataFrame:
    """:func:`score`, with the columns ``method``, ``seed`` and ``columns`` (in that order)."""
    s = score(task, pred, seed=seed)
    s["method"], s["seed"] = method, seed
    for key, value in columns.items():
        s[key] = value
    return s


def write_results(out: Path | None, stem: str, table: pd.DataFrame, text: str, csv: bool) -> None:
    """Write ``{stem}.md`` (``text``) and, with ``csv``, ``{stem}.csv`` (``table``) under ``out``.

    Nothing without ``out``; ``csv=False`` when the table was read back (``--summarise``).
    """
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    if csv:
        table.to_csv(out / f"{stem}.csv", index=False)
    (out / f"{stem}.md").write_text(text)


#: The simple baselines that the gap closed is measured from (the best of them).
SIMPLE_BASELINES = ("linear", "additive", "pooled", "control")


def seed_summary(
    table: pd.DataFrame, metric: str = "energy_distance"
) -> tuple[pd.Series, pd.DataFrame, pd.DataFrame]:
    """Per-seed means over conditions, then their mean and sd over seeds.

    ``table``: scored rows with ``task``, ``method`` and ``seed`` columns (rows of
    :func:`labelled_score` with a ``task`` column). Returns the per-seed series indexed by
    ``(task, method, seed)``, and the mean and sd over seeds as tables (task × method).
    """
    per_seed = table.groupby(["task", "method", "seed"])[metric].mean()
    by_method = per_seed.groupby(["task", "method"])
    return per_seed, by_method.mean().unstack(), by_method.std().unstack()


def gap_closed_to_best_simple(rows: pd.DataFrame, methods: list[str]) -> dict[str, float]:
    """:func:`pdae_sc.tl.gap_closed` of ``methods`` against the best simple baseline.

    ``rows``: one task's scored rows (every seed); the best simple baseline is the one of
    :data:`SIMPLE_BASELINES` with the lowest mean energy distance, the floor the oracle half.
    """
    means = rows.groupby("method")["energy_distance"].mean()
    best = min(SIMPLE_BASELINES, key=lambda m: means[m])
    gaps = pdae.tl.gap_closed(rows, reference=best, methods=methods)
    return dict(zip(gaps["method"], gaps["gap_closed"], strict=True))
