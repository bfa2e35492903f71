"""Plotting of predictions against observations.

Every function takes the data first (a prediction before the observed cells) and its
options by keyword, draws on ``ax`` (a new figure when ``None``), returns the Axes (the
Figure with ``return_fig=True``) and never calls ``plt.show()``. ``joint_embedding`` here is
a deprecated alias of :func:`pdae_sc.tl.joint_embedding`.
"""

from ._compare import distributions, mean_change
from ._cross_validation import cross_validation
from ._history import history
from ._interactions import interactions
from ._joint import embedding, joint_embedding  # noqa: F401 (deprecated alias, not in __all__)
from ._metrics import metrics
from ._shifts import perturbation_embedding

__all__ = [
    "cross_validation",
    "distributions",
    "embedding",
    "history",
    "interactions",
    "mean_change",
    "metrics",
    "perturbation_embedding",
]
