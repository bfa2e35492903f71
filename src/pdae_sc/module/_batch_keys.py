"""The keys of a training batch, named once (as scvi-tools names its ``MODULE_KEYS``)."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["BATCH_KEYS"]


class _BatchKeys(NamedTuple):
    X: str = "x"
    LABEL: str = "label"
    X_ANCHOR: str = "x_anchor"
    LABEL_ANCHOR: str = "label_anchor"
    X_SOURCE: str = "x_source"
    LABEL_SOURCE: str = "label_source"


#: The batch of the all-pairs estimator holds ``X`` (cells x genes) and ``LABEL`` (their label
#: vectors); the grouped estimator's holds ``X_ANCHOR`` (conditions x cells x genes),
#: ``LABEL_ANCHOR`` (the conditions' label vectors), ``X_SOURCE`` and ``LABEL_SOURCE`` (the
#: source cells and their label vectors).
BATCH_KEYS = _BatchKeys()
