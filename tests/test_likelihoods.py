"""Built-in negative-binomial likelihoods against scipy and simulation (SPEC section 1).

References are computed with numpy/scipy in float64 from the float32-rounded parameters
that the library sees, so only the library's own arithmetic is under test.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import scribe
from scribe.counts import SparseCounts

NAMES = ("nbdm", "zinb", "nbvcp", "zinbvcp")
N_CELLS, N_GENES = 30, 12


def _f32(x):
    """Round to float32 (what JAX sees) and return float64 numpy for references."""
    return np.asarray(np.asarray(x, dtype=np.float32), dtype=np.float64)


def _likelihood(name):
    return scribe.plugins.model_types()[name].likelihood


def _flags(name):
    return name.startswith("zi"), name.endswith("vcp")


def _p_hat_ref(p, nu):
    return p * nu / (1.0 - p * (1.0 - nu))


def _reference_log_prob(name, counts, params):
    """Elementwise (C, G) log-probability by scipy.stats.nbinom (float64)."""
    zero_inflated, capture = _flags(name)
    p = np.asarray(params["p"], dtype=np.float64)
    if capture:
        p = _p_hat_ref(p, np.asarray(params["p_capture"], dtype=np.float64))
    p = p[:, None] if p.ndim == 1 else p
    r = np.asarray(params["r"], dtype=np.float64)
    log_nb = stats.nbinom.logpmf(counts, r, 1.0 - p)
    if not zero_inflated:
        return np.broadcast_to(log_nb, counts.shape)
    gate = np.asarray(params["gate"], dtype=np.float64)
    pmf0 = gate + (1 - gate) * stats.nbinom.pmf(0, r, 1.0 - p)
    return np.where(counts == 0, np.log(pmf0), np.log1p(-gate) + log_nb)


def _params(name, rng, *, per_cell):
    """Canonical params; ``per_cell`` gives mixture-selected shapes p (C,), r/gate (C, G)."""
    zero_inflated, capture = _flags(name)
    gene_shape = (N_CELLS, N_GENES) if per_cell else (N_GENES,)
    params = {
        "p": _f32(rng.uniform(0.2, 0.8, N_CELLS) if per_cell else rng.uniform(0.2, 0.8)),
        "r": _f32(rng.uniform(0.3, 6.0, gene_shape)),
    }
    if zero_inflated:
        params["gate"] = _f32(rng.uniform(0.05, 0.6, gene_shape))
    if capture:
        params["p_capture"] = _f32(rng.uniform(0.1, 0.95, N_CELLS))
    return params


def _counts(rng, params, name):
    """Counts drawn from the reference law (numpy), so typical and zero values both occur."""
    zero_inflated, capture = _flags(name)
    p = np.asarray(params["p"])
    if capture:
        p = _p_hat_ref(p, params["p_capture"])
    p = p[:, None] if p.ndim == 1 else p
    r = np.broadcast_to(params["r"], (N_CELLS, N_GENES))
    x = rng.negative_binomial(r, np.broadcast_to(1 - p, (N_CELLS, N_GENES))).astype(float)
    if zero_inflated:
        x = np.where(rng.uniform(size=x.shape) < np.broadcast_to(params["gate"], x.shape), 0, x)
    x[0, :3] = [0, 1, 17]  # make sure zeros and a larger count are always present
    return x


def _jax(params):
    return {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}


@functools.cache
def _case(name, per_cell):
    """Parameters, counts and the library's views of the law, compiled once:
    ``log_prob`` (C, G), ``total_log_prob``, ``distribution(params).log_prob``, and the
    sparse ``cell_log_prob`` (C,) and ``gene_log_prob`` (G,). With per-cell gene
    parameters (``per_cell``) the sparse views take the likelihood's dense fallback."""
    rng = np.random.default_rng(100 + 2 * NAMES.index(name) + int(per_cell))
    params = _params(name, rng, per_cell=per_cell)
    counts = _counts(rng, params, name)
    lik = _likelihood(name)

    @jax.jit
    def views(x, sparse, pr):
        return (lik.log_prob(x, pr), lik.total_log_prob(sparse, pr),
                lik.distribution(pr).log_prob(x), lik.cell_log_prob(sparse, pr),
                lik.gene_log_prob(sparse, pr))

    out = views(jnp.asarray(counts, jnp.float32), SparseCounts.from_matrix(counts),
                _jax(params))
    return params, counts, *(np.asarray(o, np.float64) for o in out)


CASES = [(name, per_cell) for name in NAMES for per_cell in (False, True)]
CASE_IDS = [f"{name}-{'per_cell' if per_cell else 'shared'}" for name, per_cell in CASES]


@pytest.mark.parametrize("name,per_cell", CASES, ids=CASE_IDS)
def test_log_prob_matches_scipy(name, per_cell):
    params, counts, got, *_ = _case(name, per_cell)
    want = _reference_log_prob(name, counts, params)
    assert got.shape == (N_CELLS, N_GENES)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("name,per_cell", CASES, ids=CASE_IDS)
def test_total_log_prob_is_sum(name, per_cell):
    params, counts, _, total, *_ = _case(name, per_cell)
    np.testing.assert_allclose(total, _reference_log_prob(name, counts, params).sum(),
                               rtol=1e-5)


@pytest.mark.parametrize("name,per_cell", CASES, ids=CASE_IDS)
def test_cell_and_gene_sums_match_scipy(name, per_cell):
    params, counts, *_, by_cell, by_gene = _case(name, per_cell)
    want = _reference_log_prob(name, counts, params)
    np.testing.assert_allclose(by_cell, want.sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(by_gene, want.sum(axis=0), rtol=1e-5)


@pytest.mark.parametrize("name,per_cell", CASES, ids=CASE_IDS)
def test_distribution_log_prob_agrees(name, per_cell):
    params, counts, elementwise, _, dist_lp, *_ = _case(name, per_cell)
    assert dist_lp.shape == (N_CELLS, N_GENES)
    np.testing.assert_allclose(dist_lp, elementwise, rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(dist_lp, _reference_log_prob(name, counts, params), rtol=1e-5,
                               atol=2e-5)


@pytest.mark.parametrize("name", NAMES)
def test_distribution_sample_mean(name):
    """Monte Carlo mean of draws equals (1 - gate) r p_hat / (1 - p_hat) per (cell, gene)."""
    # Same argument shapes for every likelihood (per-cell p), so NumPyro's samplers are
    # compiled once.
    n_cells, n_genes, n_draws = 3, 4, 4000
    rng = np.random.default_rng(7)
    zero_inflated, capture = _flags(name)
    params = {"p": _f32(rng.uniform(0.4, 0.7, n_cells)),
              "r": _f32(rng.uniform(0.5, 4.0, n_genes))}
    if zero_inflated:
        params["gate"] = _f32(rng.uniform(0.1, 0.5, n_genes))
    if capture:
        params["p_capture"] = _f32(rng.uniform(0.2, 0.9, n_cells))
    dist = _likelihood(name).distribution(_jax(params)).expand((n_cells, n_genes))
    draws = np.asarray(dist.sample(jax.random.PRNGKey(0), (n_draws,)), dtype=np.float64)
    p = params["p"]
    if capture:
        p = _p_hat_ref(p, params["p_capture"])
    p = p[:, None]
    keep = 1 - params.get("gate", np.zeros(n_genes))
    nb_mean = params["r"] * p / (1 - p)
    nb_var = params["r"] * p / (1 - p) ** 2
    mean = keep * nb_mean
    var = keep * (nb_var + nb_mean**2) - mean**2
    z = (draws.mean(axis=0) - mean) / np.sqrt(var / n_draws)
    assert np.all(np.abs(z) < 5), z
    # draws are non-negative integers
    assert np.all(draws >= 0) and np.all(draws == np.round(draws))
    if zero_inflated:
        # zero fraction: gate + (1 - gate) (1 - p_hat)^r
        p0 = 1 - keep + keep * (1 - p) ** params["r"]
        z0 = ((draws == 0).mean(axis=0) - p0) / np.sqrt(p0 * (1 - p0) / n_draws)
        assert np.all(np.abs(z0) < 5), z0


def test_variable_capture_identity_simulation():
    """m ~ NB(r, p), x | m ~ Binomial(m, nu)  =>  x ~ NB(r, p_hat) as the library computes it."""
    rng = np.random.default_rng(2024)
    n = 200_000
    r, p, nu = 2.5, 0.7, 0.35
    m = rng.negative_binomial(r, 1 - p, size=n)  # numpy's success prob is 1 - p
    x = rng.binomial(m, nu)
    lik = _likelihood("nbvcp")
    support = np.arange(0, x.max() + 1)
    counts = jnp.asarray(support[:, None], jnp.float32)  # "cells" = support points, 1 gene
    params = {"p": jnp.float32(p), "r": jnp.full((1,), r, jnp.float32),
              "p_capture": jnp.full((len(support),), nu, jnp.float32)}
    pmf = np.exp(np.asarray(jax.jit(lik.log_prob)(counts, params), np.float64)[:, 0])
    observed = np.bincount(x, minlength=len(support)).astype(float)
    expected = pmf * n
    # Merge the tail so every bin expects at least 5 draws.
    cut = int(np.argmax(expected < 5)) if np.any(expected < 5) else len(expected)
    obs = np.append(observed[:cut], observed[cut:].sum())
    exp = np.append(expected[:cut], n - expected[:cut].sum())
    _, pvalue = stats.chisquare(obs, exp)
    assert pvalue > 1e-3
    # The pmf itself is the NB(r, p_hat) pmf and the mean is scaled by exactly nu.
    p_hat = _p_hat_ref(p, nu)
    np.testing.assert_allclose(pmf, stats.nbinom.pmf(support, r, 1 - p_hat), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(r * p_hat / (1 - p_hat), nu * r * p / (1 - p), rtol=1e-12)
    # Empirical pmf within a few binomial standard errors.
    emp = observed / n
    se = np.sqrt(pmf * (1 - pmf) / n) + 1e-6
    assert np.max(np.abs(emp - pmf) / se) < 5


@pytest.mark.parametrize("name", ["nbdm", "zinb"])
def test_derived_empty_without_capture(name):
    assert _likelihood(name).derived({"p": jnp.float32(0.3), "r": jnp.ones(3)}) == {}


@pytest.mark.parametrize("name", ["nbvcp", "zinbvcp"])
def test_derived_p_hat_scalar_p(name):
    rng = np.random.default_rng(1)
    p, nu = _f32(0.55), _f32(rng.uniform(0.05, 0.95, N_CELLS))
    out = _likelihood(name).derived({"p": jnp.float32(p),
                                     "p_capture": jnp.asarray(nu, jnp.float32)})
    got = np.asarray(out["p_hat"])
    assert got.shape == (N_CELLS,)
    np.testing.assert_allclose(got, _p_hat_ref(p, nu), rtol=1e-6)


@pytest.mark.parametrize("name", ["nbvcp", "zinbvcp"])
def test_derived_p_hat_component_specific(name):
    rng = np.random.default_rng(2)
    p, nu = _f32(rng.uniform(0.1, 0.9, 3)), _f32(rng.uniform(0.05, 0.95, N_CELLS))
    out = _likelihood(name).derived({"p": jnp.asarray(p, jnp.float32),
                                     "p_capture": jnp.asarray(nu, jnp.float32)})
    got = np.asarray(out["p_hat"])
    assert got.shape == (N_CELLS, 3)
    np.testing.assert_allclose(got, _p_hat_ref(p[None, :], nu[:, None]), rtol=1e-6)


def test_scopes_of_builtin_likelihoods():
    expected = {
        "nbdm": {"p": "shared", "r": "gene"},
        "zinb": {"p": "shared", "r": "gene", "gate": "gene"},
        "nbvcp": {"p": "shared", "r": "gene", "p_capture": "cell"},
        "zinbvcp": {"p": "shared", "r": "gene", "gate": "gene", "p_capture": "cell"},
    }
    for name, scopes in expected.items():
        assert _likelihood(name).scopes() == scopes
        assert scribe.plugins.model_types()[name + "_mix"].likelihood is _likelihood(name)


def test_rising_table_and_stirling_tail_value_and_derivative():
    """The two pieces of ``lgamma(x + r) - lgamma(r)`` used per non-zero: the per-gene table
    (counts <= 16) and table + Stirling tail (larger counts), against direct float64 sums
    of ``log(r + j)`` and ``1/(r + j)``, for small and huge ``r``."""
    from scribe_builtin.nb_sparse import rising_table, stirling_tail

    r = np.geomspace(1e-3, 1e7, 60)
    x = np.array([17, 18, 25, 40, 500, 20000], dtype=float)
    rr, xx = np.meshgrid(r, x, indexing="ij")
    want = np.vectorize(lambda a, n: np.sum(np.log(a + np.arange(n))))(rr, xx)
    want_grad = np.vectorize(lambda a, n: np.sum(1.0 / (a + np.arange(n))))(rr, xx)
    table_want = np.stack([np.vectorize(lambda a, n=m: np.sum(np.log(a + np.arange(n))))(r)
                           for m in range(17)], axis=1)

    def large(r_, x_):
        return rising_table(r_, 16)[:, 16][:, None] + stirling_tail(r_[:, None] + 16, x_ - 16)

    with jax.enable_x64(True):
        table = np.asarray(rising_table(jnp.asarray(r), 16))
        got = np.asarray(large(jnp.asarray(r), jnp.asarray(x)[None, :]))
        got_grad = np.asarray(jax.vmap(jax.grad(
            lambda a, n: large(a[None], n[None, None])[0, 0]))(
                jnp.ravel(jnp.asarray(rr)), jnp.ravel(jnp.asarray(xx))))
    np.testing.assert_allclose(table, table_want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(got_grad.reshape(rr.shape), want_grad, rtol=1e-10, atol=1e-14)
    # float32: relative to max(1, |value|), far below lgamma(x + r) - lgamma(r) in float32.
    got32 = np.asarray(large(jnp.asarray(r, jnp.float32), jnp.asarray(x, jnp.float32)[None, :]))
    assert np.max(np.abs(got32 - want) / np.maximum(np.abs(want), 1)) < 2e-6
