"""Every public function, class and method has a numpydoc docstring with an example.

The checks are numpydoc's own validator (``numpydoc.validate``), restricted to the rules that
fit the scverse style: types and defaults live in the signature, not in the docstring, so
numpydoc's "parameter has no type" (PR04) and "return value has no description" (RT03) rules
do not apply. The examples themselves run as doctests (``--doctest-modules`` in
``pyproject.toml``), so an example that stops working fails the suite.
"""

from __future__ import annotations

import inspect

import pytest
from numpydoc.validate import validate

import pdae_sc as pdae

SUBPACKAGES = ("data", "pp", "tl", "pl", "model", "module")

#: Checked for every public function, class and method.
RULES = {
    "GL08": "no docstring",
    "SS01": "no summary",
    "SS02": "summary does not start with a capital letter",
    "SS03": "summary does not end with a period",
    "PR01": "parameter not documented",
    "PR02": "documented parameter not in the signature",
    "PR03": "parameters documented out of order",
    "RT01": "no Returns section although the function returns a value",
    "EX01": "no Examples section",
}

#: Methods that a framework calls (Lightning, torch, scvi-tools), not the user: they need a
#: docstring, but their parameters and return value are the framework's contract.
FRAMEWORK_HOOKS = {
    "forward",
    "on_load",
    "training_step",
    "validation_step",
    "on_before_optimizer_step",
    "on_train_epoch_start",
    "on_train_epoch_end",
    "configure_optimizers",
    "on_load_checkpoint",
}


def _public_objects() -> list[tuple[str, set[str]]]:
    """(import path, rules to check) for every public callable of the package."""
    found: dict[str, set[str]] = {}
    for sub in SUBPACKAGES:
        mod = getattr(pdae, sub)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if not callable(obj):
                continue  # constants such as CONTROL_VALUES are documented in api.md
            path = f"{obj.__module__}.{obj.__qualname__}"
            found[path] = set(RULES)
            if not inspect.isclass(obj):
                continue
            # members defined by the class or by the package's own bases (the model's
            # mixins); each is checked where it is defined
            own = [c for c in obj.__mro__ if c.__module__.startswith("pdae_sc")]
            members = {}
            for cls in reversed(own):
                for attr, value in vars(cls).items():
                    members[attr] = (f"{cls.__module__}.{cls.__qualname__}.{attr}", value)
            for attr, (member, value) in members.items():
                if attr.startswith("_"):
                    continue
                if isinstance(value, property):
                    found[member] = {"GL08", "SS01", "SS03"}
                elif attr in FRAMEWORK_HOOKS:
                    found[member] = {"GL08", "SS01", "SS03"}
                elif inspect.isfunction(value) or isinstance(value, classmethod | staticmethod):
                    found[member] = set(RULES)
    return sorted(found.items())


PUBLIC = _public_objects()


def test_the_public_api_is_found():
    paths = [p for p, _ in PUBLIC]
    assert "pdae_sc.model._inference.InferenceMixin.predict" in paths  # a PDAE method
    assert "pdae_sc.model._pdae.PDAE.setup_anndata" in paths
    assert "pdae_sc.tl._metrics.evaluate" in paths
    assert "pdae_sc.module._losses.grouped_energy_score" in paths
    assert len(paths) > 60


@pytest.mark.parametrize(("path", "rules"), PUBLIC, ids=[p for p, _ in PUBLIC])
def test_numpydoc_docstring_with_example(path, rules):
    errors = [
        f"{code} ({RULES.get(code, code)}): {message}"
        for code, message in validate(path)["errors"]
        if code in rules
    ]
    assert not errors, f"{path}:\n  " + "\n  ".join(errors)
