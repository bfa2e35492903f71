"""The residual decoder's gene shift starts at the linear model's effects."""

from __future__ import annotations

from pdae_sc.data._least_squares import linear_effects

__all__ = ["init_gene_shift"]


def init_gene_shift(model) -> None:
    """Start the residual gene shift ``B`` at the least-squares mean effects.

    The effects are those of the ``linear`` baseline (:func:`linear_effects`): the
    decoder's gene-shift term starts as that baseline's shift of the control cells.
    """
    import torch

    cells = model.registration.cells
    beta = linear_effects(
        model.registration.matrix,
        cells.codes,
        cells.context_codes,
        cells.encoded.label_rows,
        log_fold=model.module.residual_mode == "multiplicative",
    )
    with torch.no_grad():
        model.module.gene_shift.weight.copy_(torch.as_tensor(beta.T, dtype=torch.float32))
