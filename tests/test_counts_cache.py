"""The analyses' cache of SparseCounts (issue 13.3): reuse, misses on change, no leaks."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import scipy.sparse as sp

from scribe.counts import SparseCounts
from scribe.counts_cache import COUNTS_CACHE, CountsCache, fingerprint


def _x(seed=0):
    rng = np.random.default_rng(seed)
    return sp.csr_matrix(rng.negative_binomial(2, 0.5, (20, 5)).astype(np.float32))


class _Builder:
    def __init__(self, matrix):
        self.matrix, self.calls = matrix, 0

    def __call__(self):
        self.calls += 1
        return SparseCounts.from_matrix(self.matrix)


def test_same_object_is_built_once_and_reused():
    cache, x = CountsCache(), _x()
    build = _Builder(x)
    first = cache.get(x, 0, np.float32, build)
    assert cache.get(x, 0, np.float32, build) is first and build.calls == 1
    # Another cells_axis or dtype is another entry.
    cache.get(x, 0, np.float64, build)
    assert build.calls == 2 and cache.hits == 1


@pytest.mark.parametrize("change", ["data", "indices", "indptr", "dense"])
def test_modified_in_place_misses(change):
    cache = CountsCache()
    x = _x() if change != "dense" else _x().toarray()
    build = _Builder(x)
    cache.get(x, 0, np.float32, build)
    if change == "data":
        x.data[3] += 1
    elif change == "indices":   # move an entry to another gene of its row
        row = 2
        start, end = x.indptr[row], x.indptr[row + 1]
        free = sorted(set(range(5)) - set(x.indices[start:end].tolist()))
        x.indices[start] = free[0]
        x.has_sorted_indices = False
    elif change == "indptr":    # move an entry to the next cell
        x.indptr[3] -= 1
    else:
        x[4, 1] += 7
    cache.get(x, 0, np.float32, build)
    assert build.calls == 2 and cache.hits == 0


def test_equal_content_in_another_object_is_not_a_hit_and_entries_die_with_objects():
    cache = CountsCache()
    x = _x()
    cache.get(x, 0, np.float32, _Builder(x))
    y = x.copy()
    build = _Builder(y)
    cache.get(y, 0, np.float32, build)
    assert build.calls == 1 and len(cache) == 2
    del x
    gc.collect()
    assert len(cache) == 1        # the weak reference dropped x's entry


def test_cache_is_bounded():
    cache = CountsCache(max_entries=2)
    matrices = [_x(s) for s in range(4)]
    for m in matrices:
        cache.get(m, 0, np.float32, _Builder(m))
    assert len(cache) == 2
    build = _Builder(matrices[0])        # the oldest went first
    cache.get(matrices[0], 0, np.float32, build)
    assert build.calls == 1


def test_uncacheable_objects_are_rebuilt():
    cache, rows = CountsCache(), _x().toarray().tolist()   # a list: no weak reference
    build = _Builder(np.asarray(rows))
    cache.get(rows, 0, np.float32, build)
    cache.get(rows, 0, np.float32, build)
    assert build.calls == 2 and len(cache) == 0
    assert fingerprint(rows) is None


def test_log_likelihood_reuses_and_sees_changes(monkeypatch):
    """Analyses on the same counts skip validation and rebuild; after an in-place change
    the values are those of the changed counts (checked against a fresh copy)."""
    from test_large_counts import _mixture_results  # tests/ is on sys.path (rootdir)

    x = _x(1)
    results = _mixture_results(x.toarray())
    COUNTS_CACHE.clear()
    hits = COUNTS_CACHE.hits
    first = np.asarray(results.log_likelihood_map(x, batch_size=8, verbose=False))
    again = np.asarray(results.log_likelihood_map(x, batch_size=8, verbose=False))
    assert COUNTS_CACHE.hits == hits + 1
    x.data[0] += 5
    changed = np.asarray(results.log_likelihood_map(x, batch_size=8, verbose=False))
    fresh = np.asarray(results.log_likelihood_map(x.copy(), batch_size=8, verbose=False))
    np.testing.assert_array_equal(changed, fresh)
    assert changed[0] != first[0] and np.array_equal(changed[1:], first[1:])
    np.testing.assert_array_equal(again, first)
    # batch_size=None on a matrix above the auto-block size: blocks, the same values.
    monkeypatch.setattr("scribe.svi.loglik.AUTO_BLOCK_NONZEROS", 10)
    auto = np.asarray(results.log_likelihood_map(x, verbose=False))
    np.testing.assert_allclose(auto, fresh, rtol=1e-6)
