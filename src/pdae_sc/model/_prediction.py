"""Building blocks of PDAE predictions: source draws, noise generators, the output AnnData."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData

from pdae_sc.data._labels import EncodedConditions
from pdae_sc.data._span import STATUS_EXTRAPOLATION, STATUS_OUTSIDE
from pdae_sc.pp._counts import size_factors, to_counts

__all__ = [
    "BATCH_VALUES",
    "NOISE_BLOCK",
    "BlockNoise",
    "ExtrapolationWarning",
    "check_prediction_memory",
    "counts_matrix",
    "draw_sources",
    "make_generator",
    "noise_block_size",
    "obs_names_of",
    "prediction_adata",
    "resolve_seed",
    "source_size_factors",
    "warn_outside_span",
]


class ExtrapolationWarning(UserWarning):
    """A prediction target lies outside the span of the training labels, or its doses beyond.

    Emitted by :meth:`pdae_sc.model.PDAE.predict`: the PDAE cannot identify the effect of
    a target outside the linear span, so its prediction is not covered by the model's
    guarantee; a target inside the span whose doses leave the range seen in training (e.g.
    dose 10 after doses up to 2) asks the decoder to extrapolate, which is less accurate.
    :meth:`pdae_sc.model.PDAE.check_extrapolation` tells beforehand which targets are
    affected. Turn the warning into an error with :func:`warnings.simplefilter` to refuse
    such predictions, or silence it the same way.

    Examples
    --------
    A model trained only on the combination ``P0+P1`` cannot separate the effects of ``P0``
    and ``P1``, so ``P0`` alone lies outside the span:

    >>> import warnings
    >>> import pdae_sc as pdae
    >>> adata = pdae.data.simulate(
    ...     n_perturbations=2, n_cells_per_condition=20, conditions=["ctrl", "P0+P1"], seed=0
    ... )
    >>> pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    >>> model = pdae.model.PDAE(adata, n_latent=4, n_hidden=(16,), n_noise=4)
    >>> model.train(max_epochs=1, enable_progress_bar=False)
    >>> model.check_extrapolation(["P0", "P0+P1"])["in_span"].tolist()
    [False, True]
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", pdae.model.ExtrapolationWarning)
    ...     try:
    ...         model.predict(["P0"], n_cells=10, seed=0)
    ...     except pdae.model.ExtrapolationWarning as warning:
    ...         print(warning)
    Targets ['P0'] lie outside the linear span of the training labels: ...
    """


def warn_outside_span(table: pd.DataFrame, stacklevel: int = 3) -> None:
    """Warn with :class:`ExtrapolationWarning` for rows outside the span or the dose range."""
    outside = table.index[table["status"] == STATUS_OUTSIDE].tolist()
    if outside:
        warnings.warn(
            f"Targets {outside} lie outside the linear span of the training labels: the PDAE "
            "cannot identify their effect, and their predictions are not supported by the "
            "model's guarantee. See model.check_extrapolation().",
            ExtrapolationWarning,
            stacklevel=stacklevel,
        )
    beyond = table.index[table["status"] == STATUS_EXTRAPOLATION].tolist()
    if beyond:
        warnings.warn(
            f"Targets {beyond} have doses outside the range seen in training: their "
            "predictions extrapolate and are less accurate the further the dose is from the "
            "trained doses. See model.check_extrapolation().",
            ExtrapolationWarning,
            stacklevel=stacklevel,
        )


def check_prediction_memory(n_cells: int, n_targets: int, n_genes: int, limit: int) -> None:
    """Refuse a prediction whose float32 matrix would exceed ``limit`` bytes, with the estimate."""
    need = int(n_cells) * int(n_targets) * int(n_genes) * 4
    if need > limit:
        per_call = max(1, limit // max(1, int(n_genes) * 4))
        raise ValueError(
            f"predict would build a {int(n_cells) * int(n_targets):,} cells x {n_genes:,} genes "
            f"float32 matrix, about {need / 2**30:.1f} GiB (n_cells={n_cells} for each of "
            f"{n_targets} targets), above PDAE.max_prediction_bytes = {limit / 2**30:.1f} GiB. "
            f"Predict in chunks of at most {per_call:,} cells (e.g. one target or a smaller "
            "n_cells per call, each with its own seed) and join them with anndata.concat, or "
            "raise the limit (PDAE.max_prediction_bytes = 16 * 2**30) if the memory is there."
        )


def resolve_seed(seed: int | None) -> int:
    """``seed``, or for ``None`` a seed drawn from torch's global generator.

    ``scvi.settings.seed = 0`` seeds that generator, so a script that sets it gets the same
    predictions on every run (as with scvi-tools), while calls within one run differ.
    """
    if seed is not None:
        return int(seed)
    return int(torch.randint(2**31 - 1, (1,)).item())


def make_generator(rng: np.random.Generator, device: torch.device) -> torch.Generator:
    """A torch generator on ``device`` seeded from ``rng``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(rng.integers(2**63 - 1)))
    return gen


#: Largest number of cells whose decoder noise is drawn at once (few genes); see
#: :func:`noise_block_size`.
NOISE_BLOCK = 4096

#: Values (cells x genes) in one CPU batch and in one block of decoder noise: 16 MB of float32,
#: below the size from which glibc maps every allocation afresh (32 MB).
BATCH_VALUES = 1 << 22


def noise_block_size(n_genes: int) -> int:
    """Cells whose decoder noise is drawn at once, for a model of ``n_genes`` genes.

    The noise of the i-th predicted cell depends on the seed, i and the gene count, never on
    ``batch_size`` or the device. The block is the CPU's default batch (the largest power of
    two from 256 to :data:`NOISE_BLOCK` whose ``n_genes`` values stay within
    :data:`BATCH_VALUES`), so a default CPU batch takes exactly one block, which stays small
    enough to be reused by the allocator.
    """
    rows = max(1, BATCH_VALUES // max(1, n_genes))
    return int(min(NOISE_BLOCK, max(256, 1 << (rows.bit_length() - 1))))


class BlockNoise:
    """The decoder noise of ``n`` cells, drawn in fixed blocks of :func:`noise_block_size` cells.

    Batches of any size take their rows with :meth:`take`, in order; each block is drawn
    from ``generator`` the first time a batch reaches it, so the cells predicted for a
    seed do not depend on how they are batched.
    """

    def __init__(self, module, n: int, like: torch.Tensor, generator: torch.Generator):
        self._module, self._n, self._like, self._gen = module, n, like, generator
        self._size = noise_block_size(module.n_input)
        self._blocks: dict[int, tuple] = {}

    def _block(self, b: int) -> tuple:
        if b not in self._blocks:
            for old in [k for k in self._blocks if k < b]:
                del self._blocks[old]  # batches come in order: earlier blocks are done
            size = min(self._size, self._n - b * self._size)
            self._blocks[b] = self._module.draw_move_noise(size, self._like, self._gen)
        return self._blocks[b]

    def take(self, start: int, length: int) -> tuple:
        """``(xi, eps)`` of cells ``start`` to ``start + length`` (either may be ``None``)."""
        parts = []
        k = self._size
        for b in range(start // k, (start + length - 1) // k + 1):
            lo = max(start, b * k) - b * k
            hi = min(start + length, (b + 1) * k) - b * k
            parts.append([None if t is None else t[lo:hi] for t in self._block(b)])
        if len(parts) == 1:
            return tuple(parts[0])
        return tuple(
            None if parts[0][i] is None else torch.cat([p[i] for p in parts])
            for i in range(len(parts[0]))
        )


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
    x: np.ndarray,
    table: pd.DataFrame,
    layers: dict | None = None,
    obs_extra: dict | None = None,
    seed: int | None = None,
    sparse: bool = False,
) -> AnnData:
    """Assemble predicted cells (rows of ``x``, from sources ``picks`` per target) as AnnData."""
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
        if col != "pdae_source_cell":  # few values: categorical, as in the baselines
            obs[col] = obs[col].astype(str).astype("category")
    obs["pdae_source_cell"] = obs["pdae_source_cell"].astype(str)
    obs[perturbation_key] = pd.Categorical(  # the targets in the order asked, as baselines
        obs[perturbation_key].astype(str), categories=list(dict.fromkeys(map(str, perturbations)))
    )
    obs.index = pd.Index(obs_names_of(perturbations, dosages, [len(r) for r in picks], seed))
    for key, values in (obs_extra or {}).items():
        obs[key] = values
    x = x.astype(np.float32, copy=False)
    out = AnnData(
        X=sp.csr_matrix(x) if sparse else x,
        obs=obs,
        var=adata.var.copy(),
        layers=layers,
    )
    out.uns["pdae"] = {"method": "pdae", "extrapolation": table.reset_index()}
    return out


def obs_names_of(
    perturbations: Sequence[str],
    dosages: Sequence[object] | None,
    sizes: Sequence[int],
    seed: int | None,
) -> list[str]:
    """Cell names ``"{target}_{seed}_{i}"`` (``"{target}@{dose}"`` with doses), ``i`` counting
    the cells of the call, so that predictions of several calls can be joined."""
    names = []
    for t, size in enumerate(sizes):
        dose = None if dosages is None else dosages[t]
        target = str(perturbations[t]) if dose is None else f"{perturbations[t]}@{dose}"
        start = len(names)
        tag = "" if seed is None else f"_{seed}"
        names.extend(f"{target}{tag}_{start + i}" for i in range(size))
    return names


def source_size_factors(
    x_rows: Callable[[np.ndarray], np.ndarray],
    count_rows: Callable[[np.ndarray], np.ndarray],
    idx: np.ndarray,
    batch_size: int,
) -> np.ndarray:
    """Size factor (``total / target_sum``) of source cells ``idx``, read in chunks.

    Cells without counts in the registered genes get the median of the others. Warns when the
    registered expression does not look like ``log1p`` of the scaled counts.
    """
    uniq = np.unique(idx)
    factors = np.empty(len(uniq))
    spread = []
    for start in range(0, len(uniq), batch_size):
        rows = uniq[start : start + batch_size]
        x, counts = x_rows(rows), count_rows(rows)
        factors[start : start + len(rows)] = size_factors(x, counts)
        if start == 0:  # consistency check on the first chunk
            ratio = np.expm1(x.astype(np.float64)) * factors[: len(rows), None]
            nz = counts > 0
            if nz.any():
                spread.append(np.median(np.abs(ratio[nz] / counts[nz] - 1.0)))
    ok = np.isfinite(factors)
    if not ok.any():
        raise ValueError(
            "No source cell has counts in the registered genes, so predictions cannot be put "
            "on the count scale; check the registered counts_layer."
        )
    factors[~ok] = np.median(factors[ok])
    if spread and spread[0] > 0.05:
        warnings.warn(
            "The registered expression does not look like log1p(normalize_total(counts)) of "
            "the registered counts layer (as written by pdae.pp.normalize_counts); "
            "count-scale predictions are approximate.",
            UserWarning,
            stacklevel=3,
        )
    return factors[np.searchsorted(uniq, idx)]


def counts_matrix(x: np.ndarray, factors: np.ndarray, batch_size: int) -> sp.csr_matrix:
    """Predicted counts ``rint(expm1(x) * factors)`` as a CSR matrix, built in chunks."""
    blocks = [
        sp.csr_matrix(to_counts(x[a : a + batch_size], factors[a : a + batch_size]))
        for a in range(0, len(x), batch_size)
    ]
    return sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix(x.shape, dtype=np.float32)
