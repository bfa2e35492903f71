"""Simulated contexts that differ only in their basal state, for the new-cells tests.

Each context is the visible conditions plus a hidden perturbation at the context's dose (none
for a context without one): the hidden perturbation shifts the basal state, and is not in
the labels the model sees.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

import pdae_sc as pdae


def hidden_contexts(
    hidden: dict[str, str | None],
    visible: list[str],
    *,
    token: str,
    key: str,
    n_cells: int,
    counts: bool = False,
    **simulate_kwargs,
) -> ad.AnnData:
    """The conditions ``visible`` in every context of ``hidden`` (context -> dose of ``token``).

    ``obs[key]``: the context; ``obs["perturbation"]``: the visible label. With ``counts``,
    the simulated counts in ``layers["counts"]``. ``simulate_kwargs`` go to
    :func:`pdae_sc.data.simulate` (which gets the conditions in this order).
    """
    conditions, doses = [], []
    for dose in hidden.values():
        for cond in visible:
            tokens = [] if cond == "ctrl" else cond.split("+")
            if dose is None:
                conditions.append(cond)
                doses.append(None)
            else:
                conditions.append("+".join([*tokens, token]))
                doses.append("+".join(["1"] * len(tokens) + [dose]))
    sim = pdae.data.simulate(
        n_cells_per_condition=n_cells,
        conditions=conditions,
        dosages=doses,
        counts=counts,
        **simulate_kwargs,
    )
    per_cell = np.repeat(np.arange(len(conditions)), n_cells)  # in the order asked
    obs = pd.DataFrame(
        {
            "perturbation": np.array(visible * len(hidden))[per_cell],
            key: np.repeat(list(hidden), len(visible))[per_cell],
        },
        index=sim.obs_names,
    )
    out = ad.AnnData(sim.X, obs=obs, var=sim.var)
    if counts:
        out.layers["counts"] = sim.layers["counts"].astype(np.float32)
    return out
