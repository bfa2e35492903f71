"""Train/test splits that hold out whole perturbation conditions."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from ._labels import EncodedConditions, closest_names, encode_conditions, parse_condition

__all__ = ["describe_split", "split_perturbations"]

_MODES = ("doubles", "doses", "conditions")
_SPLIT_CATEGORIES = ["train", "test"]
_TOL = 1e-9


def _encode(
    adata: AnnData,
    perturbation_key: str,
    control_group: str,
    delimiter: str,
    dosage_key: str | None,
) -> EncodedConditions:
    for arg, key in (("perturbation_key", perturbation_key), ("dosage_key", dosage_key)):
        if key is not None and key not in adata.obs:
            raise KeyError(
                f"{arg}={key!r} is not a column of adata.obs; available columns: "
                f"{list(adata.obs.columns)}."
            )
    dosages = None if dosage_key is None else adata.obs[dosage_key].to_numpy()
    enc = encode_conditions(
        adata.obs[perturbation_key].to_numpy(),
        control_group=control_group,
        delimiter=delimiter,
        dosages=dosages,
        name=perturbation_key,
    )
    if (enc.labels != 0).any(axis=1).all():
        close = closest_names(control_group, enc.conditions)
        raise ValueError(
            f"control_group={control_group!r} does not occur in adata.obs[{perturbation_key!r}]"
            f"{f'; closest labels: {close}' if close else ''}. Pass the label of the control."
        )
    return enc


def _seen_singles(labels: np.ndarray, in_train: np.ndarray) -> np.ndarray:
    """Per condition: how many of its perturbations have a single condition in training."""
    nz = labels != 0
    single_in_train = (nz.sum(axis=1) == 1) & in_train
    seen_token = (nz & single_in_train[:, None]).any(axis=0)
    return (nz & seen_token).sum(axis=1)


def _kinds(labels: np.ndarray, in_train: np.ndarray) -> list[str]:
    """Kind of each condition: control, train, or the kind of extrapolation it asks for."""
    nz = labels != 0
    size = nz.sum(axis=1)
    has_doses = bool(np.any(nz & (np.abs(labels - 1) > _TOL)))
    train_nz = nz & in_train[:, None]
    token_seen = train_nz.any(axis=0)
    lo = np.where(train_nz, labels, np.inf).min(axis=0)
    hi = np.where(train_nz, labels, -np.inf).max(axis=0)
    n_seen = _seen_singles(labels, in_train)
    kinds = []
    for c in range(len(labels)):
        tokens = np.flatnonzero(nz[c])
        if size[c] == 0:
            kinds.append("control")
        elif in_train[c]:
            kinds.append("train")
        elif not token_seen[tokens].all():
            kinds.append("unseen_perturbation")
        elif has_doses:
            dose = labels[c, tokens]
            inside = np.all((dose >= lo[tokens] - _TOL) & (dose <= hi[tokens] + _TOL))
            kinds.append("interpolation" if inside else "extrapolation")
        elif size[c] >= 2:
            kinds.append(f"combo_seen{n_seen[c]}")
        else:
            kinds.append("single")
    return kinds


def _hold_combinations(
    labels: np.ndarray, n_target: int, levels: list[int], rng: np.random.Generator
) -> np.ndarray:
    """Greedy choice of held-out combinations (and singles) meeting the seen-singles levels."""
    nz = labels != 0
    size = nz.sum(axis=1)
    is_combo = size >= 2
    has_single = (nz & (size == 1)[:, None]).any(axis=0)
    held_token = np.zeros(labels.shape[1], dtype=bool)
    level_of = np.full(len(labels), -1)  # seen-singles level of each held-out combination
    order = rng.permutation(np.flatnonzero(is_combo))
    cycle = [int(t) for t in rng.permutation(levels)]

    def attempt(c: int, level: int) -> tuple[np.ndarray, np.ndarray] | None:
        seen = np.flatnonzero(nz[c] & has_single & ~held_token)
        n_new = len(seen) - level
        if n_new < 0:
            return None
        new_token = held_token.copy()
        new_token[rng.choice(seen, n_new, replace=False)] = True
        new_level = level_of.copy()
        new_level[c] = level
        chosen = new_level >= 0
        n_seen = (nz[chosen] & has_single & ~new_token).sum(axis=1)
        # Earlier choices must keep their level, so that the levels stay balanced.
        return (new_token, new_level) if np.array_equal(n_seen, new_level[chosen]) else None

    step, stalled = 0, 0
    while (level_of >= 0).sum() < n_target and stalled < len(cycle):
        level = cycle[step % len(cycle)]
        step += 1
        for c in order:
            plan = None if level_of[c] >= 0 else attempt(int(c), level)
            if plan is not None:
                held_token, level_of = plan
                stalled = 0
                break
        else:
            stalled += 1
    return (level_of >= 0) | ((size == 1) & (nz & held_token).any(axis=1))


def _as_floats(name: str, values: Iterable[float] | float | None) -> np.ndarray:
    if values is None:
        return np.zeros(0)
    try:
        return np.atleast_1d(np.asarray(values, dtype=np.float64))
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a list of numbers, got {values!r}.") from None


def _has_dose(labels: np.ndarray, doses: np.ndarray) -> np.ndarray:
    nz = labels != 0
    close = np.abs(labels[:, :, None] - doses[None, None, :]) <= _TOL
    return (close.any(axis=2) & nz).any(axis=1)


def _doubles_mask(
    enc: EncodedConditions,
    n_holdout: int | None,
    fraction: float,
    seen_singles: Sequence[int] | int,
    rng: np.random.Generator,
) -> np.ndarray:
    is_combo = (enc.labels != 0).sum(axis=1) >= 2
    n_combos = int(is_combo.sum())
    if n_combos == 0:
        raise ValueError(
            "holdout='doubles' but the labels hold no combinations; use "
            "holdout='conditions' (or check `delimiter`)."
        )
    if n_holdout is None:
        if not 0 < fraction <= 1:
            raise ValueError(f"`fraction` must be in (0, 1], got {fraction!r}.")
        n_target = max(1, round(fraction * n_combos))
    elif isinstance(n_holdout, bool) or not 1 <= n_holdout <= n_combos:
        raise ValueError(
            f"`n_holdout` must be an integer in [1, {n_combos}] (the number of "
            f"combinations), got {n_holdout!r}."
        )
    else:
        n_target = int(n_holdout)
    levels = sorted({int(s) for s in np.atleast_1d(seen_singles)})
    if not levels or min(levels) < 0:
        raise ValueError(
            f"`seen_singles` must hold integers >= 0 such as (2,) or (0, 1, 2), got "
            f"{seen_singles!r}."
        )
    held = _hold_combinations(enc.labels, n_target, levels, rng)
    n_held = int((held & is_combo).sum())
    if n_held == 0:
        raise ValueError(
            f"No combination can be held out with seen_singles={seen_singles!r}: none has "
            "that many of its singles among the conditions."
        )
    if n_held < n_target:
        msg = f"Held out {n_held} combinations, not {n_target}: no more meet seen_singles."
        warnings.warn(msg, UserWarning, stacklevel=3)
    return held


def _doses_mask(
    enc: EncodedConditions,
    doses_interpolation: Sequence[float] | None,
    doses_extrapolation: Sequence[float] | None,
    dosage_key: str | None,
) -> np.ndarray:
    labels = enc.labels
    interp = _as_floats("doses_interpolation", doses_interpolation)
    extrap = _as_floats("doses_extrapolation", doses_extrapolation)
    if interp.size + extrap.size == 0:
        raise ValueError(
            "holdout='doses' needs `doses_interpolation` and/or `doses_extrapolation`, "
            "e.g. doses_interpolation=[0.5], doses_extrapolation=[4]."
        )
    if np.isin(interp, extrap).any():
        raise ValueError(
            f"Doses {sorted(set(interp) & set(extrap))} are in both `doses_interpolation` "
            "and `doses_extrapolation`; list each dose once."
        )
    held_interp, held_extrap = _has_dose(labels, interp), _has_dose(labels, extrap)
    held = held_interp | held_extrap
    if not held.any():
        hint = "" if dosage_key else " Did you forget `dosage_key`?"
        raise ValueError(
            f"No condition has a dose in doses_interpolation={interp.tolist()} or "
            f"doses_extrapolation={extrap.tolist()}; doses present: "
            f"{np.unique(labels[labels != 0]).tolist()}.{hint}"
        )
    kinds = np.asarray(_kinds(labels, ~held))
    for name, mask, expected in (
        ("doses_interpolation", held_interp & ~held_extrap, "interpolation"),
        ("doses_extrapolation", held_extrap, "extrapolation"),
    ):
        wrong = np.flatnonzero(mask & (kinds != expected) & (kinds != "unseen_perturbation"))
        if wrong.size:
            warnings.warn(
                f"{wrong.size} condition(s) held out via `{name}` are not {expected} with "
                f"respect to the training doses, e.g. {enc.conditions[wrong[0]]!r}.",
                UserWarning,
                stacklevel=3,
            )
    return held


def _conditions_mask(
    enc: EncodedConditions,
    conditions: Sequence[str] | None,
    control_group: str,
    delimiter: str,
    perturbation_key: str,
) -> np.ndarray:
    if conditions is None or len(conditions) == 0:
        raise ValueError("holdout='conditions' needs a non-empty list `conditions`.")
    nz = enc.labels != 0
    vocabulary = np.asarray(enc.vocabulary, dtype=object)
    held = np.zeros(len(nz), dtype=bool)
    for cond in [conditions] if isinstance(conditions, str) else conditions:
        label = parse_condition(cond, control_group=control_group, delimiter=delimiter)
        if not label:
            raise ValueError(f"Condition {cond!r} is the control, which is never held out.")
        match = (nz == np.isin(vocabulary, list(label))).all(axis=1)
        if not set(label) <= set(enc.vocabulary) or not match.any():
            close = closest_names(cond, enc.conditions)
            raise ValueError(
                f"Condition {cond!r} (in `conditions`) is not in adata.obs"
                f"[{perturbation_key!r}]{f'; closest labels: {close}' if close else ''}."
            )
        held |= match
    return held


def split_perturbations(
    adata: AnnData,
    *,
    perturbation_key: str = "perturbation",
    control_group: str = "ctrl",
    delimiter: str = "+",
    dosage_key: str | None = None,
    holdout: str = "doubles",
    n_holdout: int | None = None,
    fraction: float = 0.2,
    seen_singles: Sequence[int] | int = (2,),
    doses_interpolation: Sequence[float] | None = None,
    doses_extrapolation: Sequence[float] | None = None,
    conditions: Sequence[str] | None = None,
    seed: int = 0,
    key_added: str | None = None,
) -> pd.Series:
    """Split cells into train and test by holding out whole perturbation conditions.

    Conditions are compared by label vector, so ``"A+B"`` and ``"B+A"`` are one condition.
    The control is never held out.

    Parameters
    ----------
    adata
        Annotated data with one condition label per cell.
    perturbation_key
        Column of ``adata.obs`` with the condition labels.
    control_group
        Label of the control condition.
    delimiter
        Separator between combined perturbations.
    dosage_key
        Optional column of ``adata.obs`` with the doses (see :func:`parse_condition`).
    holdout
        ``"doubles"``: hold out combinations (conditions of two or more perturbations);
        ``"doses"``: hold out the conditions with a dose listed in ``doses_interpolation`` or
        ``doses_extrapolation``; ``"conditions"``: hold out exactly ``conditions``.
    n_holdout
        ``"doubles"`` only: number of combinations to hold out (overrides ``fraction``).
    fraction
        ``"doubles"`` only: fraction of the combinations to hold out (at least one).
    seen_singles
        ``"doubles"`` only: allowed numbers of a held-out combination's perturbations whose
        single condition stays in training (GEARS' seen 0/1/2). With 2 only combinations
        are held out; with 1 or 0, the single conditions of one or both of its perturbations
        (at every dose) are held out too. Other combinations containing such a perturbation
        stay in training, so it is still seen inside combinations (list them in
        ``conditions`` with ``holdout="conditions"`` for a stricter split). The levels are
        filled in turn; if the constraints allow fewer than ``n_holdout`` combinations, a
        warning says so.
    doses_interpolation
        ``"doses"`` only: doses inside the training range to hold out (in distribution).
    doses_extrapolation
        ``"doses"`` only: doses beyond the training range to hold out (out of distribution).
    conditions
        ``"conditions"`` only: the conditions to hold out; each matches every condition with
        the same perturbations, at any dose.
    seed
        Seed of :func:`numpy.random.default_rng`.
    key_added
        If given, also write the split to ``adata.obs[key_added]``; otherwise ``adata`` is
        not modified.

    Returns
    -------
    Categorical Series indexed by ``adata.obs_names`` with values ``"train"`` or ``"test"``.
    Sets ``adata.obs[key_added]`` when ``key_added`` is given. See :func:`describe_split`
    for one row per condition.

    Examples
    --------
    >>> import pdae_sc as pdae
    >>> adata = pdae.data.simulate(n_perturbations=5, n_cells_per_condition=10)
    >>> split = pdae.data.split_perturbations(adata, holdout="doubles", n_holdout=3)
    >>> split.value_counts().to_dict()
    {'train': 130, 'test': 30}
    """
    if holdout not in _MODES:
        raise ValueError(f"Unknown holdout={holdout!r}; use one of {list(_MODES)}.")
    enc = _encode(adata, perturbation_key, control_group, delimiter, dosage_key)
    if holdout == "doubles":
        held = _doubles_mask(enc, n_holdout, fraction, seen_singles, np.random.default_rng(seed))
    elif holdout == "doses":
        held = _doses_mask(enc, doses_interpolation, doses_extrapolation, dosage_key)
    else:
        held = _conditions_mask(enc, conditions, control_group, delimiter, perturbation_key)
    split = pd.Series(
        pd.Categorical(np.where(held[enc.codes], "test", "train"), categories=_SPLIT_CATEGORIES),
        index=adata.obs_names.copy(),
        name=key_added or "split",
    )
    if key_added is not None:
        adata.obs[key_added] = split.to_numpy()
    return split


def describe_split(
    adata: AnnData,
    split: pd.Series | Sequence[str] | str,
    *,
    perturbation_key: str = "perturbation",
    control_group: str = "ctrl",
    delimiter: str = "+",
    dosage_key: str | None = None,
) -> pd.DataFrame:
    """One row per condition: its split and what kind of prediction it asks for.

    Parameters
    ----------
    adata
        Annotated data with one condition label per cell.
    split
        Per-cell ``"train"``/``"test"`` values (e.g. from :func:`split_perturbations`), or
        the name of the ``adata.obs`` column holding them.
    perturbation_key, control_group, delimiter, dosage_key
        As in :func:`split_perturbations`.

    Returns
    -------
    DataFrame with columns ``condition``, ``dose`` (``None`` for dose 1), ``split``
    (``"train"``, ``"test"`` or ``"mixed"``), ``kind``, ``n_cells``, ``n_perturbations`` and
    ``n_seen_singles`` (how many of the condition's perturbations have a single condition in
    training). ``kind`` is ``"control"``, ``"train"``, or for test conditions
    ``"unseen_perturbation"`` (a perturbation absent from training: out of span), with doses
    ``"interpolation"``/``"extrapolation"`` (every dose within / some dose beyond the
    training doses of that perturbation), else ``"combo_seen{n}"`` or ``"single"``.

    Examples
    --------
    >>> import pdae_sc as pdae
    >>> adata = pdae.data.simulate(n_perturbations=3, n_cells_per_condition=10)
    >>> _ = pdae.data.split_perturbations(
    ...     adata, n_holdout=1, seen_singles=1, seed=0, key_added="split"
    ... )
    >>> table = pdae.data.describe_split(adata, "split")
    >>> table.loc[table["split"] == "test", ["condition", "kind", "n_cells", "n_seen_singles"]]
      condition         kind  n_cells  n_seen_singles
    2        P1       single       10               0
    6     P1+P2  combo_seen1       10               1
    """
    enc = _encode(adata, perturbation_key, control_group, delimiter, dosage_key)
    if isinstance(split, str):
        if split not in adata.obs:
            raise KeyError(f"split={split!r} is not a column of adata.obs.")
        split = adata.obs[split]
    if isinstance(split, pd.Series) and not split.index.equals(adata.obs_names):
        split = split.reindex(adata.obs_names)
    values = np.asarray(split, dtype=object)
    if values.shape != (adata.n_obs,) or not np.isin(values, _SPLIT_CATEGORIES).all():
        raise ValueError(
            f"`split` must give 'train' or 'test' for each of the {adata.n_obs} cells."
        )
    n_cond = enc.n_conditions
    n_train = np.bincount(enc.codes[values == "train"], minlength=n_cond)
    n_cells = enc.counts()
    in_train = n_train > 0
    return pd.DataFrame(
        {
            "condition": enc.conditions,
            "dose": enc.dosages,
            "split": np.where(in_train, np.where(n_train == n_cells, "train", "mixed"), "test"),
            "kind": _kinds(enc.labels, in_train),
            "n_cells": n_cells,
            "n_perturbations": (enc.labels != 0).sum(axis=1),
            "n_seen_singles": _seen_singles(enc.labels, in_train),
        }
    )
