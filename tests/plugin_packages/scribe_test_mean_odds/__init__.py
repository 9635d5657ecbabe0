"""A parameterization: the mean ``mu`` and ``q = 1 - p`` are sampled.

``mu ~ LogNormal`` per gene, ``q ~ Beta`` shared; canonical ``p = 1 - q`` and
``r = mu q / (1 - q)`` (so that the NB mean is ``mu``). Gates, capture and mixture
weights keep the base class's Beta / Beta / Dirichlet sites.
"""

import scribe
from scribe.families import BETA, LOG_NORMAL
from scribe.parameterization import GENE, SHARED, per_gene


class MeanOdds(scribe.Parameterization):
    name = "mean_odds"
    description = "mu ~ LogNormal(0, 1), q = 1 - p ~ Beta(1, 1), r = mu q / (1 - q)"

    def expression(self):
        return scribe.Block(
            (scribe.Site("q", BETA, SHARED), scribe.Site("mu", LOG_NORMAL, GENE)),
            lambda v: {"p": 1 - v["q"], "r": v["mu"] * per_gene(v["q"] / (1 - v["q"]))},
            lambda c: {"q": 1 - c["p"], "mu": c["r"] * per_gene(c["p"] / (1 - c["p"]))},
        )


@scribe.hookimpl
def scribe_parameterizations():
    return [MeanOdds()]
