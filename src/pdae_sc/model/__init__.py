"""The user-facing PDAE model."""

from ._pdae import PDAE
from ._registration import Registration
from ._trainer import ConvergenceStopping
from ._training_plan import NonFiniteLossError, PDAETrainingPlan
from ._warnings import BaselineFavouredWarning, ExtrapolationWarning, PoorFitWarning

__all__ = [
    "PDAE",
    "BaselineFavouredWarning",
    "ConvergenceStopping",
    "ExtrapolationWarning",
    "NonFiniteLossError",
    "PDAETrainingPlan",
    "PoorFitWarning",
    "Registration",
]
