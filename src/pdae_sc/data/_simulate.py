"""Simulate single-cell perturbation data under the additive latent shift model.

The generator of the PDAE paper: ``z_basal ~ P_Z``, ``z = z_basal + W l_e`` and
``x = f(z, eps)`` with a randomly initialised MLP ``f``; optionally negative-binomial counts
are drawn on top and normalised as a user would.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from ._labels import format_condition, parse_condition
from ._validation import check_positive_int

__all__ = ["simulate"]

_BASAL = ("gaussian", "laplace", "uniform")
_KEYWORDS = ("control", "singles", "doubles")
_LOG_LIBRARY_SD = 0.3
_TARGET_SUM = 1e4


def _check_int(name: str, value: object, minimum: int) -> int:
    return check_positive_int(value, name, minimum=minimum)


def _check_float(name: str, value: object, *, positive: bool) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = float("nan")
    if not np.isfinite(number) or number < 0 or (positive and number == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"`{name}` must be a finite number {bound}, got {value!r}.")
    return number


def _resolve_conditions(
    conditions: str | Sequence[str],
    dosages: Sequence[object] | None,
    names: list[str],
    control_group: str,
) -> list[dict[str, float]]:
    """Label dicts ``{perturbation: dose}`` of the simulated conditions (control included)."""
    if isinstance(conditions, str):
        if dosages is not None:
            raise ValueError(
                f"`dosages` needs an explicit list of `conditions`, got "
                f"conditions={conditions!r}; pass e.g. conditions=['P0', 'P0'], "
                "dosages=[0.5, 2]."
            )
        words = conditions.split("+")
        unknown = [w for w in words if w not in _KEYWORDS]
        if unknown:
            raise ValueError(
                f"Unknown keyword(s) {unknown} in conditions={conditions!r}; use '+'-joined "
                f"keywords among {list(_KEYWORDS)} or an explicit list of condition strings."
            )
        if "doubles" in words and len(names) < 2:
            raise ValueError(
                f"conditions={conditions!r} asks for doubles, which need n_perturbations >= 2, "
                f"got n_perturbations={len(names)}."
            )
        labels: list[dict[str, float]] = [{}]
        if "singles" in words:
            labels += [{n: 1.0} for n in names]
        if "doubles" in words:
            labels += [{a: 1.0, b: 1.0} for a, b in itertools.combinations(names, 2)]
        return labels

    conditions = list(conditions)
    if not conditions:
        raise ValueError("`conditions` is an empty list; give at least one condition string.")
    if dosages is None:
        dosages = [None] * len(conditions)
    elif len(dosages) != len(conditions):
        raise ValueError(
            f"`dosages` has {len(dosages)} entries but `conditions` has {len(conditions)}; give "
            "one dosage (a number, a '+'-joined string or None) per condition."
        )
    labels = []
    for condition, dosage in zip(conditions, dosages, strict=True):
        label = parse_condition(condition, control_group=control_group, dosage=dosage)
        unknown = [t for t in label if t not in names]
        if unknown:
            raise ValueError(
                f"Condition {condition!r} uses unknown perturbation(s) {unknown}; with "
                f"n_perturbations={len(names)} the elementary perturbations are "
                f"'P0'..'P{len(names) - 1}' (and the control is {control_group!r})."
            )
        labels.append(label)
    if all(label for label in labels):
        labels.insert(0, {})
    keys = [tuple(sorted(label.items())) for label in labels]
    duplicated = sorted({str(dict(k)) for k in keys if keys.count(k) > 1})
    if duplicated:
        raise ValueError(
            f"`conditions` lists the same label more than once: {duplicated}; list each "
            "(condition, dose) once and raise `n_cells_per_condition` for more cells."
        )
    return labels


def _elu(h: np.ndarray) -> np.ndarray:
    return np.where(h > 0, h, np.expm1(np.minimum(h, 0.0)))


def _apply_mixing(mixing: dict[str, np.ndarray], h: np.ndarray) -> np.ndarray:
    """Apply the mixing MLP stored in ``uns["simulation"]["mixing"]`` to ``(n, n_in)`` inputs."""
    n_layers = len(mixing) // 2
    for i in range(n_layers):
        h = h @ mixing[f"weight_{i}"] + mixing[f"bias_{i}"]
        if i < n_layers - 1:
            h = _elu(h)
    return h


def _sample_basal(rng: np.random.Generator, basal: str, sigma_z: float, shape: tuple[int, int]):
    if basal == "gaussian":
        return rng.normal(0.0, sigma_z, shape)
    if basal == "laplace":  # variance 2 b^2
        return rng.laplace(0.0, sigma_z / np.sqrt(2.0), shape)
    half_width = sigma_z * np.sqrt(3.0)  # variance a^2 / 3
    return rng.uniform(-half_width, half_width, shape)


def simulate(
    *,
    n_perturbations: int = 10,
    n_latent: int = 8,
    n_genes: int = 100,
    n_cells_per_condition: int = 100,
    conditions: str | Sequence[str] = "singles+doubles",
    dosages: Sequence[object] | None = None,
    basal: str = "gaussian",
    sigma_z: float = 1.0,
    n_hidden: Sequence[int] | int = (64,),
    n_noise: int = 2,
    noise_scale: float = 0.5,
    shift_scale: float = 1.0,
    counts: bool = False,
    library_size: float = 2000.0,
    dispersion: float = 5.0,
    control_group: str = "ctrl",
    seed: int = 0,
) -> AnnData:
    """Simulate cells under the additive latent shift model of the PDAE paper.

    Each condition ``e`` has a label vector ``l_e`` over the elementary perturbations
    ``P0..P{K-1}``. A cell is drawn as ``z_basal ~ P_Z``, ``z = z_basal + W l_e`` and
    ``x = f(z, eps)``, where ``W`` has ``N(0, shift_scale²)`` entries and ``f`` is a
    randomly initialised MLP (Xavier-normal weights, zero biases, ELU between layers) on the
    concatenation of ``z`` and the noise ``eps ~ N(0, noise_scale² I)``.

    Parameters
    ----------
    n_perturbations
        Number K of elementary perturbations.
    n_latent
        Latent dimension.
    n_genes
        Number of genes (outputs of ``f``).
    n_cells_per_condition
        Cells drawn for every condition.
    conditions
        Either ``'+'``-joined keywords among ``control``, ``singles`` (all K singles) and
        ``doubles`` (all K(K-1)/2 pairs), or an explicit list of condition strings such as
        ``["ctrl", "P0", "P0+P1"]``. The control is always included (prepended to an
        explicit list that lacks it).
    dosages
        With an explicit list of ``conditions`` only: one dosage per condition (a number,
        a ``'+'``-joined string such as ``"1+0.5"``, or ``None`` for dose 1), so that dose
        series (``P0`` at doses 0.5, 1 and 2) can be simulated.
    basal
        Law of ``z_basal``: ``"gaussian"``, ``"laplace"`` or ``"uniform"``, each scaled to
        standard deviation ``sigma_z`` in every dimension.
    sigma_z
        Standard deviation of each basal latent dimension.
    n_hidden
        Hidden layer widths of the mixing MLP (``()`` gives a linear map).
    n_noise
        Dimension of the noise input of ``f``; 0 makes ``f`` deterministic.
    noise_scale
        Standard deviation of the noise input.
    shift_scale
        Standard deviation of the entries of ``W``.
    counts
        Also draw negative-binomial counts: library sizes are log-normal around
        ``library_size`` (sd 0.3 in log space), the means are the library size times the
        gene proportions ``softmax(f(z, eps))``; ``X`` then holds ``log1p`` of the counts
        normalised to 10,000 per cell (as ``sc.pp.normalize_total`` + ``sc.pp.log1p``).
    library_size
        Median library size of the counts.
    dispersion
        Inverse overdispersion ``theta`` of the negative binomial (variance
        ``mu + mu² / theta``).
    control_group
        Label of the control condition.
    seed
        Seed of :func:`numpy.random.default_rng`; the same seed gives the same AnnData.
        ``W`` and ``f`` depend on the seed and the sizes only, not on the conditions or the
        number of cells.

    Returns
    -------
    AnnData with ``n_conditions * n_cells_per_condition`` cells (grouped by condition) and

    - ``X``: float32 expression, ``f(z, eps)`` or the log-normalised counts;
    - ``layers["counts"]``: integer counts (only with ``counts=True``);
    - ``obs["perturbation"]``: categorical condition (``"ctrl"``, ``"P3"``, ``"P3+P7"``);
    - ``obs["dose"]``: dosage string per cell (``"0.5"``, ``"1+0.5"``, ``"0"`` for the
      control), only when some dose differs from 1;
    - ``obs["n_perturbations"]``: number of elementary perturbations of the condition;
    - ``obsm["z_basal"]``, ``obsm["z"]``: true basal and shifted latents ``(n_cells, n_latent)``;
    - ``uns["simulation"]``: ground truth: ``W`` ``(n_latent, K)``, ``perturbations``,
      ``conditions`` and ``doses`` (per condition), ``label_matrix`` ``(n_conditions, K)``,
      ``mixing`` (the MLP's ``weight_i`` / ``bias_i``) and the parameters.

    Examples
    --------
    >>> import pdae_sc as pdae
    >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=10, seed=1)
    >>> adata.shape
    (110, 100)
    >>> adata.obs["perturbation"].cat.categories[:3].tolist()
    ['ctrl', 'P0', 'P1']
    >>> doses = pdae.data.simulate(
    ...     conditions=["P0", "P0", "P0+P1"], dosages=[0.5, 2, "1+0.5"], n_cells_per_condition=5
    ... )
    >>> doses.obs["dose"].unique().tolist()
    ['0', '0.5', '2', '1+0.5']
    """
    n_perturbations = _check_int("n_perturbations", n_perturbations, 1)
    n_latent = _check_int("n_latent", n_latent, 1)
    n_genes = _check_int("n_genes", n_genes, 1)
    n_per = _check_int("n_cells_per_condition", n_cells_per_condition, 1)
    n_noise = _check_int("n_noise", n_noise, 0)
    seed = _check_int("seed", seed, 0)
    sigma_z = _check_float("sigma_z", sigma_z, positive=True)
    noise_scale = _check_float("noise_scale", noise_scale, positive=False)
    shift_scale = _check_float("shift_scale", shift_scale, positive=False)
    library_size = _check_float("library_size", library_size, positive=True)
    dispersion = _check_float("dispersion", dispersion, positive=True)
    if basal not in _BASAL:
        raise ValueError(f"Unknown basal={basal!r}; use one of {list(_BASAL)}.")
    hidden = [n_hidden] if isinstance(n_hidden, int | np.integer) else list(n_hidden)
    hidden = [_check_int("n_hidden", h, 1) for h in hidden]

    names = [f"P{k}" for k in range(n_perturbations)]
    labels = _resolve_conditions(conditions, dosages, names, control_group)
    label_matrix = np.array([[lab.get(n, 0.0) for n in names] for lab in labels])
    formatted = [format_condition(lab, control_group=control_group) for lab in labels]
    cond_names = [name for name, _ in formatted]
    cond_doses = ["+".join(f"{d:g}" for d in lab.values()) if lab else "0" for lab in labels]

    # Independent streams: W and f do not change with the conditions or the number of cells.
    rng_w, rng_f, rng_cells, rng_counts = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )
    W = rng_w.normal(0.0, shift_scale, (n_latent, n_perturbations))
    sizes = [n_latent + n_noise, *hidden, n_genes]
    mixing: dict[str, np.ndarray] = {}
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        mixing[f"weight_{i}"] = rng_f.normal(
            0.0, np.sqrt(2.0 / (fan_in + fan_out)), (fan_in, fan_out)
        )
        mixing[f"bias_{i}"] = np.zeros(fan_out)

    codes = np.repeat(np.arange(len(labels)), n_per)
    n_cells = codes.size
    z_basal = _sample_basal(rng_cells, basal, sigma_z, (n_cells, n_latent))
    z = z_basal + label_matrix[codes] @ W.T
    eps = rng_cells.normal(0.0, noise_scale, (n_cells, n_noise))
    out = _apply_mixing(mixing, np.concatenate([z, eps], axis=1))

    layers = {}
    if counts:
        proportions = np.exp(out - out.max(axis=1, keepdims=True))
        proportions /= proportions.sum(axis=1, keepdims=True)
        library = library_size * np.exp(rng_counts.normal(0.0, _LOG_LIBRARY_SD, n_cells))
        mu = library[:, None] * proportions
        drawn = rng_counts.negative_binomial(dispersion, dispersion / (dispersion + mu))
        layers["counts"] = drawn.astype(np.int32)
        total = drawn.sum(axis=1, keepdims=True).astype(np.float64)
        out = np.log1p(drawn / np.where(total > 0, total, 1.0) * _TARGET_SUM)

    obs = pd.DataFrame(index=pd.Index([f"cell_{i}" for i in range(n_cells)]))
    obs["perturbation"] = pd.Categorical(
        np.asarray(cond_names, dtype=object)[codes], categories=pd.unique(pd.Series(cond_names))
    )
    if np.any((label_matrix != 0) & (label_matrix != 1)):
        obs["dose"] = pd.Categorical(
            np.asarray(cond_doses, dtype=object)[codes],
            categories=pd.unique(pd.Series(cond_doses)),
        )
    obs["n_perturbations"] = np.array([len(lab) for lab in labels], dtype=np.int64)[codes]

    adata = AnnData(
        X=out.astype(np.float32),
        obs=obs,
        var=pd.DataFrame(index=pd.Index([f"gene_{j}" for j in range(n_genes)])),
        layers=layers,
    )
    adata.obsm["z_basal"] = z_basal
    adata.obsm["z"] = z
    adata.uns["simulation"] = {
        "W": W,
        "perturbations": names,
        "conditions": cond_names,
        "doses": cond_doses,
        "label_matrix": label_matrix,
        "mixing": mixing,
        "seed": seed,
        "basal": basal,
        "sigma_z": sigma_z,
        "n_latent": n_latent,
        "n_hidden": np.asarray(hidden, dtype=np.int64),
        "n_noise": n_noise,
        "noise_scale": noise_scale,
        "shift_scale": shift_scale,
        "n_cells_per_condition": n_per,
        "counts": bool(counts),
        "library_size": library_size,
        "dispersion": dispersion,
        "control_group": control_group,
    }
    return adata
