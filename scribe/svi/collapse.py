"""Collapsed mixture components: found after a fit, warned about, and recorded.

A mixture fit can end with fewer distinct components than ``n_components``: one whose
mixing weight went to zero (it explains no cell) or two whose per-gene parameters became
the same (they split one population's cells between them). The loss converges either way,
so neither the stop nor ``converged`` can see it; the posterior can.

* **Empty**: the cells' evidence for component ``k``, ``n_k = E[w_k] (C + sum(a)) - a_k``
  under a ``Dirichlet(a)`` prior on the weights (``a = 0`` for other priors), is below
  :data:`MIN_COMPONENT_CELLS` = 0.5: closer to no cell than to one. (With the weights'
  posterior ``Dirichlet(a + n)``, ``n_k`` is the expected number of cells in ``k``; an
  empty component keeps only the prior's pseudo-count ``a_k``.)
* **Indistinguishable**: for components ``k, j`` and every per-gene, per-component site
  (``r``, ``gate``, ...), in unconstrained space (log / logit) with posterior means ``m``
  and standard deviations ``s``, ``D_kj = mean over (site, gene) of
  (m_k - m_j)^2 / (s_k^2 + s_j^2)``. Were the two components' parameters equal, each
  term would be (nearly) the square of a standard normal (difference of two independent
  estimates of one value), so ``D`` would be a chi-square with ``n`` degrees of freedom
  divided by ``n`` (``n`` = number of terms): mean 1, sd ``sqrt(2 / n)``. The pair is
  indistinguishable when ``D <= 1 + Z * sqrt(2 / n)`` with ``Z = INDISTINGUISHABLE_Z``
  (3.1: the 99.9 % point of that normal approximation), i.e. the data show no difference.
  Components fitted to distinct populations differ by many posterior sds on many genes
  (``D`` in the tens to thousands).

Recorded in the ``optimization`` group's attributes (strings: netCDF has neither None nor
ragged lists) and read back by :class:`CollapseRecordMixin`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import jax
import numpy as np
from jax.scipy.special import digamma, polygamma
from numpyro.distributions import biject_to

from scribe.families import BETA, BETA_PRIME, LOG_NORMAL, LOGIT_NORMAL, NORMAL, family_of
from scribe.svi.storage import OPTIMIZATION

#: A component with fewer expected cells than this (beyond the prior's pseudo-count) is empty.
MIN_COMPONENT_CELLS = 0.5
#: Standard-normal quantile of the indistinguishability test (99.9 %, one-sided).
INDISTINGUISHABLE_Z = 3.1
#: Draws for the unconstrained moments of a family without closed-form ones.
_MC_DRAWS = 256

EMPTY_ATTR, INDISTINGUISHABLE_ATTR = "collapse_empty", "collapse_indistinguishable"
_NONE = "none"


@dataclass(frozen=True)
class Collapse:
    """What collapsed in a mixture fit.

    Attributes
    ----------
    expected_cells : numpy.ndarray, shape (K,)
        ``n_k``, cells each component explains in expectation (module docstring).
    empty : tuple of int
        Components with fewer than :data:`MIN_COMPONENT_CELLS` expected cells.
    distance : numpy.ndarray, shape (K, K)
        ``D_kj`` (module docstring); NaN on the diagonal and where no per-gene site exists.
    threshold : float
        ``D`` at or below which a pair is indistinguishable.
    indistinguishable : tuple of (int, int)
        Pairs ``k < j`` with ``D_kj <= threshold``, empty components excluded.
    """

    expected_cells: np.ndarray
    empty: tuple[int, ...]
    distance: np.ndarray
    threshold: float
    indistinguishable: tuple[tuple[int, int], ...] = field(default=())

    @property
    def collapsed(self) -> bool:
        return bool(self.empty or self.indistinguishable)

    def message(self, n_components: int) -> str | None:
        """The warning's text (None: nothing collapsed)."""
        if not self.collapsed:
            return None
        parts = [f"component {k} is empty ({self.expected_cells[k]:.2g} expected cells)"
                 for k in self.empty]
        parts += [f"components {k} and {j} are indistinguishable (their per-gene parameters "
                  f"differ by {math.sqrt(max(self.distance[k, j], 0.0)):.2g} posterior sd "
                  f"(rms), no more than equal parameters would)"
                  for k, j in self.indistinguishable]
        return (f"mixture components collapsed: {'; '.join(parts)}. The fit has fewer "
                f"distinct components than n_components={n_components}: refit with fewer "
                f"components or another seed, and do not read the collapsed components as "
                f"cell types (results.collapse records this)")


def unconstrained_moments(distribution) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd of a factor in unconstrained space (log / logit / identity).

    Closed forms for the built-in families (``E[log X] = psi(a) - psi(b)``,
    ``Var = psi'(a) + psi'(b)`` for a Beta's logit and a BetaPrime's log); other
    families by :data:`_MC_DRAWS` draws mapped through the support's inverse bijection.
    """
    found = family_of(distribution)
    if found is not None:
        family, args = found
        if family in (LOG_NORMAL, LOGIT_NORMAL, NORMAL):
            loc, scale = args
            return np.asarray(loc, float), np.asarray(scale, float)
        if family in (BETA, BETA_PRIME):
            a, b = (np.asarray(x, float) for x in args)
            var = np.asarray(polygamma(1, a) + polygamma(1, b), float)
            return np.asarray(digamma(a) - digamma(b), float), np.sqrt(var)
    draws = distribution.sample(jax.random.PRNGKey(0), (_MC_DRAWS,))
    free = np.asarray(biject_to(distribution.support).inv(draws), float)
    return free.mean(axis=0), free.std(axis=0)


def pair_distances(moments: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, int]:
    """``D`` ``(K, K)`` from per-site ``(mean, sd)`` arrays of shape ``(K, G)``, and the
    number of terms averaged."""
    n_components = moments[0][0].shape[0]
    total = np.zeros((n_components, n_components))
    n_terms = 0
    for mean, sd in moments:
        diff = mean[:, None, :] - mean[None, :, :]
        var = sd[:, None, :] ** 2 + sd[None, :, :] ** 2
        total += np.sum(diff**2 / np.maximum(var, 1e-30), axis=-1)
        n_terms += mean.shape[-1]
    distance = total / max(n_terms, 1)
    np.fill_diagonal(distance, np.nan)
    return distance, n_terms


def _mean_weights(results, factors: dict) -> np.ndarray:
    """Posterior mean of the mixing weights ``(K,)``: the Dirichlet factor's own mean when
    there is one (no other site evaluated), else ``get_map(point="mean")``'s."""
    factor = factors.get("mixing_weights")
    if factor is not None:
        return np.asarray(factor.mean, float).reshape(-1)
    return np.asarray(results.get_map(point="mean", verbose=False)["mixing_weights"],
                      float).reshape(-1)


def _prior_pseudo_counts(results, n_components: int) -> np.ndarray:
    """The Dirichlet prior's concentrations of the mixing weights ``(K,)`` (0 for a
    parameterization without a Dirichlet weight site)."""
    prior = (results.prior_params or {}).get("mixing_weights")
    if prior is None:
        return np.zeros(n_components)
    return np.broadcast_to(np.asarray(prior[0], float), (n_components,)).copy()


def detect_collapse(results) -> Collapse | None:
    """The collapse diagnosis of a mixture fit (None: not a mixture).

    Parameters
    ----------
    results : ScribeSVIResults
    """
    if not results.model_config.is_mixture or results._view.composition is None:
        return None     # a plugin's own model type: no declared sites to compare
    n_components = int(results.n_components)
    factors = results._view.posterior_distributions(results.params)
    weights = _mean_weights(results, factors)
    expected = weights * (results.n_cells + _prior_pseudo_counts(results, n_components).sum())
    expected -= _prior_pseudo_counts(results, n_components)
    empty = tuple(int(k) for k in np.flatnonzero(expected < MIN_COMPONENT_CELLS))
    moments = []
    for factor in factors.values():
        if tuple(factor.batch_shape) == (n_components, results.n_genes) \
                and not factor.event_shape:
            moments.append(unconstrained_moments(factor))
    if not moments:
        distance = np.full((n_components, n_components), np.nan)
        return Collapse(expected, empty, distance, math.nan)
    distance, n_terms = pair_distances(moments)
    threshold = 1.0 + INDISTINGUISHABLE_Z * math.sqrt(2.0 / n_terms)
    pairs = tuple((k, j) for k in range(n_components) for j in range(k + 1, n_components)
                  if k not in empty and j not in empty and distance[k, j] <= threshold)
    return Collapse(expected, empty, distance, threshold, pairs)


def collapse_attrs(collapse: Collapse) -> dict[str, str]:
    """The attributes recording ``collapse``."""
    empty = ",".join(str(k) for k in collapse.empty) or _NONE
    pairs = ";".join(f"{k}-{j}" for k, j in collapse.indistinguishable) or _NONE
    return {EMPTY_ATTR: empty, INDISTINGUISHABLE_ATTR: pairs}


class CollapseRecordMixin:
    """``collapse`` and ``collapsed`` of a results object (recorded by ``scribe.fit``)."""

    @property
    def collapse(self) -> dict | None:
        """``{"empty": [k, ...], "indistinguishable": [[k, j], ...]}``: mixture components
        that collapsed in the fit (:mod:`scribe.svi.collapse`); None when not recorded (not
        a mixture, or results not from ``scribe.fit``)."""
        attrs = self._group(OPTIMIZATION).attrs
        if EMPTY_ATTR not in attrs:
            return None
        empty, pairs = str(attrs[EMPTY_ATTR]), str(attrs[INDISTINGUISHABLE_ATTR])
        return {"empty": [] if empty == _NONE else [int(k) for k in empty.split(",")],
                "indistinguishable": [] if pairs == _NONE else
                [[int(k) for k in pair.split("-")] for pair in pairs.split(";")]}

    @property
    def collapsed(self) -> bool | None:
        """Whether any mixture component collapsed (None: not recorded)."""
        record = self.collapse
        return None if record is None else bool(record["empty"]
                                                or record["indistinguishable"])

    def _set_collapse(self, collapse: Collapse | None) -> None:
        """Record ``collapse`` (None: remove the record)."""
        group = self._group(OPTIMIZATION).copy()
        kept = {k: v for k, v in group.attrs.items()
                if k not in (EMPTY_ATTR, INDISTINGUISHABLE_ATTR)}
        group.attrs = kept if collapse is None else {**kept, **collapse_attrs(collapse)}
        self._set_group(OPTIMIZATION, group)
