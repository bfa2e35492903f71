"""The user-facing PDAE model: AnnData registration, training, prediction, persistence."""

from __future__ import annotations

import math
import numbers
import os
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from lightning.pytorch import Callback
from mudata import MuData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import LayerField
from scvi.model.base import BaseModelClass

from pdae_sc.data._fields import PERTURBATION_REGISTRY_KEY, PerturbationField, context_codes
from pdae_sc.data._labels import EncodedConditions, label_vector, parse_condition
from pdae_sc.data._mudata import mudata_training_data
from pdae_sc.data._sampler import PerturbationDataSplitter, RowGatherer
from pdae_sc.data._validation import (
    check_matrix,
    check_unique_names,
    check_var_names_match,
    get_matrix,
)
from pdae_sc.module import PDAEModule
from pdae_sc.module._networks import OutputActivation
from pdae_sc.tl._extrapolation import extrapolation_table

from ._mudata import record_mudata_setup, registered_adata
from ._persistence import atomic_save, quiet_local_load, read_var_names
from ._prediction import (
    ExtrapolationWarning,
    counts_matrix,
    draw_sources,
    make_generator,
    prediction_adata,
    source_size_factors,
    warn_outside_span,
)
from ._trainer import GracefulInterrupt, PDAETrainRunner
from ._training_plan import PDAETrainingPlan

__all__ = ["PDAE", "ExtrapolationWarning"]


class PDAE(BaseModelClass):
    """Perturbation distribution autoencoder (von Kügelgen et al., arXiv:2504.18522).

    Learns an encoder ``g``, a perturbation shift matrix ``W`` and a stochastic decoder
    ``f`` such that a cell of label ``l`` moved to label ``u`` is
    ``f(g(x) - W l + W u, noise)``, and predicts the distribution of cells under unseen
    combinations (or doses) of the perturbations seen in training.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`, or a MuData set up with
        :meth:`setup_mudata` (the model then uses the AnnData that registered).
    n_latent
        Latent width.
    n_hidden
        Encoder hidden widths (the decoder mirrors them).
    n_noise
        Width of the decoder's noise input.
    noise_scale
        Standard deviation of the decoder's noise input.
    output_noise
        Learn per-gene output noise scales in the decoder.
    output_activation
        ``"auto"`` (``"relu"`` if the registered data are non-negative, else ``"none"``),
        ``"none"``, ``"softplus"`` or ``"relu"``.
    estimator
        ``"grouped"``: the per-condition energy score, balanced across conditions (default);
        ``"all_pairs"``: the authors' all-pairs estimator.
    **module_kwargs
        Loss weights and options of :class:`~pdae_sc.module.PDAEModule` (``beta``,
        ``energy_weight``, ``reconstruction_weight``, ``prior_weight``, ``sparsity_weight``,
        ``detach_encoder``).

    Examples
    --------
    >>> import pdae_sc as pdae
    >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=20, seed=0)
    >>> pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    >>> model = pdae.model.PDAE(adata, n_latent=8)
    >>> model.train(max_epochs=1, enable_progress_bar=False)
    >>> pred = model.predict(["P0+P1"], n_cells=50, seed=0)
    >>> pred.shape
    (50, 100)
    """

    _module_cls = PDAEModule
    _data_splitter_cls = PerturbationDataSplitter
    _training_plan_cls = PDAETrainingPlan
    _train_runner_cls = PDAETrainRunner

    def __init__(
        self,
        adata: AnnData | MuData | None = None,
        *,
        n_latent: int = 32,
        n_hidden: Sequence[int] = (256, 256),
        n_noise: int = 32,
        noise_scale: float = 1.0,
        output_noise: bool = True,
        output_activation: Literal["auto"] | OutputActivation = "auto",
        estimator: Literal["grouped", "all_pairs"] = "grouped",
        **module_kwargs,
    ):
        if isinstance(adata, MuData):  # the AnnData that setup_mudata registered
            adata = registered_adata(type(self), adata)
        super().__init__(adata)
        if output_activation in ("auto", "relu", "softplus"):
            # the range recorded by setup_anndata; scan only for registries without it
            recorded = self._state.get("matrix_stats")
            data_min = (
                recorded["min"]
                if recorded is not None
                else check_matrix(self._matrix(self.adata), warn=False).min
            )
        if output_activation == "auto":
            output_activation = "relu" if data_min >= 0 else "none"
        elif output_activation in ("relu", "softplus"):
            if data_min < 0:
                raise ValueError(
                    f"output_activation={output_activation!r} can only produce non-negative "
                    f"values, but the registered data have minimum {data_min:g}; use "
                    "output_activation='none' (or 'auto')."
                )
        n_hidden = tuple(int(h) for h in n_hidden)
        self.module = self._module_cls(
            n_input=self.summary_stats.n_vars,
            n_perturbations=self.summary_stats.n_perturbations,
            n_latent=n_latent,
            n_hidden=n_hidden,
            n_noise=n_noise,
            noise_scale=noise_scale,
            output_noise=output_noise,
            output_activation=output_activation,
            estimator=estimator,
            **module_kwargs,
        )
        self._model_summary_string = (
            f"PDAE: {self.summary_stats.n_perturbations} perturbations, "
            f"{self.summary_stats.n_conditions} training conditions, n_latent={n_latent}, "
            f"n_noise={n_noise}, estimator={estimator!r}"
        )
        self.init_params_ = self._get_init_params(locals())

    # ------------------------------------------------------------------ registration
    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        perturbation_key: str,
        *,
        control_group: str,
        delimiter: str = "+",
        dosage_key: str | None = None,
        layer: str | None = None,
        context_keys: Sequence[str] | None = None,
        min_cells_per_condition: int = 2,
        counts_layer: str | None = None,
        **kwargs,
    ) -> None:
        """Register perturbation labels (and doses, contexts) of ``adata`` for the PDAE.

        Each condition of ``adata.obs[perturbation_key]`` is parsed into elementary
        perturbations joined by ``delimiter`` (``"A+B"``); tokens equal to ``control_group``
        are dropped (``"A+ctrl"`` is ``A``). The elementary perturbations span the label
        vector, the control is the zero vector, and any combination of known perturbations
        can later be predicted.

        Parameters
        ----------
        adata
            Cells × genes, log-normalised expression in ``X`` or in ``layer``.
        perturbation_key
            Column of ``adata.obs`` with the condition of each cell.
        control_group
            Label of the unperturbed cells.
        delimiter
            Separator of combined perturbations.
        dosage_key
            Optional column of doses: one number per cell, or delimited like the labels
            (``"1.0+0.5"``). Default dose 1.
        layer
            Layer with the expression (default ``adata.X``).
        context_keys
            Columns (e.g. cell line) defining contexts: the shift is shared across contexts,
            and the source cells of a prediction come from the target's context.
        min_cells_per_condition
            Conditions with fewer cells raise an error.
        counts_layer
            Optional layer with the raw counts behind the log-normalised expression (as kept
            by :func:`pdae_sc.data.normalize_counts`); lets :meth:`predict` return counts
            (``scale="counts"``).
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`.

        Returns
        -------
        ``None``. ``adata.X`` and ``adata.obs`` are not changed; scvi-tools records the
        registration in ``adata.uns["_scvi_uuid"]`` and ``adata.uns["_scvi_manager_uuid"]``.

        Notes
        -----
        ``adata`` may be sparse (CSR) or backed (``anndata.read_h5ad(path, backed="r")``):
        setup scans the matrix in chunks (about four million values at a time), and training
        and prediction read only the rows of each minibatch, so the matrix is never
        densified or copied as a whole.

        Examples
        --------
        >>> import pdae_sc as pdae
        >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=20, seed=0)
        >>> adata.obs["perturbation"].unique()[:4].tolist()
        ['ctrl', 'P0', 'P1', 'P2']
        >>> pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
        >>> model = pdae.model.PDAE(adata)
        >>> model.perturbations
        ['P0', 'P1', 'P2', 'P3']
        """
        if not isinstance(adata, AnnData):
            raise TypeError(
                f"adata must be an AnnData, got {type(adata).__name__}; for a MuData use "
                f"{cls.__name__}.setup_mudata(mdata, rna='rna', ...)."
            )
        if not isinstance(perturbation_key, str):
            raise TypeError(f"perturbation_key={perturbation_key!r} must be a column name (str).")
        if not isinstance(control_group, str):
            raise TypeError(f"control_group={control_group!r} must be a string label.")
        if isinstance(context_keys, str):
            context_keys = [context_keys]
        check_unique_names(adata)
        setup_method_args = cls._get_setup_method_args(**locals())
        stats = check_matrix(
            get_matrix(adata, layer),
            name="adata.X" if layer is None else f"adata.layers[{layer!r}]",
        )
        if counts_layer is not None:
            if counts_layer not in adata.layers:
                raise KeyError(
                    f"counts_layer={counts_layer!r} is not in adata.layers; available: "
                    f"{list(adata.layers)}. pdae.data.normalize_counts(adata) keeps the counts "
                    "in adata.layers['counts']."
                )
            counts_stats = check_matrix(
                get_matrix(adata, counts_layer), name=f"adata.layers[{counts_layer!r}]", warn=False
            )
            if counts_stats.min < 0:
                raise ValueError(
                    f"counts_layer={counts_layer!r} has negative values (minimum "
                    f"{counts_stats.min:g}); it must hold the raw counts."
                )
        fields = [
            # correct_data_format=False: scvi-tools would rewrite a non-contiguous X in place
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False, correct_data_format=False),
            PerturbationField(
                perturbation_key,
                control_group=control_group,
                delimiter=delimiter,
                dosage_key=dosage_key,
                context_keys=context_keys,
                min_cells_per_condition=min_cells_per_condition,
                counts_layer=counts_layer,
                matrix_stats=stats,
            ),
        ]
        adata_manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    @classmethod
    def setup_mudata(
        cls,
        mdata: MuData,
        *,
        rna: str = "rna",
        perturbation_key: str | None = None,
        guide_modality: str | None = None,
        control_group: str = "ctrl",
        key_added: str = "perturbation",
        min_counts: float = 5,
        min_fraction: float | None = None,
        max_perturbations: int | None = 2,
        guide_kwargs: dict | None = None,
        delimiter: str = "+",
        dosage_key: str | None = None,
        layer: str | None = None,
        counts_layer: str | None = None,
        context_keys: Sequence[str] | None = None,
        min_cells_per_condition: int = 2,
    ) -> AnnData:
        """Register a MuData (e.g. from ``muon.read_h5mu``): expression of one modality, labels.

        The labels come from either

        - ``perturbation_key``: a column of ``mdata[rna].obs`` (or of ``mdata.obs``, then
          copied into ``mdata[rna].obs``), written like the labels of :meth:`setup_anndata`;
        - ``guide_modality``: a modality of guide-capture UMI counts (cells × guides). The
          guides of each cell are called by :func:`pdae_sc.data.assign_guides`: a guide counts
          when it has at least ``min_counts`` UMIs (and ``min_fraction`` of the cell's guide
          UMIs, if given); a cell is labelled with the set of genes its guides target, joined
          by ``"+"`` (several guides make a combination), ``control_group`` if it has only
          non-targeting guides, ``"unassigned"`` if none passes, ``"multiplet"`` if it targets
          more than ``max_perturbations`` genes. The labels are written to
          ``mdata[rna].obs[key_added]`` and ``mdata[rna].obs[f"{key_added}_assigned"]``.

        Cells with a missing, ``"unassigned"`` or ``"multiplet"`` label are left out of
        training (their number is logged at INFO level) but stay in ``mdata``. The model is
        registered on ``mdata[rna]`` itself when every cell has a label, else on an
        in-memory copy of the labelled cells; this AnnData is returned and ``PDAE(mdata)``
        uses it.

        Parameters
        ----------
        mdata
            MuData with an expression modality (log-normalised, see
            :func:`pdae_sc.data.normalize_counts`) and, optionally, a guide modality.
        rna
            Expression modality.
        perturbation_key
            Column with the labels; give this or ``guide_modality``.
        guide_modality
            Modality with guide UMI counts; give this or ``perturbation_key``.
        control_group
            Label of the unperturbed cells.
        key_added
            Column written with the guide-derived labels (``guide_modality`` only).
        min_counts, min_fraction, max_perturbations
            Guide assignment rule (see above and :func:`pdae_sc.data.assign_guides`).
        guide_kwargs
            More arguments of :func:`pdae_sc.data.assign_guides`, e.g.
            ``{"guide_to_perturbation": {...}, "control_guides": [...]}``.
        delimiter, dosage_key, layer, counts_layer, context_keys, min_cells_per_condition
            As in :meth:`setup_anndata`, for ``mdata[rna]``.

        Returns
        -------
        The registered AnnData (``mdata[rna]`` or the copy of its labelled cells). Writes
        ``mdata.uns["pdae_setup"]`` (modality, label column, id of the registered AnnData)
        and, with ``guide_modality``, the two label columns above; scvi-tools records the
        registration in the ``uns`` of the registered AnnData. ``X`` is not changed.

        Examples
        --------
        A screen read with ``muon.read_h5mu("screen.h5mu")`` has an expression modality and
        a guide modality; here both are simulated, with 8 UMIs of each guide a cell carries:

        >>> import anndata as ad, mudata as md, numpy as np, pandas as pd
        >>> import pdae_sc as pdae
        >>> rna = pdae.data.simulate(n_perturbations=3, n_cells_per_condition=20, seed=0)
        >>> truth = rna.obs.pop("perturbation").astype(str)
        >>> guides = ["P0_g1", "P1_g1", "P2_g1", "non-targeting_1"]
        >>> umis = [[8 * (g.split("_")[0] in t.split("+")) for g in guides] for t in truth]
        >>> umis = np.array(umis)
        >>> umis[:, 3] = 8 * (truth == "ctrl")
        >>> gdo = ad.AnnData(umis, obs=rna.obs[[]], var=pd.DataFrame(index=guides))
        >>> mdata = md.MuData({"rna": rna, "gdo": gdo})
        >>> adata = pdae.model.PDAE.setup_mudata(mdata, guide_modality="gdo", min_counts=5)
        >>> bool((mdata["rna"].obs["perturbation"] == truth).all())
        True
        >>> model = pdae.model.PDAE(mdata)
        >>> model.perturbations
        ['P0', 'P1', 'P2']
        """
        kwargs = {"min_counts": min_counts, "min_fraction": min_fraction}
        kwargs.update(max_perturbations=max_perturbations, **(guide_kwargs or {}))
        if isinstance(context_keys, str):
            context_keys = [context_keys]
        adata, perturbation_key = mudata_training_data(
            mdata,
            rna=rna,
            perturbation_key=perturbation_key,
            guide_modality=guide_modality,
            key_added=key_added,
            control_group=control_group,
            dosage_key=dosage_key,
            context_keys=list(context_keys or []),
            guide_kwargs=kwargs if guide_modality is not None else guide_kwargs,
        )
        cls.setup_anndata(
            adata,
            perturbation_key,
            control_group=control_group,
            delimiter=delimiter,
            dosage_key=dosage_key,
            layer=layer,
            context_keys=context_keys,
            min_cells_per_condition=min_cells_per_condition,
            counts_layer=counts_layer,
        )
        record_mudata_setup(mdata, adata, rna=rna, perturbation_key=perturbation_key)
        return adata

    # ------------------------------------------------------------------ helpers
    @property
    def _state(self):
        return self.adata_manager.get_state_registry(PERTURBATION_REGISTRY_KEY)

    @property
    def perturbations(self) -> list[str]:
        """The elementary perturbations the model knows (columns of ``W``)."""
        return list(self._state["vocabulary"])

    def _field(self, adata: AnnData) -> PerturbationField:
        return self.get_anndata_manager(adata, required=True).fields[1]

    def _matrix(self, adata: AnnData):
        return self.get_anndata_manager(adata, required=True).get_from_registry(
            REGISTRY_KEYS.X_KEY
        )

    def _encode(self, adata: AnnData) -> tuple[EncodedConditions, np.ndarray, list[str]]:
        field = self._field(adata)
        enc = field.encode(adata, vocabulary=self._state["vocabulary"])
        ctx_codes, ctx_names = context_codes(adata.obs, self._state["context_keys"])
        return enc, ctx_codes, ctx_names

    def _validate(self, adata: AnnData | None) -> AnnData:
        if adata is None:
            return self._validate_anndata(self.adata)
        if not isinstance(adata, AnnData):
            raise TypeError(f"adata must be an AnnData, got {type(adata).__name__}.")
        x_state = self.registry_["field_registries"][REGISTRY_KEYS.X_KEY]["state_registry"]
        check_var_names_match(x_state["column_names"], adata)
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
        perturbations = list(perturbations)
        if not perturbations:
            raise ValueError("perturbations is empty; name at least one target, e.g. ['A+B'].")
        if dosages is not None and len(dosages) != len(perturbations):
            raise ValueError(
                f"Got {len(dosages)} dosages for {len(perturbations)} perturbations; give one "
                "per target (None for dose 1)."
            )
        state = self._state
        rows = []
        for i, p in enumerate(perturbations):
            lab = parse_condition(
                p,
                control_group=state["control_group"],
                delimiter=state["delimiter"],
                dosage=None if dosages is None else dosages[i],
            )
            rows.append(label_vector(lab, state["vocabulary"]))
        return np.vstack(rows)

    # ------------------------------------------------------------------ training
    def train(
        self,
        max_epochs: int | None = None,
        *,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        lr: float = 1e-3,
        validation_size: float | None = None,
        early_stopping: bool = False,
        early_stopping_patience: int = 10,
        n_conditions_per_batch: int = 16,
        n_cells_per_condition: int = 16,
        n_sources: int = 128,
        batch_size: int = 128,
        enable_progress_bar: bool = True,
        plan_kwargs: dict | None = None,
        ckpt_path: str | os.PathLike | None = None,
        **trainer_kwargs,
    ) -> None:
        """Train the PDAE with Lightning, on the GPU when there is one.

        Each step of the default (grouped) estimator draws ``n_conditions_per_batch``
        conditions of one context, ``n_cells_per_condition`` observed cells of each and
        ``n_sources`` source cells; an epoch has about one draw per training cell.

        Faults: a non-finite loss or gradient skips that update, stops training and raises
        :class:`~pdae_sc.model.NonFiniteLossError`; the model keeps the weights of the last
        finite step and the history so far, and counts as trained if any update was made.
        Ctrl+C (in the main thread) stops training after the current step with a warning and
        leaves a usable model; a second Ctrl+C aborts at once.

        Resuming: pass Lightning checkpoint callbacks, e.g.
        ``callbacks=[ModelCheckpoint(dirpath="ckpt", save_last=True)]``, then continue on a
        model built the same way with ``model.train(max_epochs=N, ckpt_path="ckpt/last.ckpt")``:
        weights, optimiser state and the epoch counter are restored, and training runs from
        the saved epoch up to ``N`` (the minibatch draws differ from an uninterrupted run).

        Speed and scale: on a GPU the expression matrix is kept on the device when it takes
        less than half of its free memory (else minibatches are gathered on the host and
        copied from pinned memory). Mixed precision: ``precision="bf16-mixed"`` (or
        ``"16-mixed"``); the losses' distances stay in float32. ``plan_kwargs={"compile":
        True}`` runs the loss through :func:`torch.compile`. Several GPUs:
        ``strategy="ddp", devices=N`` (in a script, which Lightning launches once per device;
        save on one process only, ``if model.trainer.is_global_zero: model.save(...)``), or
        ``strategy="ddp_notebook"`` in Jupyter (``"ddp_spawn"`` in a script with an
        ``if __name__ == "__main__":`` guard). Each process draws its own conditions, an
        epoch is shared between the processes, and scvi-tools switches early stopping off.
        See ``benchmarks/results/speed.md`` for what each option buys.

        Parameters
        ----------
        max_epochs
            Number of epochs; default about 4,000 steps, between 20 and 400 epochs.
        accelerator, devices
            Lightning accelerator and devices (``"auto"`` picks a GPU when available).
        lr
            Adam learning rate.
        validation_size
            Fraction of each condition's cells held out to monitor ``validation_loss``
            (default 0.1 with early stopping, else 0).
        early_stopping
            Stop when ``validation_loss`` has not improved for ``early_stopping_patience``
            epochs.
        early_stopping_patience
            Epochs without improvement before stopping.
        n_conditions_per_batch, n_cells_per_condition, n_sources
            Grouped batch layout ``G``, ``n``, ``S``.
        batch_size
            Cells per step of the all-pairs estimator.
        enable_progress_bar
            Show a progress bar.
        plan_kwargs
            Extra arguments of :class:`~pdae_sc.model.PDAETrainingPlan` (e.g. ``weight_decay``).
        ckpt_path
            Lightning checkpoint (``.ckpt``) to resume from; ``max_epochs`` counts the epochs
            already done.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer` / Lightning's ``Trainer`` (e.g.
            ``callbacks``, ``precision``, ``strategy``, ``max_time``).

        Returns
        -------
        ``None``; fills ``model.history`` (per-epoch losses) and sets ``model.is_trained``.

        Examples
        --------
        >>> import pdae_sc as pdae
        >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=20, seed=0)
        >>> pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
        >>> model = pdae.model.PDAE(adata, n_latent=8)
        >>> model.train(max_epochs=2, lr=1e-3, enable_progress_bar=False)
        >>> model.is_trained_
        True
        >>> len(model.history["train_loss"])  # one row per epoch
        2

        With a validation split and early stopping (``validation_loss`` in the history):

        >>> model = pdae.model.PDAE(adata, n_latent=8)
        >>> model.train(
        ...     max_epochs=3, early_stopping=True, validation_size=0.2, enable_progress_bar=False
        ... )
        >>> "validation_loss" in model.history
        True
        """
        if max_epochs is not None and (
            not isinstance(max_epochs, int | np.integer)
            or isinstance(max_epochs, bool)
            or max_epochs < 1
        ):
            raise ValueError(f"max_epochs={max_epochs!r}; train for at least 1 epoch.")
        if not (isinstance(lr, numbers.Real) and lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr={lr!r}; the learning rate must be a positive number.")
        for name, value in [
            ("n_conditions_per_batch", n_conditions_per_batch),
            ("n_cells_per_condition", n_cells_per_condition),
            ("n_sources", n_sources),
            ("batch_size", batch_size),
        ]:
            if not isinstance(value, int | np.integer) or value < (
                2 if name == "n_sources" else 1
            ):
                raise ValueError(f"{name}={value!r}; use a positive integer (n_sources >= 2).")
        if validation_size is None:
            validation_size = 0.1 if early_stopping else 0.0
        enc, ctx_codes, _ = self._encode(self.adata)
        splitter = self._data_splitter_cls(
            self._matrix(self.adata),
            enc.codes,
            ctx_codes,
            enc.labels,
            estimator=self.module.estimator,
            validation_size=validation_size,
            n_conditions_per_batch=n_conditions_per_batch,
            n_cells_per_condition=n_cells_per_condition,
            n_sources=n_sources,
            batch_size=batch_size,
            seed=int(torch.randint(2**31 - 1, (1,)).item()),
        )
        steps = splitter._n_batches(splitter.n_train)
        if max_epochs is None:
            max_epochs = _epochs_for_steps(steps)
        if early_stopping and splitter.n_val == 0:
            raise ValueError(
                "early_stopping needs held-out cells: set validation_size > 0 (e.g. 0.1)."
            )
        plan = self._training_plan_cls(self.module, lr=lr, **(plan_kwargs or {}))
        if early_stopping:
            trainer_kwargs.update(
                early_stopping=True,
                early_stopping_monitor="validation_loss",
                early_stopping_patience=early_stopping_patience,
            )
        if splitter.n_val > 0:
            trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
        if ckpt_path is not None:
            if not os.path.isfile(ckpt_path):
                raise FileNotFoundError(
                    f"ckpt_path={str(ckpt_path)!r} is not a file; pass a .ckpt written by a "
                    "Lightning ModelCheckpoint callback (e.g. 'dirpath/last.ckpt')."
                )
            trainer_kwargs["ckpt_path"] = os.fspath(ckpt_path)
        interrupt = GracefulInterrupt()
        callbacks = trainer_kwargs.get("callbacks") or []
        if isinstance(callbacks, Callback):
            callbacks = [callbacks]
        trainer_kwargs["callbacks"] = [*callbacks, interrupt]
        was_trained = self.is_trained_
        runner = self._train_runner_cls(
            self,
            training_plan=plan,
            data_splitter=splitter,
            max_epochs=int(max_epochs),
            accelerator=accelerator,
            devices=devices,
            enable_progress_bar=enable_progress_bar,
            **trainer_kwargs,
        )
        try:
            with interrupt.installed(), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*`training_step` returned `None`")
                runner()
        except SystemExit as exc:  # Lightning exits on KeyboardInterrupt; undo that
            if not runner.trainer.interrupted:
                raise
            self._finish_training(was_trained, plan, splitter)
            raise KeyboardInterrupt(
                "Training was aborted; the model keeps the weights of the last step."
            ) from exc
        self._finish_training(was_trained, plan, splitter)
        if plan.nonfinite_error is not None:
            raise plan.nonfinite_error
        if interrupt.stopped_epoch is not None:
            warnings.warn(
                f"Training was interrupted during epoch {interrupt.stopped_epoch + 1} of "
                f"{int(max_epochs)}; the model keeps the weights of the last step and "
                "model.history the epochs run so far.",
                UserWarning,
                stacklevel=2,
            )

    def _finish_training(self, was_trained: bool, plan, splitter) -> None:
        """Leave a usable model after training ended, normally or after a fault."""
        self.train_indices, self.validation_indices = splitter.train_idx, splitter.val_idx
        self.module.eval()
        self.is_trained_ = bool(was_trained or plan.n_updates > 0)

    # ------------------------------------------------------------------ queries
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

    def get_latent_representation(
        self, adata: AnnData | None = None, *, basal: bool = False, batch_size: int = 4096
    ) -> np.ndarray:
        """Latent ``g(x)`` of each cell, or its basal latent ``g(x) - W l`` with ``basal=True``.

        Parameters
        ----------
        adata
            AnnData with the training genes (default: the registered one).
        basal
            Subtract each cell's own perturbation shift.
        batch_size
            Cells per forward pass.

        Returns
        -------
        Array of shape ``(n_cells, n_latent)``.

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
        """
        self._check_trained()
        adata = self._validate(adata)
        labels = None
        if basal:
            enc, _, _ = self._encode(adata)
            labels = torch.as_tensor(enc.labels[enc.codes], dtype=torch.float32)

        def fn(x, start):
            z = self.module.encode(x)
            if labels is not None:
                z = z - self.module.shift(labels[start : start + len(x)].to(self.device))
            return z

        idx = np.arange(adata.n_obs)
        self.module.eval()
        return self._map(fn, RowGatherer(self._matrix(adata)), idx, batch_size)

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
        w = self.module.shift_matrix.detach().cpu().numpy().T
        return pd.DataFrame(
            w,
            index=pd.Index(self.perturbations, name="perturbation"),
            columns=[f"latent_{i}" for i in range(w.shape[1])],
        )

    def _context_condition_counts(self) -> tuple[list[str], np.ndarray]:
        """Contexts and the cells of each training condition in each, ``(n_ctx, n_cond)``."""
        state = self._state
        if state.get("context_condition_counts") is not None:
            return list(state["contexts"]), np.asarray(state["context_condition_counts"])
        # registries saved before this was recorded: count on the registered data
        enc, ctx_codes, ctx_names = self._encode(self.adata)
        rows = {tuple(r): i for i, r in enumerate(np.asarray(state["label_matrix"]))}
        cond = np.array([rows.get(tuple(r), -1) for r in enc.labels])[enc.codes]
        counts = np.zeros((len(ctx_names), len(state["conditions"])), dtype=np.int64)
        ok = cond >= 0
        np.add.at(counts, (ctx_codes[ok], cond[ok]), 1)
        return ctx_names, counts

    def _check_context(self, context: str) -> int:
        contexts, _ = self._context_condition_counts()
        if context not in contexts:
            raise ValueError(f"context={context!r} is unknown; known contexts: {contexts}.")
        return contexts.index(context)

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
            Target context (a value of ``context_keys``, joined by ``" | "`` for several).

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
        if isinstance(perturbations, str):
            perturbations = [perturbations]
        targets = self.target_labels(perturbations, dosages)
        names = list(perturbations)
        if dosages is not None:
            names = [p if d is None else f"{p} @ {d}" for p, d in zip(names, dosages, strict=True)]
        train = np.asarray(self._state["label_matrix"])
        if context is None:
            return extrapolation_table(train, targets, names=names)
        i = self._check_context(context)
        counts = self._context_condition_counts()[1][i]
        table = extrapolation_table(
            train, targets, names=names, context_train_labels=train[counts > 0]
        )
        match = np.all(np.abs(targets[:, None, :] - train[None, :, :]) <= 1e-6, axis=2)
        table.insert(0, "context", context)
        table["n_cells_in_context"] = (match * counts[None, :]).sum(axis=1).astype(np.int64)
        table["n_source_cells"] = int(counts.sum())
        return table

    # ------------------------------------------------------------------ prediction
    def _source_cells(self, source: str, context: str | None):
        adata = self.adata
        enc, ctx_codes, ctx_names = self._encode(adata)
        mask = np.ones(adata.n_obs, dtype=bool)
        if source != "all":
            lab = parse_condition(
                source,
                control_group=self._state["control_group"],
                delimiter=self._state["delimiter"],
            )
            vec = label_vector(lab, self._state["vocabulary"])
            hits = np.flatnonzero(np.all(np.isclose(enc.labels, vec), axis=1))
            if len(hits) == 0:
                raise ValueError(
                    f"source={source!r} is not a condition of the registered data; use 'all', "
                    f"the control {self._state['control_group']!r} or one of "
                    f"{enc.conditions[:10]}."
                )
            mask &= np.isin(enc.codes, hits)
        if context is not None:
            if context not in ctx_names:
                raise ValueError(f"context={context!r} is unknown; known contexts: {ctx_names}.")
            mask &= ctx_codes == ctx_names.index(context)
        idx = np.flatnonzero(mask)
        if len(idx) == 0:
            raise ValueError(f"No source cells for source={source!r} in context={context!r}.")
        return idx, enc

    def predict(
        self,
        perturbations: Sequence[str],
        *,
        dosages: Sequence[object] | None = None,
        n_cells: int | None = None,
        source: str = "all",
        context: str | None = None,
        seed: int | None = None,
        batch_size: int = 4096,
        scale: Literal["log1p", "counts"] = "log1p",
    ) -> AnnData:
        """Sample cells under each target condition, e.g. an unseen combination ``"A+B"``.

        Source cells are encoded, their own shift is subtracted, the target's shift is added
        and the result is decoded with fresh noise; for more cells than sources, sources are
        decoded again with new noise.

        Parameters
        ----------
        perturbations
            Target conditions (any combination of known perturbations).
        dosages
            Optional doses per target (same forms as in :meth:`setup_anndata`).
        n_cells
            Cells per target (default: the number of source cells).
        source
            ``"all"`` (every registered cell of the context), the control label, or a
            training condition whose cells are moved.
        context
            Take the sources from one context (see ``context_keys``) and predict there; the
            target may have been measured only in other contexts (the shift is shared).
            Default: sources from all contexts.
        seed
            Seed of the source draw and the decoder noise; the same seed gives the same cells.
        batch_size
            Cells per forward pass; sources are read and decoded in chunks of this size, so
            backed or sparse data are never densified as a whole.
        scale
            ``"log1p"``: the registered (log-normalised) expression in ``X``. ``"counts"``:
            also ``layers["counts"]``, each predicted cell put back on the count scale of its
            source cell, ``rint(expm1(x) * s)``, where ``s = total / target_sum`` is
            ``sum(counts) / sum(expm1(x))`` of the source cell over the registered genes.
            Needs ``counts_layer`` in :meth:`setup_anndata`. No noise is added: the decoder's
            samples already carry the cell-to-cell variation.

        Returns
        -------
        AnnData of predicted cells with the training ``var_names``: ``X`` (float32, dense),
        ``obs[perturbation_key]`` (the target), ``obs[dosage_key]`` (if doses are registered),
        ``obs["pdae_source"]`` (condition of the source cell), ``obs["pdae_source_cell"]``
        (its obs name), the context columns, and ``uns["pdae"]`` with ``method="pdae"`` and
        ``extrapolation`` (the :meth:`check_extrapolation` table, for ``context`` if given).
        With ``scale="counts"`` also ``layers["counts"]`` (CSR, float32 integers) and
        ``obs["pdae_size_factor"]``. Warns with :class:`ExtrapolationWarning` for targets
        outside the span of the training labels.

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
        """
        self._check_trained()
        if isinstance(perturbations, str):
            perturbations = [perturbations]
        if n_cells is not None and (not isinstance(n_cells, int | np.integer) or n_cells <= 0):
            raise ValueError(f"n_cells={n_cells!r}; ask for a positive number of cells.")
        if scale not in ("log1p", "counts"):
            raise ValueError(f"scale={scale!r}; use 'log1p' (as registered) or 'counts'.")
        counts_layer = self._state.get("counts_layer")
        if scale == "counts" and counts_layer is None:
            raise ValueError(
                "scale='counts' needs the raw counts of the source cells: register them with "
                "setup_anndata(..., counts_layer='counts') (pdae.data.normalize_counts keeps "
                "the counts in adata.layers['counts'])."
            )
        table = self.check_extrapolation(perturbations, dosages=dosages, context=context)
        targets = self.target_labels(perturbations, dosages)
        warn_outside_span(table)
        src_idx, enc = self._source_cells(source, context)
        n = len(src_idx) if n_cells is None else int(n_cells)
        rng = np.random.default_rng(seed)
        gen = make_generator(rng, self.device)
        gather = RowGatherer(self._matrix(self.adata))
        labels_all = torch.as_tensor(enc.labels, dtype=torch.float32)
        self.module.eval()
        x_out = np.empty((n * len(targets), self.summary_stats.n_vars), dtype=np.float32)
        rows = []
        for t, target in enumerate(targets):
            picks = draw_sources(src_idx, n, rng)
            target_t = torch.as_tensor(target, dtype=torch.float32, device=self.device)
            codes = enc.codes[picks]

            def fn(x, start, codes=codes, target_t=target_t):
                lab = labels_all[codes[start : start + len(x)]].to(self.device)
                return self.module.move(x, lab, target_t, generator=gen)

            with torch.inference_mode():
                self._map(fn, gather, picks, batch_size, out=x_out[t * n : (t + 1) * n])
            rows.append(picks)
        layers = obs_extra = None
        if scale == "counts":
            count_rows = RowGatherer(get_matrix(self.adata, counts_layer))
            factors = source_size_factors(gather, count_rows, np.concatenate(rows), batch_size)
            layers = {"counts": counts_matrix(x_out, factors, batch_size)}
            obs_extra = {"pdae_size_factor": factors.astype(np.float32)}
        state = self._state
        return prediction_adata(
            self.adata,
            perturbation_key=self.adata_manager.registry["setup_args"]["perturbation_key"],
            perturbations=perturbations,
            dosages=dosages,
            dosage_key=state["dosage_key"],
            context_keys=state["context_keys"],
            enc=enc,
            picks=rows,
            x=x_out,
            table=table,
            layers=layers,
            obs_extra=obs_extra,
        )

    def get_counterfactual(
        self,
        adata: AnnData | None = None,
        *,
        perturbation: str,
        dosage: object | None = None,
        layer_added: str = "pdae_counterfactual",
        seed: int | None = None,
        batch_size: int = 4096,
    ) -> None:
        """Write each cell's predicted expression under ``perturbation`` as a layer.

        Parameters
        ----------
        adata
            AnnData with the training genes (default: the registered one).
        perturbation
            Target condition, e.g. ``"A+B"`` or the control label.
        dosage
            Optional dose(s) of the target.
        layer_added
            Name of the layer to write.
        seed
            Seed of the decoder noise.
        batch_size
            Cells per forward pass.

        Returns
        -------
        ``None``; writes ``adata.layers[layer_added]`` (dense float32, cells × genes).

        Examples
        --------
        >>> import pdae_sc as pdae
        >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=20, seed=0)
        >>> train = adata[adata.obs["perturbation"] != "P0+P1"].copy()  # hold out a double
        >>> pdae.model.PDAE.setup_anndata(train, "perturbation", control_group="ctrl")
        >>> model = pdae.model.PDAE(train, n_latent=8)
        >>> model.train(max_epochs=1, enable_progress_bar=False)
        >>> model.get_counterfactual(perturbation="ctrl", layer_added="unperturbed", seed=0)
        >>> train.layers["unperturbed"].shape
        (200, 100)
        """
        self._check_trained()
        adata = self._validate(adata)
        target = self.target_labels([perturbation], None if dosage is None else [dosage])[0]
        warn_outside_span(
            self.check_extrapolation([perturbation], dosages=None if dosage is None else [dosage])
        )
        enc, _, _ = self._encode(adata)
        labels = torch.as_tensor(enc.labels[enc.codes], dtype=torch.float32)
        target_t = torch.as_tensor(target, dtype=torch.float32, device=self.device)
        gen = make_generator(np.random.default_rng(seed), self.device)
        self.module.eval()

        def fn(x, start):
            lab = labels[start : start + len(x)].to(self.device)
            return self.module.move(x, lab, target_t, generator=gen)

        adata.layers[layer_added] = self._map(
            fn, RowGatherer(self._matrix(adata)), np.arange(adata.n_obs), batch_size
        )

    # ------------------------------------------------------------------ persistence
    def save(
        self, dir_path: str, *, overwrite: bool = False, save_anndata: bool = False, **kwargs
    ) -> None:
        """Save the model in scvi-tools' format, atomically.

        The files are written to a temporary directory next to ``dir_path`` and moved into
        place only when complete; a failure, or a refused overwrite, leaves an existing model
        at ``dir_path`` intact.

        Parameters
        ----------
        dir_path
            Directory to create.
        overwrite
            Replace an existing directory.
        save_anndata
            Also save the registered AnnData (needed by :meth:`load` without ``adata``).
        **kwargs
            Passed to :meth:`scvi.model.base.BaseModelClass.save`.

        Examples
        --------
        >>> import tempfile
        >>> import pdae_sc as pdae
        >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=20, seed=0)
        >>> pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
        >>> model = pdae.model.PDAE(adata, n_latent=8)
        >>> model.train(max_epochs=1, enable_progress_bar=False)
        >>> path = tempfile.mkdtemp() + "/pdae_model"
        >>> model.save(path)
        >>> model.save(path, overwrite=True)  # without overwrite=True this raises
        >>> loaded = pdae.model.PDAE.load(path, adata)
        """

        def write(target: str) -> None:
            BaseModelClass.save(self, target, overwrite=False, save_anndata=save_anndata, **kwargs)

        atomic_save(write, dir_path, overwrite=overwrite)

    @classmethod
    def load(cls, dir_path: str, adata: AnnData | None = None, **kwargs) -> PDAE:
        """Load a model saved with :meth:`save`.

        Parameters
        ----------
        dir_path
            Directory written by :meth:`save`.
        adata
            AnnData with the training genes in the training order; default the AnnData saved
            with the model. Different or reordered genes raise ``ValueError``, before
            ``adata`` is touched.
        **kwargs
            Passed to :meth:`scvi.model.base.BaseModelClass.load` (e.g. ``accelerator``).

        Returns
        -------
        The loaded :class:`PDAE`.

        Examples
        --------
        >>> import tempfile
        >>> import pdae_sc as pdae
        >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=20, seed=0)
        >>> pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
        >>> model = pdae.model.PDAE(adata, n_latent=8)
        >>> model.train(max_epochs=1, enable_progress_bar=False)
        >>> path = tempfile.mkdtemp() + "/pdae_model"
        >>> model.save(path, save_anndata=True)
        >>> pdae.model.PDAE.load(path).predict(["P0+P1"], n_cells=10, seed=0).shape
        (10, 100)
        >>> loaded = pdae.model.PDAE.load(path, adata)  # or with a matching AnnData
        """
        if not os.path.isdir(dir_path):
            raise FileNotFoundError(f"No saved model at {str(dir_path)!r}.")
        if adata is not None:
            if not isinstance(adata, AnnData):
                raise TypeError(f"adata must be an AnnData, got {type(adata).__name__}.")
            check_var_names_match(
                cls.load_var_names(dir_path, prefix=kwargs.get("prefix")),
                adata,
                what=f"the model saved at {str(dir_path)!r}",
                names_code=f"PDAE.load_var_names({str(dir_path)!r})",
            )
        with quiet_local_load():
            model = super().load(dir_path, adata=adata, **kwargs)
        model.is_trained_ = True
        return model

    @staticmethod
    def load_var_names(dir_path: str | os.PathLike, *, prefix: str | None = None) -> pd.Index:
        """Genes of a saved model, in its order, without loading the model.

        Parameters
        ----------
        dir_path
            Directory written by :meth:`save`.
        prefix
            File name prefix used when saving.

        Returns
        -------
        The model's ``var_names``; ``adata[:, PDAE.load_var_names(path)]`` matches them.

        Examples
        --------
        >>> import tempfile
        >>> import pdae_sc as pdae
        >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=20, seed=0)
        >>> pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
        >>> model = pdae.model.PDAE(adata, n_latent=8)
        >>> model.train(max_epochs=1, enable_progress_bar=False)
        >>> path = tempfile.mkdtemp() + "/pdae_model"
        >>> model.save(path)
        >>> genes = pdae.model.PDAE.load_var_names(path)
        >>> genes[:3].tolist()
        ['gene_0', 'gene_1', 'gene_2']
        >>> reordered = adata[:, adata.var_names[::-1]].copy()  # genes in another order
        >>> model = pdae.model.PDAE.load(path, reordered[:, genes].copy())
        """
        return read_var_names(dir_path, prefix=prefix)


def _epochs_for_steps(steps_per_epoch: int, target_steps: int = 4000) -> int:
    return int(min(400, max(20, math.ceil(target_steps / max(1, steps_per_epoch)))))
