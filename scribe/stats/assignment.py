"""Mixture-component assignment probabilities and their entropy (SPEC section 4)."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike


def _check_temperature(temperature) -> None:
    """Raise unless a concrete temperature is finite and positive (traced values pass)."""
    if isinstance(temperature, jax.core.Tracer):
        return
    values = np.asarray(temperature, dtype=float)
    if not np.all(np.isfinite(values) & (values > 0)):
        raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")


def assignment_probabilities(
    log_likelihoods: ArrayLike, temperature: float | ArrayLike | None = None
) -> jax.Array:
    """Posterior component probabilities ``softmax_k(L_k / T)`` over the last axis.

    Parameters
    ----------
    log_likelihoods : array_like, shape (..., K)
        Log-likelihood of each observation under each of ``K`` components (mixture
        weights already added where wanted).
    temperature : float or array_like, optional
        ``T > 0``; ``T > 1`` flattens the probabilities towards uniform, ``T < 1``
        sharpens them towards one-hot. An array must broadcast against
        ``log_likelihoods[..., :1]``. ``None`` means ``T = 1``.

    Returns
    -------
    jax.Array, shape (..., K)
        Probabilities summing to 1 over the last axis; NaN in rows that are ``-inf``
        for every component.

    Raises
    ------
    ValueError
        A concrete temperature that is not finite and positive.
    """
    if temperature is None:
        return _softmax(jnp.asarray(log_likelihoods))
    _check_temperature(temperature)  # outside jit, where a given value is concrete
    return _softmax(jnp.asarray(log_likelihoods), temperature)


@jax.jit
def _softmax(log_likelihoods: jax.Array, temperature=1.0) -> jax.Array:
    # softmax subtracts the row maximum, so very negative log-likelihoods do not underflow.
    return jax.nn.softmax(log_likelihoods / temperature, axis=-1)


@partial(jax.jit, static_argnames=("axis",))
def assignment_entropy(probabilities: ArrayLike, axis: int = -1) -> jax.Array:
    """Shannon entropy ``H = -sum_k p_k log p_k`` (natural log) along ``axis``.

    Parameters
    ----------
    probabilities : array_like, shape (..., K, ...)
        Probabilities summing to 1 along ``axis``.
    axis : int, default -1
        The component axis.

    Returns
    -------
    jax.Array
        ``probabilities``' shape without ``axis``; values in ``[0, log K]``: 0 for a
        one-hot row, ``log K`` for a uniform one. Terms with ``p_k = 0`` count as 0
        (``0 log 0 = 0``), also in the gradient.
    """
    p = jnp.asarray(probabilities)
    n_components = p.shape[axis]
    positive = p > 0
    # The inner where keeps log away from 0 so neither value nor gradient becomes NaN.
    terms = jnp.where(positive, p * jnp.log(jnp.where(positive, p, 1.0)), 0.0)
    entropy = -jnp.sum(terms, axis=axis)
    # Rounding can put a one-hot row a hair below 0 or a uniform row a hair above log K.
    return jnp.clip(entropy, 0.0, np.log(n_components))
