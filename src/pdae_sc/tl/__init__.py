"""Tools: evaluation metrics, baselines and extrapolation checks (AnnData in, tables out)."""

from ._extrapolation import extrapolation_table

__all__ = ["extrapolation_table"]
