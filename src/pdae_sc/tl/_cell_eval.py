"""Write a prediction and the observed cells in the layout ``cell-eval run`` reads."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from pdae_sc._files import check_writable_file, write_h5ad
from pdae_sc.data._labels import encode_conditions

from ._common import check_genes as _check_genes
from ._common import control_rows
from ._common import layer_matrix as _matrix
from ._common import obs_column as _obs_column

__all__ = ["to_cell_eval"]

logger = logging.getLogger(__name__)

#: Who wrote the files (``uns`` mark): ``overwrite=True`` replaces only such files.
_WRITER = "pdae_sc.tl.to_cell_eval"

#: cell-eval refuses fractional data outside ``0 <= x < 15`` (its log1p range check).
_LOG1P_MAX = 15.0

#: Layer with the raw counts that ``predict(scale="counts")`` and ``pp.normalize_counts`` write.
_COUNTS_LAYER = "counts"


def _values(mat) -> np.ndarray:
    return mat.data if sparse.issparse(mat) else np.asarray(mat)


def _range(mat) -> tuple[float, float]:
    values = _values(mat)
    if values.size == 0:
        return 0.0, 0.0
    return float(np.nanmin(values)), float(np.nanmax(values))


def _rows(mat, idx: np.ndarray):
    rows = mat[idx]
    if sparse.issparse(rows):
        return sparse.csr_matrix(rows, dtype=np.float32)
    return np.asarray(rows, dtype=np.float32)


def _counts_matrix(adata: AnnData, layer: str, name: str):
    """``adata.layers[layer]`` (raw counts), or a ``KeyError`` saying where they come from."""
    if layer in adata.layers:
        return adata.layers[layer]
    where = (
        "model.predict(..., scale='counts') writes them (with setup_anndata(..., "
        "counts_layer=...))"
        if name == "adata_pred"
        else "pdae.pp.normalize_counts keeps them there"
    )
    raise KeyError(
        f"scale='counts' writes raw counts, and {name} has no layers[{layer!r}] "
        f"(layers: {list(adata.layers)}); {where}. Pass layer= to name another layer."
    )


def _check_counts(x, name: str) -> None:
    """Raise unless ``x`` holds non-negative integers (what cell-eval reads as counts)."""
    values = _values(x)
    bad = ~np.isfinite(values) | (values < 0) | (values != np.rint(values))
    if bad.any():
        raise ValueError(
            f"{name} is not raw counts: {int(bad.sum())} values are negative, fractional or "
            f"not finite (e.g. {values[bad][0]:g}); scale='counts' writes non-negative "
            "integers, as model.predict(..., scale='counts') and the counts layer of "
            "pdae.pp.normalize_counts hold them."
        )


def _check_log1p(inputs, clip: bool):
    """Check the log-normalised ``(name, x)`` of pred, true and control; the clipped pred."""
    (_, x_pred), *observed = inputs
    for name, x in observed:
        lo, hi = _range(x)
        if lo < 0 or hi >= _LOG1P_MAX:
            raise ValueError(
                f"{name} has values in [{lo:.3g}, {hi:.3g}]; cell-eval reads log-normalised "
                f"expression in [0, {_LOG1P_MAX:g}). Normalise the counts with "
                "pdae.pp.normalize_counts(adata) (for simulated data: "
                "pdae.data.simulate(..., counts=True)) and predict from that, or write raw "
                "counts with scale='counts'."
            )
    lo, hi = _range(x_pred)
    if lo < 0:
        if not clip:
            raise ValueError(
                f"adata_pred has negative values (minimum {lo:.3g}), which cell-eval refuses; "
                "pass clip=True to set them to 0 (the observed data are non-negative)."
            )
        n_neg = int((x_pred.data < 0).sum() if sparse.issparse(x_pred) else (x_pred < 0).sum())
        logger.info(f"to_cell_eval: {n_neg} negative predicted values set to 0 (clip=True).")
        if sparse.issparse(x_pred):
            x_pred.data = np.maximum(x_pred.data, 0)
            x_pred.eliminate_zeros()
        else:
            x_pred = np.maximum(x_pred, 0)
    if hi >= _LOG1P_MAX:
        raise ValueError(
            f"adata_pred has values up to {hi:.3g}; cell-eval reads log-normalised expression "
            f"below {_LOG1P_MAX:g}. Predict on the log1p scale (scale='log1p'), or write "
            "its counts with scale='counts'."
        )
    return x_pred


def _stack(blocks: list):
    if any(sparse.issparse(b) for b in blocks):
        return sparse.vstack([sparse.csr_matrix(b) for b in blocks], format="csr")
    return np.vstack(blocks)


def to_cell_eval(
    adata_pred: AnnData,
    adata_true: AnnData,
    out_dir: str | Path,
    *,
    adata_control: AnnData | None = None,
    perturbation_key: str = "perturbation",
    control_group: str = "ctrl",
    delimiter: str = "+",
    clip: bool = True,
    pert_col: str = "target_gene",
    control_pert: str = "non-targeting",
    layer: str | None = None,
    scale: Literal["log1p", "counts"] = "log1p",
    overwrite: bool = False,
) -> dict[str, Path | str]:
    """Write ``pred.h5ad`` and ``real.h5ad`` for ``cell-eval run``, with the control cells.

    cell-eval compares each perturbation with the control *within* each file, so both files
    need the same perturbations, the same genes and control cells. This writes the
    predicted conditions of ``adata_pred`` (matched to ``adata_true`` by their parts, so
    ``"B+A"`` finds ``"A+B"``) and the observed cells of those conditions, appends the
    **same** control cells to both, and names the columns as cell-eval's defaults expect
    (``obs[pert_col]``, control ``control_pert``), so that no flag is needed::

        cell-eval run -ap out_dir/pred.h5ad -ar out_dir/real.h5ad -o out_dir/results

    Which control cells to pass matters: every cell-eval metric (Pearson delta, DE overlap,
    ...) is relative to the control of its file, and scores change a lot with that choice.
    Pass the observed control cells of the same experiment and context as ``adata_true``
    (e.g. the training cells, ``adata_control=train``); the default takes the control cells
    of ``adata_true``. Never pair predicted perturbed cells with a different set of control
    cells than the observed ones: the differences of the controls would be scored as
    prediction error.

    Raw counts (``scale="counts"``), for scorers that read counts, such as the Virtual Cell
    Challenge's: both files then hold integer counts in ``X`` (float32, no
    ``uns["log1p"]``), the predicted cells' from ``adata_pred.layers["counts"]``
    (``model.predict(..., scale="counts")``: each predicted cell on its source cell's count
    scale, with its count noise) and the observed and control cells' measured counts from
    their ``layers["counts"]`` (kept there by ``pdae.pp.normalize_counts``), unchanged.
    cell-eval normalises integer data itself, each file to the median total of its cells
    over the written genes, then ``log1p``; that is not exactly the registered ``X``
    (normalised over every gene to 10,000), so scores on counts and on ``log1p`` files can
    differ a little.

    Parameters
    ----------
    adata_pred
        Predicted cells (``model.predict``, :func:`predict_baseline`), log-normalised, and
        with ``scale="counts"`` their counts in ``layers["counts"]``.
    adata_true
        Observed cells with the same genes in the same order, log-normalised
        (``pdae.pp.normalize_counts``), with ``scale="counts"`` their raw counts in
        ``layers["counts"]``; only the predicted conditions are written.
    out_dir
        Directory to write into (created if needed). Only ``pred.h5ad`` and ``real.h5ad``
        are written there, never through a symbolic link.
    adata_control
        Control cells for both files (its ``control_group`` cells when it has
        ``perturbation_key``, else all of them). Default: the control cells of
        ``adata_true``.
    perturbation_key
        Condition column of ``obs`` in the inputs.
    control_group
        Label of the control condition in the inputs.
    delimiter
        Separator between combined perturbations.
    clip
        Set negative predicted values to 0. Baselines such as ``"additive"`` shift
        log-normalised cells below 0, which cell-eval refuses; with ``clip=False`` a
        negative prediction raises instead. (Observed or control cells with negative values
        always raise: they are not log-normalised.) Counts are never clipped: a negative
        count raises.
    pert_col
        Perturbation column to write (cell-eval's ``--pert-col``, default ``target_gene``).
    control_pert
        Control label to write (cell-eval's ``--control-pert``, default ``non-targeting``).
    layer
        Write this layer of every input instead of ``X`` (with ``scale="counts"``: instead
        of ``layers["counts"]``).
    scale
        ``"log1p"``: log-normalised expression, checked to lie in cell-eval's range
        ``[0, 15)``. ``"counts"``: raw counts from ``layers["counts"]``, checked to be
        non-negative integers.
    overwrite
        Replace ``pred.h5ad`` / ``real.h5ad`` that an earlier ``to_cell_eval`` wrote. Without
        it an existing file raises ``FileExistsError``; a file written by anything else (or a
        link, or a directory) is refused even with it, and nothing is written.

    Returns
    -------
    ``{"pred": path, "real": path, "command": str}``: the two ``.h5ad`` files and the
    ``cell-eval run`` command line for them (with ``--pert-col``/``--control-pert`` only
    when they differ from cell-eval's defaults). Each file has ``X`` (predicted or observed
    cells, then the control cells), ``obs[pert_col]`` (categorical: the condition,
    ``control_pert`` for the control cells) and the genes as ``var_names``. The inputs are
    not modified.

    Examples
    --------
    >>> import tempfile
    >>> import anndata
    >>> import numpy as np
    >>> import pdae_sc as pdae
    >>> adata = pdae.data.simulate(n_perturbations=3, n_genes=20, counts=True, seed=0)
    >>> adata.X = adata.layers.pop("counts")
    >>> pdae.pp.normalize_counts(adata)  # X: log1p; the counts stay in layers["counts"]
    >>> pred = pdae.tl.predict_baseline(adata, ["P0+P1"], method="additive")
    >>> files = pdae.tl.to_cell_eval(pred, adata, tempfile.mkdtemp())
    >>> files["command"].split()[:2]
    ['cell-eval', 'run']

    The round trip on the count scale: register the counts, predict a held-out
    combination as counts and write raw counts, the ``target_gene`` column and the control
    cells, as a Virtual Cell Challenge scorer reads them.

    >>> train = adata[adata.obs["perturbation"] != "P0+P1"].copy()
    >>> pdae.model.PDAE.setup_anndata(
    ...     train, "perturbation", control_group="ctrl", counts_layer="counts"
    ... )
    >>> model = pdae.model.PDAE(train, n_latent=4)
    >>> model.train(max_epochs=1, enable_progress_bar=False, held_out_conditions=0)
    >>> pred = model.predict(["P0+P1"], n_cells=100, seed=0, scale="counts")
    >>> files = pdae.tl.to_cell_eval(
    ...     pred, adata, tempfile.mkdtemp(), adata_control=train, scale="counts"
    ... )
    >>> real, fake = anndata.read_h5ad(files["real"]), anndata.read_h5ad(files["pred"])
    >>> real.obs["target_gene"].value_counts().sort_index().to_dict()
    {'non-targeting': 100, 'P0+P1': 100}
    >>> measured = adata[adata.obs["perturbation"] == "P0+P1"].layers["counts"]
    >>> np.array_equal(real[real.obs["target_gene"] == "P0+P1"].X, measured)  # unchanged
    True
    >>> import scipy.sparse
    >>> scipy.sparse.issparse(fake.X)  # sparse, as the predicted counts are
    True
    >>> predicted = fake[fake.obs["target_gene"] == "P0+P1"].X.toarray()
    >>> np.array_equal(predicted, pred.layers["counts"].toarray())  # integer counts
    True
    >>> np.array_equal(  # the same control cells in both files
    ...     fake[fake.obs["target_gene"] == "non-targeting"].X.toarray(),
    ...     real[real.obs["target_gene"] == "non-targeting"].X,
    ... )
    True
    """
    if not isinstance(clip, bool):
        raise TypeError(f"clip={clip!r}; use True (set negative predictions to 0) or False.")
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite={overwrite!r}; use True or False.")
    if scale not in ("log1p", "counts"):
        raise ValueError(
            f"scale={scale!r}; use 'log1p' (log-normalised expression) or 'counts' (raw "
            "integer counts, which cell-eval normalises itself)."
        )
    out_dir = Path(out_dir)
    paths = {"pred": out_dir / "pred.h5ad", "real": out_dir / "real.h5ad"}
    for path in paths.values():  # refuse before any work, and before writing either file
        check_writable_file(path, overwrite=overwrite, writer=_WRITER, arg=f"out_dir/{path.name}")
    for name, value in (("pert_col", pert_col), ("control_pert", control_pert)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name}={value!r}; use a non-empty string.")
    _check_genes(adata_pred, adata_true, "adata_true")
    if adata_control is not None:
        _check_genes(adata_pred, adata_control, "adata_control")
    if not adata_pred.var_names.is_unique:
        raise ValueError("adata_pred.var_names are not unique; cell-eval needs unique genes.")

    labels = [
        np.asarray(_obs_column(a, perturbation_key, n).astype(str), dtype=object)
        for n, a in (("adata_pred", adata_pred), ("adata_true", adata_true))
    ]
    enc = encode_conditions(
        np.concatenate(labels),
        control_group=control_group,
        delimiter=delimiter,
        name=perturbation_key,
    )
    is_ctrl = ~enc.labels.any(axis=1)
    pred_codes, true_codes = enc.codes[: adata_pred.n_obs], enc.codes[adata_pred.n_obs :]
    targets = [c for c in pd.unique(pred_codes) if not is_ctrl[c]]
    if not targets:
        raise ValueError(
            f"adata_pred has no non-control cells in obs[{perturbation_key!r}]; predict some "
            "perturbations first."
        )
    missing = [enc.conditions[c] for c in targets if not (true_codes == c).any()]
    if missing:
        raise ValueError(
            f"Conditions {missing[:10]} are predicted but have no observed cells in "
            "adata_true; cell-eval scores only perturbations present in both files. Predict "
            "only observed conditions, e.g. adata_pred[adata_pred.obs[perturbation_key]"
            ".isin(observed)]."
        )
    # One written label per condition: the first spelling seen in adata_pred.
    written = {c: str(labels[0][np.argmax(pred_codes == c)]) for c in targets}
    if control_pert in written.values():
        raise ValueError(
            f"control_pert={control_pert!r} is also a perturbation label; choose another."
        )

    counts = scale == "counts"
    if counts:
        layer = _COUNTS_LAYER if layer is None else layer
        read = _counts_matrix
    else:
        read = _matrix
    pred_mat = read(adata_pred, layer, "adata_pred")
    true_mat = read(adata_true, layer, "adata_true")
    if adata_control is None:
        ctrl_mat, ctrl_idx, ctrl_name = true_mat, np.flatnonzero(is_ctrl[true_codes]), "adata_true"
    else:
        ctrl_mat, ctrl_name = read(adata_control, layer, "adata_control"), "adata_control"
        ctrl_idx = control_rows(adata_control, perturbation_key, control_group, delimiter)
    if len(ctrl_idx) == 0:
        raise ValueError(
            f"{ctrl_name} has no {control_group!r} cells; cell-eval needs control cells in "
            "both files. Pass them as adata_control (e.g. the training cells)."
        )

    pred_rows = np.flatnonzero(np.isin(pred_codes, targets))
    true_rows = np.flatnonzero(np.isin(true_codes, targets))
    x_pred, x_true, x_ctrl = (
        _rows(pred_mat, pred_rows),
        _rows(true_mat, true_rows),
        _rows(ctrl_mat, ctrl_idx),
    )
    inputs = (("adata_pred", x_pred), ("adata_true", x_true), (ctrl_name, x_ctrl))
    if counts:
        for name, x in inputs:
            _check_counts(x, name)
    else:
        x_pred = _check_log1p(inputs, clip)

    ctrl_names = [f"control-{n}" for n in range(len(ctrl_idx))]

    def write(x_cond, rows, codes, prefix: str, path: Path) -> None:
        cond = [written[c] for c in codes[rows]] + [control_pert] * len(ctrl_idx)
        obs = pd.DataFrame(
            {pert_col: pd.Categorical(cond, categories=[control_pert, *written.values()])},
            index=[f"{prefix}-{i}" for i in range(len(rows))] + ctrl_names,
        )
        out = ad.AnnData(
            X=_stack([x_cond, x_ctrl]), obs=obs, var=pd.DataFrame(index=adata_true.var_names)
        )
        if not counts:  # integer counts: cell-eval normalises them itself
            out.uns["log1p"] = {"base": None}
        write_h5ad(out, path, overwrite=overwrite, writer=_WRITER, arg=f"out_dir/{path.name}")

    out_dir.mkdir(parents=True, exist_ok=True)
    write(x_pred, pred_rows, pred_codes, "pred", paths["pred"])
    write(x_true, true_rows, true_codes, "real", paths["real"])
    cmd = ["cell-eval", "run", "-ap", str(paths["pred"]), "-ar", str(paths["real"])]
    if pert_col != "target_gene":
        cmd += ["--pert-col", pert_col]
    if control_pert != "non-targeting":
        cmd += ["--control-pert", control_pert]
    cmd += ["-o", str(out_dir / "results")]
    logger.info(
        f"to_cell_eval: {'raw counts, ' if counts else ''}"
        f"{len(targets)} conditions, {len(pred_rows)} predicted and "
        f"{len(true_rows)} observed cells, {len(ctrl_idx)} control cells from {ctrl_name} "
        f"in both files. Run: {shlex.join(cmd)}"
    )
    return {**paths, "command": shlex.join(cmd)}
