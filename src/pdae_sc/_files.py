"""Writing files safely: a new file, or one pdae-sc wrote itself, and never through a link.

Every function of pdae-sc that writes a file into a folder the user names (``tl.to_cell_eval``,
``pdae-sc predict --out``) goes through :func:`write_h5ad`; model directories go through
:mod:`pdae_sc.model._persistence`. The rules are the threat model of
``docs/reliability.md``: a path that exists is replaced only with ``overwrite=True`` and only
when it is a regular file that pdae-sc wrote (a mark in ``uns``); a symbolic link, a
directory or a file written by anything else is refused, untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = [
    "WRITTEN_BY_KEY",
    "check_file_prefix",
    "check_writable_file",
    "write_h5ad",
    "written_by",
]

#: ``uns`` key of the files pdae-sc writes: which function wrote the file.
WRITTEN_BY_KEY = "pdae_sc_written_by"


def check_file_prefix(prefix: str | None, *, arg: str = "prefix") -> str:
    """``prefix`` of the file names in a model directory: a plain name part, never a path.

    A prefix with a path separator or ``..`` would put the files outside the directory.
    """
    if prefix is None:
        return ""
    if not isinstance(prefix, str):
        raise TypeError(f"{arg} must be a string, got {type(prefix).__name__}.")
    seps = {os.sep, os.altsep, "/", "\\"} - {None}
    if any(s in prefix for s in seps) or prefix.startswith("..") or "\0" in prefix:
        raise ValueError(
            f"{arg}={prefix!r} is a path; the prefix only starts the file names inside the "
            "model directory (e.g. prefix='run1_'). Put the directory in dir_path instead."
        )
    return prefix


def written_by(path: str | os.PathLike) -> str | None:
    """The pdae-sc function that wrote the ``.h5ad`` at ``path``, or ``None`` (not ours)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            value = f.get(f"uns/{WRITTEN_BY_KEY}")
            if not isinstance(value, h5py.Dataset) or value.shape != ():
                return None
            value = value[()]
    except (OSError, ValueError):  # not an HDF5 file
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def check_writable_file(
    path: str | os.PathLike, *, overwrite: bool, writer: str, arg: str = "path"
) -> None:
    """Refuse to write ``path`` unless it is new, or (``overwrite``) a file ``writer`` wrote.

    Raises ``FileExistsError`` for an existing path without ``overwrite``, for a symbolic
    link, a directory or a file pdae-sc did not write; nothing is touched.
    """
    path = os.fspath(path)
    if os.path.islink(path):
        raise FileExistsError(
            f"{arg}={path!r} is a symbolic link; pdae-sc never writes through a link (it could "
            "overwrite the file it points to). Remove the link or choose another path."
        )
    if not os.path.lexists(path):
        return
    if os.path.isdir(path):
        raise FileExistsError(f"{arg}={path!r} is a directory; give the .h5ad file to write.")
    flag = "--overwrite" if arg.startswith("--") else "overwrite=True"
    if not overwrite:
        raise FileExistsError(
            f"{arg}={path!r} already exists; pass {flag} to replace it, or choose another path."
        )
    found = written_by(path)
    if found != writer:
        raise FileExistsError(
            f"{arg}={path!r} exists and was not written by {writer} "
            f"({'written by ' + found if found else 'not a pdae-sc file'}); overwrite only "
            "replaces files it wrote itself, so nothing was changed. Remove the file yourself "
            "or choose another path."
        )


def write_h5ad(
    adata: AnnData, path: str | os.PathLike, *, overwrite: bool, writer: str, arg: str = "path"
) -> None:
    """Write ``adata`` to ``path`` (marked as written by ``writer``), atomically.

    The file is written next to ``path`` and renamed onto it, so a failure leaves no partial
    file and a link placed at ``path`` meanwhile is replaced, never followed.
    ``adata.uns[WRITTEN_BY_KEY]`` is set to ``writer``.
    """
    check_writable_file(path, overwrite=overwrite, writer=writer, arg=arg)
    path = os.fspath(path)
    adata.uns[WRITTEN_BY_KEY] = writer
    fd, tmp = tempfile.mkstemp(
        prefix=".pdae-", suffix=".h5ad", dir=os.path.dirname(os.path.abspath(path))
    )
    os.close(fd)
    try:
        adata.write_h5ad(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
