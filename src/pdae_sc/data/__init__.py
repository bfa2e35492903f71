"""Perturbation labels, simulated data, batch sampling and split helpers."""

from ._labels import (
    EncodedConditions,
    closest_names,
    encode_conditions,
    format_condition,
    label_vector,
    parse_condition,
)
from ._simulate import simulate
from ._split import describe_split, split_perturbations

__all__ = [
    "EncodedConditions",
    "closest_names",
    "describe_split",
    "encode_conditions",
    "format_condition",
    "label_vector",
    "parse_condition",
    "simulate",
    "split_perturbations",
]
