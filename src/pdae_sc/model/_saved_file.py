"""Reading ``model.pt`` without running code: only the types pdae-sc's own saves contain.

A saved model is a torch zip file whose pickle holds the weights (tensors), the genes (a
numpy array) and scvi-tools' ``attr_dict`` (dicts, lists, strings, numbers, numpy arrays,
the training history as pandas DataFrames and, since the sparse label table, one SciPy CSR
matrix). It is read with an unpickler that resolves only those types
(:data:`ALLOWED_GLOBALS`) and so calls no other function, so a crafted file cannot
run code (unlike scvi-tools' own loader, which unpickles anything). The result is then
checked to be shaped like a save of :class:`~pdae_sc.model.PDAE`.
"""

from __future__ import annotations

import codecs
import collections
import os
import pickle
import types
import zipfile
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import sparse

__all__ = ["ALLOWED_GLOBALS", "is_pdae_save", "read_model_file"]

_reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's array unpickler
_scalar = np.float64(0).__reduce__()[0]  # numpy's scalar unpickler
_PD_BASE = pd.core.indexes.base
_PD_MANAGERS = pd.core.internals.managers

#: The only globals a model file may name: the types ``PDAE.save`` writes (0.1.0 to today)
#: under each name that torch, numpy, pandas and SciPy versions pickle them with. Nothing
#: else is imported or called while reading.
ALLOWED_GLOBALS: dict[str, Any] = {
    "builtins.dict": dict,
    "builtins.list": list,
    "builtins.tuple": tuple,
    "builtins.set": set,
    "builtins.slice": slice,
    "builtins.bytes": bytes,
    "builtins.bytearray": bytearray,
    "_codecs.encode": codecs.encode,  # bytes in pickle protocol 2
    "collections.OrderedDict": collections.OrderedDict,
    "collections.defaultdict": collections.defaultdict,
    "torch._utils._rebuild_tensor": torch._utils._rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
    "torch._tensor._rebuild_from_type_v2": torch._tensor._rebuild_from_type_v2,
    "torch.nn.parameter.Parameter": torch.nn.Parameter,
    "torch.Tensor": torch.Tensor,
    "torch.Size": torch.Size,
    "numpy.ndarray": np.ndarray,
    "numpy.dtype": np.dtype,
    "numpy._core.multiarray._reconstruct": _reconstruct,
    "numpy.core.multiarray._reconstruct": _reconstruct,
    "numpy._core.multiarray.scalar": _scalar,
    "numpy.core.multiarray.scalar": _scalar,
    **{f"numpy.dtypes.{type(np.dtype(t)).__name__}": type(np.dtype(t)) for t in "fdihlqbBO?U"},
    "pandas.core.frame.DataFrame": pd.DataFrame,
    "pandas.core.indexes.base.Index": pd.Index,
    "pandas.core.indexes.range.RangeIndex": pd.RangeIndex,
    "pandas.core.indexes.base._new_Index": _PD_BASE._new_Index,
    "pandas.core.internals.managers.BlockManager": _PD_MANAGERS.BlockManager,
    "pandas._libs.internals._unpickle_block": pd._libs.internals._unpickle_block,
    "scipy.sparse._csr.csr_matrix": sparse.csr_matrix,
    "scipy.sparse.csr.csr_matrix": sparse.csr_matrix,
}


class _RefusedGlobal(pickle.UnpicklingError):
    """A model file names a global outside :data:`ALLOWED_GLOBALS`."""


class _Unpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`.

    Python's "restricting globals" recipe: a reference to anything else, such as
    ``os.system``, is an error.
    """

    def find_class(self, module: str, name: str) -> Any:
        module = {"__builtin__": "builtins"}.get(module, module)  # Python 2 names (protocol 2)
        found = ALLOWED_GLOBALS.get(f"{module}.{name}")
        if found is None:
            raise _RefusedGlobal(f"{module}.{name} is not allowed in a model file")
        return found


#: What ``torch.load(pickle_module=...)`` uses: the allow-listed unpickler, nothing else.
_safe_pickle = types.ModuleType("pdae_sc_safe_pickle")
_safe_pickle.Unpickler = _Unpickler
_safe_pickle.load = lambda f, **kwargs: _Unpickler(f, **kwargs).load()


def _load(path: str, *, mmap: bool) -> Any:
    # weights_only=False only because torch's own allow-list cannot fill a defaultdict (which
    # scvi-tools' registry is); _safe_pickle restricts the globals as tightly as it would.
    kwargs = {"map_location": "cpu", "weights_only": False, "pickle_module": _safe_pickle}
    if mmap and zipfile.is_zipfile(path):  # memory-mapped: the weights are not read
        return torch.load(path, mmap=True, **kwargs)
    return torch.load(path, **kwargs)


def _check_shape(saved: Any, model_names: tuple[str, ...]) -> None:
    """A PDAE save: the three entries scvi-tools writes, of the types it writes."""
    if not isinstance(saved, dict) or not {"model_state_dict", "var_names", "attr_dict"} <= set(
        saved
    ):
        keys = sorted(map(str, saved))[:5] if isinstance(saved, dict) else type(saved).__name__
        raise ValueError(f"it holds {keys}, not a saved model (model_state_dict, attr_dict)")
    weights = saved["model_state_dict"]
    if not isinstance(weights, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor)
        for k, v in weights.items()
        if k != "pyro_param_store"  # scvi-tools adds it (empty for PDAE)
    ):
        raise ValueError("its model_state_dict is not a dictionary of tensors")
    attr = saved["attr_dict"]
    registry = attr.get("registry_") if isinstance(attr, dict) else None
    if not isinstance(registry, dict) or registry.get("model_name") not in model_names:
        name = registry.get("model_name") if isinstance(registry, dict) else None
        raise ValueError(f"it is a model of another class (model_name={name!r})")
    if not isinstance(saved["var_names"], np.ndarray | list) or np.ndim(saved["var_names"]) != 1:
        raise ValueError("its var_names are not a list of genes")
    fields = registry.get("field_registries")
    for field in fields.values() if isinstance(fields, dict) else ():
        state = field.get("state_registry", {}) if isinstance(field, dict) else {}
        table = state.get("label_matrix") if isinstance(state, dict) else None
        if sparse.issparse(table):
            table.check_format(full_check=True)  # indices in range before anything reads it


def read_model_file(
    path: str | os.PathLike, *, mmap: bool = False, model_names: tuple[str, ...] = ("PDAE",)
) -> dict:
    """The saved dictionary of a ``model.pt`` written by :meth:`PDAE.save`, read safely.

    Parameters
    ----------
    path
        The ``model.pt`` file.
    mmap
        Map the weights instead of reading them (for reading the genes or the registry).
    model_names
        Model classes accepted (scvi-tools' ``registry_["model_name"]``).

    Returns
    -------
    ``{"model_state_dict", "var_names", "attr_dict"}`` as saved, tensors on the CPU.
    """
    path = os.fspath(path)
    try:
        saved = _load(path, mmap=mmap)
        _check_shape(saved, model_names)
    except _RefusedGlobal as err:
        raise ValueError(
            f"{path!r} is not a pdae-sc model file: it asks to create objects that a model "
            f"saved by pdae-sc never contains ({str(err).splitlines()[0][:160]}). pdae-sc "
            "loads only the types its own saves hold and runs no code from a model file; a "
            "file from another program, or a crafted one, is refused."
        ) from err
    except Exception as err:  # garbage, truncated, foreign or misshapen file
        raise ValueError(
            f"{path!r} is not a readable pdae-sc model file ({type(err).__name__}: "
            f"{str(err)[:120]}); it may be truncated or written by another program. Save the "
            "model again with PDAE.save()."
        ) from err
    return saved


def is_pdae_save(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a regular file that :func:`read_model_file` accepts."""
    if os.path.islink(path) or not os.path.isfile(path):
        return False
    try:
        read_model_file(path, mmap=True)
    except ValueError:  # not ours
        return False
    return True
