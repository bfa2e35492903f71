"""Perturbation labels, simulated data, batch sampling and split helpers."""

from ._labels import (
    EncodedConditions,
    closest_names,
    encode_conditions,
    format_condition,
    label_vector,
    parse_condition,
)

__all__ = [
    "EncodedConditions",
    "closest_names",
    "encode_conditions",
    "format_condition",
    "label_vector",
    "parse_condition",
]
