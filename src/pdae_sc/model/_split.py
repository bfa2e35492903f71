"""Which cells a training run validates on.

The split kept from an earlier run, and the cells of the measured conditions held out to
choose between PDAE and the baselines.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np

from pdae_sc.data._sampler import draw_validation_cells

from ._selection import held_out_mask, pick_held_out

__all__ = [
    "check_datasplitter_kwargs",
    "held_out_groups",
    "previous_split",
    "split_with_held_out",
    "validation_count",
]


def split_with_held_out(model, split, recorded, fraction, wanted, cells, seed: int):
    """The training split with the held-out conditions' cells among the validation cells.

    A fresh model picks its held-out groups; a model trained before keeps its own (or,
    with ``held_out_conditions=0``, trains on them from now on). ``split``: the earlier
    split of the other cells (:func:`previous_split`) or ``None`` for a new one;
    ``recorded``: the cells of the groups held out before. Records the groups in
    ``held_out_conditions_``; returns the split (``None``: the splitter draws one) and
    the groups.
    """
    registration = model.registration
    enc, ctx_codes, ctx_names = cells.encoded, cells.context_codes, cells.context_names
    if model.train_indices is None:  # a fresh model
        held = []
        one_context = len(registration.context_keys) <= 1
        if wanted != 0 and registration.dosage_key is None and one_context:
            rng = np.random.default_rng([seed, 2])
            held = pick_held_out(
                enc.label_rows,
                enc.codes,
                ctx_codes,
                wanted,
                rng,
                matrix=registration.matrix,
            )
    else:
        held = held_out_groups(model, cells) if wanted != 0 else []
    model.held_out_conditions_ = [[enc.conditions[c], ctx_names[k]] for c, k in held]
    mask = held_out_mask(enc.codes, ctx_codes, held)
    if split is None:
        if not held:
            return None, held
        rest = np.flatnonzero(~mask)
        rng = np.random.default_rng([seed, 1])
        drawn = rest[draw_validation_cells(enc.codes[rest], fraction, rng)]
        val = np.union1d(np.flatnonzero(mask), drawn)
        return (np.setdiff1d(np.arange(len(enc.codes)), val), val), held
    train, val = split
    train = np.union1d(train, np.flatnonzero(recorded & ~mask))
    return (train, np.union1d(val, np.flatnonzero(mask))), held


def held_out_groups(model, cells) -> list[tuple[int, int]]:
    """``held_out_conditions_`` as (condition code, context code) pairs."""
    enc, ctx_names = cells.encoded, cells.context_names
    names = getattr(model, "held_out_conditions_", None) or []
    code_of = {name: i for i, name in enumerate(enc.conditions)}
    return [(code_of[c], ctx_names.index(k)) for c, k in names if c in code_of and k in ctx_names]


def previous_split(model, validation_size: float | None, codes: np.ndarray, recorded: np.ndarray):
    """The split of an earlier training to keep, or ``None`` to draw a new one.

    Cells held out before stay held out, so training again (or resuming) never
    validates on cells already trained on. ``validation_size=0`` trains on every cell
    (nothing is validated); a different explicit fraction raises ``ValueError``. The
    cells of held-out conditions (``recorded``) are left out of the returned split and
    of these rules (:func:`split_with_held_out` places them).
    """
    train, val = model.train_indices, model.validation_indices
    if train is None or val is None or len(train) + len(val) != len(codes):
        return None
    train, val = np.asarray(train), np.asarray(val)
    train, val = train[~recorded[train]], val[~recorded[val]]
    codes = np.asarray(codes)[~recorded]
    if validation_size == 0 or (len(val) == 0 and not validation_size):
        return None
    if len(val) == 0:
        if model.is_trained_:
            warnings.warn(
                "The model was trained on every cell before (no validation split), so the "
                f"validation cells drawn now (validation_size={validation_size!r}) were "
                "trained on and validation_loss is optimistic. Build a new model to "
                "validate on unseen cells.",
                UserWarning,
                stacklevel=3,
            )
        return None
    if validation_size is not None:
        expected = validation_count(codes, validation_size)
        if expected != len(val):
            raise ValueError(
                f"validation_size={validation_size!r} would hold out {expected} cells of the "
                f"training conditions, but the model already holds out {len(val)} of them "
                "(model.validation_indices, besides the cells of held_out_conditions_) "
                "from an earlier training; a new split would validate on cells trained on. "
                "Leave "
                "validation_size unset to keep the split, pass validation_size=0 to train "
                "on every cell, or build a new model."
            )
    return train, val


def validation_count(codes: np.ndarray, validation_size: float) -> int:
    """Cells a fresh split with ``validation_size`` holds out (as the data splitter draws)."""
    sizes = np.unique(np.asarray(codes), return_counts=True)[1]
    return int(np.maximum(np.minimum(np.floor(validation_size * sizes), sizes - 2), 0).sum())


#: Splitter arguments that ``train`` sets itself (its own argument, if it has one).
_SPLITTER_SET_BY_TRAIN = {
    "matrix": None,
    "codes": None,
    "contexts": None,
    "label_table": None,
    "estimator": "PDAE(estimator=...)",
    "validation_size": "validation_size",
    "n_conditions_per_batch": "n_conditions_per_batch",
    "n_cells_per_condition": "n_cells_per_condition",
    "n_sources": "n_sources",
    "n_source_conditions": "n_source_conditions",
    "batch_size": "batch_size",
    "seed": "scvi.settings.seed",
    "split": "validation_size (the split of an earlier training is kept)",
}


def check_datasplitter_kwargs(kwargs: dict | None, splitter_cls) -> dict:
    """``datasplitter_kwargs`` of ``train``: only what the splitter accepts and train leaves."""
    if kwargs is None:
        return {}
    if not isinstance(kwargs, dict):
        raise TypeError(
            f"datasplitter_kwargs={kwargs!r}; pass a dict, e.g. {{'data_device': 'host'}}."
        )
    taken = [k for k in kwargs if k in _SPLITTER_SET_BY_TRAIN]
    if taken:
        hints = [f"{k!r} (use {_SPLITTER_SET_BY_TRAIN[k]})" for k in taken]
        raise ValueError(
            f"datasplitter_kwargs sets {', '.join(hints)}, which train() sets itself; "
            "datasplitter_kwargs takes 'data_device' and 'max_memory_fraction'."
        )
    accepted = [
        k for k in inspect.signature(splitter_cls).parameters if k not in _SPLITTER_SET_BY_TRAIN
    ]
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        raise TypeError(
            f"datasplitter_kwargs has unknown arguments {unknown}; "
            f"{splitter_cls.__name__} accepts {accepted}."
        )
    return dict(kwargs)
