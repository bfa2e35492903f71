"""Pure-torch building blocks of the PDAE: networks, the module and the loss functions."""

from ._losses import (
    all_pairs_energy_score,
    energy_distance_to_normal,
    group_sparsity,
    grouped_energy_score,
    pairwise_distances,
    reconstruction_energy_score,
)
from ._networks import MLP, StochasticDecoder
from ._pdae import PDAELoss, PDAEModule

__all__ = [
    "MLP",
    "PDAELoss",
    "PDAEModule",
    "StochasticDecoder",
    "all_pairs_energy_score",
    "energy_distance_to_normal",
    "group_sparsity",
    "grouped_energy_score",
    "pairwise_distances",
    "reconstruction_energy_score",
]
