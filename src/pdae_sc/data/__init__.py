"""Perturbation labels, simulated data, batch sampling and split helpers.

The preprocessing helpers live in :mod:`pdae_sc.pp`; their old names here
(``pdae.data.normalize_counts`` ...) still work and warn with a ``FutureWarning``.
"""

import warnings

from ._labels import (
    EncodedConditions,
    closest_names,
    encode_conditions,
    format_condition,
    label_vector,
    parse_condition,
)
from ._mudata import add_predictions_to_mudata
from ._simulate import simulate
from ._split import describe_split, split_perturbations

__all__ = [
    "EncodedConditions",
    "add_predictions_to_mudata",
    "closest_names",
    "describe_split",
    "encode_conditions",
    "format_condition",
    "label_vector",
    "parse_condition",
    "simulate",
    "split_perturbations",
]

_MOVED_TO_PP = (
    "CONTROL_VALUES",
    "GUIDE_PATTERN",
    "add_guide_assignment",
    "assign_guides",
    "normalize_counts",
    "standardize_perturbations",
)


def __getattr__(name: str):
    """Deprecated aliases of the helpers that moved to :mod:`pdae_sc.pp` (they warn)."""
    if name in _MOVED_TO_PP:
        from pdae_sc import pp

        warnings.warn(
            f"pdae.data.{name} moved to pdae.pp.{name}; the old name is removed in the next "
            "release.",
            FutureWarning,
            stacklevel=2,
        )
        return getattr(pp, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
