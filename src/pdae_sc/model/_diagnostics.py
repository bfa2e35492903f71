"""Does the trained model beat "no effect" on its own training conditions? (a PDAE mixin)"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from pdae_sc.data._sampler import RowGatherer
from pdae_sc.tl._metrics import energy_distance

from ._core import PDAECore

__all__ = ["DiagnosticsMixin", "PoorFitWarning"]


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


class DiagnosticsMixin(PDAECore):
    """:meth:`check_fit` of :class:`~pdae_sc.model.PDAE`."""

    def check_fit(
        self, *, n_conditions: int = 8, n_cells: int = 200, seed: int = 0
    ) -> pd.DataFrame:
        """In-sample check: control cells moved to training conditions vs not moved at all.

        For the training conditions with the most cells (in each context, with its own
        control cells), ``n_cells`` control cells of the context are moved to the condition
        with :meth:`predict` (``source`` = the control) and compared with the measured cells
        of that condition, next to the unmoved control cells (the "no effect" prediction).
        A model that cannot beat "no effect" on data it was trained on will not beat it on
        unseen targets.

        Parameters
        ----------
        n_conditions
            Number of (condition, context) pairs to check, largest first.
        n_cells
            Cells per side (drawn without replacement when there are more).
        seed
            Seed of the draws and of the decoder noise.

        Returns
        -------
        DataFrame, one row per checked condition, with ``condition``, ``context``,
        ``n_cells`` (measured cells used), ``energy_distance_pdae`` (moved control cells vs
        measured), ``energy_distance_control`` (unmoved control cells vs measured) and
        ``pdae_better`` (bool).

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
         'energy_distance_control', 'pdae_better']
        >>> bool(fit["pdae_better"].all())
        True
        """
        self._check_trained()
        for name, value in (("n_conditions", n_conditions), ("n_cells", n_cells)):
            if not isinstance(value, int | np.integer) or value < (2 if name == "n_cells" else 1):
                raise ValueError(f"{name}={value!r}; use a positive integer (n_cells >= 2).")
        enc, ctx_codes, ctx_names = self._encode(self.adata)
        is_ctrl = ~enc.labels.any(axis=1)
        ctrl_label = self._labels.control_group
        counts = pd.crosstab(enc.codes, ctx_codes)
        pairs = [
            (int(c), int(k), int(counts.loc[c, k]))
            for c in counts.index
            for k in counts.columns
            if not is_ctrl[c]
            and counts.loc[c, k] >= 2
            and counts.loc[np.flatnonzero(is_ctrl), k].sum() >= 2
        ]
        pairs = sorted(pairs, key=lambda p: -p[2])[:n_conditions]
        rng = np.random.default_rng(seed)
        rows = RowGatherer(self._matrix(self.adata))
        has_ctx = bool(self._labels.context_keys)
        out = []
        for c, k, _n in pairs:
            obs_idx = np.flatnonzero((enc.codes == c) & (ctx_codes == k))
            ctrl_idx = np.flatnonzero(is_ctrl[enc.codes] & (ctx_codes == k))
            obs_idx = np.sort(rng.choice(obs_idx, min(n_cells, len(obs_idx)), replace=False))
            ctrl_idx = np.sort(rng.choice(ctrl_idx, min(n_cells, len(ctrl_idx)), replace=False))
            dose = enc.dosages[c]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pred = self.predict(
                    [enc.conditions[c]],
                    dosages=None if dose is None else [dose],
                    n_cells=n_cells,
                    source=ctrl_label,
                    context=ctx_names[k] if has_ctx else None,
                    seed=int(rng.integers(2**31 - 1)),
                )
            x_obs = rows(obs_idx).astype(np.float64)
            out.append(
                {
                    "condition": enc.conditions[c],
                    "context": ctx_names[k],
                    "n_cells": len(obs_idx),
                    "energy_distance_pdae": energy_distance(pred.X, x_obs),
                    "energy_distance_control": energy_distance(rows(ctrl_idx), x_obs),
                }
            )
        table = pd.DataFrame(
            out,
            columns=[
                "condition",
                "context",
                "n_cells",
                "energy_distance_pdae",
                "energy_distance_control",
            ],
        )
        table["pdae_better"] = table["energy_distance_pdae"] < table["energy_distance_control"]
        return table

    def _warn_if_poor_fit(self) -> None:
        """Warn with :class:`PoorFitWarning` when :meth:`check_fit` loses to the control.

        The model loses when it is further from the measured cells than the unmoved control
        cells on more than half of the checked conditions, or on their mean.
        """
        table = self.check_fit()
        if table.empty:
            return
        ours = table["energy_distance_pdae"].mean()
        ctrl = table["energy_distance_control"].mean()
        n_worse = int((~table["pdae_better"]).sum())
        if ours > ctrl or 2 * n_worse > len(table):
            worse = table.loc[~table["pdae_better"], "condition"].tolist()
            warnings.warn(
                f"On its own training conditions the model is further from the measured cells "
                f"than the unmoved control cells on {n_worse} of {len(table)} conditions "
                f"({worse[:5]}; mean energy distance {ours:.3g} vs {ctrl:.3g}; see "
                "model.check_fit()). Its predictions are not to be trusted: train longer "
                "(max_epochs), check the data scale (log-normalised), and compare with the "
                "baselines in pdae.tl.cross_validate(model).",
                PoorFitWarning,
                stacklevel=3,
            )
