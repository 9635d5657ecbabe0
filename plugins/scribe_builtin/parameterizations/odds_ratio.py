"""``odds_ratio``: sample ``phi = (1 - p) / p`` and ``mu``; ``p = 1 / (1 + phi)``, ``r = mu phi``.

Capture is sampled as ``phi_capture`` with ``p_capture = 1 / (1 + phi_capture)``.
"""

from scribe.families import BETA_PRIME, LOG_NORMAL
from scribe.parameterization import CELL, GENE, SHARED, Block, Parameterization, Site, per_gene


class OddsRatio(Parameterization):
    name = "odds_ratio"
    description = "phi ~ BetaPrime(1, 1), mu ~ LogNormal(0, 1), p = 1/(1+phi), r = mu phi"

    def expression(self) -> Block:
        return Block(
            (Site("phi", BETA_PRIME, SHARED), Site("mu", LOG_NORMAL, GENE)),
            lambda v: {"p": 1 / (1 + v["phi"]), "r": v["mu"] * per_gene(v["phi"])},
            lambda c: {"phi": (1 - c["p"]) / c["p"],
                       "mu": c["r"] * per_gene(c["p"] / (1 - c["p"]))},
        )

    def capture(self, name: str) -> Block:
        site = f"phi_{name.removeprefix('p_')}"
        return Block(
            (Site(site, BETA_PRIME, CELL),),
            lambda v: {name: 1 / (1 + v[site])},
            lambda c: {site: (1 - c[name]) / c[name]},
        )
