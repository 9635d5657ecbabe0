"""A whole new model type: Poisson counts with a per-gene rate ~ LogNormal.

Not composed from a likelihood: this plugin provides its own model, guide and posterior
distributions, and answers None for every other model type.
"""

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import gammaln, xlogy
from numpyro.distributions import constraints

import scribe

NAME = "poisson"
PRIOR_LOC, PRIOR_SCALE = 0.0, 2.0


def log_prob(counts, params):
    """Elementwise Poisson log-probability ``(C, G)`` given the canonical ``rate`` ``(G,)``."""
    rate = params["rate"]
    return xlogy(counts, rate) - rate - gammaln(counts + 1.0)


def model(n_cells, n_genes, counts=None, batch_size=None):
    rate = numpyro.sample(
        "rate", dist.LogNormal(jnp.full(n_genes, PRIOR_LOC), PRIOR_SCALE).to_event(1))
    numpyro.deterministic("log_rate", jnp.log(rate))
    with numpyro.plate("cells", n_cells, subsample_size=batch_size) as idx:
        if counts is not None and batch_size is not None:
            counts = counts[idx]
        numpyro.sample("counts", dist.Poisson(rate).to_event(1), obs=counts)


def guide(n_cells, n_genes, counts=None, batch_size=None):
    loc = numpyro.param("rate_loc", jnp.zeros(n_genes))
    scale = numpyro.param("rate_scale", jnp.full(n_genes, 0.1), constraint=constraints.positive)
    numpyro.sample("rate", dist.LogNormal(loc, scale).to_event(1))


@scribe.hookimpl
def scribe_model_types():
    return [scribe.ModelType(NAME, "Poisson counts, per-gene rate ~ LogNormal", ("standard",),
                             log_prob)]


@scribe.hookimpl
def scribe_model(model_config):
    return model if model_config.model_type == NAME else None


@scribe.hookimpl
def scribe_guide(model_config):
    return guide if model_config.model_type == NAME else None


@scribe.hookimpl
def scribe_posterior_distributions(model_config, params):
    if model_config.model_type != NAME:
        return None
    return {"rate": dist.LogNormal(params["rate_loc"], params["rate_scale"])}
