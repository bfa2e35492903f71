"""Link a MuData to the AnnData that ``PDAE.setup_mudata`` registered for it."""

from __future__ import annotations

import weakref

from anndata import AnnData
from mudata import MuData

__all__ = ["MUDATA_SETUP_KEY", "is_subset_copy", "record_mudata_setup", "registered_adata"]

#: Key of ``mdata.uns`` where ``setup_mudata`` records what it registered.
MUDATA_SETUP_KEY = "pdae_setup"
_UUID_KEY = "_scvi_uuid"
#: Registration ids of the AnnData copies ``setup_mudata`` made of the labelled cells.
_SUBSET_COPIES: set[str] = set()
#: The AnnData ``setup_mudata`` registered, by registration id (this session only).
_REGISTERED: weakref.WeakValueDictionary[str, AnnData] = weakref.WeakValueDictionary()


def is_subset_copy(adata: AnnData) -> bool:
    """Whether ``adata`` is a copy of part of a modality, made by ``setup_mudata``."""
    return str(adata.uns.get(_UUID_KEY)) in _SUBSET_COPIES


def record_mudata_setup(mdata: MuData, adata: AnnData, *, rna: str, perturbation_key: str):
    """Write ``mdata.uns[MUDATA_SETUP_KEY]``: the modality, the label column, the AnnData id."""
    _REGISTERED[str(adata.uns[_UUID_KEY])] = adata
    if adata is not mdata.mod[rna]:
        _SUBSET_COPIES.add(str(adata.uns[_UUID_KEY]))
    mdata.uns[MUDATA_SETUP_KEY] = {
        "modality": rna,
        "perturbation_key": perturbation_key,
        "adata_uuid": str(adata.uns[_UUID_KEY]),
        "n_cells": int(adata.n_obs),
        "all_cells": bool(adata is mdata.mod[rna]),
    }


def registered_adata(model_cls, mdata: MuData) -> AnnData:
    """The AnnData that ``model_cls.setup_mudata(mdata, ...)`` registered in this session."""
    record = mdata.uns.get(MUDATA_SETUP_KEY)
    if not isinstance(record, dict) or "adata_uuid" not in record:
        raise ValueError(
            f"This MuData is not set up; call {model_cls.__name__}.setup_mudata(mdata, "
            "rna='rna', perturbation_key=... or guide_modality=...) first."
        )
    uuid = str(record["adata_uuid"])
    adata = _REGISTERED.get(uuid)
    if adata is None or str(adata.uns.get(_UUID_KEY)) != uuid:
        raise ValueError(
            f"mdata was set up in another session or copied (mdata.uns[{MUDATA_SETUP_KEY!r}] "
            f"names a registration this session does not know); call "
            f"{model_cls.__name__}.setup_mudata(mdata, ...) again."
        )
    return adata
