"""Data-informed (empirical-Bayes) prior of the per-gene expression site in ``scribe.fit``.

The SPEC's fixed prior ``r ~ LogNormal(0, 1)`` (``mu`` for ``linked``/``odds_ratio``,
``r_unconstrained ~ Normal(0, 1)`` for ``unconstrained``) is centred on ``r = 1``. Droplet
data put most genes' ``r`` (or mean) one to three log units lower, and for a gene with few
counts that prior then decides the posterior: on simulated data its 90 % intervals of
``r`` covered the truth for 37-48 % of genes in nbvcp and zinb, and 87-90 % once the
prior matched the simulation (docs/models.md, "Calibration").

:func:`empirical_gene_prior` sets the two hyperparameters of that site's prior from the
data instead, once per fit: ``loc`` and ``scale`` are the mean and standard deviation,
across expressed genes (and mixture components), of the log of the site's method-of-moments
starting value (:mod:`scribe.initial_values`; for ``r`` that is the gene's mean count
divided by the fitted odds, so it has little noise). The estimates' own noise widens the
spread slightly, which errs towards a weaker prior. ``scale`` is at least
:data:`MIN_SCALE`. With fewer than :data:`MIN_GENES` expressed genes the SPEC default is
kept. A prior the user gives for the site always wins.

Every built-in type uses it, zinbvcp included: measured at convergence (its staged
default optimiser), the fixed ``LogNormal(0, 1)`` covers ``r`` no better at 20,000 x 2,000
(54.8 % against 55.6 %) and fails at 3,000 x 600 (6.5 % against 85.3 %: it pulls ``r`` up
the ``r``-``p_hat`` ridge); docs/benchmarks.md, "zinbvcp: where the time goes".
"""

from __future__ import annotations

import numpy as np

from scribe.families import LOG_NORMAL, NORMAL
from scribe.parameterization import GENE

#: Smallest prior ``scale`` (log units): the across-gene spread of a few hundred similar
#: genes must not pin every gene's ``r`` down; real data spread over several log units.
MIN_SCALE = 0.5
#: Fewer expressed genes than this: too few to estimate a spread; keep the fixed prior.
MIN_GENES = 20
#: Starting values at or below this are the floor of genes without counts (excluded).
_FLOOR = 1e-3


def expression_gene_site(composition):
    """The expression block's per-gene site with a (log-)Normal prior, or None.

    That is ``r`` (``standard``), ``mu`` (``linked``, ``odds_ratio``) or ``r_unconstrained``
    (``unconstrained``); a plugin parameterization's site qualifies by the same rule.
    """
    expression = composition.blocks[0]
    found = [site for site in expression.sites
             if site.scope == GENE and site.family in (LOG_NORMAL, NORMAL)]
    return found[0] if len(found) == 1 else None


def empirical_gene_prior(composition, canonical_guess: dict) -> dict[str, tuple[float, float]]:
    """``{site: (loc, scale)}`` for the expression site, from the starting values.

    Parameters
    ----------
    composition : scribe.compose.Composition
    canonical_guess : dict
        Starting canonical parameters (:func:`scribe.initial_values.initial_canonical`):
        ``p`` ``()`` or ``(K,)``, ``r`` ``(G,)`` or ``(K, G)``, ...

    Returns
    -------
    dict
        One entry ``{name: (loc, scale)}`` (plain floats; for a LogNormal site the Normal's
        parameters on the log scale), or ``{}`` when the model has no such site, the user
        gave its prior, or too few genes are expressed.
    """
    site = expression_gene_site(composition)
    if site is None or site.name in composition.config.priors:
        return {}
    r = np.asarray(canonical_guess["r"], dtype=np.float64)
    expressed = np.isfinite(r) & (r > _FLOOR)
    # Per-gene values of the sampled site (r, mu = r odds(p), log r), as the guide starts.
    sampled = composition.blocks[0].from_canonical(
        {name: np.asarray(value, dtype=np.float64) for name, value in canonical_guess.items()
         if not name.startswith("_")})[site.name]
    values = np.broadcast_to(np.asarray(sampled, dtype=np.float64), r.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.log(values) if site.family is LOG_NORMAL else values
    used = z[expressed & np.isfinite(z)]
    if used.size < MIN_GENES:
        return {}
    return {site.name: (float(np.mean(used)), max(float(np.std(used)), MIN_SCALE))}


def with_empirical_prior(model_config, canonical_guess: dict):
    """``model_config`` with the data-informed prior added to ``priors`` and recorded in
    ``empirical_priors`` (unchanged if :func:`empirical_gene_prior` gives none)."""
    import attrs

    from scribe.compose import Composition

    found = empirical_gene_prior(Composition(model_config), canonical_guess)
    if not found:
        return model_config
    return attrs.evolve(model_config, priors={**model_config.priors, **found},
                        empirical_priors=(*model_config.empirical_priors, *found))
