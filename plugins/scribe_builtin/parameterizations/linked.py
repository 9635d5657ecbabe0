"""``linked``: sample ``p`` and the mean ``mu``; ``r = mu (1 - p) / p``."""

from scribe.families import BETA, LOG_NORMAL
from scribe.parameterization import GENE, SHARED, Block, Parameterization, Site, per_gene


class Linked(Parameterization):
    name = "linked"
    description = "p ~ Beta(1, 1), mu ~ LogNormal(0, 1), r = mu (1 - p) / p"

    def expression(self) -> Block:
        return Block(
            (Site("p", BETA, SHARED), Site("mu", LOG_NORMAL, GENE)),
            lambda v: {"p": v["p"], "r": v["mu"] * per_gene((1 - v["p"]) / v["p"])},
            lambda c: {"p": c["p"], "mu": c["r"] * per_gene(c["p"] / (1 - c["p"]))},
        )
