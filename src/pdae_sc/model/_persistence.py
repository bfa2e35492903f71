"""Saving models atomically and reading what a saved model was trained on."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import anndata
import numpy as np
import pandas as pd
from anndata import AnnData
from scvi.model.base import BaseModelClass

from pdae_sc._files import check_file_prefix
from pdae_sc.data._fields import PERTURBATION_REGISTRY_KEY
from pdae_sc.data._validation import check_var_names_match

from ._registration import setup_arguments
from ._saved_file import read_model_file

if TYPE_CHECKING:
    from ._pdae import PDAE

__all__ = [
    "PersistenceMixin",
    "atomic_save",
    "check_overwritable",
    "keep_string_columns",
    "quiet_local_load",
    "read_var_names",
]

#: Files a save writes (after the prefix); ``overwrite=True`` replaces only such directories.
_SAVED_FILES = ("model.pt", "adata.h5ad", "adata.h5mu")


def _not_already_downloaded(record: logging.LogRecord) -> bool:
    return "already downloaded" not in record.getMessage()


@contextlib.contextmanager
def quiet_local_load() -> Iterator[None]:
    """Drop scvi-tools' "File ... already downloaded" log line while loading a local model.

    scvi-tools' loader goes through its download helper, which logs that message (at INFO,
    printed by scvi's handler) for every local file; nothing is downloaded by a load. Other
    messages are kept, and the filter is removed on exit.
    """
    log = logging.getLogger("scvi.data._download")
    log.addFilter(_not_already_downloaded)
    try:
        yield
    finally:
        log.removeFilter(_not_already_downloaded)


def _not_a_model(path: str, why: str) -> FileExistsError:
    return FileExistsError(
        f"{path!r} is not a saved pdae-sc model ({why}); overwrite=True only replaces an empty "
        "directory or one written by PDAE.save() (its model.pt and adata.h5ad), so nothing "
        "was changed. Choose another directory, or remove this one yourself."
    )


def check_overwritable(dir_path: str | os.PathLike, *, prefix: str | None = None) -> None:
    """Refuse to overwrite ``dir_path`` unless it is empty or a model :meth:`PDAE.save` wrote.

    Decided from the content, not the names: the entries must be regular files named as a save
    names them, ``model.pt`` must be a PDAE model file (read without running code) and a saved
    AnnData must carry the registration id of that model. Anything else (a file, a link, a
    scvi-tools model of another class, a user's own ``model.pt``, other files) raises
    ``FileExistsError``, and nothing is touched.
    """
    path = os.fspath(dir_path)
    prefix = check_file_prefix(prefix)
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path) or os.path.islink(path):
        raise FileExistsError(
            f"{path!r} exists and is not a directory; overwrite=True only replaces a model "
            "directory written by save(). Choose another path, or remove the file yourself."
        )
    entries = sorted(os.listdir(path))
    if not entries:
        return
    allowed = {f"{prefix}{name}" for name in _SAVED_FILES}
    other = [e for e in entries if e not in allowed]
    if other:
        raise _not_a_model(path, f"it holds {other[:5]}")
    odd = [e for e in entries if os.path.islink(os.path.join(path, e))]
    odd += [e for e in entries if not os.path.isfile(os.path.join(path, e))]
    if odd:
        raise _not_a_model(path, f"{odd[:5]} are not regular files")
    model_file = os.path.join(path, f"{prefix}model.pt")
    if not os.path.isfile(model_file):
        raise _not_a_model(path, f"it holds {entries[:5]} and no {prefix}model.pt")
    try:
        registry = read_model_file(model_file, mmap=True, model_names=("PDAE",))["attr_dict"][
            "registry_"
        ]
    except ValueError as err:
        raise _not_a_model(path, f"{prefix}model.pt is not a PDAE model file") from err
    for name in _SAVED_FILES[1:]:
        data_file = os.path.join(path, f"{prefix}{name}")
        if os.path.exists(data_file) and _registration_id(data_file) != registry.get("_scvi_uuid"):
            raise _not_a_model(path, f"{prefix}{name} is not the data saved with its model")


def _registration_id(path: str) -> str | None:
    """``uns["_scvi_uuid"]`` of a saved ``.h5ad`` / ``.h5mu`` (the AnnData save wrote)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            for key in ("uns/_scvi_uuid", "mod/rna/uns/_scvi_uuid"):
                value = f.get(key)
                if isinstance(value, h5py.Dataset) and value.shape == ():
                    value = value[()]
                    return value.decode() if isinstance(value, bytes) else str(value)
    except (OSError, ValueError):
        return None
    return None


def atomic_save(
    write: Callable[[str], None],
    dir_path: str | os.PathLike,
    *,
    overwrite: bool,
    prefix: str | None = None,
) -> None:
    """Run ``write(tmp_dir)`` into a temporary directory, then move it to ``dir_path``.

    A failure while writing, or a refused overwrite, leaves an existing ``dir_path`` intact;
    if the final rename fails, the previous directory is put back. No temporary directory
    is left behind. ``overwrite=True`` replaces only an empty directory or a saved model
    (see :func:`check_overwritable`).
    """
    check_file_prefix(prefix)
    dir_path = os.path.abspath(dir_path)
    if os.path.lexists(dir_path):
        if not overwrite:
            raise FileExistsError(
                f"{dir_path} already exists; pass overwrite=True or choose another directory."
            )
        check_overwritable(dir_path, prefix=prefix)
    parent = os.path.dirname(dir_path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".pdae-save-", dir=parent)
    old = os.path.join(tmp, "old")
    try:
        target = os.path.join(tmp, "model")
        write(target)
        if os.path.lexists(dir_path):
            os.replace(dir_path, old)
        try:
            os.replace(target, dir_path)
        except BaseException:
            if os.path.exists(old) and not os.path.exists(dir_path):
                os.replace(old, dir_path)  # put the previous model back
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def keep_string_columns(adata: AnnData) -> Iterator[None]:
    """Put back the string columns of ``obs`` / ``var`` that writing an h5ad makes categorical.

    :meth:`anndata.AnnData.write_h5ad` converts string columns of the AnnData it writes to
    categoricals, in place; the file keeps the categoricals, the user's AnnData its columns.
    """
    frames = [adata.obs, adata.var]
    if adata.raw is not None:
        frames.append(adata.raw.var)
    kept = [
        (df, {k: df[k] for k in df.columns if not isinstance(df[k].dtype, pd.CategoricalDtype)})
        for df in frames
    ]
    try:
        yield
    finally:
        for df, columns in kept:
            for key, column in columns.items():
                if key in df.columns and df[key].dtype != column.dtype:
                    df[key] = column


def _model_file(dir_path: str | os.PathLike, prefix: str | None) -> str:
    path = os.path.join(dir_path, f"{check_file_prefix(prefix)}model.pt")
    if not os.path.isfile(path):
        found = sorted(os.listdir(dir_path))[:5] if os.path.isdir(dir_path) else []
        raise FileNotFoundError(
            f"No saved model file at {path!r} (the directory holds {found}); pass a directory "
            "written by PDAE.save() or `pdae-sc train`."
        )
    return path


def _read_saved(dir_path: str | os.PathLike, prefix: str | None, fn):
    """``fn`` of the saved dictionary of ``model.pt``, read safely without its weights."""
    saved = read_model_file(_model_file(dir_path, prefix), mmap=True)
    try:
        return fn(saved)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(
            f"{_model_file(dir_path, prefix)!r} is not a readable pdae-sc model file "
            f"({type(err).__name__}: {str(err)[:100]}); save the model again with PDAE.save()."
        ) from err


def read_var_names(dir_path: str | os.PathLike, *, prefix: str | None = None) -> pd.Index:
    """Genes of a model saved in scvi-tools' format, without loading its weights."""
    return _read_saved(
        dir_path, prefix, lambda saved: pd.Index(np.asarray(saved["var_names"], dtype=str))
    )


def saved_format_version(dir_path: str | os.PathLike, *, prefix: str | None) -> int:
    """Registry format of a saved model (1: pdae-sc 0.1.0, which recorded none)."""

    def version(saved) -> int:
        fields = saved["attr_dict"]["registry_"]["field_registries"]
        state = fields[PERTURBATION_REGISTRY_KEY]["state_registry"]
        return int(state.get("format_version", 1))

    return _read_saved(dir_path, prefix, version)


def _is_saved_attribute(cls, name: str) -> bool:
    """An attribute ``save`` records (scvi-tools' ``name_`` convention), not a method."""
    return (
        isinstance(name, str)
        and name.isidentifier()
        and name.endswith("_")
        and not name.startswith("_")
        and not callable(getattr(cls, name, None))
        and not isinstance(getattr(cls, name, None), property)
    )


def _rebuild(cls, saved: dict, adata: AnnData, *, accelerator: str, device) -> PDAE:
    """The model of a saved dictionary: register ``adata`` with the saved setup, build, load.

    As scvi-tools' ``load`` builds it, without its unrestricted ``torch.load``. A model of
    registry format 1 (pdae-sc 0.1.0, before the ``decoder`` option) gets the paper's
    generative decoder it was trained with.
    """
    from scvi.model._utils import parse_device_args
    from scvi.model.base._save_load import _initialize_model

    _, _, torch_device = parse_device_args(
        accelerator=accelerator, devices=device, return_device="torch", validate_single_device=True
    )
    registry = saved["attr_dict"]["registry_"]
    attrs = {k: v for k, v in saved["attr_dict"].items() if _is_saved_attribute(cls, k)}
    state = registry["field_registries"][PERTURBATION_REGISTRY_KEY]["state_registry"]
    if int(state.get("format_version", 1)) < 2:
        attrs["init_params_"] = _with_generative_decoder(attrs["init_params_"])
    cls.setup_anndata(adata, source_registry=registry, **setup_arguments(registry))
    model = _initialize_model(cls, adata, registry, attrs, None)  # is_trained_ as saved
    weights = dict(saved["model_state_dict"])
    model.module.on_load(model, pyro_param_store=weights.pop("pyro_param_store", None))
    model.module.load_state_dict(weights)
    model.to_device(torch_device)
    model.module.eval()
    model._validate_anndata(adata)
    return model


def _with_generative_decoder(init_params: dict) -> dict:
    """``init_params_`` of a format-1 model with the decoder it had (it had no option)."""
    init = dict(init_params)
    key = "non_kwargs" if "non_kwargs" in init else None
    args = dict(init[key]) if key else init
    if args.get("decoder") is None:
        args["decoder"] = "generative"
    if key is None:
        return args
    init[key] = args
    return init


class PersistenceMixin:
    """:meth:`save`, :meth:`load` and :meth:`load_var_names` of :class:`~pdae_sc.model.PDAE`."""

    def save(
        self, dir_path: str, *, overwrite: bool = False, save_anndata: bool = False, **kwargs
    ) -> None:
        """Save the model in scvi-tools' format, atomically.

        The files are written to a temporary directory next to ``dir_path`` and moved into
        place only when complete; a failure, or a refused overwrite, leaves an existing model
        at ``dir_path`` intact.

        Parameters
        ----------
        dir_path
            Directory to create.
        overwrite
            Replace an existing model directory. Only an empty directory or one written by
            :meth:`save` (``model.pt``, optionally ``adata.h5ad``) is replaced; anything else
            (a file, a directory with other files) raises ``FileExistsError`` untouched.
        save_anndata
            Also save the registered AnnData (needed by :meth:`load` without ``adata``).
            The AnnData itself is not changed (string columns stay strings).
        **kwargs
            Passed to :meth:`scvi.model.base.BaseModelClass.save`.

        Examples
        --------
        >>> import tempfile
        >>> import pdae_sc as pdae
        >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=20, seed=0)
        >>> pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
        >>> model = pdae.model.PDAE(adata, n_latent=8)
        >>> model.train(max_epochs=1, enable_progress_bar=False)
        >>> path = tempfile.mkdtemp() + "/pdae_model"
        >>> model.save(path)
        >>> model.save(path, overwrite=True)  # without overwrite=True this raises
        >>> loaded = pdae.model.PDAE.load(path, adata)
        """

        def write(target: str) -> None:
            with keep_string_columns(self.adata):
                BaseModelClass.save(
                    self, target, overwrite=False, save_anndata=save_anndata, **kwargs
                )

        atomic_save(write, dir_path, overwrite=overwrite, prefix=kwargs.get("prefix"))

    @classmethod
    def load(cls, dir_path: str, adata: AnnData | None = None, **kwargs) -> PDAE:
        """Load a model saved with :meth:`save`.

        Parameters
        ----------
        dir_path
            Directory written by :meth:`save`.
        adata
            AnnData with the training genes in the training order; default the AnnData saved
            with the model. Different or reordered genes raise ``ValueError``, before
            ``adata`` is touched.
        **kwargs
            ``accelerator``, ``device`` and ``prefix``, as in
            :meth:`scvi.model.base.BaseModelClass.load`.

        Returns
        -------
        The loaded :class:`PDAE`.

        Notes
        -----
        Loading runs no code from the directory: ``model.pt`` is read with an unpickler that
        creates only the types pdae-sc's own saves hold (tensors, numpy arrays, pandas
        DataFrames, a SciPy CSR matrix, plain containers) and refuses anything else with a
        ``ValueError``, unlike scvi-tools' own loader; ``adata.h5ad`` is read by anndata.
        See the threat model in ``docs/reliability.md``.

        Examples
        --------
        >>> import tempfile
        >>> import pdae_sc as pdae
        >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=20, seed=0)
        >>> pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
        >>> model = pdae.model.PDAE(adata, n_latent=8)
        >>> model.train(max_epochs=1, enable_progress_bar=False)
        >>> path = tempfile.mkdtemp() + "/pdae_model"
        >>> model.save(path, save_anndata=True)
        >>> pdae.model.PDAE.load(path).predict(["P0+P1"], n_cells=10, seed=0).shape
        (10, 100)
        >>> loaded = pdae.model.PDAE.load(path, adata)  # or with a matching AnnData
        """
        if not os.path.isdir(dir_path):
            raise FileNotFoundError(f"No saved model at {str(dir_path)!r}.")
        prefix = check_file_prefix(kwargs.pop("prefix", None))
        accelerator, device = kwargs.pop("accelerator", "auto"), kwargs.pop("device", "auto")
        if kwargs:
            raise TypeError(
                f"PDAE.load got unsupported arguments {sorted(kwargs)}; it takes adata, "
                "accelerator, device and prefix, and loads only a local directory (download a "
                "shared model first; backup_url is not followed)."
            )
        saved = read_model_file(_model_file(dir_path, prefix), model_names=("PDAE", cls.__name__))
        var_names = pd.Index(np.asarray(saved["var_names"], dtype=str))
        data_file = os.path.join(dir_path, f"{prefix}adata.h5ad")
        if adata is None and not os.path.isfile(data_file):
            raise ValueError(
                f"The model at {str(dir_path)!r} was saved without its AnnData "
                "(save_anndata=False), so load needs one: pass an AnnData with the training "
                f"genes, PDAE.load({str(dir_path)!r}, adata) (CLI: pdae-sc predict --adata "
                "DATA.h5ad)."
            )
        if adata is not None and not isinstance(adata, AnnData):
            raise TypeError(f"adata must be an AnnData, got {type(adata).__name__}.")
        if adata is None:
            adata = anndata.read_h5ad(data_file)
        check_var_names_match(
            var_names,
            adata,
            what=f"the model saved at {str(dir_path)!r}",
            names_code=f"PDAE.load_var_names({str(dir_path)!r})",
        )
        return _rebuild(cls, saved, adata, accelerator=accelerator, device=device)

    @staticmethod
    def load_var_names(dir_path: str | os.PathLike, *, prefix: str | None = None) -> pd.Index:
        """Genes of a saved model, in its order, without loading the model.

        Parameters
        ----------
        dir_path
            Directory written by :meth:`save`.
        prefix
            File name prefix used when saving.

        Returns
        -------
        The model's ``var_names``; ``adata[:, PDAE.load_var_names(path)]`` matches them.

        Examples
        --------
        >>> import tempfile
        >>> import pdae_sc as pdae
        >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=20, seed=0)
        >>> pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
        >>> model = pdae.model.PDAE(adata, n_latent=8)
        >>> model.train(max_epochs=1, enable_progress_bar=False)
        >>> path = tempfile.mkdtemp() + "/pdae_model"
        >>> model.save(path)
        >>> genes = pdae.model.PDAE.load_var_names(path)
        >>> genes[:3].tolist()
        ['gene_0', 'gene_1', 'gene_2']
        >>> reordered = adata[:, adata.var_names[::-1]].copy()  # genes in another order
        >>> model = pdae.model.PDAE.load(path, reordered[:, genes].copy())
        """
        return read_var_names(dir_path, prefix=prefix)
