"""The AnnData of predicted cells, one builder for ``PDAE.predict`` and ``tl.predict_baseline``.

Its ``obs`` columns and ``uns`` keys are named here once; code that reads predictions (the
metrics, the interaction scores, the CLI) can use the same names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

__all__ = [
    "SIZE_FACTOR_KEY",
    "SOURCE_CELL_KEY",
    "SOURCE_KEY",
    "UNS_CHOSEN",
    "UNS_EXTRAPOLATION",
    "UNS_KEY",
    "UNS_METHOD",
    "UNS_ORACLE_REFERENCE",
    "obs_names_of",
    "prediction_adata",
]

#: ``obs`` column: the condition of each predicted cell's source cell.
SOURCE_KEY = "pdae_source"
#: ``obs`` column: the obs name of each predicted cell's source cell.
SOURCE_CELL_KEY = "pdae_source_cell"
#: ``obs`` column (``scale="counts"``): the source cell's size factor.
SIZE_FACTOR_KEY = "pdae_size_factor"
#: ``uns`` entry of a prediction, a dict with the keys below.
UNS_KEY = "pdae"
#: ``uns["pdae"]`` key: the method that predicted (``"pdae"`` or a baseline's name).
UNS_METHOD = "method"
#: ``uns["pdae"]`` key: the extrapolation table of the targets.
UNS_EXTRAPOLATION = "extrapolation"
#: ``uns["pdae"]`` key: whether the baseline was the model's choice on held-out conditions.
UNS_CHOSEN = "chosen_on_held_out_conditions"
#: ``uns["pdae"]`` key (``oracle_half``): the cells the first half is to be scored against.
UNS_ORACLE_REFERENCE = "oracle_reference_cells"


def prediction_adata(
    x,
    var: pd.DataFrame,
    *,
    perturbation_key: str,
    targets: Sequence[str],
    sizes: Sequence[int],
    source_conditions: np.ndarray,
    source_cells: np.ndarray,
    obs_names: Sequence[str],
    uns: dict,
    dosage_key: str | None = None,
    dosages: Sequence[object] | None = None,
    label_columns: Mapping[str, np.ndarray] | None = None,
    value_columns: Mapping[str, np.ndarray] | None = None,
    layers: dict | None = None,
    sparse: bool = False,
) -> AnnData:
    """Predicted cells as AnnData: ``sizes[t]`` rows of ``x`` per target ``targets[t]``.

    ``obs`` holds ``perturbation_key`` (categorical, the targets in the order asked), the
    source condition and source cell of every row (:data:`SOURCE_KEY`,
    :data:`SOURCE_CELL_KEY`), the dose of each target (``dosage_key``, ``"1"`` for dose 1),
    ``label_columns`` (e.g. the context, as categorical strings) and ``value_columns`` (as
    given). ``x`` is float32, CSR with ``sparse``; ``var`` is copied.
    """
    repeat = np.repeat(np.arange(len(targets)), np.asarray(sizes, dtype=np.int64))
    target_names = [str(t) for t in targets]
    obs = pd.DataFrame(
        {
            perturbation_key: pd.Categorical(
                np.asarray(target_names, dtype=object)[repeat],
                categories=list(dict.fromkeys(target_names)),
            ),
            SOURCE_KEY: pd.Categorical(np.asarray(source_conditions).astype(str)),
            SOURCE_CELL_KEY: np.asarray(source_cells).astype(str),
        }
    )
    if dosage_key is not None:
        doses = ["1" if d is None else str(d) for d in (dosages or [None] * len(targets))]
        obs[dosage_key] = pd.Categorical(np.asarray(doses, dtype=object)[repeat])
    for key, values in (label_columns or {}).items():
        obs[key] = pd.Categorical(np.asarray(values).astype(str))
    for key, values in (value_columns or {}).items():
        obs[key] = values
    obs.index = pd.Index([str(n) for n in obs_names])
    if sp.issparse(x):
        x = x.astype(np.float32) if sparse else x.toarray().astype(np.float32)
    else:
        x = np.asarray(x).astype(np.float32, copy=False)
        x = sp.csr_matrix(x) if sparse else x
    return AnnData(X=x, obs=obs, var=var.copy(), layers=layers, uns={UNS_KEY: uns})


def obs_names_of(
    targets: Sequence[str],
    dosages: Sequence[object] | None,
    sizes: Sequence[int],
    seed: int | None,
) -> list[str]:
    """Cell names ``"{target}_{seed}_{i}"`` (``"{target}@{dose}"`` with doses).

    ``i`` counts the cells of the call, so that predictions of several calls can be joined.
    """
    names: list[str] = []
    for t, size in enumerate(sizes):
        dose = None if dosages is None else dosages[t]
        target = str(targets[t]) if dose is None else f"{targets[t]}@{dose}"
        start = len(names)
        tag = "" if seed is None else f"_{seed}"
        names.extend(f"{target}{tag}_{start + i}" for i in range(size))
    return names
