"""The PDAE as a pure-torch module: encoder, perturbation shift, stochastic decoder, losses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ._batch_keys import BATCH_KEYS
from ._losses import (
    all_pairs_energy_score,
    energy_distance_to_normal,
    group_sparsity,
    grouped_energy_score,
    reconstruction_energy_score,
)
from ._networks import MLP, OutputActivation, StochasticDecoder

__all__ = ["PDAELoss", "PDAEModule"]

Estimator = Literal["grouped", "all_pairs"]
ResidualMode = Literal["additive", "multiplicative"]


@dataclass
class PDAELoss:
    """Total loss and its (unweighted) terms; all scalars.

    Returned by :meth:`PDAEModule.grouped_loss`, :meth:`PDAEModule.all_pairs_loss` and the
    module's ``forward``.

    Parameters
    ----------
    loss
        Weighted sum of the four terms, the quantity to minimise.
    energy
        Perturbation energy score (grouped or all-pairs estimator).
    reconstruction
        Energy score of the cells against two decodes of their own latent.
    prior
        Energy distance of the basal latents ``z_basal`` to ``N(0, I)``.
    sparsity
        Group sparsity of the shift matrix ``W``.

    Examples
    --------
    >>> import torch
    >>> import pdae_sc as pdae
    >>> _ = torch.manual_seed(0)
    >>> module = pdae.module.PDAEModule(20, 3, n_latent=4, n_hidden=(16,), n_noise=2)
    >>> out = module.all_pairs_loss(torch.randn(6, 20), torch.eye(3).repeat(2, 1))
    >>> isinstance(out, pdae.module.PDAELoss)
    True
    >>> total = (
    ...     module.energy_weight * out.energy
    ...     + module.reconstruction_weight * out.reconstruction
    ...     + module.prior_weight * out.prior
    ...     + module.sparsity_weight * out.sparsity
    ... )
    >>> bool(torch.allclose(out.loss, total))
    True
    >>> out.loss.backward()
    """

    loss: torch.Tensor
    energy: torch.Tensor
    reconstruction: torch.Tensor
    prior: torch.Tensor
    sparsity: torch.Tensor

    def terms(self) -> dict[str, torch.Tensor]:
        """The terms by name, for logging.

        Returns
        -------
        Dictionary of the unweighted scalar terms ``energy``, ``reconstruction``, ``prior``
        and ``sparsity`` (the total ``loss`` is not included).

        Examples
        --------
        >>> import torch
        >>> import pdae_sc as pdae
        >>> zero = torch.tensor(0.0)
        >>> out = pdae.module.PDAELoss(zero, zero, zero, zero, zero)
        >>> list(out.terms())
        ['energy', 'reconstruction', 'prior', 'sparsity']
        """
        return {
            "energy": self.energy,
            "reconstruction": self.reconstruction,
            "prior": self.prior,
            "sparsity": self.sparsity,
        }


class PDAEModule(nn.Module):
    """Perturbation distribution autoencoder.

    A cell ``x`` of label ``l`` has basal latent ``z_basal = g(x) - W l``; moved to label
    ``u`` it becomes ``f(z_basal + W u, xi)``, with ``g`` a deterministic encoder, ``W`` the
    free shift matrix and ``f`` a stochastic decoder.

    Parameters
    ----------
    n_input
        Number of genes.
    n_perturbations
        Number ``K`` of elementary perturbations (columns of ``W``).
    n_latent
        Latent width.
    n_hidden
        Encoder hidden widths; the decoder mirrors them.
    n_noise
        Width of the decoder's noise input (0: none).
    noise_scale
        Standard deviation of the noise input.
    output_noise
        Learn per-gene output noise scales (see :class:`StochasticDecoder`).
    output_activation
        ``"none"``, ``"softplus"`` or ``"relu"``.
    estimator
        ``"grouped"`` (per-condition, balanced) or ``"all_pairs"`` (the authors' estimator).
    beta
        Exponent of the energy score, ``0 < beta < 2``.
    energy_weight, reconstruction_weight, prior_weight, sparsity_weight
        Weights of the perturbation energy score, the reconstruction energy score, the
        energy distance of ``z_basal`` to ``N(0, I)`` and the group sparsity of ``W``.
    detach_encoder
        Stop the reconstruction gradient at the encoder output.
    residual
        Carry the source cell over and decode only the change: a cell ``x`` of label ``l``
        moved to ``u`` becomes ``act(x + f(z + W u, xi) - f(z, xi))`` with ``z = g(x)`` and
        one noise draw ``xi`` for both terms, so ``u = l`` returns the cell itself and a
        decoder that is linear in ``z`` gives the linear (mean-shift) baseline. The cell
        keeps its own measurement noise, which a few Gaussian noise inputs cannot make.
        ``False``: decode ``f(z - W l + W u, xi)`` plus output noise from scratch (the paper's
        generative decoder). The reconstruction term always trains the generative decoder.
    gene_shift
        With ``residual``: add a learned per-gene linear effect ``B (u - l)`` (``B`` of shape
        ``(n_input, K)``, zero at start; the model class starts it at the least-squares
        mean effects), so the move is a linear model plus the decoder's correction.
    residual_mode
        ``"additive"``: the change is added to the cell, as above. ``"multiplicative"``, for
        log1p-normalised counts: the change is a log fold change of the normalised counts,
        ``log1p(expm1(x) * exp(f(z + W u, xi) - f(z, xi)))``, so a gene with no counts in
        the source cell stays at zero, the way a rate change acts on sparse counts (an
        additive shift would move every zero).

    Examples
    --------
    A small module for 20 genes and ``K = 3`` elementary perturbations. Control cells have
    the zero label vector; a combination is the sum of its parts:

    >>> import torch
    >>> import pdae_sc as pdae
    >>> _ = torch.manual_seed(0)
    >>> module = pdae.module.PDAEModule(20, 3, n_latent=4, n_hidden=(16,), n_noise=2)
    >>> x = torch.randn(6, 20)
    >>> labels = torch.zeros(6, 3)
    >>> module.encode(x).shape
    torch.Size([6, 4])
    >>> module.shift_matrix.shape
    torch.Size([4, 3])
    >>> target = torch.tensor([1.0, 1.0, 0.0])  # perturbations 0 and 1 together
    >>> module.move(x, labels, target).shape
    torch.Size([6, 20])

    One training step on the all-pairs loss:

    >>> optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    >>> out = module.all_pairs_loss(x, torch.eye(3).repeat(2, 1))
    >>> out.loss.backward()
    >>> optimizer.step()
    """

    def __init__(
        self,
        n_input: int,
        n_perturbations: int,
        *,
        n_latent: int = 32,
        n_hidden: Sequence[int] = (256, 256),
        n_noise: int = 32,
        noise_scale: float = 1.0,
        output_noise: bool = True,
        output_activation: OutputActivation = "none",
        estimator: Estimator = "grouped",
        beta: float = 1.0,
        energy_weight: float = 10.0,
        reconstruction_weight: float = 0.1,
        prior_weight: float = 1e-4,
        sparsity_weight: float = 1e-4,
        detach_encoder: bool = True,
        residual: bool = False,
        gene_shift: bool = False,
        residual_mode: ResidualMode = "additive",
    ):
        super().__init__()
        if not 0.0 < beta < 2.0:
            raise ValueError(
                f"beta={beta!r}; the energy score is strictly proper for 0 < beta < 2."
            )
        if estimator not in ("grouped", "all_pairs"):
            raise ValueError(f"estimator={estimator!r}; use 'grouped' or 'all_pairs'.")
        self.n_input = n_input
        self.n_latent = n_latent
        self.estimator = estimator
        self.beta = beta
        self.energy_weight = energy_weight
        self.reconstruction_weight = reconstruction_weight
        self.prior_weight = prior_weight
        self.sparsity_weight = sparsity_weight
        self.detach_encoder = detach_encoder
        self.residual = residual
        if residual_mode not in ("additive", "multiplicative"):
            raise ValueError(
                f"residual_mode={residual_mode!r}; use 'additive' or 'multiplicative'."
            )
        self.residual_mode = residual_mode
        if gene_shift and not residual:
            raise ValueError("gene_shift=True needs residual=True (it shifts the source cell).")
        self.gene_shift = nn.Linear(n_perturbations, n_input, bias=False) if gene_shift else None
        if self.gene_shift is not None:
            nn.init.zeros_(self.gene_shift.weight)
        self.encoder = MLP(n_input, n_hidden, n_latent)
        self.shift = nn.Linear(n_perturbations, n_latent, bias=False)
        self.decoder = StochasticDecoder(
            n_latent,
            n_input,
            tuple(reversed(n_hidden)),
            n_noise=n_noise,
            noise_scale=noise_scale,
            output_noise=output_noise,
            output_activation=output_activation,
        )

    # -- what scvi-tools' model base class expects of a module --------------------------
    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return next(self.parameters()).device

    def on_load(self, model, **kwargs) -> None:
        """Hook called by scvi-tools after the module is re-created on load (nothing to do)."""

    # -- the model ---------------------------------------------------------------------
    @property
    def shift_matrix(self) -> torch.Tensor:
        """``W``, shape ``(n_latent, n_perturbations)``."""
        return self.shift.weight

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Encode cells to their latents ``g(x)``, perturbation shift included.

        Parameters
        ----------
        x
            Cells, shape ``(n, n_input)``.

        Returns
        -------
        Latents ``g(x)``, shape ``(n, n_latent)``.

        Examples
        --------
        >>> import torch
        >>> import pdae_sc as pdae
        >>> _ = torch.manual_seed(0)
        >>> module = pdae.module.PDAEModule(20, 3, n_latent=4, n_hidden=(16,), n_noise=2)
        >>> module.encode(torch.randn(6, 20)).shape
        torch.Size([6, 4])
        """
        return self.encoder(x)

    def basal(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Basal latents ``z_basal = g(x) - W l``: the cells with their perturbation removed.

        Parameters
        ----------
        x
            Cells, shape ``(n, n_input)``.
        labels
            Their label vectors ``l``, shape ``(n, K)``.

        Returns
        -------
        Basal latents, shape ``(n, n_latent)``.

        Examples
        --------
        >>> import torch
        >>> import pdae_sc as pdae
        >>> _ = torch.manual_seed(0)
        >>> module = pdae.module.PDAEModule(20, 3, n_latent=4, n_hidden=(16,), n_noise=2)
        >>> x = torch.randn(6, 20)
        >>> labels = torch.eye(3).repeat(2, 1)
        >>> z_basal = module.basal(x, labels)
        >>> z_basal.shape
        torch.Size([6, 4])
        >>> expected = module.encode(x) - labels @ module.shift_matrix.T
        >>> bool(torch.allclose(z_basal, expected))
        True

        For control cells (zero labels) the basal latent is the encoding itself:

        >>> torch.equal(module.basal(x, torch.zeros(6, 3)), module.encode(x))
        True
        """
        return self.encoder(x) - self.shift(labels)

    def decode(
        self,
        z: torch.Tensor,
        generator: torch.Generator | None = None,
        *,
        noise: tuple[torch.Tensor | None, torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """Sample ``f(z, xi)`` with fresh noise: one random cell per latent.

        Parameters
        ----------
        z
            Latents, shape ``(n, n_latent)``.
        generator
            Optional torch generator for the noise draws (on the device of ``z``).
        noise
            Noise drawn in advance (:meth:`draw_move_noise`) to use instead of fresh draws.

        Returns
        -------
        Sampled cells, shape ``(n, n_input)``.

        Examples
        --------
        >>> import torch
        >>> import pdae_sc as pdae
        >>> _ = torch.manual_seed(0)
        >>> module = pdae.module.PDAEModule(20, 3, n_latent=4, n_hidden=(16,), n_noise=2)
        >>> z = torch.randn(6, 4)
        >>> module.decode(z).shape
        torch.Size([6, 20])
        >>> a = module.decode(z, generator=torch.Generator().manual_seed(1))
        >>> b = module.decode(z, generator=torch.Generator().manual_seed(1))
        >>> torch.equal(a, b)
        True
        """
        return self.decoder(z, generator=generator, noise=noise)

    def draw_move_noise(
        self, n: int, like: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Every noise draw of :meth:`move` for ``n`` cells, in the order it draws them.

        Drawing the noise of a fixed block of cells at once and passing slices of it to
        :meth:`move` makes the predicted cells independent of how they are batched.

        Parameters
        ----------
        n
            Number of cells.
        like
            Tensor whose device and dtype the noise takes.
        generator
            Optional torch generator for the draws.

        Returns
        -------
        ``(xi, eps)``: noise inputs ``(n, n_noise)`` (``None`` when ``n_noise == 0``) and,
        for the generative decoder with output noise, standard normal output draws
        ``(n, n_input)`` (else ``None``).

        Examples
        --------
        >>> import torch
        >>> import pdae_sc as pdae
        >>> module = pdae.module.PDAEModule(20, 3, n_latent=4, n_hidden=(16,), n_noise=2)
        >>> x, labels, target = torch.randn(6, 20), torch.zeros(6, 3), torch.ones(3)
        >>> noise = module.draw_move_noise(6, x, torch.Generator().manual_seed(0))
        >>> a = module.move(x, labels, target, noise=noise)
        >>> b = module.move(x, labels, target, generator=torch.Generator().manual_seed(0))
        >>> torch.equal(a, b)
        True
        """
        if self.residual:
            return self.decoder.draw_noise((n,), like, generator), None
        return self.decoder.draw_all(n, like, generator)

    def move(
        self,
        x: torch.Tensor,
        labels: torch.Tensor,
        target: torch.Tensor,
        generator: torch.Generator | None = None,
        *,
        encoded: torch.Tensor | None = None,
        noise: tuple[torch.Tensor | None, torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """Move cells to a target perturbation: sample ``f(g(x) - W l + W u, xi)``.

        Parameters
        ----------
        x
            Cells, shape ``(n, n_input)``.
        labels
            Their label vectors ``l``, shape ``(n, K)``.
        target
            Target label vector ``u``, shape ``(K,)`` (the same for every cell) or ``(n, K)``.
        generator
            Optional torch generator for the decoder noise (on the device of ``x``).
        encoded
            The encodings ``g(x)`` of the cells (:meth:`encode`), shape ``(n, n_latent)``,
            when they are already known: a source drawn many times is then encoded once.
        noise
            The noise of these cells drawn in advance (:meth:`draw_move_noise`, ``n`` rows),
            used instead of fresh draws; the output noise ``eps`` is consumed.

        Returns
        -------
        Predicted cells, shape ``(n, n_input)``.

        Examples
        --------
        Predict how six control cells respond to perturbations 0 and 1 combined:

        >>> import torch
        >>> import pdae_sc as pdae
        >>> _ = torch.manual_seed(0)
        >>> module = pdae.module.PDAEModule(20, 3, n_latent=4, n_hidden=(16,), n_noise=2)
        >>> x, labels = torch.randn(6, 20), torch.zeros(6, 3)
        >>> module.move(x, labels, torch.tensor([1.0, 1.0, 0.0])).shape
        torch.Size([6, 20])

        Or move each cell to its own target:

        >>> module.move(x, labels, torch.eye(3).repeat(2, 1)).shape
        torch.Size([6, 20])

        With the encodings given, the encoder is not run again (same result):

        >>> a = module.move(x, labels, torch.ones(3), generator=torch.Generator().manual_seed(0))
        >>> b = module.move(
        ...     x, labels, torch.ones(3), generator=torch.Generator().manual_seed(0),
        ...     encoded=module.encode(x),
        ... )
        >>> bool(torch.allclose(a, b))
        True
        """
        z = self.encoder(x) if encoded is None else encoded
        shift = self._map_labels(self.shift, target) - self._map_labels(self.shift, labels)
        if not self.residual:
            return self.decode(z + shift, generator=generator, noise=noise)
        gene_step = None
        if self.gene_shift is not None:
            gene_step = self._map_labels(self.gene_shift, target) - self._map_labels(
                self.gene_shift, labels
            )
        xi = None if noise is None else noise[0]
        return self._transfer(x, z, z + shift, gene_step, generator=generator, xi=xi)

    @staticmethod
    def _map_labels(layer: nn.Linear, labels: torch.Tensor) -> torch.Tensor:
        """``labels @ layer.weight.T`` for dense or sparse (COO/CSR) label rows."""
        if labels.layout != torch.strided:
            return (labels @ layer.weight.T).to_dense()
        return layer(labels)

    def _transfer(
        self,
        x: torch.Tensor,
        z: torch.Tensor,
        z_moved: torch.Tensor,
        gene_step: torch.Tensor | None,
        generator: torch.Generator | None = None,
        xi: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Residual move of sources ``x`` by ``delta = f(z_moved, xi) - f(z, xi) [+ B (u - l)]``.

        ``act(x + delta)`` (additive) or ``log1p(expm1(x) exp(delta))`` (multiplicative),
        with one noise draw ``xi`` per source cell.

        ``x``, ``z``: sources, ``(S, n_input)`` and ``(S, n_latent)``; ``z_moved``: their
        moved latents, ``(S, n_latent)`` or ``(G, S, n_latent)``; ``gene_step``: the gene
        shift of the label change, ``B u - B l`` (``None`` without a gene shift),
        broadcastable to the output. Computing it as ``B u - B l`` rather than ``B (u - l)``
        keeps the cost at one product per label row, not per (target, source) pair: the
        difference ``u - l`` of a grouped batch has ``G * S * K`` entries. Returns the shape
        of ``z_moved`` with ``n_input`` genes. ``xi``: the noise inputs, drawn here when
        ``None``.
        """
        if xi is None:
            xi = self.decoder.draw_noise(z.shape[:-1], z, generator)
        delta = self.decoder.mean(z_moved, xi) - self.decoder.mean(z, xi)
        if gene_step is not None:
            delta = delta + gene_step
        if self.residual_mode == "multiplicative":
            # fold changes of the normalised counts; clamped so that exp cannot overflow
            return torch.log1p(torch.expm1(x.clamp_min(0.0)) * delta.clamp(-15.0, 15.0).exp())
        return self.decoder.activate(x + delta)

    # -- losses ------------------------------------------------------------------------
    def _auxiliary(self, x: torch.Tensor, z: torch.Tensor, z_basal: torch.Tensor):
        z_rec = z.detach() if self.detach_encoder else z
        rec = reconstruction_energy_score(x, self.decode(z_rec), self.decode(z_rec), self.beta)
        prior = energy_distance_to_normal(z_basal, torch.randn_like(z_basal), self.beta)
        return rec, prior, group_sparsity(self.shift_matrix)

    def _total(self, energy, rec, prior, sparsity) -> PDAELoss:
        loss = (
            self.energy_weight * energy
            + self.reconstruction_weight * rec
            + self.prior_weight * prior
            + self.sparsity_weight * sparsity
        )
        return PDAELoss(loss, energy, rec, prior, sparsity)

    def grouped_loss(
        self,
        x_anchor: torch.Tensor,
        label_anchor: torch.Tensor,
        x_source: torch.Tensor,
        label_source: torch.Tensor,
    ) -> PDAELoss:
        """Grouped PDAE loss: every source decoded once per condition of the batch.

        Parameters
        ----------
        x_anchor
            Observed cells, ``G`` conditions × ``n`` cells, shape ``(G, n, n_input)``.
        label_anchor
            Label vector of each condition, shape ``(G, K)``.
        x_source
            Source cells (disjoint from the anchors), shape ``(S, n_input)``, or in ``k``
            blocks, shape ``(k, S / k, n_input)``: then each block's moved cells are scored
            against the observed cells on their own, and the energy term is the mean over
            conditions and blocks (training draws each block from one condition:
            ``PDAE.train(n_source_conditions=...)``).
        label_source
            Their label vectors, shape ``(S, K)`` (or ``(k, S / k, K)``).

        Returns
        -------
        The :class:`PDAELoss`. Costs ``G·S`` decodes and ``G·S·(n + S / k)`` distances.

        Examples
        --------
        Two conditions of eight observed cells each, predicted from six control cells:

        >>> import torch
        >>> import pdae_sc as pdae
        >>> _ = torch.manual_seed(0)
        >>> module = pdae.module.PDAEModule(20, 3, n_latent=4, n_hidden=(16,), n_noise=2)
        >>> x_anchor = torch.randn(2, 8, 20)
        >>> label_anchor = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
        >>> x_source, label_source = torch.randn(6, 20), torch.zeros(6, 3)
        >>> out = module.grouped_loss(x_anchor, label_anchor, x_source, label_source)
        >>> out.loss.shape
        torch.Size([])
        >>> out.loss.backward()
        >>> module.shift_matrix.grad.shape
        torch.Size([4, 3])

        The same six sources as two blocks of three:

        >>> blocks = module.grouped_loss(
        ...     x_anchor, label_anchor, x_source.reshape(2, 3, 20), label_source.reshape(2, 3, 3)
        ... )
        >>> blocks.energy.shape
        torch.Size([])
        """
        blocks = x_source.shape[0] if x_source.dim() == 3 else 1
        x_source = x_source.reshape(-1, x_source.shape[-1])
        label_source = label_source.reshape(-1, label_source.shape[-1])
        g, s = label_anchor.shape[0], x_source.shape[0]
        z_src = self.encoder(x_source)
        z_basal = z_src - self.shift(label_source)
        z_moved = z_basal.unsqueeze(0) + self.shift(label_anchor).unsqueeze(1)  # (G, S, d)
        if self.residual:
            y = self._transfer(
                x_source, z_src, z_moved, self._gene_steps(label_anchor, label_source)
            )
        else:
            y = self.decode(z_moved.reshape(g * s, -1)).reshape(g, s, -1)
        if blocks > 1:  # (G, S) -> (G * k, S / k): each block scored on its own
            y = y.reshape(g * blocks, s // blocks, -1)
            x_anchor = x_anchor.repeat_interleave(blocks, dim=0)
        energy = grouped_energy_score(x_anchor, y, self.beta)
        rec, prior, sparsity = self._auxiliary(x_source, z_src, z_basal)
        return self._total(energy, rec, prior, sparsity)

    def all_pairs_loss(self, x: torch.Tensor, labels: torch.Tensor) -> PDAELoss:
        """The authors' all-pairs loss: every cell moved to every other cell's label.

        Parameters
        ----------
        x
            Cells, shape ``(B, n_input)``.
        labels
            Their label vectors, shape ``(B, K)``.

        Returns
        -------
        The :class:`PDAELoss`. Costs ``B^2`` decodes and ``B^3`` distances.

        Examples
        --------
        >>> import torch
        >>> import pdae_sc as pdae
        >>> _ = torch.manual_seed(0)
        >>> module = pdae.module.PDAEModule(20, 3, n_latent=4, n_hidden=(16,), n_noise=2)
        >>> x = torch.randn(6, 20)
        >>> labels = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 1.0]] * 2)
        >>> out = module.all_pairs_loss(x, labels)
        >>> out.loss.shape
        torch.Size([])
        >>> out.loss.backward()
        """
        b = x.shape[0]
        z = self.encoder(x)
        z_basal = z - self.shift(labels)
        z_moved = z_basal.unsqueeze(0) + self.shift(labels).unsqueeze(1)  # [i, j]: j -> l_i
        if self.residual:
            y = self._transfer(x, z, z_moved, self._gene_steps(labels, labels))
        else:
            y = self.decode(z_moved.reshape(b * b, -1)).reshape(b, b, -1)
        energy = all_pairs_energy_score(x, y, self.beta)
        rec, prior, sparsity = self._auxiliary(x, z, z_basal)
        return self._total(energy, rec, prior, sparsity)

    def _gene_steps(self, targets: torch.Tensor, sources: torch.Tensor) -> torch.Tensor | None:
        """``B u_i - B l_j`` of every target ``i`` and source ``j``, shape ``(T, S, genes)``."""
        if self.gene_shift is None:
            return None
        return self.gene_shift(targets).unsqueeze(1) - self.gene_shift(sources).unsqueeze(0)

    def forward(self, batch: dict[str, torch.Tensor]) -> PDAELoss:
        """Loss of a training batch from the per-condition sampler (see ``estimator``)."""
        if self.estimator == "grouped":
            return self.grouped_loss(
                batch[BATCH_KEYS.X_ANCHOR],
                batch[BATCH_KEYS.LABEL_ANCHOR],
                batch[BATCH_KEYS.X_SOURCE],
                batch[BATCH_KEYS.LABEL_SOURCE],
            )
        return self.all_pairs_loss(batch[BATCH_KEYS.X], batch[BATCH_KEYS.LABEL])
