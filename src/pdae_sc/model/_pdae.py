"""The user-facing PDAE model: AnnData registration and the model class.

Training, prediction, the fit check, persistence and access to the registration live in
flat mixins (``_training.py``, ``_inference.py``, ``_diagnostics.py``, ``_persistence.py``,
``_registration.py``), as in scvi-tools' model classes; ``docs/architecture.md`` shows how
they fit together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import pandas as pd
from anndata import AnnData
from mudata import MuData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import LayerField
from scvi.model.base import BaseModelClass

from pdae_sc.data._fields import PerturbationField
from pdae_sc.data._perturbation_embedding import EMBEDDING_FROM_EXPRESSION, check_embedding_table
from pdae_sc.data._sampler import PerturbationDataSplitter
from pdae_sc.data._validation import (
    check_matrix,
    check_unique_names,
    get_matrix,
)
from pdae_sc.module import PDAEModule
from pdae_sc.module._networks import OutputActivation
from pdae_sc.pp._mudata import mudata_training_data

from ._arguments import check_against_data, check_architecture, loss_defaults
from ._diagnostics import DiagnosticsMixin
from ._inference import InferenceMixin
from ._linear import start_at_linear_model
from ._mudata import record_mudata_setup, registered_adata
from ._persistence import PersistenceMixin
from ._registration_mixin import RegistrationMixin
from ._trainer import PDAETrainRunner
from ._training import TrainingMixin
from ._training_plan import PDAETrainingPlan
from ._warnings import ExtrapolationWarning

__all__ = ["PDAE", "ExtrapolationWarning"]


class PDAE(
    InferenceMixin,
    TrainingMixin,
    DiagnosticsMixin,
    PersistenceMixin,
    RegistrationMixin,
    BaseModelClass,
):
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
        Latent width (a positive integer).
    n_hidden
        Encoder hidden widths, positive integers (the decoder mirrors them).
    n_noise
        Width of the decoder's noise input (0: a deterministic decoder).
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
    decoder
        How a cell is moved to another condition (see the user guide, "Decoders"). The
        default (``None`` or ``"auto"``) is ``"residual"`` for non-negative data
        (log-normalised counts, whose measurement noise the residual decoder keeps) and
        ``"generative"`` for data with negative values (continuous, e.g. scaled or
        simulated without counts), the better of the two in each regime on the benchmarks
        (the user guide, "Decoders").

        - ``"residual"``: carry the source cell over and decode only the change,
          ``x + f(g(x) - W l + W u, xi) - f(g(x), xi)`` (plus the gene shift), clipped at 0
          for non-negative data. The cell keeps its own measurement noise and a condition
          moved to itself is returned unchanged, so "no effect" is always within reach.
        - ``"multiplicative"``: the change is a log fold change of the normalised counts,
          ``log1p(expm1(x) * exp(...))``: zeros stay zeros, but genes cannot switch on.
          For log1p-normalised counts only.
        - ``"generative"``: the paper's decoder, ``f(g(x) - W l + W u, xi)`` plus output
          noise, generates every cell from scratch.
    gene_shift
        With a residual decoder, add a per-gene linear effect of each perturbation that
        starts at the ``linear`` baseline's effects (the same least-squares fit), with the
        latent shift ``W`` at zero, so training starts from that baseline (clipped at zero
        for non-negative data) and learns the corrections. Default: ``True`` for the
        residual decoders, ``False`` for the generative one.
    **module_kwargs
        Loss weights and options of :class:`~pdae_sc.module.PDAEModule` (``beta``,
        ``energy_weight``, ``reconstruction_weight``, ``prior_weight``, ``sparsity_weight``,
        ``detach_encoder``). Where not given, the generative decoder trains with
        ``reconstruction_weight=1.0`` and ``detach_encoder=False`` (each training cell
        decoded from its own latent, the encoder learning from it too: on the simulations
        it nearly halved the error on held-out doubles; the user guide, "Decoders"), the
        residual decoders with the module's defaults (0.1, encoder detached).

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
        decoder: Literal["auto", "residual", "multiplicative", "generative"] | None = None,
        gene_shift: bool | None = None,
        **module_kwargs,
    ):
        n_latent, n_noise, n_hidden = check_architecture(
            decoder, gene_shift, n_latent, n_noise, n_hidden, noise_scale
        )
        decoder = "auto" if decoder is None else decoder
        if isinstance(adata, MuData):  # the AnnData that setup_mudata registered
            adata = registered_adata(type(self), adata)
        super().__init__(adata)
        data_min = None
        if output_activation in ("auto", "relu", "softplus") or decoder in (
            "auto",
            "multiplicative",
        ):
            # the range recorded by setup_anndata; scanned for format-1 registries (0.1.0)
            recorded = self.registration.matrix_stats
            data_min = (
                recorded["min"]
                if recorded is not None
                else check_matrix(self._matrix(self.adata), warn=False).min
            )
        if output_activation == "auto":
            output_activation = "relu" if data_min >= 0 else "none"
        if decoder == "auto":  # counts (log-normalised) carry count noise: keep the cell's own
            decoder = "residual" if data_min >= 0 else "generative"
        if gene_shift is None:
            gene_shift = decoder != "generative"
        check_against_data(decoder, gene_shift, output_activation, data_min)
        module_kwargs = loss_defaults(module_kwargs, residual=decoder != "generative")
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
            residual=decoder != "generative",
            residual_mode="multiplicative" if decoder == "multiplicative" else "additive",
            gene_shift=gene_shift,
            **module_kwargs,
        )
        if getattr(self.module, "gene_shift", None) is not None:
            start_at_linear_model(self)
        self._model_summary_string = (
            f"PDAE: {self.summary_stats.n_perturbations} perturbations, "
            f"{self.summary_stats.n_conditions} training conditions, n_latent={n_latent}, "
            f"n_noise={n_noise}, estimator={estimator!r}, decoder={decoder!r}"
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
        perturbation_embedding: pd.DataFrame | Mapping | str | None = None,
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
            by :func:`pdae_sc.pp.normalize_counts`); lets :meth:`predict` return counts
            (``scale="counts"``).
        perturbation_embedding
            A prior embedding of the perturbations, to estimate perturbations that were never
            measured: a :class:`pandas.DataFrame` (index: perturbation names, one numeric
            column per dimension) or a mapping ``{name: vector}``; or ``"expression"``, the
            built-in, which needs no download: a genetic perturbation named like a measured
            gene (a ``var_name``) is embedded by that gene's loadings in a PCA of these cells
            (10 components). The model learns, on the measured perturbations with an
            embedding, which of them a new perturbation resembles (ridge regression of their
            effects on their embeddings, used only where its leave-one-out error is clearly
            below that of the mean effect of every measured perturbation); such
            targets are outside the guarantee, and :meth:`check_extrapolation`, the
            prediction's ``uns["pdae"]["extrapolation"]`` and a warning say so. ``None``
            (default): unknown perturbations raise ``KeyError``, as before.
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
        if isinstance(perturbation_embedding, str):
            if perturbation_embedding != EMBEDDING_FROM_EXPRESSION:
                raise ValueError(
                    f"perturbation_embedding={perturbation_embedding!r}; use "
                    f"{EMBEDDING_FROM_EXPRESSION!r} (gene loadings of a PCA of these cells), a "
                    "pandas.DataFrame (index: perturbation names) or None."
                )
        elif perturbation_embedding is not None:
            perturbation_embedding = check_embedding_table(perturbation_embedding)
        setup_method_args = cls._get_setup_method_args(**locals())
        stats = check_matrix(
            get_matrix(adata, layer),
            name="adata.X" if layer is None else f"adata.layers[{layer!r}]",
        )
        if counts_layer is not None:
            if counts_layer not in adata.layers:
                raise KeyError(
                    f"counts_layer={counts_layer!r} is not in adata.layers; available: "
                    f"{list(adata.layers)}. pdae.pp.normalize_counts(adata) keeps the counts "
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
                expression_embedding_layer=layer
                if isinstance(perturbation_embedding, str)
                else False,
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
        perturbation_embedding: pd.DataFrame | Mapping | str | None = None,
    ) -> AnnData:
        """Register a MuData (e.g. from ``muon.read_h5mu``): expression of one modality, labels.

        The labels come from either

        - ``perturbation_key``: a column of ``mdata[rna].obs`` (or of ``mdata.obs``, then
          copied into ``mdata[rna].obs``), written like the labels of :meth:`setup_anndata`;
        - ``guide_modality``: a modality of guide-capture UMI counts (cells × guides). The
          guides of each cell are called by :func:`pdae_sc.pp.assign_guides`: a guide counts
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
            :func:`pdae_sc.pp.normalize_counts`) and, optionally, a guide modality.
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
            Guide assignment rule (see above and :func:`pdae_sc.pp.assign_guides`).
        guide_kwargs
            More arguments of :func:`pdae_sc.pp.assign_guides`, e.g.
            ``{"guide_to_perturbation": {...}, "control_guides": [...]}``.
        delimiter, dosage_key, layer, counts_layer, context_keys, min_cells_per_condition
            As in :meth:`setup_anndata`, for ``mdata[rna]``.
        perturbation_embedding
            As in :meth:`setup_anndata` (``"expression"``: a PCA of ``mdata[rna]``).

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
            perturbation_embedding=perturbation_embedding,
        )
        record_mudata_setup(mdata, adata, rna=rna, perturbation_key=perturbation_key)
        return adata
