"""The sparse, sufficient-statistic likelihood is exact: the ELBO and its gradients equal
those of the elementwise model (issue 4).

For every model type, full batch and mini-batch, the loss of ``TraceMeanField_ELBO`` with
the same guide draws (fixed standard-normal noise, reparameterised) and the same
subsample is computed four ways: the sparse evaluation fitting uses and the dense
elementwise model (``counts`` per cell), each in float32 and in float64. In float64 the
sparse and dense values agree to rounding; in float32 the sparse value is at least as
close to the float64 reference as the dense one.
"""

from __future__ import annotations

import functools
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from numpyro.infer import TraceMeanField_ELBO

import scribe
from scribe.counts import SparseCounts
from scribe.simulate import simulate_counts
from scribe.svi.engine import initial_params, resolve_model_and_guide

MODEL_TYPES = ("nbdm", "zinb", "nbvcp", "zinbvcp",
               "nbdm_mix", "zinb_mix", "nbvcp_mix", "zinbvcp_mix")
C, G, B = 60, 25, 16


@functools.cache
def _data(model_type):
    k = 2 if model_type.endswith("_mix") else None
    counts, _ = simulate_counts(model_type, C, G, n_components=k, seed=3,
                                capture_range=(0.1, 0.4))
    return counts.astype(np.float64)


def _fixed_noise(guide, batch_size):
    """The guide with every Normal draw ``loc + scale * eps`` for fixed ``eps`` and a fixed
    subsample, so float32 and float64 runs see the same latents (their PRNG streams
    differ) and gradients still flow through the reparameterisation."""
    rng = np.random.default_rng(11)
    subsample = np.sort(rng.choice(C, B, replace=False)) if batch_size else None

    def value(msg):
        if msg["type"] == "plate":
            return None if subsample is None else jnp.asarray(subsample)
        if msg["type"] != "sample":
            return None
        fn = msg["fn"]
        while hasattr(fn, "base_dist"):
            fn = fn.base_dist
        shape = jnp.shape(fn.loc)
        eps = np.random.default_rng(zlib.crc32(msg["name"].encode())).normal(size=shape)
        return fn.loc + fn.scale * jnp.asarray(eps, fn.loc.dtype)

    return numpyro.handlers.substitute(guide, substitute_fn=value)


def _losses_and_grads(model_type, sparse, dense, params, batch_size, dtype):
    """ELBO value and flattened gradient with the sparse and with the dense counts."""
    # Mean-field: the fixed-noise substitution above replaces each site's Normal draw.
    config = scribe.ModelConfig(model_type, "unconstrained",
                                n_components=2 if model_type.endswith("_mix") else None,
                                guide_family="mean_field")
    model, guide = resolve_model_and_guide(config)
    guide = _fixed_noise(guide, batch_size)
    params = {k: jnp.asarray(v, dtype) for k, v in params.items()}
    elbo = TraceMeanField_ELBO()

    def loss(p, counts):
        return elbo.loss(jax.random.PRNGKey(7), p, model, guide, C, G, counts=counts,
                         batch_size=batch_size)

    @jax.jit
    def both(p, sparse, dense):
        return (jax.value_and_grad(loss)(p, sparse), jax.value_and_grad(loss)(p, dense))

    def flat(value_grad):
        value, grad = value_grad
        return float(value), np.concatenate([np.ravel(np.asarray(grad[k], np.float64))
                                             for k in sorted(grad)])

    return tuple(flat(vg) for vg in both(params, sparse, dense))


@functools.cache
def _three_ways(model_type, batch_size):
    """(sparse32, dense32, sparse64, dense64), each (loss, gradient)."""
    x = _data(model_type)
    # Mean-field: the fixed-noise substitution above replaces each site's Normal draw.
    config = scribe.ModelConfig(model_type, "unconstrained",
                                n_components=2 if model_type.endswith("_mix") else None,
                                guide_family="mean_field")
    params = initial_params(config, x, seed=0)
    sparse32, dense32 = _losses_and_grads(
        model_type, SparseCounts.from_matrix(x).with_batch_size(B),
        jnp.asarray(x, jnp.float32), params, batch_size, jnp.float32)
    with jax.enable_x64(True):
        sparse64, dense64 = _losses_and_grads(
            model_type, SparseCounts.from_matrix(x, np.float64).with_batch_size(B),
            jnp.asarray(x, jnp.float64), params, batch_size, jnp.float64)
    return sparse32, dense32, sparse64, dense64


# Mini-batches gather non-zeros the same way for every likelihood: two types suffice.
CASES = [(m, None) for m in MODEL_TYPES] + [("zinbvcp", B), ("nbvcp_mix", B)]
IDS = [f"{m}-{'full' if b is None else f'B{b}'}" for m, b in CASES]


def _rel(a, b):
    return np.linalg.norm(np.atleast_1d(a) - b) / np.linalg.norm(np.atleast_1d(b))


@pytest.mark.parametrize("model_type,batch_size", CASES, ids=IDS)
def test_sparse_elbo_equals_elementwise_in_float64(model_type, batch_size):
    _, _, (value, grad), (ref_value, ref_grad) = _three_ways(model_type, batch_size)
    np.testing.assert_allclose(value, ref_value, rtol=1e-11)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-8, atol=1e-8 * np.abs(ref_grad).max())


@pytest.mark.parametrize("model_type,batch_size", CASES, ids=IDS)
def test_sparse_float32_is_as_accurate_as_dense(model_type, batch_size):
    (value, grad), (dense_value, dense_grad), _, (ref_value, ref_grad) = _three_ways(
        model_type, batch_size)
    sparse_error, dense_error = abs(value - ref_value), abs(dense_value - ref_value)
    # float32 rounding of the few large partial sums: a few parts per million at most.
    assert sparse_error <= max(3 * dense_error, 2e-6 * abs(ref_value)), (
        sparse_error, dense_error)
    assert _rel(grad, ref_grad) <= max(2 * _rel(dense_grad, ref_grad), 1e-5), (
        _rel(grad, ref_grad), _rel(dense_grad, ref_grad))
