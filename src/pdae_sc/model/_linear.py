"""The residual decoder's move starts as the linear model."""

from __future__ import annotations

from pdae_sc.data._least_squares import linear_effects

__all__ = ["start_at_linear_model"]


def start_at_linear_model(model) -> None:
    """Start the residual move at the least-squares mean effects, with no network term.

    The gene shift ``B`` starts at the effects of the ``linear`` baseline
    (:func:`linear_effects`) and the latent shift ``W`` at zero, so that the network's part
    of the move, ``f(z + W (u - l)) - f(z)``, is zero: before any training step a cell moves
    by ``B (u - l)`` alone, which is the ``linear`` baseline's shift of that cell (clipped
    at zero for non-negative data). Training learns the network's correction from there,
    and step 0 is one of the held-out checks
    (:class:`~pdae_sc.model._held_out_checkpoints.HeldOutCheckpoints`), so a run whose
    corrections only make the held-out conditions worse gives that start back.
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
        model.module.shift.weight.zero_()
