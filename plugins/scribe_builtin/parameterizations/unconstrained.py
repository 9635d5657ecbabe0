"""``unconstrained``: Normal sites on the real line, mapped by sigmoid / exp / softmax."""

import jax
import jax.numpy as jnp
from jax.scipy.special import logit

from scribe.families import NORMAL
from scribe.parameterization import COMPONENT, GENE, SHARED, Block, Parameterization, Site


def _unit_block(name: str, scope: str) -> Block:
    site = f"{name}_unconstrained"
    return Block(
        (Site(site, NORMAL, scope),),
        lambda v: {name: jax.nn.sigmoid(v[site])},
        lambda c: {site: logit(c[name])},
    )


class Unconstrained(Parameterization):
    name = "unconstrained"
    description = "p, r, gate, capture and mixture logits ~ Normal(0, 1) on the real line"

    def expression(self) -> Block:
        return Block(
            (Site("p_unconstrained", NORMAL, SHARED), Site("r_unconstrained", NORMAL, GENE)),
            lambda v: {"p": jax.nn.sigmoid(v["p_unconstrained"]),
                       "r": jnp.exp(v["r_unconstrained"])},
            lambda c: {"p_unconstrained": logit(c["p"]), "r_unconstrained": jnp.log(c["r"])},
        )

    def probability(self, name: str, scope: str) -> Block:
        return _unit_block(name, scope)

    def mixing(self) -> Block:
        site = "mixing_logits_unconstrained"
        return Block(
            (Site(site, NORMAL, COMPONENT),),
            lambda v: {"mixing_weights": jax.nn.softmax(v[site], axis=-1)},
            lambda c: {site: jnp.log(c["mixing_weights"])},
        )
