"""Does the trained model beat "no effect" on its own training conditions? (a PDAE mixin)"""

from __future__ import annotations

import warnings

import pandas as pd

from pdae_sc.data._validation import check_positive_int

from ._predict import fit_check
from ._warnings import PoorFitWarning

__all__ = ["DiagnosticsMixin", "check_after_training"]


class DiagnosticsMixin:
    """:meth:`check_fit` of :class:`~pdae_sc.model.PDAE` (and the check at the end of training)."""

    def check_fit(
        self, *, n_conditions: int = 8, n_cells: int = 200, seed: int = 0
    ) -> pd.DataFrame:
        """In-sample check: cells moved to training conditions vs not moved at all.

        For the training conditions with the most cells (in each context, with its own
        control cells), ``n_cells`` cells are moved to the condition as :meth:`predict`
        moves them and compared with the measured cells of that condition: once from the
        control cells of the context, once from every *other* cell of the context (the
        condition's own cells left out, as for an unseen target), next to the unmoved
        control cells (the "no effect" prediction). A model that cannot beat "no effect" on
        data it was trained on will not beat it on unseen targets.

        At the end of :meth:`train` this check (on 16 conditions) also picks the model's
        default source set, :attr:`default_source_`: every cell when moving every other
        cell is closer to the measured cells on at least three quarters of the checked
        conditions and on their mean, the control cells otherwise. Moving every cell keeps
        the variety of the perturbed states (best when many conditions share a response);
        moving only control cells adds no error from undoing a source's own perturbation
        (best when effects are weak next to the noise, as on Papalexi 2021), so it is the
        choice unless the other is clearly better.

        Parameters
        ----------
        n_conditions
            Number of (condition, context) pairs to check, largest first.
        n_cells
            Cells per side, at most: the measured cells and, for every prediction, the same
            number of distinct source cells (the fewest of the two source sets and the
            control cells), each drawn without replacement, so that no prediction is scored
            on repeated cells.
        seed
            Seed of the draws and of the decoder noise.

        Returns
        -------
        DataFrame, one row per checked condition, with ``condition``, ``context``,
        ``n_cells`` (measured cells used), ``energy_distance_pdae`` (moved control cells vs
        measured), ``energy_distance_pdae_all`` (every other cell of the context, moved, vs
        measured), ``energy_distance_control`` (unmoved control cells vs measured) and
        ``pdae_better`` (the better of the two moves beats the control; bool).

        Examples
        --------
        >>> import pdae_sc as pdae
        >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=30, seed=0)
        >>> pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
        >>> model = pdae.model.PDAE(adata, n_latent=8)
        >>> model.train(max_epochs=20, enable_progress_bar=False)
        >>> fit = model.check_fit(n_conditions=4)
        >>> list(fit.columns)  # doctest: +NORMALIZE_WHITESPACE
        ['condition', 'context', 'n_cells', 'energy_distance_pdae',
         'energy_distance_pdae_all', 'energy_distance_control', 'pdae_better']
        >>> bool(fit["pdae_better"].all())
        True
        """
        self._check_trained()
        check_positive_int(n_conditions, "n_conditions")
        check_positive_int(n_cells, "n_cells", minimum=2)
        return fit_check(
            self.module,
            self.device,
            self.registration,
            n_conditions=n_conditions,
            n_cells=n_cells,
            seed=seed,
            batch_size=self._batch_size(None),
        )


def check_after_training(model) -> None:
    """Run :meth:`check_fit`, set :attr:`default_source_` and warn on a poor fit.

    On up to 16 training conditions, the default source set is ``"all"`` when moving
    every other cell is closer to the measured cells than moving the control cells on at
    least three quarters of them (a sign test at about the 5% level for 16 conditions)
    and on their mean; otherwise it is the control cells, which add no error from
    undoing a source's own perturbation. The model then warns with
    :class:`PoorFitWarning` when, with that source set, it is further from the measured
    cells than the unmoved control cells on more than half of the checked conditions,
    or on their mean.
    """
    table = model.check_fit(n_conditions=16)
    model.default_source_ = "all"
    if table.empty:
        return
    every, ctrl_moved = table["energy_distance_pdae_all"], table["energy_distance_pdae"]
    n_every_closer = int((every < ctrl_moved).sum())
    if 4 * n_every_closer >= 3 * len(table) and every.mean() < ctrl_moved.mean():
        moved = every
    else:
        model.default_source_ = model.registration.control_group
        moved = ctrl_moved
    ours = moved.mean()
    ctrl = table["energy_distance_control"].mean()
    worse_mask = (moved >= table["energy_distance_control"]).to_numpy()
    n_worse = int(worse_mask.sum())
    if ours > ctrl or 2 * n_worse > len(table):
        worse = table.loc[worse_mask, "condition"].tolist()
        warnings.warn(
            f"On its own training conditions the model is further from the measured cells "
            f"than the unmoved control cells on {n_worse} of {len(table)} conditions "
            f"({worse[:5]}; mean energy distance {ours:.3g} vs {ctrl:.3g}; see "
            "model.check_fit()). Its predictions are not to be trusted: train longer "
            "(max_epochs), check the data scale (log-normalised), and compare with the "
            "baselines in pdae.tl.cross_validate(model).",
            PoorFitWarning,
            stacklevel=4,
        )
