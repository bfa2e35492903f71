"""The Datlinger et al. 2017 CROP-seq subset bundled with the package."""

from __future__ import annotations

from importlib.resources import as_file, files

import anndata as ad
import numpy as np
import pandas as pd

__all__ = ["datlinger2017"]

_FILE = "datlinger2017_crop_seq_subset.h5ad"


def datlinger2017(*, stimulation_label: str = "stim", control_group: str = "ctrl") -> ad.AnnData:
    """CROP-seq screen of 20 T-cell receptor pathway knockouts in Jurkat cells, raw counts.

    A 7,500-cell × 2,000-gene subset of Datlinger et al. 2017 (Nat. Methods 14:297), as
    shipped in the test data of the scPerturb R package (MIT licence, Copyright (c) 2022
    Stefan Peidli; the notice is in ``pdae_sc/datasets/_data/LICENSE.md``). Each of 20
    knockouts (two guides per gene) and the control guides are measured unstimulated and
    under anti-CD3/CD28 stimulation, about 100–200 cells per guide and state.

    Stimulation is a perturbation too: ``obs["perturbation"]`` labels a knockout of ``LCK``
    in stimulated cells ``"LCK+stim"``, the combination of the knockout ``"LCK"``
    (unstimulated) and the stimulated control ``"stim"``. Holding out some ``"KO+stim"``
    conditions and predicting them from the rest is a real combination task in the span of
    the training labels.

    Parameters
    ----------
    stimulation_label
        Token for TCR stimulation in ``obs["perturbation"]``.
    control_group
        Label of unstimulated control cells.

    Returns
    -------
    AnnData with raw UMI counts in ``X`` (CSR, float32) and ``obs`` columns
    ``perturbation`` (the combination label above), ``target`` (knocked-out gene or
    ``control_group``), ``guide`` (e.g. ``"LCK_1"``), ``state`` (``"stimulated"`` or
    ``"unstimulated"``) and the library size ``ncounts``; ``uns["dataset"]`` records the
    source and licence. A new object on every call: edit it freely.

    Examples
    --------
    >>> import pdae_sc as pdae
    >>> adata = pdae.datasets.datlinger2017()
    >>> adata.shape
    (7500, 2000)
    >>> adata.obs["perturbation"].value_counts()[["ctrl", "stim", "LCK", "LCK+stim"]].tolist()
    [60, 140, 173, 227]
    >>> pdae.pp.normalize_counts(adata)  # raw counts move to layers["counts"]
    """
    for name, value in (
        ("stimulation_label", stimulation_label),
        ("control_group", control_group),
    ):
        if not isinstance(value, str) or not value or "+" in value:
            raise ValueError(f"{name}={value!r}; use a non-empty label without '+'.")
    if stimulation_label == control_group:
        raise ValueError(
            f"stimulation_label and control_group are both {control_group!r}; use two labels."
        )
    with as_file(files(__package__).joinpath("_data", _FILE)) as path:
        raw = ad.read_h5ad(path)
    target = raw.obs["target"].astype(str)
    is_ctrl = target.str.lower() == "control"
    stimulated = raw.obs["perturbation_2"].astype(str) == "stimulated"
    gene = np.where(is_ctrl, "", target)
    label = [
        "+".join(t for t in (g, stimulation_label if s else "") if t) or control_group
        for g, s in zip(gene, stimulated, strict=True)
    ]
    obs = pd.DataFrame(
        {
            "perturbation": pd.Categorical(label),
            "target": pd.Categorical(np.where(is_ctrl, control_group, target)),
            "guide": pd.Categorical(raw.obs["perturbation"].astype(str)),
            "state": pd.Categorical(np.where(stimulated, "stimulated", "unstimulated")),
            "ncounts": raw.obs["ncounts"].to_numpy(),
        },
        index=raw.obs_names.copy(),
    )
    adata = ad.AnnData(X=raw.X, obs=obs, var=pd.DataFrame(index=raw.var_names.copy()))
    adata.uns["dataset"] = {
        "name": "datlinger2017_crop_seq_subset",
        "reference": "Datlinger et al. 2017, Nat. Methods 14:297",
        "source": "scPerturb R package test data (github.com/sanderlab/scPerturb)",
        "license": "MIT, Copyright (c) 2022 Stefan Peidli",
    }
    return adata
