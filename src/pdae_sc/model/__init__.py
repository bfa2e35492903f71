"""The user-facing PDAE model."""

from ._diagnostics import PoorFitWarning
from ._pdae import PDAE, ExtrapolationWarning
from ._selection import BaselineFavouredWarning
from ._trainer import ConvergenceStopping
from ._training_plan import NonFiniteLossError, PDAETrainingPlan

__all__ = [
    "PDAE",
    "BaselineFavouredWarning",
    "ConvergenceStopping",
    "ExtrapolationWarning",
    "NonFiniteLossError",
    "PDAETrainingPlan",
    "PoorFitWarning",
]
