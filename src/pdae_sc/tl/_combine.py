"""Put observed and predicted cells into one AnnData for scanpy plotting."""

from __future__ import annotations

import copy

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from matplotlib import colormaps
from matplotlib.colors import to_hex

__all__ = ["combine_predictions"]

#: ``uns`` entries that describe ``obsm``/``obsp``/``varm`` slots of one input, which the
#: combined object does not carry: copied, they would point scanpy at missing data.
_SLOT_UNS = (
    "pca",
    "neighbors",
    "umap",
    "tsne",
    "draw_graph",
    "diffmap_evals",
    "rank_genes_groups",
)


def _method(adata: AnnData) -> str | None:
    pdae_uns = adata.uns.get("pdae")
    return pdae_uns.get("method") if isinstance(pdae_uns, dict) else None


def _check_order(adata_pred: AnnData, adata_true: AnnData) -> None:
    """Refuse the pre-0.2 order ``(observed, prediction)``, which would swap the origins."""
    if _method(adata_true) is not None and _method(adata_pred) is None:
        raise ValueError(
            f"adata_true carries uns['pdae']['method']={_method(adata_true)!r} and adata_pred "
            "does not: the arguments look swapped. The prediction comes first, as in "
            "pdae.tl.evaluate: combine_predictions(adata_pred, adata_true)."
        )


def _matrices(adata_pred: AnnData, adata_true: AnnData, layer: str | None):
    if layer is None:
        return adata_pred.X, adata_true.X
    for name, adata in (("adata_true", adata_true), ("adata_pred", adata_pred)):
        if layer not in adata.layers:
            hint = (
                " Predict with model.predict(..., scale='counts') to get layers['counts'], or"
                " leave layer=None to combine X."
                if name == "adata_pred"
                else ""
            )
            raise KeyError(
                f"layer={layer!r} is not in {name}.layers ({list(adata.layers)}); both sides "
                f"must have it, so that one scale is never stacked onto another.{hint}"
            )
    return adata_pred.layers[layer], adata_true.layers[layer]


def _categories(values: pd.Series) -> list[str]:
    """Category order of one side: a categorical's own order, else sorted as pandas does."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return [str(c) for c in values.cat.categories]
    return sorted({str(v) for v in values.dropna()})


def _column(true: pd.Series | None, pred: pd.Series | None, n_true: int, n_pred: int):
    """One ``obs`` column of the combined object, with the dtype the inputs had."""
    sides = [
        s if s is not None else pd.Series([pd.NA] * n, dtype=object)
        for s, n in ((true, n_true), (pred, n_pred))
    ]
    present = [s for s in (true, pred) if s is not None]
    kinds = {
        "category"
        if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == object or s.dtype == "string"
        else "bool"
        if pd.api.types.is_bool_dtype(s.dtype)
        else "int"
        if pd.api.types.is_integer_dtype(s.dtype)
        else "other"
        for s in present
    }
    values = pd.concat([s.reset_index(drop=True) for s in sides], ignore_index=True)
    if kinds == {"category"}:
        order = list(dict.fromkeys(c for s in present for c in _categories(s)))
        text = values.astype(object)
        mask = text.notna()
        text[mask] = text[mask].astype(str)
        return pd.Categorical(text, categories=order)
    if kinds == {"int"}:
        return values.astype("Int64") if values.isna().any() else values.astype(np.int64)
    if kinds == {"bool"}:
        return values.astype("boolean") if values.isna().any() else values.astype(bool)
    if kinds <= {"int", "other"} and all(pd.api.types.is_numeric_dtype(s) for s in present):
        return values.astype(np.float64)
    text = values.astype(object)
    mask = text.notna()
    text[mask] = text[mask].astype(str)
    return pd.Categorical(text)


def _colors(uns: dict, obs: pd.DataFrame, sources: list[dict]) -> None:
    """Keep ``uns[f"{col}_colors"]`` aligned with the combined categories (by name)."""
    for col in obs.columns:
        key = f"{col}_colors"
        if not isinstance(obs[col].dtype, pd.CategoricalDtype):
            continue
        known: dict[str, str] = {}
        for src_uns, src_obs in sources:
            if (
                key in src_uns
                and col in src_obs
                and isinstance(src_obs[col].dtype, pd.CategoricalDtype)
            ):
                cats = [str(c) for c in src_obs[col].cat.categories]
                for cat, colour in zip(cats, list(src_uns[key]), strict=False):
                    known.setdefault(cat, colour)
        if not known:
            uns.pop(key, None)
            continue
        spare = (to_hex(c) for c in colormaps["tab20"].colors)
        used = set(known.values())
        out = []
        for cat in obs[col].cat.categories:
            if cat not in known:
                known[cat] = next((c for c in spare if c not in used), "#7f7f7f")
            out.append(known[cat])
        uns[key] = np.asarray(out, dtype=object)


def combine_predictions(
    adata_pred: AnnData,
    adata_true: AnnData,
    *,
    key_added: str = "origin",
    layer: str | None = None,
    perturbation_key: str = "perturbation",
    control_group: str = "ctrl",
) -> AnnData:
    """Concatenate observed and predicted cells, marking each cell's origin.

    The argument order is that of :func:`evaluate` and every other comparison in
    ``pdae.tl`` and ``pdae.pl``: the prediction first, the observed cells second.

    Parameters
    ----------
    adata_pred
        Predicted cells (from ``PDAE.predict`` or :func:`predict_baseline`).
    adata_true
        Observed cells with the same genes in the same order.
    key_added
        Column of ``obs`` to write: ``"observed"`` or the prediction method
        (``adata_pred.uns["pdae"]["method"]``, ``"predicted"`` if absent).
    layer
        Combine this layer of both inputs instead of ``X``, e.g. ``"counts"`` for
        ``model.predict(..., scale="counts")``; ``KeyError`` when either side lacks it.
    perturbation_key
        Condition column of ``obs``; ``control_group`` comes first in its categories.
    control_group
        Label of the control condition.

    Returns
    -------
    A new AnnData (observed cells first) whose ``X`` holds ``X`` (or ``layers[layer]``) of
    both; the union of the ``obs`` columns with their types (text and categories as
    categoricals, the observed categories' order first and ``control_group`` first in
    ``obs[perturbation_key]``; integer and boolean columns stay integer and boolean,
    nullable where only one side has them, so a column one side lacks is missing there);
    ``obs[key_added]``; the observed ``var``; and ``uns`` copied from both (the observed
    side wins; ``uns["log1p"]`` only when ``X`` is combined; ``uns[f"{col}_colors"]``
    realigned to the combined categories by name; not the entries of embeddings and graphs,
    ``pca``, ``neighbors``, ``umap``..., whose ``obsm``/``obsp`` are not carried over). Obs
    names are made unique. Neither input is modified.

    Examples
    --------
    >>> import pdae_sc as pdae
    >>> adata = pdae.data.simulate(n_perturbations=2, n_cells_per_condition=5, seed=0)
    >>> pred = pdae.tl.predict_baseline(adata, ["P0+P1"], method="additive", n_cells=5)
    >>> both = pdae.tl.combine_predictions(pred, adata)
    >>> both.obs["origin"].value_counts().to_dict()
    {'observed': 20, 'additive': 5}
    >>> both.obs["perturbation"].cat.categories[0]
    'ctrl'
    """
    _check_order(adata_pred, adata_true)
    if list(adata_true.var_names) != list(adata_pred.var_names):
        raise ValueError(
            "adata_true and adata_pred have different genes (or gene order); predict with a "
            "model trained on these genes, or subset with adata_true[:, adata_pred.var_names]."
        )
    method = _method(adata_pred)
    label = "predicted" if method is None else str(method)
    if label == "observed":
        raise ValueError("The prediction method is called 'observed'; rename it in uns['pdae'].")
    if key_added in adata_true.obs or key_added in adata_pred.obs:
        raise ValueError(
            f"key_added={key_added!r} is already a column of obs; choose another name."
        )
    x_pred, x_true = _matrices(adata_pred, adata_true, layer)
    if sp.issparse(x_true) or sp.issparse(x_pred):
        x = sp.vstack([sp.csr_matrix(x_true), sp.csr_matrix(x_pred)]).tocsr()
    else:
        x = np.vstack([np.asarray(x_true), np.asarray(x_pred)])
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)

    n_true, n_pred = adata_true.n_obs, adata_pred.n_obs
    columns = list(dict.fromkeys([*adata_true.obs.columns, *adata_pred.obs.columns]))
    obs = pd.DataFrame(index=pd.RangeIndex(n_true + n_pred))
    for col in columns:
        obs[col] = _column(
            adata_true.obs[col] if col in adata_true.obs else None,
            adata_pred.obs[col] if col in adata_pred.obs else None,
            n_true,
            n_pred,
        )
    obs[key_added] = pd.Categorical(["observed"] * n_true + [label] * n_pred)
    obs[key_added] = obs[key_added].cat.reorder_categories(
        list(dict.fromkeys(["observed", label]))
    )
    if perturbation_key in obs and isinstance(obs[perturbation_key].dtype, pd.CategoricalDtype):
        cats = list(obs[perturbation_key].cat.categories)
        if control_group in cats:
            cats.remove(control_group)
            obs[perturbation_key] = obs[perturbation_key].cat.reorder_categories(
                [control_group, *cats]
            )
    names = pd.Index([*adata_true.obs_names, *adata_pred.obs_names])
    if not names.is_unique:
        names = pd.Index([f"{o}-{n}" for o, n in zip(obs[key_added], names, strict=True)])
    obs.index = names

    uns = copy.deepcopy(dict(adata_pred.uns))
    uns.update(copy.deepcopy(dict(adata_true.uns)))
    for key in _SLOT_UNS:
        uns.pop(key, None)
    if layer is not None:
        uns.pop("log1p", None)  # describes X, not the layer combined here
    _colors(uns, obs, [(adata_true.uns, adata_true.obs), (adata_pred.uns, adata_pred.obs)])
    return ad.AnnData(X=x, obs=obs, var=adata_true.var.copy(), uns=uns)
