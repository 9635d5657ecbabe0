"""Mini-batch ELBO scaling, seeding and stable updates of the SVI engine (SPEC 1, 5).

Models use the ``unconstrained`` parameterization where possible: all its sites are
Normal, so no gamma sampler has to be compiled and the tests stay fast on CPU.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from numpyro.infer import TraceMeanField_ELBO
from numpyro.infer.util import log_density
from numpyro.optim import Adam
from scipy import special, stats

import scribe
from scribe.counts import SparseCounts
from scribe.svi import SVIInferenceEngine
from scribe.svi.engine import initial_params, resolve_model_and_guide

C, G, K, B = 30, 12, 2, 10


@functools.cache
def _counts():
    rng = np.random.default_rng(0)
    # Two groups of cells with different expression, so a mixture has something to fit.
    mean = np.where(np.arange(C)[:, None] < C // 2, 2.0, 6.0) * rng.uniform(0.5, 1.5, G)
    return rng.negative_binomial(2.0, 2.0 / (2.0 + mean)).astype(np.float64)


# ---- (a) the mini-batch log joint -----------------------------------------------------------
def _cell_terms_reference(latents, counts):
    """Per-cell log terms (capture prior + mixture log-likelihood) for nbvcp_mix/unconstrained,
    computed with scipy in float64 from SPEC sections 1-2."""
    v = {k: np.asarray(x, np.float64) for k, x in latents.items()}
    p = special.expit(v["p_unconstrained"])
    r = np.exp(v["r_unconstrained"])                       # (K, G)
    nu = special.expit(v["p_capture_unconstrained"])       # (C,)
    w = special.softmax(v["mixing_logits_unconstrained"])  # (K,)
    p_hat = p * nu / (1 - p * (1 - nu))
    per_k = np.stack([stats.nbinom.logpmf(counts, r[k], 1 - p_hat[:, None]).sum(axis=1)
                      for k in range(K)], axis=-1)
    loglik = special.logsumexp(per_k + np.log(w), axis=-1)
    return loglik + stats.norm.logpdf(v["p_capture_unconstrained"])


def _global_prior_reference(latents):
    return sum(stats.norm.logpdf(np.asarray(latents[name], np.float64)).sum()
               for name in ("p_unconstrained", "r_unconstrained", "mixing_logits_unconstrained"))


@functools.cache
def _fixed_latents():
    rng = np.random.default_rng(1)
    return {
        "p_unconstrained": jnp.float32(rng.normal()),
        "r_unconstrained": jnp.asarray(rng.normal(size=(K, G)), jnp.float32),
        "mixing_logits_unconstrained": jnp.asarray(rng.normal(size=K), jnp.float32),
        "p_capture_unconstrained": jnp.asarray(rng.normal(size=C), jnp.float32),
    }


N_KEYS = 2000


@functools.cache
def _log_joints():
    """Subsample indices ``(N_KEYS, B)`` and log joints ``(N_KEYS,)`` with batch_size=B, one
    per seed of the plate's subsample, and the full-data log joint; all latents fixed."""
    config = scribe.ModelConfig("nbvcp_mix", "unconstrained", n_components=K)
    model, _ = resolve_model_and_guide(config)
    latents = _fixed_latents()
    global_latents = {k: v for k, v in latents.items() if k != "p_capture_unconstrained"}
    # The counts as fitting sees them: non-zeros and statistics, batches gathered from them.
    counts = SparseCounts.from_matrix(_counts()).with_batch_size(B)

    def one(key):
        # The plate draws its subsample from the seed; read it off a trace.
        seeded = numpyro.handlers.seed(numpyro.handlers.substitute(model, data=global_latents),
                                       rng_seed=key)
        idx = numpyro.handlers.trace(seeded).get_trace(C, G, counts=counts,
                                                      batch_size=B)["cells"]["value"]
        # Fix every latent (per-cell ones indexed by that subsample) and the subsample.
        data = dict(global_latents, cells=idx,
                    p_capture_unconstrained=latents["p_capture_unconstrained"][idx])
        fixed = numpyro.handlers.substitute(model, data=data)
        log_joint, _ = log_density(fixed, (C, G), {"counts": counts, "batch_size": B}, {})
        return idx, log_joint

    @jax.jit
    def run(keys):
        idx, log_joint = jax.vmap(one)(keys)
        full, _ = log_density(numpyro.handlers.substitute(model, data=latents), (C, G),
                              {"counts": counts, "batch_size": None}, {})
        return idx, log_joint, full

    idx, log_joint, full = run(jax.random.split(jax.random.PRNGKey(0), N_KEYS))
    return np.asarray(idx), np.asarray(log_joint, np.float64), float(full)


def test_full_log_joint_matches_scipy():
    latents = _fixed_latents()
    want = _global_prior_reference(latents) + _cell_terms_reference(latents, _counts()).sum()
    np.testing.assert_allclose(_log_joints()[2], want, rtol=1e-5)


def test_minibatch_log_joint_is_scaled_subsample_exactly():
    """Each seed: prior terms + (C/B) * sum of the subsampled cells' terms."""
    idx, log_joint, _ = _log_joints()
    latents = _fixed_latents()
    cell_terms = _cell_terms_reference(latents, _counts())
    prior = _global_prior_reference(latents)
    assert idx.shape == (N_KEYS, B)
    for i in range(50):
        assert len(set(idx[i].tolist())) == B and idx[i].min() >= 0 and idx[i].max() < C
        want = prior + C / B * cell_terms[idx[i]].sum()
        np.testing.assert_allclose(log_joint[i], want, rtol=1e-5, err_msg=f"seed {i}")
    # Different seeds draw different subsamples, covering every cell about equally often.
    assert len({tuple(sorted(row)) for row in idx[:50].tolist()}) > 45
    visits = np.bincount(idx.ravel(), minlength=C)
    expected = N_KEYS * B / C
    assert np.all(np.abs(visits - expected) < 6 * np.sqrt(expected))


def test_minibatch_log_joint_is_unbiased():
    _, log_joint, full = _log_joints()
    se = log_joint.std() / np.sqrt(len(log_joint))
    assert se > 0  # subsampling does add noise
    assert abs(log_joint.mean() - full) < 5 * se, (log_joint.mean(), full, se)


# ---- (b) the ELBO with and without mini-batches ---------------------------------------------
def test_minibatch_elbo_is_unbiased():
    """TraceMeanField_ELBO of the scribe model/guide: the mean over keys with batch_size=B
    equals the full-data mean within Monte Carlo error."""
    config = scribe.ModelConfig("nbvcp", "unconstrained")
    model, guide = resolve_model_and_guide(config)
    counts_np = _counts()
    params = initial_params(config, counts_np, seed=0)
    counts = SparseCounts.from_matrix(counts_np).with_batch_size(B)
    elbo = TraceMeanField_ELBO()

    @jax.jit
    def losses(keys):
        def both(key):
            full = elbo.loss(key, params, model, guide, C, G, counts=counts, batch_size=None)
            batched = elbo.loss(key, params, model, guide, C, G, counts=counts, batch_size=B)
            return full, batched
        return jax.vmap(both)(keys)

    full, batched = (np.asarray(x, np.float64)
                     for x in losses(jax.random.split(jax.random.PRNGKey(2), 2000)))
    assert np.all(np.isfinite(full)) and np.all(np.isfinite(batched))
    se = np.hypot(full.std(), batched.std()) / np.sqrt(len(full))
    assert batched.std() > full.std()  # the subsample adds variance ...
    assert abs(batched.mean() - full.mean()) < 5 * se, (batched.mean(), full.mean(), se)


# ---- (c) seeding ------------------------------------------------------------------------------
def _run(seed, n_steps=50, **kw):
    config = scribe.ModelConfig("nbdm", "unconstrained")
    return SVIInferenceEngine.run_inference(config, _counts(), C, G, n_steps=n_steps, seed=seed,
                                            progress=False, **kw)


def test_same_seed_gives_identical_fit_and_other_seed_differs():
    first = _run(3, batch_size=B)
    second = _run(3, batch_size=B)
    other = _run(4, batch_size=B)
    assert set(first.params) == {"p_unconstrained_loc", "p_unconstrained_scale",
                                 "r_unconstrained_loc", "r_unconstrained_scale"}
    for name in first.params:
        np.testing.assert_array_equal(np.asarray(first.params[name]),
                                      np.asarray(second.params[name]), err_msg=name)
    np.testing.assert_array_equal(np.asarray(first.losses), np.asarray(second.losses))
    losses, other_losses = np.asarray(first.losses), np.asarray(other.losses)
    assert losses.shape == (50,) and np.all(np.isfinite(losses))
    assert not np.array_equal(losses, other_losses)
    assert any(not np.array_equal(np.asarray(first.params[n]), np.asarray(other.params[n]))
               for n in first.params)


# ---- (d) stable updates ------------------------------------------------------------------------
@pytest.mark.parametrize("stable", [True, False])
def test_stable_update_keeps_params_finite(stable):
    run = _run(0, n_steps=20, optimizer=Adam(10.0), stable_update=stable)
    finite = all(bool(np.all(np.isfinite(np.asarray(v)))) for v in run.params.values())
    assert finite
    if not stable:
        # Plain updates with a step size of 10 blow the parameters up: the run says so
        # and returns the last parameters at which the loss was finite (issue 12).
        assert run.divergence.diverged and run.divergence.n_nonfinite > 0
