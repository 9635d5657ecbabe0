"""The joint mixture sums, the fused zinbvcp zero term and the automatic batch size.

Values against scipy.stats.nbinom (float64 references from the float32-rounded
parameters), gradients against jax.grad of the dense elementwise law, in float64.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp
from scipy import stats

import scribe
from scribe.batching import AUTO_BATCH_CELLS, AUTO_FULL_BATCH_CELLS, auto_batch_size
from scribe.counts import SparseCounts
from scribe.fitting import check_fit_args
from scribe.mixture import component_cell_log_prob, dense_cell_log_prob_mixture

K, C, G = 3, 40, 9
JOINT = ("nbdm", "zinb", "nbvcp")


def _lik(name):
    return scribe.plugins.model_types()[name].likelihood


def _case(name, component_p, seed=0):
    """Mixture parameters (float32-representable) and counts with zeros, ones and > 16."""
    rng = np.random.default_rng(seed)

    def f32(x):
        return np.asarray(x, np.float32).astype(np.float64)

    params = {"r": f32(rng.uniform(0.2, 5.0, (K, G))),
              "p": f32(rng.uniform(0.3, 0.8, K) if component_p else rng.uniform(0.3, 0.8)),
              "mixing_weights": f32([0.2, 0.3, 0.5])}
    if name.startswith("zi"):
        params["gate"] = f32(rng.uniform(0.05, 0.5, (K, G)))
    if name.endswith("vcp"):
        params["p_capture"] = f32(rng.uniform(0.1, 0.9, C))
    counts = rng.negative_binomial(2.0, 0.3, (C, G)).astype(float)
    counts[rng.uniform(size=counts.shape) < 0.4] = 0
    counts[0, :3] = [17, 40, 300]            # counts beyond the 16-entry table
    counts[1] = 0                            # a cell without counts
    return params, counts


def _scipy_cell_log_prob(name, params, counts):
    """``log f_k(x_c)``, ``(C, K)``, by scipy in float64."""
    p = np.broadcast_to(params["p"], (K,))
    out = np.zeros((C, K))
    for k in range(K):
        p_hat = np.full(C, p[k])
        if name.endswith("vcp"):
            nu = params["p_capture"]
            p_hat = p[k] * nu / (1 - p[k] * (1 - nu))
        r = params["r"][k]
        log_nb = stats.nbinom.logpmf(counts, r[None], 1 - p_hat[:, None])
        if name.startswith("zi"):
            gate = params["gate"][k]
            zero = np.log(gate + (1 - gate) * stats.nbinom.pmf(0, r, 1 - p_hat[:, None]))
            log_nb = np.where(counts == 0, zero, np.log1p(-gate) + log_nb)
        out[:, k] = log_nb.sum(axis=1)
    return out


def _jax(params, dtype=jnp.float32):
    return {k: jnp.asarray(v, dtype) for k, v in params.items()}


# Each joint case once, with shared and component-specific p spread over them (compile
# time dominates these tests); the other combinations run with -m slow.
SUM_CASES = [("nbdm", False), ("zinb", True), ("nbvcp", True)]
SUM_CASES += [pytest.param(n, not c, marks=pytest.mark.slow) for n, c in SUM_CASES]


@pytest.mark.parametrize("name,component_p", SUM_CASES)
def test_joint_mixture_sums_match_scipy(name, component_p):
    """Full matrix and a padded mini-batch of 7 cells. float32 tolerance: each cell sums
    G = 9 terms of magnitude <= ~1e3 (the count 300), rounding 6e-8 relative each, so
    1e-5 relative to max(1, |value|) bounds it with a wide margin."""
    params, counts = _case(name, component_p)
    lik = _lik(name)
    sparse = SparseCounts.from_matrix(counts).with_batch_size(7)
    pr = _jax(params)
    assert lik.component_cell_log_prob(sparse, pr) is not None     # the joint path
    want = _scipy_cell_log_prob(name, params, counts)
    got = np.asarray(component_cell_log_prob(lik, sparse, pr))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    cells = jnp.array([5, 0, 39, 1, 12, 7, 20], jnp.int32)
    batch_params = dict(pr)
    if "p_capture" in pr:
        batch_params["p_capture"] = pr["p_capture"][cells]
    got_batch = np.asarray(component_cell_log_prob(lik, sparse.take_cells(cells), batch_params))
    np.testing.assert_allclose(got_batch, want[np.asarray(cells)], rtol=1e-5,
                               atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("name", ["zinb", "zinbvcp", pytest.param("nbdm", marks=pytest.mark.slow),
                                  pytest.param("nbvcp", marks=pytest.mark.slow)])
def test_mixture_gradient_matches_dense_reference(name):
    """d/d(params) of sum_c logsumexp_k(log w_k + log f_k(x_c)): sparse path against the
    dense elementwise law, float64 (agreement to 1e-9 relative: both are exact)."""
    params, counts = _case(name, component_p=True, seed=3)
    lik = _lik(name)
    with jax.enable_x64(True):
        sparse = SparseCounts.from_matrix(counts, dtype=np.float64)
        dense = jnp.asarray(counts)
        pr = _jax(params, jnp.float64)

        def sparse_total(q):
            per = component_cell_log_prob(lik, sparse, q)
            return jnp.sum(logsumexp(per + jnp.log(q["mixing_weights"]), axis=-1))

        def dense_total(q):
            return jnp.sum(dense_cell_log_prob_mixture(lik.log_prob, lik.scopes(), dense, q))

        got_v, got = jax.jit(jax.value_and_grad(sparse_total))(pr)
        want_v, want = jax.jit(jax.value_and_grad(dense_total))(pr)
        assert float(got_v) == pytest.approx(float(want_v), rel=1e-11)
        for key in want:
            np.testing.assert_allclose(np.asarray(got[key]), np.asarray(want[key]),
                                       rtol=1e-9, atol=1e-9 * np.abs(want[key]).max(),
                                       err_msg=key)


def test_zero_term_value_and_gradient():
    """log_zero_cell_sums against float64 numpy (value) and jax.grad of logaddexp
    (gradient), with gates from 1e-12 to 1 - 1e-6 and r log q from 0 to -1e4 (both
    branches of the softplus); log_sigmoid against its definition."""
    from scribe_builtin.zero_term import log_sigmoid, log_zero_cell_sums

    rng = np.random.default_rng(1)
    gate = np.r_[1e-12, 1e-6, rng.uniform(0.01, 0.99, 6), 1 - 1e-6]
    r = np.r_[rng.uniform(0.01, 50, 8), 200.0]
    log_q = np.r_[-50.0, np.log1p(-rng.uniform(1e-4, 0.99, 10))]
    want = np.sum(np.logaddexp(np.log(gate)[None], np.log1p(-gate)[None]
                               + r[None] * log_q[:, None]), axis=1)
    weights = rng.uniform(0.5, 2.0, log_q.size)

    def reference(g, rr, lq):
        return jnp.sum(weights * jnp.sum(jnp.logaddexp(
            jnp.log(g)[None], jnp.log1p(-g)[None] + rr[None] * lq[:, None]), axis=1))

    def fused(g, rr, lq):
        return jnp.sum(weights * log_zero_cell_sums(jnp.log(g), jnp.log1p(-g), rr, lq))

    with jax.enable_x64(True):
        args = tuple(map(jnp.asarray, (gate, r, log_q)))
        got = np.asarray(jax.jit(lambda g, rr, lq: log_zero_cell_sums(
            jnp.log(g), jnp.log1p(-g), rr, lq))(*args))
        got_grad = jax.jit(jax.grad(fused, argnums=(0, 1, 2)))(*args)
        want_grad = jax.jit(jax.grad(reference, argnums=(0, 1, 2)))(*args)
        d = jnp.asarray(np.r_[-800.0, -30.0, -1.0, 0.0, 2.0, 40.0, 800.0])
        sig, sig_grad = jax.jit(lambda x: (log_sigmoid(x), jax.vmap(jax.grad(log_sigmoid))(x)))(d)
        sig, sig_grad = np.asarray(sig), np.asarray(sig_grad)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    for g_got, g_want in zip(got_grad, want_grad, strict=True):
        np.testing.assert_allclose(np.asarray(g_got), np.asarray(g_want), rtol=1e-10)
    d = np.asarray(d)
    np.testing.assert_allclose(sig, -np.logaddexp(0.0, -d), rtol=1e-12)
    np.testing.assert_allclose(sig_grad, np.exp(-np.logaddexp(0.0, d)), rtol=1e-12)
    # float32: finite at the extremes.
    got32 = jax.jit(lambda g, rr, lq: log_zero_cell_sums(jnp.log(g), jnp.log1p(-g), rr, lq))(
        jnp.float32(gate), jnp.float32(r), jnp.float32(log_q))
    assert np.all(np.isfinite(np.asarray(got32)))


def test_auto_batch_size_rule():
    """Full batch for statistics-only likelihoods and small data; AUTO_BATCH_CELLS for
    mixtures, zinbvcp and plugin model types on many cells."""
    many, few = AUTO_FULL_BATCH_CELLS + 1, AUTO_FULL_BATCH_CELLS
    for name in ("nbdm", "zinb", "nbvcp"):
        assert auto_batch_size(_lik(name), False, many) is None
        assert auto_batch_size(_lik(name), True, many) == AUTO_BATCH_CELLS
    assert auto_batch_size(_lik("zinbvcp"), False, many) == AUTO_BATCH_CELLS
    assert auto_batch_size(None, False, many) == AUTO_BATCH_CELLS
    assert all(auto_batch_size(_lik(n), m, few) is None
               for n in JOINT + ("zinbvcp",) for m in (False, True))


@pytest.mark.parametrize("value", ["Auto", "full", ""])
def test_batch_size_strings_other_than_auto_are_refused(value):
    with pytest.raises(ValueError, match="batch_size must be a positive integer, None or 'auto'"):
        check_fit_args(n_steps=10, batch_size=value, seed=0, optimizer=None, loss=None,
                       stable_update=True, progress=False, component_specific_params=False,
                       store_counts=False)


def test_cli_batch_size_argument():
    import argparse

    from scribe.cli.fit import _batch_size

    assert (_batch_size("auto"), _batch_size("all"), _batch_size("512")) == ("auto", None, 512)
    for text in ("0", "-3", "half"):
        with pytest.raises(argparse.ArgumentTypeError, match="positive integer"):
            _batch_size(text)
