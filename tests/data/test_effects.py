"""Effect sizes of measured groups: the ranking that held-out conditions are spread over."""

from __future__ import annotations

import numpy as np

from pdae_sc.data._effects import mean_shifts


def test_mean_shifts_do_not_rank_small_groups_as_strong_effects():
    # no effect anywhere: 500 control cells, groups of 5 and of 200 cells, 200 genes
    rng = np.random.default_rng(1)
    codes = np.repeat([0, 1, 2], [500, 5, 200])
    contexts = np.zeros_like(codes)
    matrix = rng.normal(size=(len(codes), 200))
    shifts = mean_shifts(matrix, codes, contexts, codes == 0, [(1, 0), (2, 0)])
    raw = ((matrix[codes == 1].mean(0) - matrix[codes == 0].mean(0)) ** 2).sum()
    assert raw > 30  # about 200 / 5 + 200 / 500 from sampling noise alone
    assert np.all(np.abs(shifts) < 12), shifts  # the noise's expected part removed
    # a real shift is kept: every gene moved by 1 in the small group
    matrix[codes == 1] += 1.0
    shifted = mean_shifts(matrix, codes, contexts, codes == 0, [(1, 0)])
    assert abs(shifted[0] - 200) < 40, shifted
