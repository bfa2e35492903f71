"""Encoder and stochastic decoder of the PDAE (pure torch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["MLP", "OutputActivation", "StochasticDecoder"]

OutputActivation = Literal["none", "softplus", "relu"]


class MLP(nn.Sequential):
    """Fully connected network with ELU between layers and a linear output.

    Parameters
    ----------
    n_input
        Input width.
    n_hidden
        Hidden widths, e.g. ``(256, 256)``.
    n_output
        Output width.

    Examples
    --------
    >>> import torch
    >>> import pdae_sc as pdae
    >>> mlp = pdae.module.MLP(10, (32, 16), 4)
    >>> len(mlp)  # Linear, ELU, Linear, ELU, Linear
    5
    >>> mlp(torch.randn(8, 10)).shape
    torch.Size([8, 4])
    """

    def __init__(self, n_input: int, n_hidden: Sequence[int], n_output: int):
        layers: list[nn.Module] = []
        width = n_input
        for h in n_hidden:
            layers += [nn.Linear(width, h), nn.ELU()]
            width = h
        layers.append(nn.Linear(width, n_output))
        super().__init__(*layers)


class StochasticDecoder(nn.Module):
    """``x = act(f(concat(z, xi)) + s * eps)``: a decoder that samples, fresh noise every call.

    Parameters
    ----------
    n_latent
        Latent width.
    n_output
        Number of genes.
    n_hidden
        Hidden widths.
    n_noise
        Width of the noise input ``xi ~ N(0, noise_scale^2 I)``; 0 for none.
    noise_scale
        Standard deviation of ``xi``.
    output_noise
        Add per-gene Gaussian noise ``s * eps`` with learned scales ``s`` (shape
        ``(n_output,)``) before the output activation. A low-dimensional ``xi`` cannot
        produce independent gene-level noise; this term can.
    output_activation
        ``"none"``, ``"softplus"`` or ``"relu"`` (``relu`` puts mass at exactly 0, like the
        zeros of log1p-normalised counts).

    Examples
    --------
    Each call draws fresh noise, so the same latents decode to different cells; a generator
    makes the draws reproducible:

    >>> import torch
    >>> import pdae_sc as pdae
    >>> _ = torch.manual_seed(0)
    >>> decoder = pdae.module.StochasticDecoder(
    ...     8, 100, (32,), n_noise=4, noise_scale=1.0, output_noise=True, output_activation="relu"
    ... )
    >>> z = torch.randn(5, 8)
    >>> x = decoder(z)
    >>> x.shape
    torch.Size([5, 100])
    >>> bool((x >= 0).all())  # relu output
    True
    >>> torch.equal(decoder(z), decoder(z))
    False
    >>> a = decoder(z, generator=torch.Generator().manual_seed(1))
    >>> b = decoder(z, generator=torch.Generator().manual_seed(1))
    >>> torch.equal(a, b)
    True
    """

    def __init__(
        self,
        n_latent: int,
        n_output: int,
        n_hidden: Sequence[int],
        *,
        n_noise: int,
        noise_scale: float,
        output_noise: bool,
        output_activation: OutputActivation,
    ):
        super().__init__()
        if output_activation not in ("none", "softplus", "relu"):
            raise ValueError(
                f"output_activation={output_activation!r}; use 'none', 'softplus' or 'relu'."
            )
        self.n_noise = n_noise
        self.noise_scale = noise_scale
        self.output_activation = output_activation
        self.net = MLP(n_latent + n_noise, n_hidden, n_output)
        self.output_noise = output_noise
        if output_noise:
            # softplus(-2.25) ~ 0.1: start with little gene-level noise.
            self.raw_noise_scale = nn.Parameter(torch.full((n_output,), -2.25))

    def noise_scales(self) -> torch.Tensor | None:
        """Per-gene output noise scales ``s``, learned, of the decoder.

        Returns
        -------
        Scales, shape ``(n_output,)``, or ``None`` when the decoder has no output noise.

        Examples
        --------
        >>> import pdae_sc as pdae
        >>> kwargs = dict(n_noise=4, noise_scale=1.0, output_activation="none")
        >>> decoder = pdae.module.StochasticDecoder(8, 100, (32,), output_noise=True, **kwargs)
        >>> scales = decoder.noise_scales()
        >>> scales.shape
        torch.Size([100])
        >>> round(scales[0].item(), 2)  # initial value
        0.1
        >>> decoder = pdae.module.StochasticDecoder(8, 100, (32,), output_noise=False, **kwargs)
        >>> print(decoder.noise_scales())
        None
        """
        return F.softplus(self.raw_noise_scale) if self.output_noise else None

    def draw_noise(
        self, shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor | None:
        """Noise inputs ``xi ~ N(0, noise_scale^2 I)`` for latents of batch shape ``shape``.

        Parameters
        ----------
        shape
            Batch shape of the latents, e.g. ``(n,)``.
        like
            Tensor whose device and dtype the noise takes.
        generator
            Optional torch generator for the draws.

        Returns
        -------
        Noise of shape ``(*shape, n_noise)``, or ``None`` when ``n_noise == 0``.

        Examples
        --------
        >>> import torch
        >>> import pdae_sc as pdae
        >>> decoder = pdae.module.StochasticDecoder(
        ...     8, 100, (32,), n_noise=4, noise_scale=0.5, output_noise=False,
        ...     output_activation="none",
        ... )
        >>> decoder.draw_noise((5,), torch.zeros(1)).shape
        torch.Size([5, 4])
        """
        if self.n_noise == 0:
            return None
        xi = torch.randn(
            (*shape, self.n_noise), device=like.device, dtype=like.dtype, generator=generator
        )
        return xi * self.noise_scale

    def mean(self, z: torch.Tensor, xi: torch.Tensor | None) -> torch.Tensor:
        """The network ``f(concat(z, xi))``: no output noise, no output activation.

        Parameters
        ----------
        z
            Latents, shape ``(..., n_latent)``.
        xi
            Noise inputs from :meth:`draw_noise`, shape ``(..., n_noise)`` (broadcast against
            ``z``), or ``None`` when ``n_noise == 0``.

        Returns
        -------
        Network outputs, shape ``(..., n_output)``.

        Examples
        --------
        The same noise input gives the same output, so differences of two latents decoded
        with one ``xi`` are free of noise where the latents agree:

        >>> import torch
        >>> import pdae_sc as pdae
        >>> decoder = pdae.module.StochasticDecoder(
        ...     8, 100, (32,), n_noise=4, noise_scale=1.0, output_noise=False,
        ...     output_activation="none",
        ... )
        >>> z = torch.randn(5, 8)
        >>> xi = decoder.draw_noise((5,), z)
        >>> torch.equal(decoder.mean(z, xi), decoder.mean(z, xi))
        True
        """
        if xi is not None:
            xi = xi.expand(*z.shape[:-1], xi.shape[-1])
            z = torch.cat([z, xi], dim=-1)
        return self.net(z)

    def activate(self, out: torch.Tensor) -> torch.Tensor:
        """Apply the output activation (``none``, ``softplus`` or ``relu``).

        Parameters
        ----------
        out
            Values before the activation, any shape.

        Returns
        -------
        Activated values, same shape.

        Examples
        --------
        >>> import torch
        >>> import pdae_sc as pdae
        >>> decoder = pdae.module.StochasticDecoder(
        ...     2, 3, (4,), n_noise=0, noise_scale=1.0, output_noise=False,
        ...     output_activation="relu",
        ... )
        >>> decoder.activate(torch.tensor([-1.0, 2.0])).tolist()
        [0.0, 2.0]
        """
        if self.output_activation == "softplus":
            return F.softplus(out)
        if self.output_activation == "relu":
            return F.relu(out)
        return out

    def add_output_noise(
        self,
        out: torch.Tensor,
        generator: torch.Generator | None = None,
        *,
        eps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Add the per-gene output noise ``s * eps`` (unchanged without ``output_noise``).

        Parameters
        ----------
        out
            Values, shape ``(..., n_output)``.
        generator
            Optional torch generator for ``eps``.
        eps
            Standard normal draws to use instead, shape of ``out`` (see :meth:`draw_all`);
            overwritten in inference mode, so pass each draw once.

        Returns
        -------
        Noisy values, same shape.

        Examples
        --------
        >>> import torch
        >>> import pdae_sc as pdae
        >>> decoder = pdae.module.StochasticDecoder(
        ...     2, 3, (4,), n_noise=0, noise_scale=1.0, output_noise=False,
        ...     output_activation="none",
        ... )
        >>> x = torch.zeros(2, 3)
        >>> torch.equal(decoder.add_output_noise(x), x)
        True
        """
        if not self.output_noise:
            return out
        if eps is not None:
            eps = eps.to(out.dtype)  # consumed: in inference the noise is added into it
        else:
            eps = torch.randn(out.shape, device=out.device, dtype=out.dtype, generator=generator)
        if not torch.is_grad_enabled():  # prediction: add into the noise, one buffer less
            return eps.mul_(self.noise_scales()).add_(out)
        return torch.addcmul(out, eps, self.noise_scales())

    def draw_all(
        self, n: int, like: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Every noise draw of decoding ``n`` latents, in the order :meth:`forward` draws them.

        Parameters
        ----------
        n
            Number of latents.
        like
            Tensor whose device and dtype the noise takes.
        generator
            Optional torch generator for the draws.

        Returns
        -------
        ``(xi, eps)``: the noise inputs (scaled, ``(n, n_noise)``, ``None`` when
        ``n_noise == 0``) and the standard normal output draws (``(n, n_output)``, ``None``
        without ``output_noise``). ``forward(z, noise=(xi, eps))`` then decodes with them.

        Examples
        --------
        >>> import torch
        >>> import pdae_sc as pdae
        >>> decoder = pdae.module.StochasticDecoder(
        ...     8, 100, (32,), n_noise=4, noise_scale=0.5, output_noise=True,
        ...     output_activation="none",
        ... )
        >>> z = torch.randn(5, 8)
        >>> noise = decoder.draw_all(5, z, torch.Generator().manual_seed(3))
        >>> a = decoder(z, noise=noise)
        >>> b = decoder(z, generator=torch.Generator().manual_seed(3))
        >>> torch.equal(a, b)
        True
        """
        xi = self.draw_noise((n,), like, generator)
        if not self.output_noise:
            return xi, None
        shape = (n, self.raw_noise_scale.shape[0])
        return xi, torch.randn(shape, device=like.device, dtype=like.dtype, generator=generator)

    def forward(
        self,
        z: torch.Tensor,
        generator: torch.Generator | None = None,
        *,
        noise: tuple[torch.Tensor | None, torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """Decode latents with fresh noise.

        Parameters
        ----------
        z
            Latents, shape ``(n, n_latent)``.
        generator
            Optional torch generator for the noise draws (on the device of ``z``).
        noise
            ``(xi, eps)`` from :meth:`draw_all` to decode with instead of fresh draws.

        Returns
        -------
        Samples, shape ``(n, n_output)``.
        """
        if noise is None:
            out = self.mean(z, self.draw_noise(z.shape[:-1], z, generator))
            out = self.add_output_noise(out, generator)
        else:
            out = self.add_output_noise(self.mean(z, noise[0]), eps=noise[1])
        if self.output_activation == "relu" and not torch.is_grad_enabled():
            return out.clamp_min_(0.0)  # prediction: a fresh tensor, rectified in place
        return self.activate(out)
