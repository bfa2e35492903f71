"""The user-facing PDAE model."""

from ._diagnostics import PoorFitWarning
from ._pdae import PDAE, ExtrapolationWarning
from ._training_plan import NonFiniteLossError, PDAETrainingPlan

__all__ = [
    "PDAE",
    "ExtrapolationWarning",
    "NonFiniteLossError",
    "PDAETrainingPlan",
    "PoorFitWarning",
]
