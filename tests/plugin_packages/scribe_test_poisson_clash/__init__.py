"""Registers a second model type named ``poisson``: loading it beside scribe_test_poisson
must fail."""

import jax.numpy as jnp

import scribe


@scribe.hookimpl
def scribe_model_types():
    return [scribe.ModelType("poisson", "another Poisson", ("standard",),
                             lambda counts, params: jnp.zeros(counts.shape))]
