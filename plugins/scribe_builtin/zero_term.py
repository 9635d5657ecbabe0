"""The zero probability of zinbvcp, summed over genes, at a fixed cost per (cell, gene).

With a per-cell ``p_hat`` the log-probability of a zero,
``B_cg = log(gate_g + (1 - gate_g) (1 - p_hat_c)^r_g)``, depends on cell and gene, so
the exact likelihood needs ``sum_g B_cg`` for every cell: dense ``C x G`` work per step
(``C x G x K`` in a mixture). Written as ``B = log gate + softplus(d)`` with
``d = log(1 - gate) + r log(1 - p_hat) - log gate``:

* the forward pass is one fused expression, ``max(d, 0) + log1p(exp(-|d|))`` summed over
  genes (no overflow for any ``d``);
* the backward pass recomputes ``d`` and uses ``sigmoid(d) = dB/d(log(1 - gate) + r
  log(1 - p_hat))`` in three reductions, so nothing of size ``C x G`` is stored.

Autodiff of :func:`jax.numpy.logaddexp` (its ``where``-guarded derivative, summed over
cells) measured about three times slower per step on two CPU cores (docs/benchmarks.md).
:func:`log_sigmoid` is the per-non-zero correction ``log(1 - gate) + r log(1 - p_hat) -
B = log sigmoid(d)`` with the same cheap derivative.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _softplus(d):
    return jnp.maximum(d, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(d)))


def _logit_kept(log_gate, log_kept, r, log_q):
    """``d_cg``, ``(C, G)``."""
    return (log_kept - log_gate) + r * log_q[:, None]


def _varying_axes(array) -> frozenset:
    """Mesh axes along which ``array`` varies inside ``shard_map`` (empty outside)."""
    aval = jax.typeof(array)
    manual = getattr(aval, "manual_axis_type", None)      # JAX >= 0.10
    if manual is not None:
        return frozenset(manual.varying)
    return frozenset(getattr(aval, "vma", ()) or ())      # earlier JAX


def _vary_like(arrays, axes: frozenset):
    """Mark each array as varying along ``axes`` (a no-op outside ``shard_map``)."""
    out = []
    for array in arrays:
        missing = tuple(sorted(axes - _varying_axes(array)))
        out.append(jax.lax.pcast(array, missing, to="varying") if missing else array)
    return out


def log_zero_cell_sums(log_gate, log_kept, r, log_q):
    """``sum_g log(gate_g + (1 - gate_g) exp(r_g log_q_c))`` for every cell, ``(C,)``.

    Under ``shard_map`` (cells split across devices) the per-cell ``log_q`` varies by
    device while the gene parameters are replicated; the custom gradient's cotangents
    vary, so the gene parameters are marked varying first and JAX sums their cotangents
    across devices (the transpose of that mark).
    """
    axes = frozenset().union(*(_varying_axes(a) for a in (log_gate, log_kept, r, log_q)))
    if axes:
        log_gate, log_kept, r, log_q = _vary_like((log_gate, log_kept, r, log_q), axes)
    return _log_zero_cell_sums(log_gate, log_kept, r, log_q)


@jax.custom_vjp
def _log_zero_cell_sums(log_gate, log_kept, r, log_q):
    """``sum_g log(gate_g + (1 - gate_g) exp(r_g log_q_c))`` for every cell, ``(C,)``.

    Parameters
    ----------
    log_gate, log_kept : (G,) arrays
        ``log gate`` and ``log(1 - gate)``.
    r : (G,) array
    log_q : (C,) array
        ``log(1 - p_hat)`` per cell.
    """
    d = _logit_kept(log_gate, log_kept, r, log_q)
    return jnp.sum(log_gate) + jnp.sum(_softplus(d), axis=-1)


def _forward(log_gate, log_kept, r, log_q):
    return _log_zero_cell_sums(log_gate, log_kept, r, log_q), (log_gate, log_kept, r, log_q)


def _backward(residuals, cotangent):
    log_gate, log_kept, r, log_q = residuals
    # dB/d(log_kept + r log_q) = sigmoid(d); dB/d(log_gate) = 1 - sigmoid(d).
    d = _logit_kept(log_gate, log_kept, r, log_q)
    weighted = cotangent[:, None] * jax.nn.sigmoid(d)
    d_kept = jnp.sum(weighted, axis=0)
    d_r = jnp.sum(weighted * log_q[:, None], axis=0)
    d_log_q = jnp.sum(weighted * r, axis=-1)
    # Summed directly, not as sum(cotangent) - d_kept: sigmoid(d) is close to 1 for
    # small gates, and the difference would cancel.
    d_gate = jnp.sum(cotangent[:, None] * jax.nn.sigmoid(-d), axis=0)
    return d_gate, d_kept, d_r, d_log_q


_log_zero_cell_sums.defvjp(_forward, _backward)


@jax.custom_jvp
def log_sigmoid(d):
    """``log sigmoid(d) = -softplus(-d)``, elementwise, stable for any ``d``."""
    return jnp.minimum(d, 0.0) - jnp.log1p(jnp.exp(-jnp.abs(d)))


@log_sigmoid.defjvp
def _log_sigmoid_jvp(primals, tangents):
    (d,), (t,) = primals, tangents
    return log_sigmoid(d), jax.nn.sigmoid(-d) * t
