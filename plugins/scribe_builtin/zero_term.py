"""The zero probability of zinbvcp, summed over genes, at a fixed cost per (cell, gene).

With a per-cell ``p_hat`` the log-probability of a zero,
``B_cg = log(gate_g + (1 - gate_g) (1 - p_hat_c)^r_g)``, depends on cell and gene, so
the exact likelihood needs ``sum_g B_cg`` for every cell: dense ``C x G`` work per step
(``C x G x K`` in a mixture). Written as ``B = log gate + softplus(d)`` with
``d = log(1 - gate) + r log(1 - p_hat) - log gate``:

* the forward pass is one fused expression, ``max(d, 0) + log1p(exp(-|d|))`` summed over
  genes (no overflow for any ``d``);
* the backward pass recomputes ``d`` block by block of cells and uses ``s = sigmoid(d) =
  dB/d(log(1 - gate) + r log(1 - p_hat))`` and ``sigmoid(-d)``: the per-gene sums over
  cells are one matrix product ``[ct, ct log_q] @ s`` and ``ct @ sigmoid(-d)``, the
  per-cell sum ``s @ r``. Nothing of size ``C x G`` is kept between the passes, and the
  backward pass holds at most :data:`BLOCK_CELLS` ``x G`` of it at a time.

Autodiff of :func:`jax.numpy.logaddexp` (its ``where``-guarded derivative, summed over
cells) measured about three times slower per step on two CPU cores, and four separate
reductions over a recomputed ``sigmoid(d)`` 1.49x slower than the matrix products
(value and gradient at 2,048 x 2,000, CPU time; docs/benchmarks.md).
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


#: Cells per block of the backward pass: bounds its ``(block, G)`` temporaries (two
#: float32 matrices, 64 MB at 2,000 genes) whatever the batch.
BLOCK_CELLS = 4096


def _block_gradients(log_gate, log_kept, r, log_q, cotangent):
    """Cotangents of ``log_gate, log_kept, r`` (summed over the block) and ``log_q``."""
    # dB/d(log_kept + r log_q) = sigmoid(d); dB/d(log_gate) = sigmoid(-d).
    d = _logit_kept(log_gate, log_kept, r, log_q)
    kept = jax.nn.sigmoid(d)
    sums = jnp.stack([cotangent, cotangent * log_q]) @ kept      # (2, G)
    d_log_q = cotangent * (kept @ r)
    # sigmoid(-d) itself, not 1 - sigmoid(d): sigmoid(d) is close to 1 for small gates,
    # and the difference would cancel.
    d_gate = cotangent @ jax.nn.sigmoid(-d)
    return d_gate, sums[0], sums[1], d_log_q


def _backward(residuals, cotangent):
    log_gate, log_kept, r, log_q = residuals
    n_cells = log_q.shape[0]
    if n_cells <= BLOCK_CELLS:
        return _block_gradients(log_gate, log_kept, r, log_q, cotangent)
    # Padded cells have a zero cotangent: they add nothing to the gene sums.
    pad = -n_cells % BLOCK_CELLS
    blocks = (jnp.pad(log_q, (0, pad)).reshape(-1, BLOCK_CELLS),
              jnp.pad(cotangent, (0, pad)).reshape(-1, BLOCK_CELLS))

    def block(total, inputs):
        d_gate, d_kept, d_r, d_log_q = _block_gradients(log_gate, log_kept, r, *inputs)
        return (total[0] + d_gate, total[1] + d_kept, total[2] + d_r), d_log_q

    zeros = jnp.zeros_like(r)
    (d_gate, d_kept, d_r), d_log_q = jax.lax.scan(block, (zeros, zeros, zeros), blocks)
    return d_gate, d_kept, d_r, d_log_q.reshape(-1)[:n_cells]


_log_zero_cell_sums.defvjp(_forward, _backward)


@jax.custom_jvp
def log_sigmoid(d):
    """``log sigmoid(d) = -softplus(-d)``, elementwise, stable for any ``d``."""
    return jnp.minimum(d, 0.0) - jnp.log1p(jnp.exp(-jnp.abs(d)))


@log_sigmoid.defjvp
def _log_sigmoid_jvp(primals, tangents):
    (d,), (t,) = primals, tangents
    return log_sigmoid(d), jax.nn.sigmoid(-d) * t
