"""Seeds, decoder noise, source draws and batch sizes of predictions (one seed, same cells)."""

from __future__ import annotations

import numpy as np
import torch

from pdae_sc.data._validation import BLOCK_VALUES

__all__ = [
    "BATCH_VALUES",
    "NOISE_BLOCK",
    "BlockNoise",
    "default_batch_size",
    "draw_sources",
    "make_generator",
    "noise_block_size",
    "resolve_seed",
    "stratified_counts",
]


def resolve_seed(seed: int | None) -> int:
    """``seed``, or for ``None`` a seed drawn from torch's global generator.

    ``scvi.settings.seed = 0`` seeds that generator, so a script that sets it gets the same
    predictions on every run (as with scvi-tools), while calls within one run differ.
    """
    if seed is not None:
        return int(seed)
    return int(torch.randint(2**31 - 1, (1,)).item())


def make_generator(rng: np.random.Generator, device: torch.device) -> torch.Generator:
    """A torch generator on ``device`` seeded from ``rng``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(rng.integers(2**63 - 1)))
    return gen


#: Largest number of cells whose decoder noise is drawn at once (few genes); see
#: :func:`noise_block_size`.
NOISE_BLOCK = 4096

#: Values (cells x genes) in one CPU batch and in one block of decoder noise.
BATCH_VALUES = BLOCK_VALUES


def noise_block_size(n_genes: int) -> int:
    """Cells whose decoder noise is drawn at once, for a model of ``n_genes`` genes.

    The noise of the i-th predicted cell depends on the seed, i and the gene count, never on
    ``batch_size`` or the device. The block is the CPU's default batch (the largest power of
    two from 256 to :data:`NOISE_BLOCK` whose ``n_genes`` values stay within
    :data:`BATCH_VALUES`), so a default CPU batch takes exactly one block, which stays small
    enough to be reused by the allocator.
    """
    rows = max(1, BATCH_VALUES // max(1, n_genes))
    return int(min(NOISE_BLOCK, max(256, 1 << (rows.bit_length() - 1))))


class BlockNoise:
    """The decoder noise of ``n`` cells, drawn in fixed blocks of :func:`noise_block_size` cells.

    Batches of any size take their rows with :meth:`take`, in order; each block is drawn
    from ``generator`` the first time a batch reaches it, so the cells predicted for a
    seed do not depend on how they are batched.
    """

    def __init__(self, module, n: int, like: torch.Tensor, generator: torch.Generator):
        self._module, self._n, self._like, self._gen = module, n, like, generator
        self._size = noise_block_size(module.n_input)
        self._blocks: dict[int, tuple] = {}

    def _block(self, b: int) -> tuple:
        if b not in self._blocks:
            for old in [k for k in self._blocks if k < b]:
                del self._blocks[old]  # batches come in order: earlier blocks are done
            size = min(self._size, self._n - b * self._size)
            self._blocks[b] = self._module.draw_move_noise(size, self._like, self._gen)
        return self._blocks[b]

    def take(self, start: int, length: int) -> tuple:
        """``(xi, eps)`` of cells ``start`` to ``start + length`` (either may be ``None``)."""
        parts = []
        k = self._size
        for b in range(start // k, (start + length - 1) // k + 1):
            lo = max(start, b * k) - b * k
            hi = min(start + length, (b + 1) * k) - b * k
            parts.append([None if t is None else t[lo:hi] for t in self._block(b)])
        if len(parts) == 1:
            return tuple(parts[0])
        return tuple(
            None if parts[0][i] is None else torch.cat([p[i] for p in parts])
            for i in range(len(parts[0]))
        )


def draw_sources(
    src_idx: np.ndarray, n: int, rng: np.random.Generator, groups: np.ndarray | None = None
) -> np.ndarray:
    """``n`` source rows: a sorted subsample, or every source repeated plus a random rest.

    ``groups`` (one code per entry of ``src_idx``, e.g. its condition): the subsample is
    stratified, each group getting its share of ``n`` (:func:`stratified_counts`) drawn
    without replacement within it. A prediction from a mix of conditions is a mixture of
    their moved cells; a plain random subsample adds multinomial noise to the mixture's
    weights, which the proportional draw removes (the same mixture in expectation). With one
    group the draw is the plain one, to the bit.
    """
    if n > len(src_idx):
        whole = np.tile(src_idx, n // len(src_idx))
        return np.concatenate([whole, draw_sources(src_idx, n % len(src_idx), rng, groups)])
    inverse = None if groups is None else _group_index(np.asarray(groups))
    if inverse is None or not inverse.any():  # one group
        return np.sort(rng.choice(src_idx, size=n, replace=False))
    sizes = np.bincount(inverse)
    order = np.argsort(inverse, kind="stable")  # each group in its given order
    members = np.split(np.asarray(src_idx)[order], np.cumsum(sizes)[:-1])
    counts = stratified_counts(sizes, n, rng)
    picks = [rng.choice(m, size=c, replace=False) for m, c in zip(members, counts, strict=True)]
    return np.sort(np.concatenate(picks))


def _group_index(groups: np.ndarray) -> np.ndarray:
    """Index of each entry's group among the groups present, in sorted order.

    ``np.unique(groups, return_inverse=True)[1]`` without its sort for small non-negative
    codes (condition x context), and as ``uint16`` where it fits, which numpy's stable
    argsort sorts by radix.
    """
    if groups.dtype.kind not in "iu" or groups.min() < 0 or groups.max() > 1 << 24:
        inverse = np.unique(groups, return_inverse=True)[1].ravel()
    else:
        present = np.bincount(groups) > 0
        inverse = (np.cumsum(present) - 1)[groups]
    return inverse.astype(np.uint16) if inverse.max(initial=0) < 1 << 16 else inverse


def stratified_counts(sizes: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Proportional allocation of ``n`` draws over groups of ``sizes`` (largest remainder).

    Each group gets ``floor(n * size / total)``; the draws left go to the largest
    remainders, ties broken at random. Never more than a group holds.
    """
    share = n * sizes / sizes.sum()
    counts = np.floor(share).astype(np.int64)
    left = n - int(counts.sum())
    if left:
        remainder = share - counts
        order = np.lexsort((rng.random(len(sizes)), -remainder))
        counts[order[:left]] += 1
    return np.minimum(counts, sizes)


def default_batch_size(n_genes: int, device_type: str) -> int:
    """Cells per forward pass by default: :data:`NOISE_BLOCK` on a GPU, fewer on the CPU.

    On the CPU, the largest power of two from 256 to 4,096 whose batch of ``n_genes`` stays
    within :data:`BATCH_VALUES` (larger buffers are mapped fresh from the system on every
    batch, the C allocator's threshold, which costs more than the batch's compute).
    """
    if device_type != "cpu":
        return NOISE_BLOCK
    return noise_block_size(n_genes)
