"""zinbvcp's zero term: the backward pass by blocks of cells equals the unblocked one."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest


@pytest.mark.parametrize("block", [4, 11, 64])
def test_blocked_gradient_matches_logaddexp_autodiff(monkeypatch, block):
    """11 cells in blocks of 4 (three blocks, the last padded), of 11 (exactly one) and
    of 64 (no blocking): the gradient against jax.grad of the plain logaddexp sum, in
    float64 to 1e-10 (both are exact up to rounding), with per-cell weights standing in
    for the plate's cotangent."""
    from scribe_builtin import zero_term

    monkeypatch.setattr(zero_term, "BLOCK_CELLS", block)
    rng = np.random.default_rng(4)
    gate = np.r_[1e-9, rng.uniform(0.01, 0.99, 5), 1 - 1e-6]
    r = np.r_[rng.uniform(0.01, 30, 6), 150.0]
    log_q = np.r_[-40.0, np.log1p(-rng.uniform(1e-4, 0.99, 10))]
    weights = rng.uniform(0.5, 2.0, log_q.size)

    def reference(g, rr, lq):
        return jnp.sum(weights * jnp.sum(jnp.logaddexp(
            jnp.log(g)[None], jnp.log1p(-g)[None] + rr[None] * lq[:, None]), axis=1))

    def fused(g, rr, lq):
        return jnp.sum(weights * zero_term.log_zero_cell_sums(jnp.log(g), jnp.log1p(-g),
                                                              rr, lq))

    with jax.enable_x64(True):
        args = tuple(map(jnp.asarray, (gate, r, log_q)))
        got = jax.jit(jax.value_and_grad(fused, argnums=(0, 1, 2)))(*args)
        want = jax.jit(jax.value_and_grad(reference, argnums=(0, 1, 2)))(*args)
    np.testing.assert_allclose(float(got[0]), float(want[0]), rtol=1e-12)
    for g_got, g_want in zip(got[1], want[1], strict=True):
        assert np.asarray(g_got).shape == np.asarray(g_want).shape
        np.testing.assert_allclose(np.asarray(g_got), np.asarray(g_want), rtol=1e-10)


def test_float32_gradient_is_close_to_float64():
    """At a batch's size in float32 (what a fit runs), the gradient is within 1e-4 of the
    float64 one relative to each gradient's largest entry: float32 sums of 2,048 terms
    carry ~sqrt(2048) * 6e-8 = 3e-6 relative rounding, so 1e-4 leaves a wide margin while
    catching a wrong term (which would be O(1))."""
    from scribe_builtin.zero_term import log_zero_cell_sums

    rng = np.random.default_rng(5)
    n_cells, n_genes = 2048, 300
    gate = rng.uniform(0.05, 0.4, n_genes)
    r = rng.lognormal(-1, 1, n_genes)
    log_q = np.log1p(-rng.uniform(0.01, 0.06, n_cells))

    def loss(g, rr, lq):
        return jnp.sum(log_zero_cell_sums(jnp.log(g), jnp.log1p(-g), rr, lq))

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    got = grad(*(jnp.asarray(a, jnp.float32) for a in (gate, r, log_q)))
    with jax.enable_x64(True):
        want = grad(*(jnp.asarray(a, jnp.float64) for a in (gate, r, log_q)))
    for g_got, g_want in zip(got, want, strict=True):
        g_want = np.asarray(g_want)
        np.testing.assert_allclose(np.asarray(g_got, np.float64), g_want,
                                   atol=1e-4 * np.abs(g_want).max())
