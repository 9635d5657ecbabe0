"""Per-cell negative binomial log-likelihoods under every mixture component at once.

The per-component path (:func:`scribe.mixture.component_cell_log_prob`) maps the
single-component sums of :mod:`.nb_sparse` over the ``K`` components: per component a
table gather over the non-zeros, a gather of gene weights and a segment sum, ``K``
times. Here the ``K`` tables are stacked into one ``(G * 17, K)`` table whose rows also
hold every per-(gene, count) constant, so each non-zero costs one row gather and one
sorted segment sum for all components together:

``log f_k(x_c) = base_ck + sum_{g: x_cg > 0} U_k[g, min(x_cg, 16)] + large_ck``

* ``U_k[g, m] = sum_{j<m} log(r_kg + j)`` plus, for ``m > 0`` with a gate,
  ``A_kg = log(1 - gate_kg) + r_kg log(1 - p_k) - B_kg`` (``B_kg = log f_k(0)``);
* ``base_ck`` collects what depends on cell totals only: ``log(1 - p_hat) sum_g r_kg``
  (``sum_g B_kg`` with a gate), ``X_c log p_hat - sum_g log x_cg!``;
* ``large_ck`` adds ``lgamma(x + r) - lgamma(16 + r)`` for the rare counts above 16.

Exact (the same terms as :class:`.nb_sparse.NBSums`, regrouped). It covers every built-in
mixture except ``zinbvcp_mix``, whose zero correction depends on cell and gene (no
per-(gene, count) table exists), and unweighted sums only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from scribe.counts import LARGE_COUNT, SparseCounts

from .nb_sparse import stirling_tail

_ROW = LARGE_COUNT + 1   # table columns per gene: counts 0..16


def component_tables(r: jnp.ndarray, correction: jnp.ndarray | None) -> jnp.ndarray:
    """``U[g * 17 + m, k]``: rising-factorial logs plus the non-zero correction.

    Parameters
    ----------
    r : (K, G) array
    correction : (K, G) array or None
        ``A_kg``, added to every ``m > 0`` (zero-inflated likelihoods).

    Returns
    -------
    (G * 17, K) array
    """
    logs = jnp.log(r[..., None] + jnp.arange(LARGE_COUNT, dtype=r.dtype))    # (K, G, 16)
    rising = jnp.cumsum(logs, axis=-1)
    if correction is not None:
        rising = rising + correction[..., None]
    table = jnp.concatenate([jnp.zeros_like(rising[..., :1]), rising], axis=-1)  # (K, G, 17)
    return jnp.moveaxis(table, 0, -1).reshape(-1, r.shape[0])


def entry_keys(counts: SparseCounts) -> jnp.ndarray:
    """Table row of each stored entry, ``g * 17 + min(x, 16)``, ``(N,)`` int32 (padding
    entries, value 0, read the all-zero row ``m = 0``)."""
    short = jnp.minimum(counts.values, LARGE_COUNT).astype(jnp.int32)
    return counts.genes * _ROW + short


def mixture_cell_sums(counts: SparseCounts, r: jnp.ndarray, log_p: jnp.ndarray,
                      log_q: jnp.ndarray, gate: jnp.ndarray | None = None) -> jnp.ndarray:
    """``log f_k(x_c)`` for every cell and component, ``(C, K)``.

    Parameters
    ----------
    counts : SparseCounts
        A full matrix or a padded mini-batch.
    r : (K, G) array
    log_p, log_q : arrays broadcastable to (C, K)
        ``log p_hat`` and ``log(1 - p_hat)``: ``(K,)`` (or ``()``) without capture,
        ``(C, 1)`` or ``(C, K)`` with it.
    gate : (K, G) array, optional
        Only with a ``p_hat`` shared by all cells (``log_q`` of shape ``(K,)`` or ``()``).
    """
    n_components = r.shape[0]
    if gate is None:
        correction = None
        baseline = log_q * jnp.sum(r, axis=-1)                            # (C|1, K)
    else:
        nb_zero = jnp.log1p(-gate) + r * log_q[..., None]                  # (K, G)
        log_zero = jnp.logaddexp(jnp.log(gate), nb_zero)
        correction = nb_zero - log_zero
        baseline = jnp.sum(log_zero, axis=-1)                              # (K,)
    table = component_tables(r, correction)
    entries = table[entry_keys(counts)]                                    # (N, K)
    summed = jax.ops.segment_sum(entries, counts.cells, num_segments=counts.n_cells,
                                 indices_are_sorted=True)
    excess = jnp.maximum(counts.large_values - LARGE_COUNT, 0).astype(r.dtype)
    large = stirling_tail(r[:, counts.large_genes].T + LARGE_COUNT, excess[:, None])
    summed = summed + jax.ops.segment_sum(large, counts.large_cells,
                                          num_segments=counts.n_cells,
                                          indices_are_sorted=True)
    per_cell = (counts.cell_totals[:, None] * log_p
                - counts.cell_log_factorial[:, None])
    return jnp.broadcast_to(baseline + per_cell, (counts.n_cells, n_components)) + summed
