"""``predict(scale="counts")`` keeps real count noise: the variance-to-mean ratio per gene.

Count-based scorers (cell-eval, the Virtual Cell Challenge) read raw counts, whose spread
is set by the count noise as much as by the biology. The residual decoder moves real cells,
so a predicted cell put back on its source cell's count scale keeps that cell's variation;
its count noise is drawn afresh at the new mean (``model/_counts_scale.py``), so the
per-gene variance-to-mean ratio (VMR) of the predicted counts matches the measured cells'.
Counts drawn around the predicted means, counts on the wrong scale, or the source cell's
counts scaled with the move (its sampling noise scaled too) do not.

The VMR comparison: for each gene with a mean count of at least :data:`MIN_MEAN` in the
training cells (chosen without looking at the cells compared; below that a gene has a
handful of non-zero counts and its VMR is noise), the ratio ``VMR(predicted) /
VMR(held-out)``; the figure is the median of these ratios over genes (each gene against
itself, robust to a few genes far off either way).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scvi

import pdae_sc as pdae
from pdae_sc.model import PDAE

HELD = "P0+P1"
MIN_MEAN = 0.1  # mean count per cell below which a gene's VMR is not compared
TOLERANCE = 0.25  # the median VMR ratio must lie in [0.75, 1.25]
SOURCES = (None, "all", "ctrl")


def _dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)


def vmr_ratio(pred_counts, obs_counts, genes: np.ndarray) -> float:
    """Median over ``genes`` (a mask) of ``VMR(pred) / VMR(obs)``, cells × genes counts.

    Symmetric in its inputs: a gene without counts in ``pred`` has a ratio of 0, one without
    counts in ``obs`` a ratio of infinity, one without counts in either is left out.
    """

    def vmr(c):
        c = _dense(c)[:, genes]
        mean = c.mean(axis=0)
        return np.divide(c.var(axis=0, ddof=1), mean, out=np.zeros_like(mean), where=mean > 0)

    num, den = vmr(pred_counts), vmr(obs_counts)
    ratio = np.divide(num, den, out=np.full_like(num, np.inf), where=den > 0)
    ratio[(num == 0) & (den == 0)] = np.nan
    return float(np.nanmedian(ratio))


@pytest.fixture(scope="module")
def screen():
    """A count screen with ``P0+P1`` held out, a model trained on half of the other cells.

    Returns the model, the held-out cells and the other half of the training conditions'
    cells (new cells the model never saw).
    """
    sim = pdae.data.simulate(
        n_perturbations=4,
        n_genes=60,
        n_cells_per_condition=300,
        counts=True,
        library_size=300,  # about 5 counts per gene and cell: many zeros, NB noise
        seed=0,
    )
    sim.X = sim.layers.pop("counts").astype(np.float32)  # the counts as a user gets them
    pdae.pp.normalize_counts(sim)
    held = (sim.obs["perturbation"] == HELD).to_numpy()
    half = np.random.default_rng(0).random(sim.n_obs) < 0.5
    train, new = sim[~held & half].copy(), sim[~held & ~half].copy()
    PDAE.setup_anndata(train, "perturbation", control_group="ctrl", counts_layer="counts")
    scvi.settings.seed = 0
    model = PDAE(train, n_latent=4, n_hidden=(32,), n_noise=2)
    model.train(max_epochs=5, enable_progress_bar=False, held_out_conditions=0, accelerator="cpu")
    return model, sim[held].copy(), new


def _genes(model: PDAE) -> np.ndarray:
    """Genes with a mean count of at least :data:`MIN_MEAN` in the training cells."""
    return np.asarray(model.adata.layers["counts"].mean(axis=0)).ravel() >= MIN_MEAN


def _n_cells(sources, source: str | None, default: str, n_held: int) -> int:
    """As many predicted cells as held-out cells, each from a distinct source if possible.

    ``sources``: the cells the prediction moves from; ``default``: what ``source=None`` takes.
    """
    obs = sources.obs["perturbation"].astype(str)
    pool = obs.size if (source or default) == "all" else int((obs == "ctrl").sum())
    return min(n_held, pool)


def _check_counts(pred) -> np.ndarray:
    counts = _dense(pred.layers["counts"])
    assert (counts >= 0).all()
    np.testing.assert_array_equal(counts, np.rint(counts))
    return counts


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: f"source={s}")
@pytest.mark.parametrize("cells", ["registered", "new"])
def test_predicted_counts_keep_the_count_noise(screen, source, cells):
    model, held_out, new = screen
    if cells == "new":  # cells the model never saw; source=None takes their control cells
        sources, default, extra = new, "ctrl", {"adata": new}
    else:
        sources, default, extra = model.adata, model.default_source_, {}
    n = _n_cells(sources, source, default, held_out.n_obs)
    pred = model.predict(
        [HELD], n_cells=n, source=source, seed=0, scale="counts", method="pdae", **extra
    )
    assert pred.obs["pdae_source_cell"].is_unique  # every predicted cell from its own source
    assert set(pred.obs["pdae_source_cell"]) <= set(sources.obs_names)
    counts = _check_counts(pred)
    genes = _genes(model)
    assert genes.sum() >= 50
    ratio = vmr_ratio(counts, held_out.layers["counts"], genes)
    assert abs(ratio - 1) <= TOLERANCE, f"median VMR ratio predicted/held-out {ratio:.3f}"


@pytest.mark.parametrize("cells", ["registered", "new"])
def test_default_prediction_keeps_the_count_noise(screen, cells):
    """``predict(..., scale="counts")`` as a user calls it, whatever method it picks."""
    model, held_out, new = screen
    extra = {"adata": new} if cells == "new" else {}
    sources = new if cells == "new" else model.adata
    n = _n_cells(sources, "ctrl", "ctrl", held_out.n_obs)  # a baseline moves control cells
    pred = model.predict([HELD], n_cells=n, seed=0, scale="counts", **extra)
    ratio = vmr_ratio(_check_counts(pred), held_out.layers["counts"], _genes(model))
    method = pred.uns["pdae"]["method"]
    assert abs(ratio - 1) <= TOLERANCE, f"{method}: median VMR ratio {ratio:.3f}"


def test_the_vmr_check_rejects_counts_without_count_noise_or_size_factor(screen):
    """The comparison has the power to fail: two wrong ways to make counts are caught."""
    model, held_out, _ = screen
    pred = model.predict([HELD], n_cells=150, seed=0, scale="counts")
    counts = _check_counts(pred)
    obs, genes = held_out.layers["counts"], _genes(model)
    assert abs(vmr_ratio(counts, obs, genes) - 1) <= TOLERANCE
    # Poisson counts around the predicted mean of each gene: no cell-to-cell variation
    rng = np.random.default_rng(0)
    poisson = rng.poisson(np.broadcast_to(counts.mean(axis=0), counts.shape))
    assert vmr_ratio(poisson, obs, genes) < 1 - TOLERANCE
    # the moved cells without their source cells' size factors (counts per 10,000)
    per_10k = np.rint(np.expm1(_dense(pred.X)))
    assert vmr_ratio(per_10k, obs, genes) > 1 + TOLERANCE
    # and the measured cells agree with each other: one half against the other
    rows = np.random.default_rng(1).permutation(held_out.n_obs)
    halves = [obs[rows[: len(rows) // 2]], obs[rows[len(rows) // 2 :]]]
    assert abs(vmr_ratio(*halves, genes) - 1) <= 0.1


# ------------------------------------------------------------- the resampling, on its own
def _nb_counts(rng, n_cells, mean, phi):
    """Negative binomial counts (variance ``mean + phi * mean**2``) and size factors 1."""
    rates = rng.gamma(1 / phi, mean * phi, size=(n_cells, len(mean)))
    return rng.poisson(rates).astype(np.float64), np.ones(n_cells)


def test_gene_count_noise_recovers_the_negative_binomial():
    from pdae_sc.model._counts_scale import gene_count_noise

    rng = np.random.default_rng(0)
    mean, phi = np.array([0.2, 1.0, 5.0]), np.array([2.0, 0.5, 0.2])
    counts, factors = _nb_counts(rng, 20_000, mean, phi)
    idx = np.arange(len(counts))
    nu, phi_hat = gene_count_noise(lambda rows: counts[rows], idx, factors, 4096)
    np.testing.assert_allclose(nu[0], mean, rtol=0.05)  # one group: one row
    np.testing.assert_allclose(phi_hat[0], phi, rtol=0.15)
    poisson = rng.poisson(1.0, size=(20_000, 1)).astype(np.float64)
    assert gene_count_noise(lambda rows: poisson[rows], idx, factors, 4096)[1][0] < 0.02


@pytest.mark.parametrize("fold", [0.5, 3.0])
def test_a_moved_sparse_gene_gets_the_count_noise_of_its_new_mean(fold):
    """A gene whose rate the move multiplies by ``fold``: counts of a negative binomial at
    ``fold`` times the mean (VMR ``1 + fold * mean * phi``), not the source counts times
    ``fold`` (VMR ``fold * (1 + mean * phi)``)."""
    from pdae_sc.model._counts_scale import gene_count_noise, resampled_counts

    rng = np.random.default_rng(1)
    mean, phi = np.array([0.3, 0.3]), np.array([3.0, 3.0])
    counts, factors = _nb_counts(rng, 40_000, mean, phi)
    factors = factors * 0.005  # a deep normalisation (as on sparse screens): x = log1p(c / s)
    idx = np.arange(len(counts))
    nu, phi_hat = gene_count_noise(lambda rows: counts[rows], idx, factors, 4096)
    # the move x + log(fold) on the log1p scale: about `fold` times every count's rate
    x = np.log1p(counts / factors[:, None]) + np.log(fold)
    out = resampled_counts(x, counts, factors, nu[0], phi_hat[0], rng)
    assert np.array_equal(out, np.rint(out))
    assert (out >= 0).all()
    target = 1 + fold * mean * phi
    vmr = out.var(axis=0) / out.mean(axis=0)
    np.testing.assert_allclose(out.mean(axis=0), fold * mean, rtol=0.05)
    np.testing.assert_allclose(vmr, target, rtol=0.1)
    scaled = np.clip((counts + 0.005) * fold - 0.005, 0, None)
    assert abs(np.median(scaled.var(axis=0) / scaled.mean(axis=0)) / target[0] - 1) > 0.2


def test_counts_the_move_leaves_alone_are_the_measured_ones():
    from pdae_sc.model._counts_scale import resampled_counts

    rng = np.random.default_rng(2)
    counts, factors = _nb_counts(rng, 50, np.array([0.5, 2.0]), np.array([1.0, 1.0]))
    factors = factors * 0.37
    x = np.log1p(counts / factors[:, None]).astype(np.float32)  # as registered: float32
    out = resampled_counts(x, counts, factors, np.array([0.5, 2.0]), np.ones(2), rng)
    np.testing.assert_array_equal(out, counts)
