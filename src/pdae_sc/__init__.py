"""pdae-sc: predict single-cell distributions under unseen perturbations with the PDAE."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import data, datasets, model, module, pl, pp, tl
from ._logging import configure_package_logger

configure_package_logger()  # INFO lines shown as scvi-tools shows its own; root untouched

try:
    __version__ = version("pdae-sc")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__", "data", "datasets", "model", "module", "pl", "pp", "tl"]
