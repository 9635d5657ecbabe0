"""Gene-proportion draws from posterior draws of ``r`` used as Dirichlet concentrations.

Under the negative binomial - Dirichlet-multinomial correspondence the dispersions ``r``
of one cell type are the concentrations of a Dirichlet over gene proportions, so every
posterior draw of ``r`` gives a distribution of normalised expression profiles
(``normalize_counts``, SPEC section 4).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike


def dirichlet_normalize(
    key: jax.Array,
    concentrations: ArrayLike,
    n_samples_dirichlet: int = 1,
) -> jax.Array:
    """Draw gene proportions from ``Dirichlet(r)`` for every posterior draw of ``r``.

    Parameters
    ----------
    key : jax.Array
        PRNG key; posterior draw ``s`` uses the ``s``-th key of ``split(key, S)``.
    concentrations : array_like, shape (S, G) or (S, K, G)
        Positive posterior draws of ``r`` (per component ``K`` for mixtures), used as
        Dirichlet concentrations over the ``G`` genes.
    n_samples_dirichlet : int, default 1
        Dirichlet draws per posterior draw (and component).

    Returns
    -------
    jax.Array
        Proportions summing to 1 over the gene axis: shape ``(S, G, n)`` or
        ``(S, K, G, n)``; without the last axis when ``n_samples_dirichlet == 1``, i.e.
        ``(S, G)`` or ``(S, K, G)``. Concentrations far below 1 give proportions that
        underflow to 0 for most genes; that is the distribution, not an error.

    Raises
    ------
    ValueError
        ``concentrations`` not 2- or 3-dimensional, or ``n_samples_dirichlet < 1``.

    Notes
    -----
    Posterior draws are sampled one at a time (``lax.map``), each vectorised over
    components, genes and its ``n`` Dirichlet draws, so the working memory beyond the
    output is one draw's ``([K,] G, n)`` block.
    """
    concentrations = jnp.asarray(concentrations)
    if concentrations.ndim not in (2, 3):
        raise ValueError(
            "concentrations must have shape (n_posterior_samples, n_genes) or "
            f"(n_posterior_samples, n_components, n_genes), got {concentrations.shape}"
        )
    n = int(n_samples_dirichlet)
    if n < 1:
        raise ValueError(f"n_samples_dirichlet must be >= 1, got {n_samples_dirichlet}")
    if not jnp.issubdtype(concentrations.dtype, jnp.floating):
        concentrations = concentrations.astype(jnp.result_type(float))
    return _sample(key, concentrations, n)


@partial(jax.jit, static_argnums=2)
def _sample(key: jax.Array, concentrations: jax.Array, n: int) -> jax.Array:
    keys = jax.random.split(key, concentrations.shape[0])

    def one_draw(args):
        draw_key, alpha = args  # alpha: ([K,] G)
        # jax.random.dirichlet normalises gammas in log space, so small r do not give 0/0.
        samples = jax.random.dirichlet(
            draw_key, alpha, shape=(n, *alpha.shape[:-1]), dtype=alpha.dtype
        )
        return jnp.moveaxis(samples, 0, -1)  # (n, [K,] G) -> ([K,] G, n)

    proportions = lax.map(one_draw, (keys, concentrations))
    return proportions[..., 0] if n == 1 else proportions
