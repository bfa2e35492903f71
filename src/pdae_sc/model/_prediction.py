"""Building blocks of PDAE predictions: source draws, noise generators, the output AnnData."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

from pdae_sc.data._labels import EncodedConditions
from pdae_sc.tl._extrapolation import STATUS_OUTSIDE

__all__ = [
    "ExtrapolationWarning",
    "draw_sources",
    "make_generator",
    "prediction_adata",
    "warn_outside_span",
]


class ExtrapolationWarning(UserWarning):
    """A prediction target lies outside the linear span of the training labels."""


def warn_outside_span(table: pd.DataFrame, stacklevel: int = 3) -> None:
    """Warn with :class:`ExtrapolationWarning` for the rows of ``table`` outside the span."""
    outside = table.index[table["status"] == STATUS_OUTSIDE].tolist()
    if outside:
        warnings.warn(
            f"Targets {outside} lie outside the linear span of the training labels: the PDAE "
            "cannot identify their effect, and their predictions are not supported by the "
            "model's guarantee. See model.check_extrapolation().",
            ExtrapolationWarning,
            stacklevel=stacklevel,
        )


def make_generator(rng: np.random.Generator, device: torch.device) -> torch.Generator:
    """A torch generator on ``device`` seeded from ``rng``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(rng.integers(2**63 - 1)))
    return gen


def draw_sources(src_idx: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` source rows: a sorted subsample, or every source repeated plus a random rest."""
    if n <= len(src_idx):
        return np.sort(rng.choice(src_idx, size=n, replace=False))
    return np.concatenate(
        [
            np.tile(src_idx, n // len(src_idx)),
            rng.choice(src_idx, size=n % len(src_idx), replace=False),
        ]
    )


def prediction_adata(
    adata: AnnData,
    *,
    perturbation_key: str,
    perturbations: Sequence[str],
    dosages: Sequence[object] | None,
    dosage_key: str | None,
    context_keys: Sequence[str],
    enc: EncodedConditions,
    picks: Sequence[np.ndarray],
    blocks: Sequence[np.ndarray],
    table: pd.DataFrame,
) -> AnnData:
    """Assemble predicted cells (``blocks[t]`` from sources ``picks[t]``) into an AnnData."""
    obs_names = adata.obs_names.to_numpy()
    cond = np.asarray(enc.conditions, dtype=object)
    parts = []
    for t, rows in enumerate(picks):
        part = {
            perturbation_key: perturbations[t],
            "pdae_source": cond[enc.codes[rows]],
            "pdae_source_cell": obs_names[rows],
        }
        if dosage_key is not None:
            dose = None if dosages is None else dosages[t]
            part[dosage_key] = "1" if dose is None else str(dose)
        for k in context_keys:
            part[k] = adata.obs[k].to_numpy()[rows]
        parts.append(pd.DataFrame(part))
    obs = pd.concat(parts, ignore_index=True)
    for col in obs.columns:
        obs[col] = obs[col].astype(str).astype("category")
    obs.index = pd.Index([f"pdae_{i}" for i in range(len(obs))])
    x = np.concatenate(blocks).astype(np.float32, copy=False)
    out = AnnData(X=x, obs=obs, var=pd.DataFrame(index=adata.var_names.copy()))
    out.uns["pdae"] = {"method": "pdae", "extrapolation": table.reset_index()}
    return out
