"""Perturbation labels, simulated data, batch sampling and split helpers."""

from ._conventions import CONTROL_VALUES, GUIDE_PATTERN, standardize_perturbations
from ._counts import normalize_counts
from ._guides import add_guide_assignment, assign_guides
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
    "CONTROL_VALUES",
    "GUIDE_PATTERN",
    "EncodedConditions",
    "add_guide_assignment",
    "add_predictions_to_mudata",
    "assign_guides",
    "closest_names",
    "describe_split",
    "encode_conditions",
    "format_condition",
    "label_vector",
    "normalize_counts",
    "parse_condition",
    "simulate",
    "split_perturbations",
    "standardize_perturbations",
]
