"""Preprocessing: bring a screen into the shape the PDAE reads (scanpy's ``pp`` grammar).

Each function takes the data first and its options by keyword, and says in its *Returns*
section what it writes: count normalisation with the counts kept, guide calling, and the
rewriting of other tools' perturbation labels.
"""

from ._conventions import CONTROL_VALUES, GUIDE_PATTERN, standardize_perturbations
from ._counts import normalize_counts
from ._guides import add_guide_assignment, assign_guides

__all__ = [
    "CONTROL_VALUES",
    "GUIDE_PATTERN",
    "add_guide_assignment",
    "assign_guides",
    "normalize_counts",
    "standardize_perturbations",
]
