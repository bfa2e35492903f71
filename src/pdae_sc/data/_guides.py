"""Private shim: guide assignment lives in :mod:`pdae_sc.pp` since 0.2.

``pdae_sc.data._mudata`` imports from here; point that import at ``pdae_sc.pp._guides`` and
delete this file.
"""

from pdae_sc.pp._guides import MULTIPLET, UNASSIGNED, add_guide_assignment, assign_guides

__all__ = ["MULTIPLET", "UNASSIGNED", "add_guide_assignment", "assign_guides"]
