"""Counts at the edges: huge values (issue 12.3), offsets past 2**31 (issue 13.1), and
batches whose large-entry list or whole entry list is empty (issue 12.1)."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats
from scipy.special import gammaln

import scribe
from scribe.counts import (
    INT32_MAX,
    LARGE_COUNT,
    SparseCounts,
    batch_capacity,
    block_capacity,
    device_offsets,
    gather_rows,
)
from scribe.data import MAX_COUNT, CountsError, prepare_counts

EPS32 = 2.0**-24


# ---- supported range -----------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["dense", "csr", "csc"])
@pytest.mark.parametrize("value", [2.0**31, 1e20, 1e39])
def test_counts_beyond_the_range_are_refused_naming_value_cell_gene(layout, value):
    x = np.zeros((4, 3))
    x[2, 1], x[3, 0] = value, 5
    matrix = {"dense": x, "csr": sp.csr_matrix(x), "csc": sp.csc_matrix(x)}[layout]
    with pytest.raises(CountsError, match=r"counts must be at most 2,147,483,647 .* "
                                          r"at cell 2, gene 1") as info:
        prepare_counts(matrix)
    assert f"{value:.6g}" in str(info.value)
    # Genes as rows: the same cell and gene are named.
    with pytest.raises(CountsError, match=r"at cell 2, gene 1"):
        prepare_counts(matrix.T, cells_axis=1)


def test_float32_infinity_from_a_huge_count_is_reported_as_infinite():
    x = np.zeros((2, 2), np.float32)
    x[1, 0] = np.float32(1e39)   # inf in float32: the caller's value is already lost
    with pytest.raises(CountsError, match=r"NaN or infinite value \(inf\) at cell 1, gene 0"):
        prepare_counts(sp.csr_matrix(x))


@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_counts_above_2_24_stay_exact(layout):
    x = np.zeros((3, 2), np.int64)
    x[0, 0], x[1, 1], x[2, 0] = 16_777_217, MAX_COUNT, 3
    counts, _ = prepare_counts(x if layout == "dense" else sp.csr_matrix(x))
    assert counts.dtype == np.float64     # float32 would store 16,777,216
    dense = counts if layout == "dense" else counts.toarray()
    np.testing.assert_array_equal(dense.astype(np.int64), x)
    s = SparseCounts.from_matrix(counts)
    assert s.large_values.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(s.large_values), [16_777_217, MAX_COUNT])


def test_statistics_memory_does_not_grow_with_the_largest_count():
    # One count of 1e9 used to allocate a 4 GB histogram; the table is capped at 16/gene.
    x = sp.csr_matrix(np.array([[1e9, 0, 2], [3, 40, 0]]))
    s = SparseCounts.from_matrix(x)
    assert s.hist_genes.shape[0] <= LARGE_COUNT * x.shape[1]
    np.testing.assert_allclose(np.asarray(s.cell_log_factorial),
                               gammaln(x.toarray() + 1).sum(1), rtol=1e-6)


def _nb_terms(x, r, p):
    """|terms| of log NB(x; r, p) in float64: the scale of float32 rounding errors."""
    return (np.abs(gammaln(x + r) - gammaln(r)) + gammaln(x + 1) + x * abs(np.log(p))
            + r * abs(np.log1p(-p)))


def test_huge_counts_log_likelihood_matches_scipy():
    """Counts of 16,777,217 and 2**31 - 1 through the sparse sums (by cell, by gene,
    total, and a mini-batch) against scipy in float64.

    Tolerance: float32 evaluates each of the few terms of log f (rising factorial by
    Stirling, log x!, x log p, r log(1 - p)) with a relative error of a few ulps and adds
    them, so |error| <= c * 2**-24 * sum |terms| with c = 16 (terms up to 4e10 here,
    while a wrongly rounded or wrapped count would be off by |log p| x count ~ 1e8)."""
    x = np.zeros((4, 3))
    x[0, 0], x[1, 1], x[2, 0], x[3, 2] = 16_777_217, MAX_COUNT, 5, 40
    r, p = np.array([2.5, 0.7, 4.0]), 0.3
    want = stats.nbinom.logpmf(x, r, 1 - p)
    scale = _nb_terms(x, r, p)
    lik = scribe.plugins.model_types()["nbdm"].likelihood
    params = {"p": jnp.float32(p), "r": jnp.asarray(r, jnp.float32)}
    counts = SparseCounts.from_matrix(prepare_counts(x)[0])
    batch = counts.with_batch_size(2).take_cells(jnp.array([1, 0]))
    got = jax.jit(lambda c, b, pr: (lik.cell_log_prob(c, pr), lik.gene_log_prob(c, pr),
                                    lik.total_log_prob(c, pr), lik.cell_log_prob(b, pr)))(
        counts, batch, params)
    np.testing.assert_array_less(np.abs(np.asarray(got[0], float) - want.sum(1)),
                                 16 * EPS32 * scale.sum(1))
    np.testing.assert_array_less(np.abs(np.asarray(got[1], float) - want.sum(0)),
                                 16 * EPS32 * scale.sum(0))
    assert abs(float(got[2]) - want.sum()) < 16 * EPS32 * scale.sum()
    np.testing.assert_array_less(np.abs(np.asarray(got[3], float) - want.sum(1)[[1, 0]]),
                                 16 * EPS32 * scale.sum(1)[[1, 0]])


def test_huge_counts_are_exact_in_float64():
    """In float64 the count itself must be exact: 16,777,217 read as 16,777,216 would move
    log f by about |log p| + log(x / (x + r - 1)) ~ 1.2, far above 1e-9 relative."""
    x = np.array([[16_777_217.0, 3.0], [0.0, 123_456_789.0]])
    r, p = np.array([2.5, 0.7]), 0.3
    want = stats.nbinom.logpmf(x, r, 1 - p)
    lik = scribe.plugins.model_types()["nbdm"].likelihood
    with jax.enable_x64(True):
        counts = SparseCounts.from_matrix(prepare_counts(x)[0], dtype=np.float64)
        got = np.asarray(lik.cell_log_prob(counts, {"p": jnp.float64(p),
                                                    "r": jnp.asarray(r, jnp.float64)}))
    np.testing.assert_allclose(got, want.sum(1), rtol=1e-9)


# ---- 64-bit offsets ----------------------------------------------------------------------------


def _brute_gather(indptr: np.ndarray, index: np.ndarray, capacity: int):
    rows = np.concatenate([np.full(indptr[i + 1] - indptr[i], b) for b, i in enumerate(index)])
    source = np.concatenate([np.arange(indptr[i], indptr[i + 1]) for i in index])
    return rows, source


def test_gather_offsets_past_2_31_under_x64():
    """Row pointers around 2**31 and 2**32 (no entries allocated: only offsets are
    gathered): every source position is the exact int64 offset, none wraps."""
    # Rows 0 and 4 are 2**31 long (never gathered); rows 1, 3 straddle 2**31, rows 5, 6
    # lie past 2**32.
    indptr = np.array([0, 2**31 - 6, 2**31 - 3, 2**31 - 3, 2**31 + 4, 2**32 + 1,
                       2**32 + 3, 2**32 + 7], np.int64)
    lengths = np.diff(indptr)
    index = np.array([1, 3, 2, 5, 6], np.int32)   # rows straddling 2**31 and 2**32
    capacity = int(lengths[index].sum()) + 3       # with padding
    with jax.enable_x64(True):
        device = device_offsets(indptr)
        assert device.dtype == jnp.int64
        row, source, valid = jax.jit(gather_rows, static_argnums=2)(
            device, jnp.asarray(index), capacity)
        row, source, valid = (np.asarray(a) for a in (row, source, valid))
    want_rows, want_source = _brute_gather(indptr, index, capacity)
    n = want_rows.size
    assert valid.sum() == n and not valid[n:].any()
    np.testing.assert_array_equal(row[:n], want_rows)
    np.testing.assert_array_equal(source[:n], want_source)
    assert source[:n].max() > 2**32 and source[:n].min() > 2**31 - 7


def test_offsets_past_2_31_are_refused_in_32_bit_mode():
    indptr = np.array([0, 5, 2**31 + 4])
    with pytest.raises(ValueError, match=r"2,147,483,652 non-zeros.*jax_enable_x64"):
        device_offsets(indptr)
    fits = device_offsets(np.array([0, 5, INT32_MAX]))
    assert fits.dtype == jnp.int32 and int(fits[-1]) == INT32_MAX


def test_capacities_use_64_bit_arithmetic():
    """Row lengths from offsets past 2**31 (an int32 difference would wrap): the
    capacity is exact, and one beyond a batch buffer's reach is an error."""
    indptr = np.array([0, 2**31 + 10, 2**31 + 15, 2**31 + 22, 2**31 + 22], np.int64)
    assert batch_capacity(indptr[1:] - indptr[1], 2) == 12      # lengths 5, 7, 0
    assert block_capacity(indptr[1:] - indptr[1], 2) == 12
    with pytest.raises(ValueError, match=r"2,147,483,658 non-zeros.*smaller batch_size"):
        batch_capacity(indptr, 1)
    with pytest.raises(ValueError, match="smaller batch_size"):
        block_capacity(indptr, 2)


# ---- empty sub-arrays in the gather (issue 12.1) ----------------------------------------------


def _matrix(max_count: int, seed: int = 0, n_cells: int = 24, n_genes: int = 6):
    rng = np.random.default_rng(seed)
    x = rng.negative_binomial(2.0, 0.3, (n_cells, n_genes)).astype(np.float64)
    x = np.minimum(x, max_count)
    if max_count > 0:
        x[0, 0] = max_count      # the maximum is reached
    return x


#: Largest count 0 (a matrix with no non-zeros), 1, 16 (no large entries), 17.
EDGE_CASES = {"max0": 0, "max1": 1, "max16": 16, "max17": 17}


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_batches_of_matrices_without_large_or_any_entries(case):
    """take_cells under jit on matrices whose large-entry list (max <= 16) or entry list
    (all zero) is empty: the batch is the dense rows, and its log-likelihood the dense
    reference."""
    x = _matrix(EDGE_CASES[case])
    counts = SparseCounts.from_matrix(sp.csr_matrix(x)).with_batch_size(5)
    index = jnp.array([3, 0, 23, 7, 3])
    lik = scribe.plugins.model_types()["zinbvcp"].likelihood
    params = {"p": jnp.float32(0.4), "r": jnp.full(6, 1.5, jnp.float32),
              "gate": jnp.full(6, 0.2, jnp.float32),
              "p_capture": jnp.linspace(0.3, 0.9, 5, dtype=jnp.float32)}
    batch, total = jax.jit(lambda c, i, pr: (c.take_cells(i),
                                             lik.total_log_prob(c.take_cells(i), pr)))(
        counts, index, params)
    rows = x[np.asarray(index)]
    np.testing.assert_array_equal(np.asarray(batch.to_dense()), rows)
    want = float(np.sum(lik.log_prob(jnp.asarray(rows, jnp.float32), params)))
    assert abs(float(total) - want) < 1e-5 * max(1.0, abs(want))


def _mixture_results(x: np.ndarray):
    """nbdm_mix results at its data-informed starting values, without training (the
    analyses only need parameters; a fit would add ~20 s of compilation)."""
    from numpyro.infer.svi import SVIRunResult

    from scribe.svi.engine import initial_params
    from scribe.svi.factory import SVIResultsFactory

    config = scribe.ModelConfig(model_type="nbdm_mix", n_components=2)
    counts, _ = prepare_counts(sp.csr_matrix(x))
    params = initial_params(config, counts, seed=0)
    run = SVIRunResult(params, None, jnp.zeros(1))
    return SVIResultsFactory.create_results(run, config, None, counts, *x.shape, "nbdm_mix",
                                            2, {})


@pytest.fixture(scope="module")
def mixture_fit():
    results = _mixture_results(_matrix(11, seed=3, n_cells=60))
    return results, results.get_map(use_mean=True, canonical=True, verbose=False)


@pytest.mark.slow
@pytest.mark.parametrize("model_type", ["nbdm", "zinbvcp_mix"])
def test_fit_with_batch_size_on_counts_at_most_11(model_type):
    """The reported crash: fit(batch_size=B) on droplet-like counts (maximum 11). After
    a few steps the loss is finite and every parameter too (slow: ~20-40 s per fit)."""
    x = _matrix(11, seed=3, n_cells=60)
    results = scribe.fit(sp.csr_matrix(x), model_type,
                         n_components=2 if model_type.endswith("_mix") else None,
                         n_steps=3, batch_size=16, tol=None, progress=False)
    assert np.all(np.isfinite(np.asarray(results.loss_history)))
    assert all(np.all(np.isfinite(np.asarray(v))) for v in results.params.values())


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_batched_analyses_on_edge_matrices(mixture_fit, case):
    """log_likelihood and cell_type_probabilities_map with batch_size equal their
    unbatched values (a different path: full-matrix statistics) and the scipy reference."""
    results, map_params = mixture_fit
    x = _matrix(EDGE_CASES[case], seed=5)     # max0: no non-zeros at all
    # Analyses do not repeat the fit's warning about all-zero genes (issue 12).
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        batched = np.asarray(results.log_likelihood_map(x, batch_size=7, split_components=True,
                                                        verbose=False), float)
    unbatched = np.asarray(results.log_likelihood_map(x, split_components=True,
                                                      verbose=False), float)
    r = np.asarray(map_params["r"], float)                     # (K, G)
    p = np.broadcast_to(np.asarray(map_params["p"], float), (r.shape[0],))
    w = np.asarray(map_params["mixing_weights"], float)
    want = np.stack([stats.nbinom.logpmf(x, r[k], 1 - p[k]).sum(1) + np.log(w[k])
                     for k in range(r.shape[0])], axis=1)
    np.testing.assert_allclose(batched, unbatched, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(batched, want, rtol=1e-5, atol=1e-3)
    probs = np.asarray(results.cell_type_probabilities_map(x, batch_size=7, use_mean=True,
                                                           verbose=False)["probabilities"])
    expected = np.exp(want - want.max(1, keepdims=True))
    np.testing.assert_allclose(probs, expected / expected.sum(1, keepdims=True), atol=1e-4)
