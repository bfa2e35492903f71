"""The model's mixins use a small, explicit interface, and no private parts of other objects."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from pdae_sc.model import PDAE
from pdae_sc.model._diagnostics import DiagnosticsMixin
from pdae_sc.model._inference import InferenceMixin
from pdae_sc.model._persistence import PersistenceMixin
from pdae_sc.model._registration_mixin import RegistrationMixin
from pdae_sc.model._training import TrainingMixin

MODEL = Path(__file__).resolve().parents[2] / "src" / "pdae_sc" / "model"
#: what scvi-tools' BaseModelClass provides that the mixins may use
SCVI = {"_validate_anndata", "_get_user_attributes"}
#: the parts a model class sets (scvi-tools' convention for swapping them)
PARTS = {"_module_cls", "_data_splitter_cls", "_training_plan_cls", "_train_runner_cls"}


def _private_self_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    }


@pytest.mark.parametrize(
    ("mixin", "file"),
    [
        (InferenceMixin, "_inference.py"),
        (TrainingMixin, "_training.py"),
        (DiagnosticsMixin, "_diagnostics.py"),
        (PersistenceMixin, "_persistence.py"),
    ],
)
def test_mixins_use_only_their_own_and_the_registration_helpers(mixin, file):
    allowed = set(dir(mixin)) | set(vars(RegistrationMixin)) | PARTS | SCVI
    used = _private_self_names(MODEL / file)
    assert used <= allowed, f"{file} uses {sorted(used - allowed)} defined elsewhere"


@pytest.mark.parametrize(
    "pattern",
    [
        r"_setup_adata_manager_store",  # scvi-tools' private store of registrations
        r"\bsplitter\._n_batches",  # the splitter's private helper
        r"\.fields\[\d+\]",  # a registry field by position instead of registry key
        r"registry_\[\"field_registries\"\]",  # scvi-tools' registry dict on a model
    ],
)
def test_no_private_reach_ins(pattern):
    hits = [
        f"{path.name}:{i}"
        for path in sorted(MODEL.glob("*.py"))
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(pattern, line)
    ]
    assert not hits, f"{pattern!r} in {hits}"


@pytest.mark.parametrize(
    "mixin", [InferenceMixin, TrainingMixin, DiagnosticsMixin, PersistenceMixin, RegistrationMixin]
)
def test_mixins_are_flat(mixin):
    """No mixin builds on another: the model class lists each once, beside scvi-tools' base."""
    assert mixin.__bases__ == (object,)
    assert mixin in PDAE.__bases__
