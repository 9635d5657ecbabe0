"""Batched log-likelihood evaluation behind :mod:`scribe.svi.analyses` (private).

One jitted program per (``return_by``, ``split``, weighting, block layout) and results
object; JAX's cache keys it further on the argument shapes, so repeated calls with the
same data compile once. The program runs ``lax.map`` over posterior draws and, inside,
``lax.map`` (by cell) or ``lax.scan`` (by gene) over blocks of cells, so memory is bounded
by one draw and one block:

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

    # ---- one draw -------------------------------------------------------------------------
    def _draw(self, blocks, remainder, params: dict, weights, *, by: str, split: bool,
              weight_type: str | None, cell_names: frozenset) -> jnp.ndarray:
        cell_weights = weights if (weight_type == MULTIPLICATIVE and by == "cell") else None
        shared = {n: v for n, v in params.items() if n not in cell_names}
        per_cell = {n: v for n, v in params.items() if n in cell_names}
        parts, n_done = [], 0

        if blocks is not None:
            n_blocks, size = blocks.values.shape[0], blocks.shape[0]
            n_done = n_blocks * size
            sliced = {n: v[:n_done].reshape(n_blocks, size, *v.shape[1:])
                      for n, v in per_cell.items()}

            def one(block, cells):
                return self._block(block, {**shared, **cells}, by, cell_weights)

            if by == "cell":
                out = jax.lax.map(lambda xs: one(*xs), (blocks, sliced))
                parts.append(out.reshape(n_done, *out.shape[2:]))
            else:
                shape = (blocks.shape[1],) + (
                    (params["mixing_weights"].shape[-1],) if self.mixture else ())
                init = jnp.zeros(shape, blocks.values.dtype)  # (G[, K]) accumulator
                total, _ = jax.lax.scan(lambda acc, xs: (acc + one(*xs), None), init,
                                        (blocks, sliced))
                parts.append(total)
        if remainder is not None:
            cells = {n: v[n_done:] for n, v in per_cell.items()}
            parts.append(self._block(remainder, {**shared, **cells}, by, cell_weights))

        if by == "cell":
            result = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=0)
        else:
            result = sum(parts[1:], parts[0])
            if weight_type == MULTIPLICATIVE:
                result = result * (weights[:, None] if self.mixture else weights)
        if weight_type == ADDITIVE:
            # sum_g (l_cg + w_g) = l_c + sum_g w_g; sum_c (l_cg + w_g) = l_g + C w_g.
            n_cells = self.n_cells_of(blocks, remainder)
            extra = jnp.sum(weights) if by == "cell" else n_cells * weights
            result = result + (extra[:, None] if (self.mixture and by == "gene") else extra)
        if self.mixture:
            result = result + jnp.log(params["mixing_weights"])
            if not split:
                result = logsumexp(result, axis=-1)
        return result

    @staticmethod
    def n_cells_of(blocks, remainder) -> int:
        total = 0 if blocks is None else blocks.values.shape[0] * blocks.shape[0]
        return total + (0 if remainder is None else remainder.shape[0])

    # ---- entry point ------------------------------------------------------------------------
    def __call__(self, counts: SparseCounts, draws: dict, *, by: str, split: bool,
                 weights: jnp.ndarray | None, weight_type: str | None,
                 batch_size: int | None) -> jnp.ndarray:
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
            Cells per block (None: one block of all cells).

        Returns
        -------
        jax.Array
            ``(S, C)`` / ``(S, G)``, with a trailing ``K`` axis when ``split``.
        """
        names = self.parameter_names(draws)
        params = {n: draws[n] for n in names}
        cell_names = frozenset(self.cell_names(params, leading=1))
        if batch_size is None or batch_size >= counts.n_cells:
            blocks, remainder = None, counts  # the full matrix: histogram sums by gene
        else:
            blocks, remainder = counts.split_cells(batch_size)
        key = (by, bool(split and self.mixture), weight_type if weights is not None else None,
               cell_names)
        fn = self._compiled.get(key)
        if fn is None:
            fn = jax.jit(self._program(*key))
            self._compiled[key] = fn
        dtype = counts.values.dtype
        if weights is None:
            weights = jnp.zeros(counts.n_genes, dtype)
        return fn(blocks, remainder, params, jnp.asarray(weights, dtype))

    def _program(self, by: str, split: bool, weight_type: str | None, cell_names: frozenset):
        def program(blocks, remainder, params, weights):
            self.n_traces += 1  # runs while tracing only
            return jax.lax.map(
                lambda p: self._draw(blocks, remainder, p, weights, by=by, split=split,
                                     weight_type=weight_type, cell_names=cell_names),
                params)
        return program
