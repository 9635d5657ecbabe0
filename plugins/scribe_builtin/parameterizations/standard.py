"""``standard``: ``p ~ Beta``, ``r ~ LogNormal`` sampled directly."""

from scribe.families import BETA, LOG_NORMAL
from scribe.parameterization import GENE, SHARED, Block, Parameterization, Site


class Standard(Parameterization):
    name = "standard"
    description = "p ~ Beta(1, 1), r ~ LogNormal(0, 1)"

    def expression(self) -> Block:
        return Block(
            (Site("p", BETA, SHARED), Site("r", LOG_NORMAL, GENE)),
            lambda v: {"p": v["p"], "r": v["r"]},
            lambda c: {"p": c["p"], "r": c["r"]},
        )
