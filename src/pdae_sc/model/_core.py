"""The small interface the PDAE mixins (training, inference, diagnostics) build on.

:class:`PDAECore` is the one place that reads the scvi-tools registry: the registered
labels (as a typed :class:`~pdae_sc.data._fields.RegisteredLabels`, not a dict of string
keys), the expression matrix and the per-cell condition and context codes. The mixins
inherit from it, so what they use is named and importable instead of living only in
``_pdae.py``; :class:`pdae_sc.model.PDAE` puts it before scvi-tools' ``BaseModelClass``,
which provides ``adata``, ``adata_manager``, ``get_anndata_manager`` and
``_validate_anndata``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS

from pdae_sc.data._fields import (
    PERTURBATION_REGISTRY_KEY,
    PerturbationField,
    RegisteredLabels,
    context_codes,
)
from pdae_sc.data._labels import EncodedConditions, label_rows, parse_condition
from pdae_sc.data._sampler import RowGatherer
from pdae_sc.data._validation import check_positive_int, check_var_names_match

from ._prediction import NOISE_BLOCK, BlockNoise, draw_sources, noise_block_size

__all__ = ["PDAECore", "default_batch_size", "label_batch"]

_SPARSE_LABELS = 1024  # with more perturbations, prediction batches carry sparse label rows


def label_batch(label_rows, codes: np.ndarray, device) -> torch.Tensor:
    """Label vectors of conditions ``codes`` as one tensor on ``device``.

    Dense up to ``_SPARSE_LABELS`` perturbations; above, a sparse COO tensor, so a batch of a
    genome-wide screen costs its nonzeros, not ``len(codes) * K`` (the module's shifts take
    either).
    """
    rows = label_rows[np.asarray(codes)]
    if rows.shape[1] <= _SPARSE_LABELS:
        return torch.from_numpy(rows.toarray().astype(np.float32, copy=False)).to(device)
    coo = rows.tocoo()
    index = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    values = torch.from_numpy(coo.data.astype(np.float32, copy=False))
    return torch.sparse_coo_tensor(index, values, rows.shape, check_invariants=False).to(device)


def default_batch_size(n_genes: int, device_type: str) -> int:
    """Default cells per forward pass: 4,096 on a GPU; on the CPU the largest power of two
    from 256 to 4,096 whose batch of ``n_genes`` stays within ``2**22`` values (16 MB)."""
    if device_type != "cpu":
        return NOISE_BLOCK
    return noise_block_size(n_genes)


class PDAECore:
    """Registry access shared by the :class:`~pdae_sc.model.PDAE` mixins.

    Besides the members below, the mixins use what scvi-tools' ``BaseModelClass`` provides
    and the class attributes a model sets, declared here.
    """

    # set by the model class (scvi-tools' convention for swapping parts)
    _data_splitter_cls: type
    _training_plan_cls: type
    _train_runner_cls: type
    # provided by scvi-tools' BaseModelClass
    adata: AnnData
    module: object
    is_trained_: bool

    @property
    def _labels(self) -> RegisteredLabels:
        """What ``setup_anndata`` registered: vocabulary, control, conditions, contexts."""
        # cached per manager: the registry's view copies every list (O(K) per access)
        manager = self.adata_manager
        cached = self.__dict__.get("_labels_cache")
        if cached is None or cached[0] is not manager:
            state = manager.get_state_registry(PERTURBATION_REGISTRY_KEY)
            cached = (manager, state, RegisteredLabels.from_state(state))
            self.__dict__["_labels_cache"] = cached
        return cached[2]

    def _state_of(self, manager):
        """The perturbation state registry of ``manager`` (cached for the model's own)."""
        if manager is self.adata_manager:
            _ = self._labels  # fills the cache
            return self.__dict__["_labels_cache"][1]
        return manager.get_state_registry(PERTURBATION_REGISTRY_KEY)

    def _field(self, adata: AnnData) -> PerturbationField:
        """The perturbation field of ``adata``'s registration (looked up by registry key)."""
        manager = self.get_anndata_manager(adata, required=True)
        return next(f for f in manager.fields if f.registry_key == PERTURBATION_REGISTRY_KEY)

    def _matrix(self, adata: AnnData):
        """The registered expression matrix of ``adata`` (``X`` or the registered layer)."""
        return self.get_anndata_manager(adata, required=True).get_from_registry(
            REGISTRY_KEYS.X_KEY
        )

    def _encode(self, adata: AnnData) -> tuple[EncodedConditions, np.ndarray, list[str]]:
        """Condition codes over the model's vocabulary, context codes and context names.

        Raises ``ValueError`` if the label columns of ``adata`` changed since registration.
        """
        field = self._field(adata)
        manager = self.get_anndata_manager(adata, required=True)
        field.check_unchanged(adata, self._state_of(manager))
        labels = self._labels
        enc = field.encode(adata, vocabulary=labels.vocabulary)
        ctx_codes, ctx_names = context_codes(adata.obs, labels.context_keys)
        return enc, ctx_codes, ctx_names

    def _validate(self, adata: AnnData | None) -> AnnData:
        """``adata`` (default the registered one) checked and registered for a query."""
        if adata is None:
            return self._validate_anndata(self.adata)
        if not isinstance(adata, AnnData):
            raise TypeError(f"adata must be an AnnData, got {type(adata).__name__}.")
        genes = self.adata_manager.get_state_registry(REGISTRY_KEYS.X_KEY)["column_names"]
        check_var_names_match(genes, adata)
        return self._validate_anndata(adata)

    def target_labels(
        self, perturbations: Sequence[str], dosages: Sequence[object] | None = None
    ) -> np.ndarray:
        """Label vectors of target conditions, shape ``(n_targets, K)``.

        Column ``k`` is the dose of :attr:`perturbations` ``[k]`` in the target (0 if absent);
        these are the vectors the shift ``W`` multiplies.

        Parameters
        ----------
        perturbations
            Target conditions, e.g. ``["A+B", "C"]`` (the control label gives zeros).
        dosages
            Optional doses per target (same forms as in :meth:`setup_anndata`); default 1.

        Returns
        -------
        Array of shape ``(n_targets, n_perturbations)``. An unknown perturbation raises
        ``KeyError`` listing the closest known names.

        Examples
        --------
        >>> import pdae_sc as pdae
        >>> adata = pdae.data.simulate(n_perturbations=3, n_cells_per_condition=10, seed=0)
        >>> pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
        >>> model = pdae.model.PDAE(adata)
        >>> model.target_labels(["P0+P2", "ctrl"])
        array([[1., 0., 1.],
               [0., 0., 0.]])
        >>> model.target_labels(["P1"], dosages=[0.5])
        array([[0. , 0.5, 0. ]])
        """
        if isinstance(perturbations, str):
            perturbations = [perturbations]
        if perturbations is None or not hasattr(perturbations, "__iter__"):
            raise TypeError(
                f"perturbations={perturbations!r}; name the targets as a list of labels, e.g. "
                "['A+B', 'C'] (or the control label)."
            )
        perturbations = list(perturbations)
        if not perturbations:
            raise ValueError("perturbations is empty; name at least one target, e.g. ['A+B'].")
        dosages = self._dosage_list(dosages)
        if dosages is not None and len(dosages) != len(perturbations):
            raise ValueError(
                f"Got {len(dosages)} dosages for {len(perturbations)} perturbations; give one "
                "per target (None for dose 1)."
            )
        state = self._labels
        rows = []
        for i, p in enumerate(perturbations):
            lab = parse_condition(
                p,
                control_group=state.control_group,
                delimiter=state.delimiter,
                dosage=None if dosages is None else dosages[i],
            )
            rows.append(lab)
        return label_rows(rows, state.vocabulary).toarray()

    @staticmethod
    def _dosage_list(dosages: object) -> list[object] | None:
        """``dosages`` as a list (one entry per target), refusing a string or a lone number."""
        if dosages is None:
            return None
        if isinstance(dosages, str | bytes | int | float | np.number) or not hasattr(
            dosages, "__iter__"
        ):
            raise TypeError(
                f"dosages={dosages!r} must be a list with one dose per target, e.g. "
                "dosages=[0.5] for one target or [0.5, '1+2'] for two (None for dose 1); "
                f"got a {type(dosages).__name__}."
            )
        return list(dosages)

    def _check_trained(self) -> None:
        if not self.is_trained_:
            raise RuntimeError("The model is not trained yet; call model.train() first.")

    @torch.inference_mode()
    def _map(
        self,
        fn,
        x_rows: RowGatherer,
        idx: np.ndarray,
        batch_size: int,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """``fn`` on rows ``idx``, ``batch_size`` at a time, written into one array (``out``)."""
        for start in range(0, len(idx), batch_size):
            x = torch.from_numpy(x_rows(idx[start : start + batch_size])).to(self.device)
            y = fn(x, start).cpu().numpy()
            if out is None:
                out = np.empty((len(idx), y.shape[1]), dtype=y.dtype)
            out[start : start + len(y)] = y
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)

    def _batch_size(self, batch_size: int | None) -> int:
        """Cells per forward pass: ``batch_size``, or the default for this device and data.

        On a GPU 4,096 cells. On the CPU as many (a power of two, 256 to 4,096) as keep one
        batch of genes within ``2**22`` values (16 MB): larger buffers are mapped fresh from
        the system on every batch (the C allocator's threshold), which costs more than the
        batch's compute (about half the throughput at 2,000 genes).
        """
        if batch_size is not None:
            return check_positive_int(batch_size, "batch_size")
        return default_batch_size(self.summary_stats.n_vars, self.device.type)

    def _move_sources(
        self, target, src_idx, codes, label_rows, gather, rng, gen, batch_size, *, out
    ) -> np.ndarray:
        """Draw ``len(out)`` of the cells ``src_idx`` and move them to ``target`` into ``out``.

        ``codes``: condition code of every registered cell; ``label_rows``: sparse label
        vector of each code; ``gather``: the registered matrix; returns the drawn rows.
        """
        picks = draw_sources(src_idx, len(out), rng)
        target_t = torch.as_tensor(target, dtype=torch.float32, device=self.device)
        picked = codes[picks]
        self.module.eval()
        # each distinct source is encoded once (a source is drawn many times when more cells
        # are predicted than there are sources); the encoder is deterministic
        uniq, where = np.unique(picks, return_inverse=True)
        encoded = self._map(lambda x, _: self.module.encode(x), gather, uniq, batch_size)
        encoded = torch.from_numpy(encoded).to(self.device)
        where = torch.from_numpy(where.ravel()).to(self.device)

        noise = BlockNoise(self.module, len(picks), encoded, gen)

        def fn(x, start):
            lab = label_batch(label_rows, picked[start : start + len(x)], self.device)
            z = encoded[where[start : start + len(x)]]
            return self.module.move(x, lab, target_t, encoded=z, noise=noise.take(start, len(x)))

        self._map(fn, gather, picks, batch_size, out=out)  # _map runs in inference mode
        return picks
