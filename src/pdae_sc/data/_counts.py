"""Private shim: the count helpers live in :mod:`pdae_sc.pp` since 0.2.

``pdae_sc.model._prediction`` imports ``size_factors`` and ``to_counts`` from here; point
that import at ``pdae_sc.pp._counts`` and delete this file.
"""

from pdae_sc.pp._counts import normalize_counts, size_factors, to_counts

__all__ = ["normalize_counts", "size_factors", "to_counts"]
