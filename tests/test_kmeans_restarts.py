"""k-means restarts of the mixtures' starting values (``scribe.initial_values.kmeans``).

A far outlier attracts a k-means++ centre with high probability; that run then keeps the
outlier as a singleton and merges two real groups (what nbvcp_mix at 20,000 x 2,000 did
from seed 0: ARI 0.53). The restart with the lowest inertia is the right partition.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from scribe.initial_values import kmeans

SEEDS = range(20)


def _blobs_with_outlier():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0, 0], [8, 0, 0], [0, 8, 0]], float)
    truth = np.repeat(np.arange(3), 100)
    points = np.vstack([centres[truth] + rng.normal(size=(300, 3)), [[0, 0, 40]]])
    return points, truth


def _recovered(labels, truth) -> bool:
    """Every true group is one cluster and the three groups are three clusters."""
    labels = labels[: truth.size]
    return (all(np.unique(labels[truth == k]).size == 1 for k in range(3))
            and np.unique(labels).size == 3)


def test_restarts_recover_groups_a_single_run_merges():
    points, truth = _blobs_with_outlier()
    single = [_recovered(kmeans(points, 3, s, n_init=1), truth) for s in SEEDS]
    # The case is a real trap: a third of single runs (8 of these 20 seeds) fail.
    assert sum(single) < len(single)
    # Deterministic given the seeds: each restart set holds at least one good run, and
    # the good partition has the lower inertia (the singleton leaves a merged pair whose
    # spread, ~8^2 / 4 per point over 200 points, dwarfs the outlier's 40^2).
    assert all(_recovered(kmeans(points, 3, s), truth) for s in SEEDS)


def test_restart_keeps_the_lowest_inertia_and_accepts_sparse():
    points, _ = _blobs_with_outlier()
    points = np.abs(points)        # sparse input: non-negative like log-normalised counts

    def inertia(labels):
        return sum(np.sum((points[labels == k] - points[labels == k].mean(0)) ** 2)
                   for k in np.unique(labels))

    best = kmeans(sp.csr_matrix(points), 3, 5, n_init=4)
    singles = [inertia(kmeans(points, 3, 5 + i, n_init=1)) for i in range(4)]
    np.testing.assert_allclose(inertia(best), min(singles), rtol=1e-9)
