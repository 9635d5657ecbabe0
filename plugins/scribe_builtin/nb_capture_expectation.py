"""nbvcp's capture term and its exact expectation over a Beta capture factor.

In ``log NB(x_cg | r_g, p_hat_c)`` summed over genes (:mod:`.nb_sparse`), the capture
``nu_c`` enters only through ``X_c log p_hat_c + R log(1 - p_hat_c)`` with ``X_c`` the
cell's total count and ``R = sum_g r_g`` (the ``lgamma`` and ``log x!`` parts do not
involve it). With ``p_hat = p nu / (1 - p (1 - nu))`` and ``1 - p_hat = (1 - p) / (1 - p
(1 - nu))``:

    l_c(nu) = X_c (log p + log nu) + R log(1 - p) - (X_c + R) log(1 - p (1 - nu)).

For ``nu ~ Beta(a, b)``, ``E[log nu] = digamma(a) - digamma(a + b)`` and
``E[log(1 - p (1 - nu))]`` comes from :mod:`scribe.beta_log_expectations`.
"""

from __future__ import annotations

import jax.numpy as jnp

from scribe.beta_log_expectations import expected_log1m
from scribe.special import digamma


def _totals_p_r(cell_totals, params):
    x = jnp.asarray(cell_totals)
    p = jnp.asarray(params["p"])
    return x.astype(p.dtype), p, jnp.sum(jnp.asarray(params["r"]), axis=-1)


def capture_log_prob(cell_totals, params: dict, p_hat) -> jnp.ndarray:
    """``X_c log p_hat_c + R log(1 - p_hat_c)``, ``(C,)``: the capture-dependent part of
    each cell's log-likelihood, written as :class:`.nb_sparse.NBSums` writes it."""
    x, _, total_r = _totals_p_r(cell_totals, params)
    return x * jnp.log(p_hat) + total_r * jnp.log1p(-p_hat)


def expected_capture_log_prob(cell_totals, params: dict, nu_a, nu_b,
                              rng_key=None) -> jnp.ndarray:
    """``E[l_c(nu)]`` for ``nu_c ~ Beta(nu_a_c, nu_b_c)``, ``(C,)``.

    Parameters
    ----------
    cell_totals : array ``(C,)``
        UMI total of each cell.
    params : dict
        Canonical ``p`` (a scalar) and ``r`` ``(G,)``.
    nu_a, nu_b : arrays ``(C,)``
        The capture's Beta arguments.
    rng_key : jax PRNG key, optional
        Not used: the expectation is exact without draws.
    """
    x, p, total_r = _totals_p_r(cell_totals, params)
    e_log_nu = digamma(nu_a) - digamma(nu_a + nu_b)
    e_log_denominator = expected_log1m(p, nu_a, nu_b)
    return (x * (jnp.log(p) + e_log_nu) + total_r * jnp.log1p(-p)
            - (x + total_r) * e_log_denominator)
