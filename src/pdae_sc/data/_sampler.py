"""Per-condition minibatches for the PDAE and the Lightning data splitter that serves them."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import lightning.pytorch as pl
import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader, IterableDataset

from pdae_sc.module._batch_keys import BATCH_KEYS

from . import _validation
from ._validation import BLOCK_VALUES

__all__ = [
    "ConditionBatchSampler",
    "PerturbationDataSplitter",
    "RowGatherer",
    "choose_data_device",
    "group_sums",
]


_DENSE_LABELS = BLOCK_VALUES  # label tables up to this many entries are kept dense


class RowGatherer:
    """Gather rows of an expression matrix as a dense float32 array, in the requested order.

    Works on dense arrays, CSR/CSC matrices and backed (on-disk) matrices; only the requested
    rows are densified.

    Parameters
    ----------
    matrix
        ``adata.X`` or a layer, shape ``(n_cells, n_genes)``.
    """

    def __init__(self, matrix):
        self.matrix = matrix
        self._backed = not isinstance(matrix, np.ndarray) and not sp.issparse(matrix)

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` (any order, repeats allowed) as float32, shape ``(len(idx), n_genes)``."""
        idx = np.asarray(idx, dtype=np.int64).ravel()
        if self._backed:  # h5py-style access needs sorted unique indices
            uniq, inverse = np.unique(idx, return_inverse=True)
            rows = self.matrix[uniq]
            rows = rows.toarray() if sp.issparse(rows) else np.asarray(rows)
            return np.asarray(rows[inverse], dtype=np.float32)
        rows = self.matrix[idx]
        if sp.issparse(rows):
            rows = rows.toarray()
        return np.asarray(rows, dtype=np.float32)


def group_sums(matrix, group: np.ndarray, n_groups: int, transform=None):
    """Per-group sums of the rows of ``matrix`` and the group sizes.

    Rows are read in chunks of a fixed number of values (as in the setup scan), so memory
    does not grow with the cells, and a backed matrix works too.

    Parameters
    ----------
    matrix
        Expression of the cells, ``(n_cells, n_genes)`` (dense, sparse or backed).
    group
        Group of each cell, ``0 .. n_groups - 1``, or ``-1`` for a cell in no group.
    n_groups
        Number of groups.
    transform
        Optional elementwise function applied to the rows before summing (e.g. ``np.expm1``).

    Returns
    -------
    ``(sums, counts)``: float64 ``(n_groups, n_genes)`` and int ``(n_groups,)``.
    """
    group = np.asarray(group, dtype=np.int64)
    cells = np.flatnonzero(group >= 0)
    rows = RowGatherer(matrix)
    sums = np.zeros((n_groups, matrix.shape[1]))
    counts = np.bincount(group[cells], minlength=n_groups)
    chunk = max(1, _validation._CHUNK_ELEMENTS // max(1, matrix.shape[1]))
    for start in range(0, len(cells), chunk):
        idx = cells[start : start + chunk]
        x = rows(idx).astype(np.float64)
        # group sums of the chunk as one sparse indicator product
        ind = sp.csr_matrix(
            (np.ones(len(idx)), (group[idx], np.arange(len(idx)))), shape=(n_groups, len(idx))
        )
        sums += ind @ (x if transform is None else transform(x))
    return sums, counts


class ConditionBatchSampler:
    """Draw index sets for the grouped (per-condition) PDAE loss.

    Each step picks one context, ``n_conditions`` of its conditions (uniformly, so rare
    perturbations weigh as much as the control), ``n_cells`` observed cells of each, and
    ``n_sources`` source cells of the same context that are not among the observed ones.

    With ``n_source_conditions`` the source cells come in that many blocks of
    ``n_sources // n_source_conditions`` cells, each block from one condition of the context
    (conditions drawn uniformly, like the observed ones), and ``sample`` returns them with
    shape ``(n_source_conditions, n_sources // n_source_conditions)``. The loss then scores
    each block's moved cells on their own, so every source condition has to predict every
    target: a mix of many conditions can be right on average while the cells of one condition
    (the control cells a user predicts from) are moved wrongly. ``None``: one mixed block
    of random cells of the context, shape ``(n_sources,)``.

    Parameters
    ----------
    codes
        Condition code of every candidate cell, shape ``(n,)``.
    contexts
        Context code of every candidate cell, shape ``(n,)``.
    cell_index
        Row of each candidate cell in the full matrix, shape ``(n,)``.
    source_index
        Rows that may serve as source cells (with ``source_contexts`` and ``source_codes``);
        default the candidates.
    n_conditions, n_cells, n_sources
        Batch layout ``G``, ``n``, ``S``.
    n_source_conditions
        Source blocks of one condition each, of ``n_sources // n_source_conditions`` cells
        (at least 2), or ``None`` for one mixed block.
    rng
        Random generator.
    """

    def __init__(
        self,
        codes: np.ndarray,
        contexts: np.ndarray,
        cell_index: np.ndarray,
        *,
        n_conditions: int,
        n_cells: int,
        n_sources: int,
        rng: np.random.Generator,
        source_index: np.ndarray | None = None,
        source_contexts: np.ndarray | None = None,
        source_codes: np.ndarray | None = None,
        n_source_conditions: int | None = None,
    ):
        self.n_conditions, self.n_cells, self.n_sources = n_conditions, n_cells, n_sources
        self.n_source_conditions = n_source_conditions
        if n_source_conditions is not None and n_sources // n_source_conditions < 2:
            raise ValueError(
                f"n_sources={n_sources} cannot be split into n_source_conditions="
                f"{n_source_conditions} blocks of at least 2 cells each."
            )
        self.rng = rng
        group_keys = np.stack([contexts, codes], axis=1)
        groups, group_of_cell = np.unique(group_keys, axis=0, return_inverse=True)
        order = np.argsort(group_of_cell.ravel(), kind="stable")
        bounds = np.searchsorted(group_of_cell.ravel()[order], np.arange(len(groups) + 1))
        self.group_cells = [cell_index[order[a:b]] for a, b in itertools.pairwise(bounds)]
        self.group_context = groups[:, 0]
        self.group_condition = groups[:, 1]
        if source_index is None:
            source_index, source_contexts, source_codes = cell_index, contexts, codes
        self.context_ids = np.unique(self.group_context)
        self.context_sources = {c: source_index[source_contexts == c] for c in self.context_ids}
        self.source_groups = {}
        if n_source_conditions is not None:
            if source_codes is None:
                raise ValueError("n_source_conditions needs the source_codes of source_index.")
            for c in self.context_ids:
                in_context = source_contexts == c
                rows, codes_c = source_index[in_context], np.asarray(source_codes)[in_context]
                self.source_groups[c] = [rows[codes_c == k] for k in np.unique(codes_c)]
        # scratch mask over rows: marks the anchors of a draw (faster than np.isin)
        top = max(int(cell_index.max(initial=-1)), int(source_index.max(initial=-1)))
        self._is_anchor = np.zeros(top + 1, dtype=bool)

    def _draw(self, pool: np.ndarray, size: int) -> np.ndarray:
        return pool[self.rng.choice(len(pool), size=size, replace=len(pool) < size)]

    def sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One batch: anchor rows ``(G, n)``, condition codes ``(G,)``, source rows.

        The source rows have shape ``(S,)``, or ``(n_source_conditions, S //
        n_source_conditions)`` with one condition per row.
        """
        context = self.context_ids[self.rng.integers(len(self.context_ids))]
        groups = np.flatnonzero(self.group_context == context)
        chosen = self.rng.choice(groups, size=min(self.n_conditions, len(groups)), replace=False)
        anchors = np.stack([self._draw(self.group_cells[g], self.n_cells) for g in chosen])
        if self.n_source_conditions is not None:
            return anchors, self.group_condition[chosen], self._source_blocks(context, anchors)
        pool = self.context_sources[context]
        candidates = self._draw(pool, min(len(pool), self.n_sources + anchors.size))
        self._is_anchor[anchors] = True
        sources = candidates[~self._is_anchor[candidates]][: self.n_sources]
        self._is_anchor[anchors] = False
        if len(sources) < 2:  # tiny data: fall back to any cells of the context
            sources = self._draw(pool, max(2, self.n_sources))
        return anchors, self.group_condition[chosen], sources

    def _source_blocks(self, context, anchors: np.ndarray) -> np.ndarray:
        """Source rows ``(k, S // k)``: each row cells of one condition, none an anchor.

        A condition with fewer free cells than a block is drawn with replacement (from all
        its cells when fewer than two are free).
        """
        k = self.n_source_conditions
        groups = self.source_groups[context]
        picks = self.rng.choice(len(groups), size=k, replace=len(groups) < k)
        self._is_anchor[anchors] = True
        blocks = []
        for i in picks:
            pool = groups[i]
            free = pool[~self._is_anchor[pool]]
            blocks.append(self._draw(free if len(free) >= 2 else pool, self.n_sources // k))
        self._is_anchor[anchors] = False
        return np.stack(blocks)


class _BatchStream(IterableDataset):
    """Stream ready-made tensors for ``n_batches`` steps (one epoch)."""

    def __init__(self, splitter, sampler, n_batches: int, fixed_seed: int | None = None):
        self.splitter, self.sampler, self.n_batches = splitter, sampler, n_batches
        self.fixed_seed = fixed_seed

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if self.fixed_seed is not None:  # the same validation batches every epoch
            self.sampler.rng = np.random.default_rng(self.fixed_seed)
        for _ in range(self.n_batches):
            yield self.splitter.make_batch(self.sampler)


class _UniformSampler:
    """Uniform cells of one context (for the authors' all-pairs loss)."""

    def __init__(self, cell_index, contexts, batch_size, rng):
        self.batch_size, self.rng = batch_size, rng
        self.by_context = [cell_index[contexts == c] for c in np.unique(contexts)]
        sizes = np.array([len(c) for c in self.by_context], dtype=float)
        self.p = sizes / sizes.sum()

    def sample(self) -> np.ndarray:
        pool = self.by_context[self.rng.choice(len(self.by_context), p=self.p)]
        return pool[
            self.rng.choice(len(pool), size=min(self.batch_size, len(pool)), replace=False)
        ]


def _parse_data_device(data_device) -> str | torch.device:
    if isinstance(data_device, str) and data_device in ("auto", "host"):
        return data_device
    try:
        return torch.device(data_device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"data_device={data_device!r}; use 'auto', 'host' or a torch device such as "
            "'cpu' or 'cuda:0'."
        ) from None


def choose_data_device(
    data_device: str | torch.device,
    device: torch.device,
    *,
    n_bytes: int,
    free_bytes: int | None,
    max_memory_fraction: float = 0.5,
) -> torch.device | None:
    """Where to keep the dense matrix when training on ``device`` (``None``: on the host).

    ``"auto"`` keeps it on a CUDA ``device`` when its ``n_bytes`` take at most
    ``max_memory_fraction`` of the ``free_bytes`` there, and on the host otherwise (CPU
    training gathers rows straight from the user's matrix); ``"host"`` never moves it; a
    torch device is used as given.
    """
    if not isinstance(data_device, str):
        return data_device
    if data_device == "auto" and device.type == "cuda" and free_bytes is not None:
        return device if n_bytes <= max_memory_fraction * free_bytes else None
    return None


def draw_validation_cells(
    codes: np.ndarray, fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """Sorted rows held out for validation.

    Per condition ``floor(fraction * n)`` random cells, keeping at least 2 of each for
    training.
    """
    val = []
    for c in np.unique(codes):
        cells = np.flatnonzero(codes == c)
        n_val = min(math.floor(fraction * len(cells)), len(cells) - 2)
        if n_val > 0:
            val.append(rng.choice(cells, size=n_val, replace=False))
    return np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)


class PerturbationDataSplitter(pl.LightningDataModule):
    """Split cells of every condition into train/validation and serve PDAE minibatches.

    Where minibatches are gathered is decided in :meth:`setup` (see :meth:`place`): on a
    CUDA device the whole matrix is copied to the device when it fits in
    ``max_memory_fraction`` of the free device memory, and rows are gathered there by torch
    indexing; otherwise rows are gathered on the host and pinned for a fast copy. Under
    data-parallel training each process draws its own conditions (see :meth:`shard`).

    Parameters
    ----------
    matrix
        Expression matrix (dense, sparse or backed), shape ``(n_cells, n_genes)``.
    codes
        Condition code per cell, shape ``(n_cells,)``.
    contexts
        Context code per cell, shape ``(n_cells,)``.
    label_table
        Label vector of each condition, shape ``(n_conditions, K)``, dense or sparse. Up to
        ``2**22`` entries it is kept as one dense tensor (on the data device); a larger one
        (a genome-wide screen) stays sparse on the host and each batch densifies only its
        own rows.
    estimator
        ``"grouped"`` or ``"all_pairs"``.
    validation_size
        Fraction of each condition's cells held out for validation (early stopping).
    n_conditions_per_batch, n_cells_per_condition, n_sources
        Grouped batch layout.
    n_source_conditions
        The source cells of a grouped step in this many blocks of one condition each
        (:class:`ConditionBatchSampler`); ``None``: one mixed block.
    batch_size
        Cells per all-pairs batch.
    seed
        Seed of the split and of the batch draws.
    data_device
        ``"auto"`` (device-resident on CUDA when the matrix fits, else host), ``"host"``
        (always gather on the host), or a torch device to keep the dense matrix on (e.g.
        ``"cpu"`` or ``"cuda:0"``).
    max_memory_fraction
        Largest share of the free device memory the resident matrix may take (``"auto"``).
    split
        Train and validation rows to use instead of drawing a split, e.g.
        ``(model.train_indices, model.validation_indices)`` of an earlier training, so that
        training again never validates on cells already trained on. Saved in Lightning
        checkpoints (:meth:`state_dict`) and restored when training resumes from one.
    """

    def __init__(
        self,
        matrix,
        codes: np.ndarray,
        contexts: np.ndarray,
        label_table: np.ndarray | sp.spmatrix,
        *,
        estimator: str = "grouped",
        validation_size: float = 0.0,
        n_conditions_per_batch: int = 16,
        n_cells_per_condition: int = 16,
        n_sources: int = 64,
        n_source_conditions: int | None = None,
        batch_size: int = 128,
        seed: int = 0,
        data_device: str | torch.device = "auto",
        max_memory_fraction: float = 0.5,
        split: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        super().__init__()
        if not 0.0 <= validation_size < 1.0:
            raise ValueError(f"validation_size={validation_size!r}; use a fraction in [0, 1).")
        if not 0.0 < max_memory_fraction <= 1.0:
            raise ValueError(
                f"max_memory_fraction={max_memory_fraction!r}; use a fraction in (0, 1]."
            )
        self.gather = RowGatherer(matrix)
        self.shape = tuple(matrix.shape)
        self.codes, self.contexts = np.asarray(codes), np.asarray(contexts)
        self._label_csr = sp.csr_matrix(label_table, dtype=np.float32)
        small = np.prod(self._label_csr.shape, dtype=np.int64) <= _DENSE_LABELS
        self.label_table = torch.from_numpy(self._label_csr.toarray()) if small else None
        self.estimator = estimator
        self.layout = (n_conditions_per_batch, n_cells_per_condition, n_sources)
        self.n_source_conditions = n_source_conditions
        self.batch_size = batch_size
        self.validation_size = validation_size
        self.data_device = _parse_data_device(data_device)
        self.max_memory_fraction = max_memory_fraction
        self.rank, self.world_size = 0, 1
        self.pin_memory = False
        self._resident: torch.Tensor | None = None
        self._labels = self.label_table
        self._fixed_split = None if split is None else self._check_split(*split)
        self._reseed(seed)

    def _check_split(self, train_idx, val_idx) -> tuple[np.ndarray, np.ndarray]:
        """Rows of a given split as sorted int64 arrays; refuse one that does not fit."""
        train = np.sort(np.asarray(train_idx, dtype=np.int64).ravel())
        val = np.sort(np.asarray(val_idx, dtype=np.int64).ravel())
        n = len(self.codes)
        both = np.concatenate([train, val])
        if len(both) != n or not np.array_equal(np.sort(both), np.arange(n)):
            raise ValueError(
                f"split has {len(train)} train and {len(val)} validation rows, which do not "
                f"partition the {n} registered cells (each row once); the split belongs to "
                "other data. Train a new model on this AnnData."
            )
        return train, val

    def _reseed(self, seed: int) -> None:
        self.seed = int(seed)
        rng = np.random.default_rng(self.seed)
        if self._fixed_split is None:
            self.train_idx, self.val_idx = self._split(self.validation_size, rng)
        else:
            self.train_idx, self.val_idx = self._fixed_split
        self.n_train, self.n_val = len(self.train_idx), len(self.val_idx)
        self._train_seed = int(rng.integers(2**63))
        self._val_seed = int(rng.integers(2**63))
        self.shard(self.rank, self.world_size)

    def _split(self, validation_size: float, rng: np.random.Generator):
        val_idx = draw_validation_cells(self.codes, validation_size, rng)
        train_mask = np.ones(len(self.codes), dtype=bool)
        train_mask[val_idx] = False
        return np.flatnonzero(train_mask), val_idx

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The train/validation split, saved in Lightning checkpoints."""
        return {
            "train_idx": torch.from_numpy(self.train_idx.astype(np.int64)),
            "val_idx": torch.from_numpy(self.val_idx.astype(np.int64)),
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Use the split of a checkpoint (called by Lightning when training resumes)."""
        if "train_idx" not in state_dict:
            return
        self._fixed_split = self._check_split(
            np.asarray(state_dict["train_idx"]), np.asarray(state_dict["val_idx"])
        )
        self._reseed(self.seed)

    # -- distributed training and data placement ------------------------------------------
    def shard(self, rank: int, world_size: int) -> None:
        """Draw the batches of process ``rank`` of ``world_size`` (data-parallel training).

        Every process keeps the same train/validation split; its draws come from its own
        random stream (seeded with the splitter's training seed plus ``rank``), so processes
        draw different conditions and cells, and an epoch has ``1 / world_size`` of the
        single-process steps in each process.
        """
        if not (0 <= rank < world_size):
            raise ValueError(f"rank={rank!r}, world_size={world_size!r}; need 0 <= rank < size.")
        self.rank, self.world_size = int(rank), int(world_size)
        self._train_rng = np.random.default_rng(self._train_seed + self.rank)

    def place(self, device: str | torch.device, *, free_bytes: int | None = None):
        """Decide where minibatches are gathered when training on ``device``.

        Parameters
        ----------
        device
            The training device.
        free_bytes
            Free memory of ``device`` (default: asked from CUDA; ignored for other devices).

        Returns
        -------
        The device holding the dense matrix, or ``None`` when rows are gathered on the host
        (then :attr:`pin_memory` is set for CUDA training).
        """
        device = torch.device(device)
        if self.data_device == "auto" and device.type == "cuda" and free_bytes is None:
            free_bytes = torch.cuda.mem_get_info(device)[0]
        target = choose_data_device(
            self.data_device,
            device,
            n_bytes=4 * self.shape[0] * self.shape[1],
            free_bytes=free_bytes,
            max_memory_fraction=self.max_memory_fraction,
        )
        self.pin_memory = device.type == "cuda" and target is None
        if target is None:
            self._resident, self._labels = None, self.label_table
        elif self._resident is None or self._resident.device != target:
            self._resident = self._dense_on(target)
            self._labels = None if self.label_table is None else self.label_table.to(target)
        return target

    def _dense_on(self, device: torch.device, chunk: int = 65536) -> torch.Tensor:
        matrix = self.gather.matrix
        if device.type == "cpu" and isinstance(matrix, np.ndarray) and matrix.dtype == np.float32:
            return torch.from_numpy(np.ascontiguousarray(matrix))  # no copy when contiguous
        n, p = self.shape
        out = torch.empty((n, p), dtype=torch.float32, device=device)
        for a in range(0, n, chunk):
            rows = torch.from_numpy(self.gather(np.arange(a, min(n, a + chunk))))
            out[a : a + len(rows)] = rows.to(device)
        return out

    def setup(self, stage: str | None = None) -> None:
        """Agree on the split across processes, shard the draws, place the matrix."""
        trainer = self.trainer
        if trainer is None:
            return
        if trainer.world_size > 1:
            seed = trainer.strategy.broadcast(self.seed, src=0)
            if seed != self.seed:  # unseeded processes: use the split of rank 0
                self._reseed(seed)
            self.shard(trainer.global_rank, trainer.world_size)
        self.place(trainer.strategy.root_device)

    def teardown(self, stage: str | None = None) -> None:
        """Release the device copy of the matrix after training."""
        self._resident, self._labels = None, self.label_table

    # -- batches ----------------------------------------------------------------------------
    def _sampler(self, idx: np.ndarray, rng: np.random.Generator):
        if self.estimator == "all_pairs":
            return _UniformSampler(idx, self.contexts[idx], self.batch_size, rng)
        g, n, s = self.layout
        return ConditionBatchSampler(
            self.codes[idx],
            self.contexts[idx],
            idx,
            n_conditions=g,
            n_cells=n,
            n_sources=s,
            rng=rng,
            source_index=self.train_idx,
            source_contexts=self.contexts[self.train_idx],
            source_codes=self.codes[self.train_idx],
            n_source_conditions=self.n_source_conditions,
        )

    @property
    def steps_per_epoch(self) -> int:
        """Training steps in one epoch (of this process): about one draw per training cell."""
        return self._n_batches(self.n_train)

    def _n_batches(self, n_cells: int) -> int:
        per_step = (
            self.batch_size if self.estimator == "all_pairs" else self.layout[0] * self.layout[1]
        )
        return max(1, math.ceil(n_cells / (per_step * self.world_size)))

    def _rows(self, idx: np.ndarray) -> torch.Tensor:
        """Rows ``idx`` of the matrix in one gather, on the data device, shape ``(len, p)``."""
        if self._resident is None:
            return torch.from_numpy(self.gather(idx))
        return self._resident[self._index(idx)]

    def _index(self, idx: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.asarray(idx, dtype=np.int64))
        return t if self._resident is None else t.to(self._resident.device, non_blocking=True)

    def _label_rows(self, codes: np.ndarray) -> torch.Tensor:
        """Label vectors of conditions ``codes``, dense, on the data device."""
        if self._labels is not None:
            return self._labels[self._index(codes)]
        rows = torch.from_numpy(self._label_csr[np.asarray(codes)].toarray())
        return rows if self._resident is None else rows.to(self._resident.device)

    def make_batch(self, sampler) -> dict[str, torch.Tensor]:
        """Gather one minibatch of tensors from a sampler's index draw."""
        if self.estimator == "all_pairs":
            idx = sampler.sample()
            return {
                BATCH_KEYS.X: self._rows(idx),
                BATCH_KEYS.LABEL: self._label_rows(self.codes[idx]),
            }
        anchors, conditions, sources = sampler.sample()
        rows = self._rows(np.concatenate([anchors.ravel(), sources.ravel()]))
        n_anchor = anchors.size
        labels = self._label_rows(self.codes[sources.ravel()])
        return {
            BATCH_KEYS.X_ANCHOR: rows[:n_anchor].reshape(*anchors.shape, -1),
            BATCH_KEYS.LABEL_ANCHOR: self._label_rows(conditions),
            BATCH_KEYS.X_SOURCE: rows[n_anchor:].reshape(*sources.shape, -1),
            BATCH_KEYS.LABEL_SOURCE: labels.reshape(*sources.shape, -1),
        }

    def _loader(self, stream: _BatchStream) -> DataLoader:
        return DataLoader(stream, batch_size=None, pin_memory=self.pin_memory)

    def train_dataloader(self) -> DataLoader:
        """One epoch: about one draw of every training cell as an observed cell."""
        stream = _BatchStream(
            self,
            self._sampler(self.train_idx, self._train_rng),
            self._n_batches(self.n_train),
        )
        return self._loader(stream)

    def val_dataloader(self) -> DataLoader | list:
        """Validation batches (the same every epoch) from held-out cells, if any."""
        if self.n_val == 0:
            return []
        seed = self._val_seed + self.rank
        stream = _BatchStream(
            self,
            self._sampler(self.val_idx, np.random.default_rng(seed)),
            self._n_batches(self.n_val),
            fixed_seed=seed,
        )
        return self._loader(stream)
