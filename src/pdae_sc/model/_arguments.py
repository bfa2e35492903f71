"""Checks of the arguments of :class:`~pdae_sc.model.PDAE` (architecture, data, batches)."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import numpy as np

from pdae_sc.data._validation import check_positive_int

__all__ = ["check_against_data", "check_architecture", "check_batch_layout", "loss_defaults"]


def check_architecture(decoder, gene_shift, n_latent, n_noise, n_hidden, noise_scale):
    """Refuse bad architecture arguments of :class:`PDAE`; ``(n_latent, n_noise, n_hidden)``."""
    if decoder not in (None, "auto", "residual", "multiplicative", "generative"):
        raise ValueError(
            f"decoder={decoder!r}; use 'auto', 'residual', 'multiplicative' or 'generative'."
        )
    if gene_shift and decoder == "generative":
        raise ValueError("gene_shift=True needs decoder='residual' or 'multiplicative'.")
    n_latent = check_positive_int(n_latent, "n_latent")
    n_noise = check_positive_int(n_noise, "n_noise", minimum=0)
    if isinstance(n_hidden, int | str) or not isinstance(n_hidden, Sequence):
        raise TypeError(
            f"n_hidden={n_hidden!r}; give the hidden widths as a sequence, e.g. (256, 256)."
        )
    bad = [h for h in n_hidden if isinstance(h, bool) or not isinstance(h, Integral) or h < 1]
    if bad:
        raise ValueError(
            f"n_hidden={n_hidden!r} has widths {bad}; every hidden width must be a positive "
            "integer, e.g. n_hidden=(256, 256)."
        )
    if not (
        isinstance(noise_scale, int | float | np.integer | np.floating)
        and np.isfinite(noise_scale)
        and noise_scale >= 0
    ):
        raise ValueError(f"noise_scale={noise_scale!r}; use a finite number >= 0.")
    return n_latent, n_noise, tuple(int(h) for h in n_hidden)


def check_against_data(decoder, gene_shift, output_activation, data_min) -> None:
    """Refuse a decoder or output activation that cannot produce the registered values."""
    if gene_shift and decoder == "generative":
        raise ValueError(
            "gene_shift=True needs decoder='residual' or 'multiplicative'; decoder='auto' "
            "chose 'generative' because the registered data have negative values."
        )
    if decoder == "multiplicative" and data_min < 0:
        raise ValueError(
            f"decoder='multiplicative' reads the data as log1p-normalised counts, but the "
            f"registered data have minimum {data_min:g}; use decoder='residual'."
        )
    if output_activation in ("relu", "softplus") and data_min < 0:
        raise ValueError(
            f"output_activation={output_activation!r} can only produce non-negative "
            f"values, but the registered data have minimum {data_min:g}; use "
            "output_activation='none' (or 'auto')."
        )


#: Loss options of :class:`~pdae_sc.module.PDAEModule` that differ by decoder, where the
#: user gives none: the generative decoder's reconstruction term at weight 1 with its
#: gradient reaching the encoder (benchmarks/results/reconstruction.md); the residual
#: decoders keep the module's defaults (weight 0.1, encoder detached).
LOSS_DEFAULTS = {
    "generative": {"reconstruction_weight": 1.0, "detach_encoder": False},
    "residual": {},
}


def loss_defaults(module_kwargs: dict, residual: bool) -> dict:
    """``module_kwargs`` with :data:`LOSS_DEFAULTS` of the decoder where it gives none."""
    return {**LOSS_DEFAULTS["residual" if residual else "generative"], **module_kwargs}


#: ``train(n_source_conditions="auto")``: source blocks for the generative decoder, one
#: mixed draw for the residual decoders (benchmarks/results/source_blocks.md).
SOURCE_BLOCKS = {"generative": 4, "residual": None}


def check_batch_layout(layout: dict, estimator: str, residual: bool) -> None:
    """Refuse a bad batch layout of ``train``; fill in its defaults.

    ``batch_size``: 128; ``n_source_conditions="auto"``: :data:`SOURCE_BLOCKS` of the
    decoder (``residual`` or not). ``layout``: ``n_conditions_per_batch``,
    ``n_cells_per_condition``, ``n_sources``, ``n_source_conditions`` and ``batch_size``
    (``None``: the default).
    """
    batch_size, n_sources = layout["batch_size"], layout["n_sources"]
    n_conditions, n_cells = layout["n_conditions_per_batch"], layout["n_cells_per_condition"]
    if batch_size is not None and estimator != "all_pairs":
        raise ValueError(
            f"batch_size={batch_size!r} is used only by PDAE(estimator='all_pairs'); the "
            "default grouped estimator draws n_conditions_per_batch x "
            f"n_cells_per_condition observed cells (now {n_conditions} x {n_cells}) and "
            f"n_sources={n_sources} source cells per step. Set those instead (e.g. "
            "n_cells_per_condition=32), or build the model with estimator='all_pairs'."
        )
    layout["batch_size"] = check_positive_int(
        128 if batch_size is None else batch_size, "batch_size"
    )
    check_positive_int(n_conditions, "n_conditions_per_batch")
    check_positive_int(n_cells, "n_cells_per_condition")
    check_positive_int(n_sources, "n_sources", minimum=2)
    blocks = layout["n_source_conditions"]
    if isinstance(blocks, str):
        if blocks != "auto":
            raise ValueError(
                f"n_source_conditions={blocks!r}; use 'auto' (the decoder's default), a number "
                "of one-condition source blocks (e.g. 4), or None (one mixed draw)."
            )
        blocks = layout["n_source_conditions"] = SOURCE_BLOCKS[
            "residual" if residual else "generative"
        ]
    if blocks is not None:
        check_positive_int(blocks, "n_source_conditions")
        if n_sources // blocks < 2:
            raise ValueError(
                f"n_source_conditions={blocks} blocks of n_sources={n_sources} source cells "
                "leave fewer than 2 cells per block. Use n_source_conditions <= "
                f"{n_sources // 2}, more n_sources, or n_source_conditions=None (one mixed "
                "draw)."
            )
