"""Plotting of predictions against observations.

Every function takes the data first and its options by keyword, draws on ``ax`` (a new
figure when ``None``), returns the Axes (a Figure for multi-panel plots) and never calls
``plt.show()``.
"""

from ._compare import distributions, mean_change
from ._cross_validation import cross_validation
from ._history import history
from ._interactions import interactions
from ._joint import embedding, joint_embedding
from ._metrics import metrics
from ._shifts import perturbation_embedding

__all__ = [
    "cross_validation",
    "distributions",
    "embedding",
    "history",
    "interactions",
    "joint_embedding",
    "mean_change",
    "metrics",
    "perturbation_embedding",
]
