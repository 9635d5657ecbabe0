"""A likelihood: hurdle negative binomial with a per-gene ``gate``.

``P(0) = gate``; ``P(x) = (1 - gate) NB(x; r, p) / (1 - NB(0; r, p))`` for ``x > 0``.
Registered with ``ModelType.from_likelihood``, which gives ``hurdle_nb`` and
``hurdle_nb_mix``; the parameterization chosen by the user supplies the ``gate`` sites.
"""

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln, xlogy
from numpyro.distributions import Distribution, NegativeBinomialProbs, constraints
from numpyro.distributions.util import promote_shapes

import scribe

NAME = "hurdle_nb"
_MAX_REJECTIONS = 1000


def hurdle_log_prob(counts, r, p, gate):
    """Elementwise hurdle NB log-probability (NumPyro NB convention, mean ``r p / (1 - p)``)."""
    log_nb = (gammaln(counts + r) - gammaln(r) - gammaln(counts + 1.0)
              + r * jnp.log1p(-p) + xlogy(counts, p))
    log_positive = jnp.log(-jnp.expm1(r * jnp.log1p(-p)))  # log(1 - NB(0))
    return jnp.where(counts == 0, jnp.log(gate), jnp.log1p(-gate) + log_nb - log_positive)


class HurdleNegativeBinomial(Distribution):
    arg_constraints = {"r": constraints.positive, "p": constraints.unit_interval,
                       "gate": constraints.unit_interval}
    support = constraints.nonnegative_integer

    def __init__(self, r, p, gate, *, validate_args=None):
        self.r, self.p, self.gate = promote_shapes(r, p, gate)
        batch_shape = jax.lax.broadcast_shapes(jnp.shape(r), jnp.shape(p), jnp.shape(gate))
        self.r, self.p, self.gate = (jnp.broadcast_to(a, batch_shape)
                                     for a in (self.r, self.p, self.gate))
        super().__init__(batch_shape=batch_shape, validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        shape = sample_shape + self.batch_shape
        key_gate, key_first, key_rest = jax.random.split(key, 3)
        nb = NegativeBinomialProbs(self.r, self.p).expand(shape)

        # Zero-truncated NB by rejection (exact unless a draw needs > _MAX_REJECTIONS tries).
        def redraw(state):
            k, x, i = state
            k, sub = jax.random.split(k)
            return k, jnp.where(x == 0, nb.sample(sub), x), i + 1

        def more(state):
            return jnp.any(state[1] == 0) & (state[2] < _MAX_REJECTIONS)

        _, positive, _ = jax.lax.while_loop(more, redraw, (key_rest, nb.sample(key_first), 0))
        zero = jax.random.bernoulli(key_gate, self.gate, shape)
        return jnp.where(zero, 0, jnp.maximum(positive, 1))

    def log_prob(self, value):
        return hurdle_log_prob(value, self.r, self.p, self.gate)


class Hurdle(scribe.Likelihood):
    name = NAME
    description = "hurdle negative binomial"
    latents = (scribe.Latent("gate", "probability", "gene"),)

    @staticmethod
    def _p(params):
        p = jnp.asarray(params["p"])
        return p[..., None] if p.ndim == 1 else p  # per-cell p (mixtures) against genes

    def distribution(self, params):
        return HurdleNegativeBinomial(params["r"], self._p(params), params["gate"])

    def log_prob(self, counts, params):
        return hurdle_log_prob(counts, params["r"], self._p(params), params["gate"])


@scribe.hookimpl
def scribe_model_types():
    return scribe.ModelType.from_likelihood(Hurdle())
