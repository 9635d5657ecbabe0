"""Compiled posterior and predictive sampling, cached per results object.

Building a ``Predictive`` or a ``lax.map`` closure on every call makes JAX trace and
compile anew each time (seconds). Here each sampler is jitted once per results object,
with the variational parameters and draws as *arguments*; JAX's cache then keys the
compiled program on what changes the trace: ``n_samples`` / ``batch_size`` (static) and
the shapes and dtypes of the arguments.
"""

from __future__ import annotations

import jax
from numpyro import handlers
from numpyro.infer import Predictive

from scribe.svi.model_view import ModelView


class CompiledSamplers:
    """Jitted samplers of one fitted model.

    Parameters
    ----------
    view : ModelView

    Attributes
    ----------
    n_traces : int
        Number of times a sampler was traced (each trace is followed by a compilation).
    """

    def __init__(self, view: ModelView):
        self._view = view
        self.n_traces = 0
        self._posterior = jax.jit(self._draw_posterior, static_argnames="n_samples")
        self._predictive = jax.jit(self._draw_predictive, static_argnames="batch_size")

    def _draw_posterior(self, params: dict, rng_key, n_samples: int) -> dict:
        self.n_traces += 1   # runs while tracing only
        view = self._view
        draws = Predictive(view.guide(), params=params, num_samples=n_samples)(
            rng_key, view.n_cells, view.n_genes)
        # Sampled sites only: a guide's auxiliary draws (e.g. a joint latent) are not kept.
        draws = {name: draws[name] for name in view.sampled_sites(draws)}
        return {**view.canonical_batched(draws), **draws}

    def _draw_predictive(self, sampled: dict, rng_key, batch_size: int | None):
        self.n_traces += 1
        view = self._view
        model = view.model()
        n_draws = next(iter(sampled.values())).shape[0]

        def one_draw(args):
            key, values = args
            conditioned = handlers.substitute(handlers.seed(model, key), data=values)
            trace = handlers.trace(conditioned).get_trace(view.n_cells, view.n_genes)
            return trace["counts"]["value"]

        keys = jax.random.split(rng_key, n_draws)
        return jax.lax.map(one_draw, (keys, sampled), batch_size=batch_size)

    def posterior(self, params: dict, rng_key, n_samples: int) -> dict:
        """Draws of the sampled sites and canonical parameters, ``{name: (n_samples, ...)}``."""
        return self._posterior(params, rng_key, n_samples=int(n_samples))

    def predictive(self, sampled: dict, rng_key, batch_size: int | None) -> jax.Array:
        """Predictive counts ``(S, C, G)``, one simulation per draw of ``sampled``.

        ``batch_size`` draws are simulated at a time (None: all at once); the result does
        not depend on it.
        """
        return self._predictive(sampled, rng_key,
                                batch_size=None if batch_size is None else int(batch_size))
