"""Tools: evaluation metrics, baselines and extrapolation checks (AnnData in, tables out)."""

from pdae_sc.data._span import extrapolation_table

from ._baselines import predict_baseline
from ._cell_eval import to_cell_eval
from ._combine import combine_predictions
from ._cross_validate import CrossValidation, cross_validate
from ._embedding import joint_embedding
from ._gap_closed import gap_closed
from ._interactions import interaction_scores, predicted_interaction_scores
from ._metrics import (
    duplicate_groups,
    energy_distance,
    evaluate,
    mean_l2,
    mmd_rbf,
    pearson_delta,
    r2_mean,
    top_de_genes,
)

__all__ = [
    "CrossValidation",
    "combine_predictions",
    "cross_validate",
    "duplicate_groups",
    "energy_distance",
    "evaluate",
    "extrapolation_table",
    "gap_closed",
    "interaction_scores",
    "joint_embedding",
    "mean_l2",
    "mmd_rbf",
    "pearson_delta",
    "predict_baseline",
    "predicted_interaction_scores",
    "r2_mean",
    "to_cell_eval",
    "top_de_genes",
]
