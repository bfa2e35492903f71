"""Saving models atomically and reading what a saved model was trained on."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import torch

__all__ = ["atomic_save", "quiet_local_load", "read_var_names"]


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


def atomic_save(
    write: Callable[[str], None], dir_path: str | os.PathLike, *, overwrite: bool
) -> None:
    """Run ``write(tmp_dir)`` into a temporary directory, then move it to ``dir_path``.

    A failure while writing, or a refused overwrite, leaves an existing ``dir_path`` intact;
    if the final rename fails, the previous directory is put back. No temporary directory
    is left behind.
    """
    dir_path = os.path.abspath(dir_path)
    if os.path.exists(dir_path) and not overwrite:
        raise FileExistsError(
            f"{dir_path} already exists; pass overwrite=True or choose another directory."
        )
    parent = os.path.dirname(dir_path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".pdae-save-", dir=parent)
    old = os.path.join(tmp, "old")
    try:
        target = os.path.join(tmp, "model")
        write(target)
        if os.path.exists(dir_path):
            os.replace(dir_path, old)
        try:
            os.replace(target, dir_path)
        except BaseException:
            if os.path.exists(old) and not os.path.exists(dir_path):
                os.replace(old, dir_path)  # put the previous model back
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_var_names(dir_path: str | os.PathLike, *, prefix: str | None = None) -> pd.Index:
    """Genes of a model saved in scvi-tools' format, without loading its weights."""
    path = os.path.join(dir_path, f"{prefix or ''}model.pt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No saved model file at {path!r}; save it with save().")
    try:  # memory-mapped: the weights are not read
        saved = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except RuntimeError:  # an old (non-zip) torch file
        saved = torch.load(path, map_location="cpu", weights_only=False)
    return pd.Index(np.asarray(saved["var_names"], dtype=str))
