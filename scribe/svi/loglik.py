"""Batched log-likelihood evaluation behind :mod:`scribe.svi.analyses` (private).

One jitted program per (``return_by``, ``split``, weighting, block layout) and results
object; JAX's cache keys it further on the argument shapes, so repeated calls with the
same data compile once. The program runs ``lax.map`` (by cell) or ``lax.scan`` (by gene)
over blocks of cells, each gathered from the full :class:`SparseCounts` inside the loop,
and, inside, ``lax.map`` over posterior draws, so memory is bounded by one block and one
draw (besides the counts and the result):

* model types composed from a :class:`~scribe.Likelihood` use its sparse evaluation
  (``cell_log_prob`` / ``gene_log_prob``, per component for mixtures): ``O(nnz K)``
  per draw, nothing dense;
* other plugins' model types only offer an elementwise ``log_prob``: each block is
  densified (``(B, G)``, ``(B, G, K)`` for mixtures) and summed.

Per-cell parameters (``p_capture`` ...) are sliced along with their block of cells.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from scribe.counts import SparseCounts
from scribe.mixture import component_cell_log_prob, component_gene_log_prob
from scribe.parameterization import CELL
from scribe.svi.model_view import ModelView

MULTIPLICATIVE, ADDITIVE = "multiplicative", "additive"

#: With ``batch_size=None``, per-cell sums over more non-zeros than this run in blocks of
#: about this many non-zeros (per-gene sums use the full matrix's histogram instead).
AUTO_BLOCK_NONZEROS = 1 << 22


class LogLikelihoodEvaluator:
    """Log-likelihoods of one fitted model's canonical parameters on count blocks.

    Parameters
    ----------
    view : ModelView
        The fitted model (likelihood or elementwise ``log_prob``, scopes, mixture).
    """

    def __init__(self, view: ModelView):
        self.view = view
        self.likelihood = view.spec.likelihood
        self.mixture = bool(view.config.is_mixture)
        self._compiled: dict[tuple, callable] = {}
        self.n_traces = 0

    # ---- which parameters ---------------------------------------------------------------
    def parameter_names(self, values: dict) -> list[str]:
        """Canonical entries of ``values`` the evaluation needs."""
        if self.likelihood is None:
            names = list(values)
        else:
            names = [n for n in self.likelihood.scopes() if n in values]
        if self.mixture and "mixing_weights" not in names:
            if "mixing_weights" not in values:
                raise ValueError("the mixture's parameters lack 'mixing_weights'")
            names.append("mixing_weights")
        return sorted(names)

    def cell_names(self, values: dict, leading: int) -> set[str]:
        """Entries of ``values`` whose first axis after ``leading`` ones is cells."""
        scopes = self.view.all_scopes()
        n_cells, n_genes = self.view.n_cells, self.view.n_genes
        names = set()
        for name, value in values.items():
            scope = scopes.get(name)
            shape = jnp.shape(value)[leading:]
            unknown_cells = (scope is None and len(shape) >= 1 and shape[0] == n_cells
                             and n_cells != n_genes)
            if scope == CELL or unknown_cells:
                names.add(name)
        return names

    # ---- one block ------------------------------------------------------------------------
    def _block(self, block: SparseCounts, params: dict, by: str,
               cell_weights: jnp.ndarray | None) -> jnp.ndarray:
        """Per-cell ``(B[, K])`` or per-gene ``(G[, K])`` sums of one block, no log w_k."""
        if self.likelihood is not None:
            if by == "cell":
                if self.mixture:
                    return component_cell_log_prob(self.likelihood, block, params, cell_weights)
                return self.likelihood.cell_log_prob(block, params, cell_weights)
            if self.mixture:
                return component_gene_log_prob(self.likelihood, block, params)
            return self.likelihood.gene_log_prob(block, params)
        # Elementwise fallback: (B, G) or (B, G, K).
        values = self.view.spec.log_prob(block.to_dense(), params)
        if by == "cell":
            if cell_weights is not None:
                values = values * (cell_weights[:, None] if self.mixture else cell_weights)
            return jnp.sum(values, axis=1)
        return jnp.sum(values, axis=0)

    # ---- all draws on one block ---------------------------------------------------------------
    def _draws_on_block(self, block: SparseCounts, shared: dict, per_cell: dict, by: str,
                        cell_weights) -> jnp.ndarray:
        """``(S, B[, K])`` or ``(S, G[, K])`` sums of one block under every draw
        (``lax.map`` over draws: memory of one draw on one block)."""
        return jax.lax.map(
            lambda p: self._block(block, {**p[0], **p[1]}, by, cell_weights),
            (shared, per_cell))

    def _over_blocks(self, counts: SparseCounts, plan: tuple, shared: dict, per_cell: dict,
                     by: str, cell_weights) -> jnp.ndarray:
        """Every draw on every block of ``plan``; each block is gathered from ``counts``
        inside the loop, so memory is bounded by one block (not by all of them)."""
        size, n_blocks, capacity, n_left, left_capacity = plan
        n_done = n_blocks * size
        parts = []
        if n_blocks:
            starts = jnp.arange(n_blocks, dtype=jnp.int32) * size
            # (S, C, ...) -> (n_blocks, S, size, ...)
            sliced = {n: jnp.moveaxis(v[:, :n_done].reshape(v.shape[0], n_blocks, size,
                                                            *v.shape[2:]), 1, 0)
                      for n, v in per_cell.items()}

            def one(start, cells):
                return self._draws_on_block(counts.take_block(start, size, capacity), shared,
                                            cells, by, cell_weights)

            if by == "cell":
                out = jax.lax.map(lambda xs: one(*xs), (starts, sliced))  # (nb, S, size..)
                out = jnp.moveaxis(out, 0, 1)
                parts.append(out.reshape(out.shape[0], n_done, *out.shape[3:]))
            else:
                init = jax.eval_shape(one, starts[0], {n: v[0] for n, v in sliced.items()})
                total, _ = jax.lax.scan(lambda acc, xs: (acc + one(*xs), None),
                                        jnp.zeros(init.shape, init.dtype), (starts, sliced))
                parts.append(total)
        if n_left:
            block = counts.take_block(n_done, n_left, left_capacity)
            parts.append(self._draws_on_block(block, shared,
                                              {n: v[:, n_done:] for n, v in per_cell.items()},
                                              by, cell_weights))
        if by == "cell":
            return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=1)
        return sum(parts[1:], parts[0])

    def _finish(self, result: jnp.ndarray, params: dict, weights, n_cells: int, *, by: str,
                split: bool, weight_type: str | None) -> jnp.ndarray:
        """Gene weights, ``log w_k`` and the sum over components, on ``(S, ...)``."""
        if by == "gene" and weight_type == MULTIPLICATIVE:
            result = result * (weights[:, None] if self.mixture else weights)
        if weight_type == ADDITIVE:
            # sum_g (l_cg + w_g) = l_c + sum_g w_g; sum_c (l_cg + w_g) = l_g + C w_g.
            extra = jnp.sum(weights) if by == "cell" else n_cells * weights
            result = result + (extra[:, None] if (self.mixture and by == "gene") else extra)
        if self.mixture:
            log_w = jnp.log(params["mixing_weights"])   # (S, K)
            result = result + log_w.reshape(log_w.shape[0], *([1] * (result.ndim - 2)), -1)
            if not split:
                result = logsumexp(result, axis=-1)
        return result

    # ---- entry point ------------------------------------------------------------------------
    def __call__(self, counts: SparseCounts, draws: dict, *, by: str, split: bool,
                 weights: jnp.ndarray | None, weight_type: str | None,
                 batch_size: int | None, finish: bool = True,
                 cell_names: frozenset | None = None) -> jnp.ndarray:
        """Log-likelihood of ``counts`` under each draw.

        Parameters
        ----------
        counts : SparseCounts, shape (C, G)
        draws : dict
            Canonical parameters with a leading draw axis ``S`` (a MAP: ``S = 1``).
        by : {"cell", "gene"}
        split : bool
            Keep the component axis of a mixture.
        weights : (G,) array or None
        weight_type : {"multiplicative", "additive"} or None
        batch_size : int or None
            Cells per block. None: per gene, one block of all cells (the full matrix's
            statistics); per cell, blocks of about :data:`AUTO_BLOCK_NONZEROS` non-zeros
            (all cells at once when fewer). Blocks are gathered one at a time.
        finish : bool, default True
            Apply gene weights, ``log w_k`` and the sum over components; False returns
            the raw sums, so that per-gene sums of several cell blocks can be added
            before :meth:`_finish` (:mod:`scribe.svi.stream_loglik`).
        cell_names : frozenset, optional
            The per-cell parameters, when ``counts`` is a block of the fit's cells (their
            shape no longer tells); default: from the shapes.

        Returns
        -------
        jax.Array
            ``(S, C)`` / ``(S, G)``, with a trailing ``K`` axis when ``split``.
        """
        names = self.parameter_names(draws)
        params = {n: draws[n] for n in names}
        if cell_names is None:
            cell_names = frozenset(self.cell_names(params, leading=1))
        if batch_size is None and by == "cell" and counts.nnz > AUTO_BLOCK_NONZEROS:
            # Per-cell sums cost O(nnz) either way: blocks bound their temporaries.
            batch_size = max(1, AUTO_BLOCK_NONZEROS * counts.n_cells // counts.nnz)
        if batch_size is None or batch_size >= counts.n_cells:
            plan = None   # the full matrix: histogram sums by gene
        else:
            size = int(batch_size)
            n_blocks, n_left = divmod(counts.n_cells, size)
            left_capacity = (0, 0)
            if n_left:
                ends = [p[-1] - p[n_blocks * size] for p in counts.host_offsets()]
                left_capacity = tuple(max(int(e), 1) for e in ends)
            plan = (size, n_blocks, counts.block_capacity(size), n_left, left_capacity)
        key = (by, bool(split and self.mixture), weight_type if weights is not None else None,
               cell_names, plan, bool(finish))
        fn = self._compiled.get(key)
        if fn is None:
            fn = jax.jit(self._program(*key))
            self._compiled[key] = fn
        dtype = counts.values.dtype
        if weights is None:
            weights = jnp.zeros(counts.n_genes, dtype)
        return fn(counts, params, jnp.asarray(weights, dtype))

    def _program(self, by: str, split: bool, weight_type: str | None, cell_names: frozenset,
                 plan: tuple | None, finish: bool = True):
        def program(counts, params, weights):
            self.n_traces += 1  # runs while tracing only
            cell_weights = weights if (weight_type == MULTIPLICATIVE and by == "cell") else None
            shared = {n: v for n, v in params.items() if n not in cell_names}
            per_cell = {n: v for n, v in params.items() if n in cell_names}
            if plan is None:
                result = self._draws_on_block(counts, shared, per_cell, by, cell_weights)
            else:
                result = self._over_blocks(counts, plan, shared, per_cell, by, cell_weights)
            if not finish:
                return result
            return self._finish(result, params, weights, counts.n_cells, by=by, split=split,
                                weight_type=weight_type)
        return program
