"""The residual (carry-over) decoder of PDAEModule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pdae_sc.module import PDAEModule

KW = {"n_latent": 4, "n_hidden": (16,), "n_noise": 3}


@pytest.fixture
def module():
    torch.manual_seed(0)
    return PDAEModule(10, 3, residual=True, output_noise=False, **KW)


def test_move_to_own_label_returns_the_cell(module):
    x = torch.rand(6, 10) * 3
    labels = torch.eye(3).repeat(2, 1)
    out = module.move(x, labels, labels)
    torch.testing.assert_close(out, x)


def test_move_changes_cells_and_keeps_their_differences_for_a_linear_decoder():
    torch.manual_seed(0)
    module = PDAEModule(
        10, 3, residual=True, output_noise=False, n_latent=4, n_hidden=(), n_noise=2
    )
    assert isinstance(module.decoder.net[0], nn.Linear)
    assert len(module.decoder.net) == 1
    x = torch.randn(8, 10)
    labels = torch.zeros(8, 3)
    target = torch.tensor([1.0, 0.0, 1.0])
    out = module.move(x, labels, target)
    shift = out - x
    # a linear decoder moves every cell by the same vector: the linear baseline's form
    torch.testing.assert_close(shift, shift[:1].expand_as(shift), atol=1e-5, rtol=0)
    assert shift.abs().max() > 1e-3


def test_non_negative_head_clips_at_zero():
    torch.manual_seed(0)
    module = PDAEModule(10, 3, residual=True, output_noise=False, output_activation="relu", **KW)
    x = torch.zeros(5, 10)
    out = module.move(x, torch.zeros(5, 3), torch.tensor([5.0, 5.0, 5.0]))
    assert (out >= 0).all()


@pytest.mark.parametrize("estimator", ["grouped", "all_pairs"])
def test_residual_losses_backpropagate_to_encoder_shift_and_decoder(estimator):
    torch.manual_seed(0)
    module = PDAEModule(10, 3, residual=True, estimator=estimator, **KW)
    if estimator == "grouped":
        out = module.grouped_loss(
            torch.randn(2, 5, 10), torch.eye(3)[:2], torch.randn(6, 10), torch.zeros(6, 3)
        )
    else:
        out = module.all_pairs_loss(torch.randn(6, 10), torch.eye(3).repeat(2, 1))
    out.loss.backward()
    for part in (module.encoder, module.shift, module.decoder.net):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)


def test_grouped_residual_loss_matches_a_loop_over_conditions():
    """Each condition's predicted set is every source moved to it, with one xi per source."""
    from pdae_sc.module import grouped_energy_score

    torch.manual_seed(0)
    module = PDAEModule(10, 3, residual=True, n_latent=4, n_hidden=(16,), n_noise=0)
    x_anchor = torch.randn(2, 5, 10)
    label_anchor = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    x_source, label_source = torch.randn(6, 10), torch.eye(3).repeat(2, 1)
    out = module.grouped_loss(x_anchor, label_anchor, x_source, label_source)
    y = torch.stack([module.move(x_source, label_source, lab) for lab in label_anchor])
    want = grouped_energy_score(x_anchor, y)
    torch.testing.assert_close(out.energy, want)


def test_source_blocks_are_scored_each_on_their_own():
    """Sources in blocks: the energy term is the mean of each block's own score."""
    from pdae_sc.module import grouped_energy_score

    torch.manual_seed(0)
    module = PDAEModule(10, 3, residual=True, n_latent=4, n_hidden=(16,), n_noise=0)
    x_anchor = torch.randn(2, 5, 10)
    label_anchor = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    x_source = torch.randn(2, 4, 10)  # two blocks of four cells, one condition each
    label_source = torch.stack([torch.zeros(4, 3), torch.tensor([0.0, 0.0, 1.0]).repeat(4, 1)])
    out = module.grouped_loss(x_anchor, label_anchor, x_source, label_source)
    per_block = [
        grouped_energy_score(
            x_anchor, torch.stack([module.move(xs, ls, lab) for lab in label_anchor])
        )
        for xs, ls in zip(x_source, label_source, strict=True)
    ]
    torch.testing.assert_close(out.energy, torch.stack(per_block).mean())
    # one mixed block of the same cells is scored differently (the blocks' spread is lost)
    mixed = module.grouped_loss(
        x_anchor, label_anchor, x_source.reshape(8, 10), label_source.reshape(8, 3)
    )
    assert not torch.isclose(mixed.energy, out.energy)


def test_generative_mode_is_unchanged_by_the_option():
    torch.manual_seed(0)
    a = PDAEModule(10, 3, residual=False, **KW)
    torch.manual_seed(0)
    b = PDAEModule(10, 3, **KW)
    x, labels, target = torch.randn(4, 10), torch.zeros(4, 3), torch.tensor([1.0, 0.0, 0.0])
    ga, gb = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    torch.testing.assert_close(a.move(x, labels, target, ga), b.move(x, labels, target, gb))
