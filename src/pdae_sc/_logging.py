"""The ``pdae_sc`` logger: INFO lines visible by default, as scvi-tools shows its own.

scvi-tools gives its ``"scvi"`` logger a handler and takes the level from
``scvi.settings.verbosity``. The ``"pdae_sc"`` logger gets the same: a handler that prints
records at or above ``scvi.settings.verbosity`` (read at each record, so
``scvi.settings.verbosity = logging.WARNING`` silences pdae-sc's INFO lines too). The root
logger is not touched. Records still propagate, so an application that configured logging
(a handler on the root logger, e.g. ``logging.basicConfig``) gets them through its own
handlers; the package handler then stays silent, so no line is printed twice.
"""

from __future__ import annotations

import logging

import scvi
from rich.console import Console
from rich.logging import RichHandler

__all__ = ["PACKAGE_LOGGER", "configure_package_logger"]

PACKAGE_LOGGER = "pdae_sc"


class _FollowScviVerbosity(logging.Filter):
    """Pass records at or above ``scvi.settings.verbosity`` while the root has no handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if logging.getLogger().handlers:  # the application configured logging itself
            return False
        level = scvi.settings.verbosity
        if isinstance(level, str):
            level = logging.getLevelName(level.upper())
        return record.levelno >= (level if isinstance(level, int) else logging.INFO)


def configure_package_logger() -> logging.Logger:
    """Give the ``pdae_sc`` logger its handler (once) and an INFO level if it has none."""
    logger = logging.getLogger(PACKAGE_LOGGER)
    if not any(getattr(h, "_pdae_handler", False) for h in logger.handlers):
        handler = RichHandler(
            show_path=False, show_time=False, console=Console(stderr=True, soft_wrap=True)
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(_FollowScviVerbosity())
        handler._pdae_handler = True
        logger.addHandler(handler)
    if logger.level == logging.NOTSET:  # the user's own setLevel wins
        logger.setLevel(logging.INFO)
    return logger
