"""The warnings a PDAE emits about its own trustworthiness (all ``UserWarning`` subclasses)."""

from __future__ import annotations

import warnings

import pandas as pd

from pdae_sc.data._span import STATUS_EMBEDDING, STATUS_EXTRAPOLATION, STATUS_OUTSIDE

__all__ = [
    "BaselineFavouredWarning",
    "ExtrapolationWarning",
    "PoorFitWarning",
    "warn_outside_basal_range",
    "warn_outside_span",
]


class ExtrapolationWarning(UserWarning):
    """A prediction target lies outside the span of the training labels, or its doses beyond.

    Emitted by :meth:`pdae_sc.model.PDAE.predict`: the PDAE cannot identify the effect of
    a target outside the linear span, so its prediction is not covered by the model's
    guarantee; a target inside the span whose doses leave the range seen in training (e.g.
    dose 10 after doses up to 2) asks the decoder to extrapolate, which is less accurate.
    With new cells (``predict(..., adata=new_cells)``) it also says when their control
    cells lie outside the range of the registered contexts' control cells, a basal state
    the model never saw.
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
    placed = table.index[table["status"] == STATUS_EMBEDDING].tolist()
    if placed:
        new = sorted(set(table.loc[placed, "from_embedding"]))
        warnings.warn(
            f"Targets {placed} hold perturbations that were never measured ({new}): they are "
            "estimated from the perturbation embedding, as a weighted sum of the measured "
            "perturbations they resemble, outside the model's guarantee. See "
            "model.check_extrapolation().",
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


def warn_outside_basal_range(table: pd.DataFrame, stacklevel: int = 3) -> None:
    """Warn with :class:`ExtrapolationWarning` for new cells outside the registered range.

    ``table``: :func:`~pdae_sc.model._basal_range.basal_range`; its rows marked ``outside``
    are contexts of new cells whose control mean lies outside the registered contexts'
    control means, by more than noise and by a sizeable share of the cells' own spread.
    """
    outside = table[table["outside"]]
    if len(outside):
        cases = ", ".join(
            f"{row.context!r} ({row.relative_distance:.2f} times the cells' spread beyond "
            f"noise, p = {row.p_value:.1g}; nearest {row.nearest!r})"
            for row in outside.itertuples()
        )
        warnings.warn(
            f"The new control cells of context {cases} lie outside the range of the "
            "registered contexts' control cells: their basal state is one the model never "
            "saw, and moving them by what was learned elsewhere assumes the perturbations "
            "act there as in training. Measure a few perturbations in that context and "
            "register them to check. See uns['pdae']['basal_range'] of the prediction.",
            ExtrapolationWarning,
            stacklevel=stacklevel,
        )


class PoorFitWarning(UserWarning):
    """A trained model predicts its own training conditions worse than the control cells.

    Emitted at the end of :meth:`pdae_sc.model.PDAE.train` when
    :meth:`~pdae_sc.model.PDAE.check_fit` finds that control cells moved to the training
    conditions are further (in energy distance) from the measured cells than the unmoved
    control cells, on more than half of the checked conditions or on their mean.
    Predictions of such a model are not to be trusted; compare with the baselines in
    :func:`pdae_sc.tl.cross_validate`.

    Examples
    --------
    >>> import pdae_sc as pdae
    >>> issubclass(pdae.model.PoorFitWarning, UserWarning)
    True
    """


class BaselineFavouredWarning(UserWarning):
    """On the measured conditions held out of training a simple baseline beat PDAE.

    Emitted at the end of :meth:`pdae_sc.model.PDAE.train`; :meth:`~pdae_sc.model.PDAE.predict`
    then returns that baseline's cells (``model.prediction_method_``) unless it is called
    with ``method="pdae"``. The scores are in ``model.held_out_scores_``.

    Examples
    --------
    >>> import pdae_sc as pdae
    >>> issubclass(pdae.model.BaselineFavouredWarning, UserWarning)
    True
    """
