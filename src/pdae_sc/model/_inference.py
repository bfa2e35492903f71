"""Queries and prediction of the PDAE model class (a mixin of :class:`pdae_sc.model.PDAE`).

The methods check their arguments and hand over to the prediction path,
:mod:`pdae_sc.model._predict`; what the model registered comes from ``self.registration``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from pdae_sc.data._validation import check_indices, check_seed

from ._mudata import is_subset_copy
from ._new_cells import predict_new_cells
from ._noise import resolve_seed
from ._predict import (
    counterfactual,
    latents,
    source_cells,
)
from ._registered_prediction import predict_registered
from ._request import applicable_method, check_n_cells, check_output, prediction_method
from ._warnings import warn_outside_span

__all__ = ["InferenceMixin"]


class InferenceMixin:
    """Latents, shifts, the extrapolation check and prediction of :class:`~pdae_sc.model.PDAE`.

    Uses the model's ``registration``, ``module``, ``device`` and the checks of
    :class:`~pdae_sc.model._registration_mixin.RegistrationMixin`.
    """

    #: Largest predicted expression matrix (bytes) :meth:`predict` builds at once (2 GiB);
    #: larger requests raise ``ValueError`` with the estimate. Raise it for a machine with
    #: more memory, e.g. ``PDAE.max_prediction_bytes = 16 * 2**30``.
    max_prediction_bytes: int = 2 * 2**30

    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        *,
        basal: bool = False,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Latent ``g(x)`` of each cell, or its basal latent ``g(x) - W l`` with ``basal=True``.

        Parameters
        ----------
        adata
            AnnData with the training genes (default: the registered one). It needs the
            perturbation column (and doses) only with ``basal=True``; new data without labels
            are read from the layer registered in :meth:`setup_anndata`.
        indices
            Rows of ``adata`` to encode (integer positions); default every cell.
        basal
            Subtract each cell's own perturbation shift.
        batch_size
            Cells per forward pass (default: 4,096 on a GPU; on the CPU fewer for many
            genes, 2,048 at 2,000 genes, so that a batch stays within 16 MB).

        Returns
        -------
        Array of shape ``(n_cells, n_latent)`` (``len(indices)`` rows with ``indices``).

        Examples
        --------
        >>> import pdae_sc as pdae
        >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=20, seed=0)
        >>> train = adata[adata.obs["perturbation"] != "P0+P1"].copy()  # hold out a double
        >>> pdae.model.PDAE.setup_anndata(train, "perturbation", control_group="ctrl")
        >>> model = pdae.model.PDAE(train, n_latent=8)
        >>> model.train(max_epochs=1, enable_progress_bar=False)
        >>> model.get_latent_representation().shape
        (200, 8)
        >>> train.obsm["X_pdae_basal"] = model.get_latent_representation(basal=True)

        New cells (here without labels) are encoded by the trained encoder:

        >>> new = adata[adata.obs["perturbation"] == "P0+P1"].copy()
        >>> del new.obs["perturbation"]
        >>> model.get_latent_representation(new, indices=[0, 1, 2]).shape
        (3, 8)
        """
        self._check_trained()
        batch_size = self._batch_size(batch_size)
        adata, matrix = self._query_data(adata, labels=basal)
        idx = check_indices(indices, adata.n_obs)
        cells = self._cells_of(adata) if basal else None
        return latents(self.module, self.device, matrix, idx, batch_size, cells)

    def get_perturbation_embedding(self) -> pd.DataFrame:
        """Latent shift of each elementary perturbation (columns of ``W``).

        Returns
        -------
        DataFrame, perturbations × latent dimensions (``latent_0`` ...). The shift of a
        combination is the sum of its rows (times doses).

        Examples
        --------
        >>> import pdae_sc as pdae
        >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=20, seed=0)
        >>> train = adata[adata.obs["perturbation"] != "P0+P1"].copy()  # hold out a double
        >>> pdae.model.PDAE.setup_anndata(train, "perturbation", control_group="ctrl")
        >>> model = pdae.model.PDAE(train, n_latent=8)
        >>> model.train(max_epochs=1, enable_progress_bar=False)
        >>> emb = model.get_perturbation_embedding()
        >>> emb.shape
        (4, 8)
        >>> shift_p0_p1 = emb.loc["P0"] + emb.loc["P1"]  # the shift the model adds for "P0+P1"
        """
        self._check_trained()
        w = self.module.shift_matrix.detach().cpu().numpy().T
        return pd.DataFrame(
            w,
            index=pd.Index(self.perturbations, name="perturbation"),
            columns=[f"latent_{i}" for i in range(w.shape[1])],
        )

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
        return self.registration.targets(perturbations, dosages).labels

    def check_extrapolation(
        self,
        perturbations: Sequence[str],
        *,
        dosages: Sequence[object] | None = None,
        context: str | None = None,
    ) -> pd.DataFrame:
        """Tell whether predictions for these targets can be trusted.

        A target is covered by the PDAE guarantee when its label vector lies in the linear
        span of the training labels (``in_span``); inside the span it is ``in_range`` when
        every dose stays within the training range (interpolation) and out of range otherwise
        (extrapolation, less accurate). Unknown perturbation names raise ``KeyError``.

        With contexts (``context_keys``), the shift is shared by all contexts, so the span is
        that of the labels of every context: a perturbation measured in one cell line can be
        predicted in another, from that cell line's cells. ``context`` adds whether the target
        was measured in that context; if it was measured only elsewhere its status is
        ``"seen in another context"``.

        Parameters
        ----------
        perturbations
            Target conditions, e.g. ``["A+B", "C"]``.
        dosages
            Optional doses per target.
        context
            Target context: a value of the context column as in ``obs`` (e.g. ``"K562"``,
            or ``1`` for an integer column); with several ``context_keys`` a tuple of values,
            one per key, or their names joined by ``" | "``.

        Returns
        -------
        DataFrame indexed by target with ``in_span``, ``span_distance``, ``in_range``,
        ``seen``, ``rank_train`` and ``status`` (see
        :func:`pdae_sc.tl.extrapolation_table`). With ``context`` also ``context``,
        ``seen_in_context`` (the target condition was measured in this context),
        ``n_cells_in_context`` (its cells there, 0 if none) and ``n_source_cells`` (training
        cells of the context, the default sources of :meth:`predict`).

        Examples
        --------
        >>> import pdae_sc as pdae
        >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=20, seed=0)
        >>> train = adata[adata.obs["perturbation"] != "P0+P1"].copy()  # hold out a double
        >>> pdae.model.PDAE.setup_anndata(train, "perturbation", control_group="ctrl")
        >>> model = pdae.model.PDAE(train, n_latent=8)
        >>> model.train(max_epochs=1, enable_progress_bar=False)
        >>> table = model.check_extrapolation(["P0+P1", "P2+P3"])
        >>> table[["in_span", "in_range", "seen", "status"]]
                in_span  in_range   seen             status
        target
        P0+P1      True      True  False  in span, in range
        P2+P3      True      True   True   seen in training
        >>> model.check_extrapolation(["P0"], dosages=[3.0])["status"].tolist()
        ['in span, out of range']
        """
        return self.registration.targets(perturbations, dosages, context).table

    def predict(
        self,
        perturbations: Sequence[str],
        *,
        adata: AnnData | None = None,
        dosages: Sequence[object] | None = None,
        n_cells: int | None = None,
        source: str | None = None,
        context: str | tuple | None = None,
        seed: int | None = None,
        batch_size: int | None = None,
        scale: Literal["log1p", "counts"] = "log1p",
        sparse: bool | None = False,
        method: str = "auto",
    ) -> AnnData:
        """Sample cells under each target condition, e.g. an unseen combination ``"A+B"``.

        Source cells are encoded, their own shift is subtracted, the target's shift is added
        and the result is decoded with fresh noise; for more cells than sources, sources are
        decoded again with new noise.

        Parameters
        ----------
        perturbations
            Target conditions (any combination of known perturbations).
        adata
            New cells to move instead of the registered ones, without retraining, e.g. the
            control cells of a cell line or donor the model never saw (covered when it differs
            from the training contexts only in its basal state). Genes are matched by name
            (reordered, unknown ones left out, a missing one raises ``ValueError``). Unlabelled
            cells are controls; with the perturbation column, ``source`` picks among them
            (default: their control cells). A baseline ``method`` adds its mean shift, fitted
            on the registered cells, to them (not ``"pooled"``). ``"auto"``: each target's
            measured shift, else the network or a baseline, whichever was clearly closer on
            the held-out conditions, else its singles' sum (``new_cells_shift`` says which).
            Its control cells are checked against the registered contexts' range
            (``uns["pdae"]["basal_range"]``). ``adata`` is not modified.
        dosages
            Optional doses, a list with one per target (same forms as in
            :meth:`setup_anndata`; ``None`` for dose 1). A target whose doses are all 0 is the
            control and is labelled as the control (with a warning); a token at dose 0 is
            dropped from the label.
        n_cells
            Cells per target (default: the number of source cells). The predicted matrix
            must fit in :attr:`max_prediction_bytes` (2 GiB by default); a larger request
            raises ``ValueError`` with the estimate: predict in chunks instead.
        source
            The cells that are moved: ``"all"`` (every registered cell of the context), the
            control label, or a training condition. ``None`` (default): the source set that
            :meth:`check_fit` found closer to the model's own training conditions after
            training, :attr:`default_source_` (``"all"`` or the control label; ``"all"``
            for a model trained with ``check_fit=False``), with every cell of the context
            when the control has none there. If a perturbation is called ``"all"``,
            ``"all"`` is that condition.
        context
            Take the sources from one context (see ``context_keys``) and predict there; the
            target may have been measured only in other contexts (the shift is shared).
            A value of the context column as seen in ``obs`` (``1`` for an integer column),
            or a tuple of values with several ``context_keys``. Default: sources from all
            contexts.
        seed
            Seed of the source draw and the decoder noise; the same seed gives the same cells,
            whatever ``batch_size`` or device (the noise is drawn in fixed blocks of cells whose
            size depends only on the gene count).
            ``None``: drawn from torch's global generator, which ``scvi.settings.seed``
            seeds (a script that sets it predicts the same cells on every run).
        batch_size
            Cells per forward pass; sources are read and decoded in chunks of this size, so
            backed or sparse data are never densified as a whole (default: 4,096 on a GPU;
            on the CPU fewer for many genes, 2,048 at 2,000 genes, so that a batch stays
            within 16 MB).
        scale
            ``"log1p"``: the registered (log-normalised) expression in ``X``. ``"counts"``:
            also ``layers["counts"]``, each predicted cell put back on the count scale of its
            source cell (size factor ``s = total / target_sum``, i.e. ``sum(counts) /
            sum(expm1(x))`` of the source cell over the registered genes), with mean
            ``expm1(x) * s``. The source cell's own sampling noise is not scaled with the
            move: its count of each gene is replaced by a draw of the rate behind it (given
            the count, under a negative binomial of the gene fitted to the source cells of its
            condition), the move applied to that rate, and the count drawn from a Poisson
            around it (``seed`` sets the draws). Counts the move leaves as they were stay the
            measured ones. Needs ``counts_layer`` in :meth:`setup_anndata`.
        sparse
            Return ``X`` as a CSR matrix (``True``), dense (``False``), or as the registered
            matrix is (``None``: CSR for sparse input). The residual decoders keep the zeros
            of count data, so CSR saves memory there; the prediction is computed dense first.
        method
            ``"auto"`` (default): the method chosen on the measured conditions held out of training
            (a baseline only when clearly closer), :attr:`prediction_method_` (``"pdae"`` when none
            were held out, see ``train(held_out_conditions=...)``); a target with a
            perturbation never measured goes to the linear model with embeddings, its weights
            applied to the responses measured in ``context``
            (``tl.predict_baseline(placed_effects="context")``; the extrapolation table's
            ``predicted_by`` says so). ``"pdae"``: the model's own
            cells. A simple baseline (``"linear"``, ``"additive"``, ``"mean_response"``,
            ``"pooled"``, ``"control"``): :func:`pdae_sc.tl.predict_baseline` on the registered
            cells (every condition, in ``context`` if given), in the same format, with
            ``uns["pdae"]["method"]`` naming it. A baseline's cells are control (or pooled) cells,
            shifted; ``source`` does not apply to them.

        Returns
        -------
        AnnData of predicted cells with the training genes and their ``var`` (gene symbols,
        ``highly_variable``, ...): ``X`` (float32, dense unless ``sparse``),
        ``obs[perturbation_key]`` (the target, named as the training condition with that
        label vector if there is one, e.g. ``"P1+P0"`` as ``"P0+P1"``; categorical),
        ``obs[dosage_key]`` (if doses are registered), ``obs["pdae_source"]`` (condition of
        the source cell, categorical), ``obs["pdae_source_cell"]`` (its obs name), the
        context columns; the cells are named ``"{target}_{seed}_{i}"``, so predictions of
        several calls (with different seeds) can be joined with :func:`anndata.concat`;
        and ``uns["pdae"]`` with ``method="pdae"`` and
        ``extrapolation`` (the :meth:`check_extrapolation` table, for ``context`` if given;
        with ``adata`` for its context, ``new_cells=True`` and ``basal_range``: per
        ``context`` of the new control cells (``n_control_cells``), their mean's
        ``distance`` to the hull of the registered control means, its ``noise``, ``ratio``,
        ``dof``, ``p_value``, ``relative_distance``, whether ``outside`` and ``nearest``).
        With ``scale="counts"`` also ``layers["counts"]`` (CSR, float32 integers) and
        ``obs["pdae_size_factor"]``. Warns with :class:`ExtrapolationWarning` for targets
        outside the span of the training labels, for targets whose doses lie outside
        the range seen in training, and for new cells whose control cells lie outside the
        registered contexts' range (``outside``: ``p_value`` below 1e-4 and
        ``relative_distance`` at least 0.25).

        Examples
        --------
        >>> import pdae_sc as pdae
        >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=20, seed=0)
        >>> train = adata[adata.obs["perturbation"] != "P0+P1"].copy()  # hold out a double
        >>> pdae.model.PDAE.setup_anndata(train, "perturbation", control_group="ctrl")
        >>> model = pdae.model.PDAE(train, n_latent=8)
        >>> model.train(max_epochs=1, enable_progress_bar=False)
        >>> pred = model.predict(["P0+P1"], n_cells=100, seed=0)
        >>> pred
        AnnData object with n_obs × n_vars = 100 × 100
            obs: 'perturbation', 'pdae_source', 'pdae_source_cell'
            uns: 'pdae'
        >>> pred.uns["pdae"]["extrapolation"]["status"].tolist()
        ['in span, in range']

        Score the prediction against the measured cells, next to a baseline:

        >>> additive = pdae.tl.predict_baseline(train, ["P0+P1"], method="additive", seed=0)
        >>> scores = pdae.tl.evaluate(pred, adata, adata_control=train)
        >>> scores_additive = pdae.tl.evaluate(additive, adata, adata_control=train)

        Cells the model never saw (here unlabelled cells with their genes in another order):

        >>> new = adata[adata.obs["perturbation"] == "ctrl", adata.var_names[::-1]].copy()
        >>> del new.obs["perturbation"]
        >>> pred_new = model.predict(["P0+P1"], adata=new, seed=0)
        >>> pred_new.n_obs, pred_new.uns["pdae"]["new_cells"]
        (20, True)
        """
        self._check_trained()
        method, chosen = prediction_method(method, getattr(self, "prediction_method_", None))
        n_cells = check_n_cells(n_cells)
        batch_size = self._batch_size(batch_size)
        seed = resolve_seed(check_seed(seed))
        check_output(sparse, scale, self.registration.counts_layer)
        registration = self.registration
        if adata is not None and context is not None:
            raise ValueError(
                f"context={context!r} picks registered cells; with adata= the new cells are "
                "the sources and their context is read from adata.obs. Pass one or the other."
            )
        targets = registration.targets(perturbations, dosages, context, warn_zero_doses=True)
        if adata is not None:
            return predict_new_cells(
                self,
                adata,
                targets,
                method=method,
                chosen=chosen,
                source=source,
                n_cells=n_cells,
                seed=seed,
                batch_size=batch_size,
                scale=scale,
                sparse=sparse,
            )
        warn_outside_span(targets.table)
        cells = registration.cells  # checked and read once per call
        default_source = getattr(self, "default_source_", None)
        src_idx = source_cells(registration, cells, source, targets.context, default_source)
        if chosen:
            method = applicable_method(cells, method, targets.context)
        return predict_registered(
            self,
            registration,
            cells,
            targets,
            src_idx,
            method=method,
            chosen=chosen,
            n_cells=n_cells,
            seed=seed,
            batch_size=batch_size,
            scale=scale,
            sparse=sparse,
        )

    def get_counterfactual(
        self,
        adata: AnnData | None = None,
        *,
        perturbation: str,
        dosage: object | None = None,
        layer_added: str | None = None,
        seed: int | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Each cell's predicted expression under ``perturbation``, like scvi-tools' queries.

        Parameters
        ----------
        adata
            AnnData with the training genes and their labels (default: the registered one).
        perturbation
            Target condition, e.g. ``"A+B"`` or the control label.
        dosage
            Optional dose(s) of the target.
        layer_added
            Also write the result to ``adata.layers[layer_added]``; ``None`` (the default)
            writes nothing. A model set up with :meth:`setup_mudata` on part of the cells
            holds a copy of those cells, so with ``adata=None`` a name raises ``ValueError``
            (the layer would not show in the MuData).
        seed
            Seed of the decoder noise (``None``: follows ``scvi.settings.seed``, as in
            :meth:`predict`).
        batch_size
            Cells per forward pass (default as in :meth:`predict`).

        Returns
        -------
        Array of shape ``(n_cells, n_genes)`` (float32). With ``layer_added`` the same values
        are written to ``adata.layers[layer_added]``; nothing else is changed.

        Examples
        --------
        >>> import pdae_sc as pdae
        >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=20, seed=0)
        >>> train = adata[adata.obs["perturbation"] != "P0+P1"].copy()  # hold out a double
        >>> pdae.model.PDAE.setup_anndata(train, "perturbation", control_group="ctrl")
        >>> model = pdae.model.PDAE(train, n_latent=8)
        >>> model.train(max_epochs=1, enable_progress_bar=False)
        >>> x = model.get_counterfactual(perturbation="ctrl", layer_added=None, seed=0)
        >>> x.shape
        (200, 100)
        >>> _ = model.get_counterfactual(perturbation="ctrl", layer_added="unperturbed", seed=0)
        >>> train.layers["unperturbed"].shape
        (200, 100)
        """
        self._check_trained()
        batch_size = self._batch_size(batch_size)
        seed = resolve_seed(check_seed(seed))
        hidden_copy = adata is None and is_subset_copy(self.adata)
        if layer_added is not None and not isinstance(layer_added, str):
            raise TypeError(f"layer_added={layer_added!r}; use a layer name (str) or None.")
        elif layer_added is not None and hidden_copy:
            raise ValueError(
                f"layer_added={layer_added!r}: the model was set up with setup_mudata on the "
                "labelled cells only and holds a copy of them, so the layer would not appear "
                "in the MuData. Use the returned array (layer_added=None; its rows are the "
                "cells model.adata.obs_names), or pass adata=model.adata to write into the "
                "copy deliberately."
            )
        adata = self._validate(adata)
        dosages = None if dosage is None else [dosage]
        targets = self.registration.targets([perturbation], dosages)
        warn_outside_span(targets.table)
        cells = self._cells_of(adata)
        matrix = self._matrix(adata)
        out = counterfactual(
            self.module, self.device, matrix, cells, targets.labels[0], seed, batch_size
        )
        if layer_added is not None:
            adata.layers[layer_added] = out
        return out
