"""Exact negative binomial log-likelihoods from non-zeros and sufficient statistics.

Write every entry as if it were zero, then correct the non-zeros:
``log f(x) = B + [lgamma(x + r) - lgamma(r)] - log x! + x log p_hat + A`` where
``B = log f(0)`` and ``A = log(1 - gate) + r log(1 - p_hat) - B`` (``A = 0`` without
zero inflation). Summing over cells, genes or both:

* ``B`` has a closed form per cell and per gene (``r log(1 - p_hat)``; a per-gene
  constant for ``zinb``); only ``zinbvcp`` needs it per entry, a dense sum without
  ``lgamma``;
* ``sum [lgamma(x + r) - lgamma(r)]`` over a gene's cells is ``sum_{j<16} m_gj log(r + j)``
  (the capped exceedance histogram of :mod:`scribe.counts`) plus, for the rare counts
  above 16, ``lgamma(x + r) - lgamma(16 + r)`` by Stirling's series; or a sum over
  non-zeros;
* ``log x!``, ``x log p`` and ``A`` need only cell/gene statistics, or the non-zeros
  when ``p_hat`` varies by cell.

Canonical shapes: ``r`` and ``gate`` ``(G,)``, ``p`` scalar, ``p_capture`` ``(C,)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from scribe.counts import LARGE_COUNT, SparseCounts

from .zero_term import log_sigmoid, log_zero_cell_sums


def _stirling_difference(z0, d):
    """``lgamma(z0 + d) - lgamma(z0)`` and its derivative in ``z0``, for ``z0 >= 8``.

    Used for counts above the per-gene table (``z0 = r + 16``).

    Stirling's series to ``z^-7`` (the next term is below ``1 / (1188 z^9)``, 7e-12 at
    ``z = 8``) and the matching digamma series. The leading part is written through
    ``log1p(d / z0)`` with ``d >= 0`` passed exactly, so large ``z`` (large ``r``) loses
    no precision to the difference of two large numbers.
    """
    z1 = z0 + d
    log_ratio = jnp.log1p(d / z0)
    leading = (z1 - 0.5) * log_ratio + d * (jnp.log(z0) - 1.0)

    def series(z):
        inv2 = 1.0 / (z * z)
        return (1.0 / 12 - inv2 * (1.0 / 360 - inv2 * (1.0 / 1260 - inv2 / 1680))) / z

    def digamma_series(z):  # psi(z) - log(z)
        inv2 = 1.0 / (z * z)
        return -0.5 / z - inv2 * (1.0 / 12 - inv2 * (1.0 / 120 - inv2 * (1.0 / 252
                                                                           - inv2 / 240)))

    value = leading + series(z1) - series(z0)
    derivative = log_ratio + digamma_series(z1) - digamma_series(z0)
    return value, derivative


@jax.custom_jvp
def stirling_tail(z0, d):
    """``lgamma(z0 + d) - lgamma(z0)`` for ``z0 >= 8``; its derivative in ``z0`` is computed
    alongside (autodiff through the series costs several times more per entry)."""
    return _stirling_difference(z0, d)[0]


@stirling_tail.defjvp
def _stirling_tail_jvp(primals, tangents):
    value, derivative = _stirling_difference(*primals)
    return value, derivative * tangents[0]


#: Counts up to this value read their rising factorial from a per-gene table; the
#: entries above it are listed apart by SparseCounts.
_TABLE = LARGE_COUNT


def rising_table(r, size: int):
    """``T[g, m] = sum_{j<m} log(r_g + j)`` for ``m = 0..size``, shape ``(G, size + 1)``."""
    logs = jnp.log(r[:, None] + jnp.arange(size, dtype=r.dtype))
    return jnp.concatenate([jnp.zeros_like(r)[:, None], jnp.cumsum(logs, axis=1)], axis=1)


class NBSums:
    """Log-likelihood pieces of one count matrix under one set of NB parameters.

    Parameters
    ----------
    counts : SparseCounts
    r : (G,) array
    p_hat : scalar or (C,) array
        ``p``, or ``p_hat`` per cell with variable capture.
    gate : (G,) array, optional
        Zero-inflation gate.
    """

    def __init__(self, counts: SparseCounts, r, p_hat, gate=None):
        self.counts, self.r, self.gate = counts, r, gate
        self.per_cell_p = jnp.ndim(p_hat) == 1
        self.log_p, self.log_q = jnp.log(p_hat), jnp.log1p(-p_hat)
        # Padding entries of a mini-batch have value 0 and must add nothing.
        self.present = (counts.values > 0).astype(r.dtype)

    # ---- per-entry pieces ----------------------------------------------------------------
    def _at_entries(self, per_cell):
        return per_cell[self.counts.cells] if self.per_cell_p else per_cell

    def _lgamma_ratio(self):
        """``lgamma(min(x, 16) + r) - lgamma(r)`` per stored entry (0 for padding).

        Read from a per-gene table, ``G x 17`` logarithms per step instead of at least
        one per entry; :meth:`_large_excess` adds the rest for the rare larger counts.
        """
        c = self.counts
        table = rising_table(self.r, _TABLE)
        short = jnp.minimum(c.values, _TABLE).astype(jnp.int32)
        return table.ravel()[c.genes * (_TABLE + 1) + short]

    def _large_excess(self):
        """``lgamma(x + r) - lgamma(16 + r)`` per large entry, ``(M,)`` (0 for padding)."""
        c = self.counts
        # Counts are exact int32; the excess is rounded to r's dtype only here (relative
        # error 2**-24 in float32, the precision of the result anyway).
        excess = jnp.maximum(c.large_values - _TABLE, 0).astype(self.r.dtype)
        return stirling_tail(self.r[c.large_genes] + _TABLE, excess)

    def _log_zero_dense(self):
        """``B_cg = log(gate + (1 - gate)(1 - p_hat_c)^r_g)``, ``(C, G)`` (zinbvcp only)."""
        return jnp.logaddexp(jnp.log(self.gate),
                             jnp.log1p(-self.gate) + self.r * self.log_q[:, None])

    def _log_zero_cell_sums(self):
        """``sum_g B_cg``, ``(C,)`` (zinbvcp only; fused, see :mod:`.zero_term`)."""
        return log_zero_cell_sums(jnp.log(self.gate), jnp.log1p(-self.gate), self.r,
                                  self.log_q)

    def _log_zero_gene(self):
        """``B_g`` for a shared ``p``, ``(G,)``."""
        return jnp.logaddexp(jnp.log(self.gate), jnp.log1p(-self.gate) + self.r * self.log_q)

    def _zero_correction(self):
        """``A`` per stored entry (``zinbvcp``), ``(N,)``."""
        c = self.counts
        # A = log(1 - gate) + r log q - logaddexp(log gate, log(1 - gate) + r log q)
        #   = log sigmoid(d), d = logit(1 - gate) + r log q.
        logit_kept = jnp.log1p(-self.gate) - jnp.log(self.gate)
        d = logit_kept[c.genes] + self.r[c.genes] * self.log_q[c.cells]
        return self.present * log_sigmoid(d)

    def _gene_correction(self):
        """``A_g`` for a shared ``p``, ``(G,)``."""
        return jnp.log1p(-self.gate) + self.r * self.log_q - self._log_zero_gene()

    # ---- sums ----------------------------------------------------------------------------
    def by_cell(self, gene_weights=None):
        """``sum_g w_g log f(x_cg)``, ``(C,)``."""
        c = self.counts
        w = jnp.ones_like(self.r) if gene_weights is None else gene_weights
        w_entry = w[c.genes] * self.present
        entry = self._lgamma_ratio()
        if self.gate is None:
            baseline = self.log_q * jnp.sum(w * self.r)
        elif self.per_cell_p:
            baseline = (self._log_zero_cell_sums() if gene_weights is None
                        else self._log_zero_dense() @ w)
            entry = entry + self._zero_correction()
        else:
            baseline = jnp.sum(w * self._log_zero_gene())
            entry = entry + self._gene_correction()[c.genes]
        if gene_weights is None:
            per_cell = c.cell_totals * self.log_p - c.cell_log_factorial
        else:
            entry = entry + c.values * self._at_entries(self.log_p) - c.log_factorial
            per_cell = 0.0
        summed = (jax.ops.segment_sum(w_entry * entry, c.cells, num_segments=c.n_cells,
                                      indices_are_sorted=True)
                  + jax.ops.segment_sum(w[c.large_genes] * self._large_excess(), c.large_cells,
                                        num_segments=c.n_cells, indices_are_sorted=True))
        return jnp.broadcast_to(baseline, (c.n_cells,)) + summed + per_cell

    def by_gene(self):
        """``sum_c log f(x_cg)``, ``(G,)``."""
        c = self.counts
        n_cells = c.n_cells

        def per_gene(entry_values):
            return jax.ops.segment_sum(entry_values, c.genes, num_segments=c.n_genes)

        if self.gate is None:
            baseline = self.r * (jnp.sum(self.log_q) if self.per_cell_p
                                 else n_cells * self.log_q)
            correction = 0.0
        elif self.per_cell_p:
            baseline = jnp.sum(self._log_zero_dense(), axis=0)
            correction = per_gene(self._zero_correction())
        else:
            baseline = n_cells * self._log_zero_gene()
            correction = c.gene_nonzero * self._gene_correction()
        x_log_p = (per_gene(c.values * self.log_p[c.cells]) if self.per_cell_p
                   else c.gene_totals * self.log_p)
        return (baseline + self._lgamma_by_gene() + correction + x_log_p
                - c.gene_log_factorial)

    def total(self):
        """``sum_cg log f(x_cg)``, a scalar."""
        c = self.counts
        if self.gate is None:
            baseline = jnp.sum(self.r) * (jnp.sum(self.log_q) if self.per_cell_p
                                          else c.n_cells * self.log_q)
            correction = 0.0
        elif self.per_cell_p:
            baseline = jnp.sum(self._log_zero_cell_sums())
            correction = jnp.sum(self._zero_correction())
        else:
            baseline = c.n_cells * jnp.sum(self._log_zero_gene())
            correction = jnp.sum(c.gene_nonzero * self._gene_correction())
        lgamma = ((jnp.sum(self._lgamma_by_histogram()) if c.has_histogram
                   else jnp.sum(self._lgamma_ratio())) + jnp.sum(self._large_excess()))
        return (baseline + lgamma + correction + jnp.sum(c.cell_totals * self.log_p)
                - jnp.sum(c.cell_log_factorial))

    def _lgamma_by_histogram(self):
        c = self.counts
        return c.hist_counts * jnp.log(self.r[c.hist_genes] + c.hist_shifts)

    def _lgamma_by_gene(self):
        """``sum_c lgamma(x_cg + r_g) - lgamma(r_g)``, ``(G,)``."""
        c = self.counts
        large = jax.ops.segment_sum(self._large_excess(), c.large_genes,
                                    num_segments=c.n_genes)
        if c.has_histogram:   # the table stops at 16: large counts add their excess
            return large + jax.ops.segment_sum(self._lgamma_by_histogram(), c.hist_genes,
                                               num_segments=c.n_genes,
                                               indices_are_sorted=True)
        return large + jax.ops.segment_sum(self._lgamma_ratio(), c.genes,
                                           num_segments=c.n_genes)
