"""Training without capture draws: the capture's expectation taken exactly.

With variable capture and a mean-field Beta (or BetaPrime) capture factor, each step of
the default guide drew two Gamma variates per cell for the capture and differentiated
through them; at 20,000 cells that was most of nbvcp's step (docs/benchmarks.md, "Cost of
the variational factors"). When the likelihood says how a cell's log-likelihood depends
on its capture (``Likelihood.expected_capture``: ``l_c(nu)`` through the cell's total
only), the ELBO's capture term ``E_q[l_c(nu_c)]`` has a form that can be evaluated
exactly for ``nu_c ~ Beta`` (nbvcp: :mod:`scribe_builtin.nb_capture_expectation`).

How it enters the ELBO, with the model untouched: :class:`ExpectedCapture` wraps the
composed guide. At the capture site it swaps the factor for the same Beta/BetaPrime
whose "draw" is a fixed point (the mean of ``nu``) and whose KL to the prior is
``KL - gap_c`` with ``gap_c = E_q[l_c(nu)] - l_c(nu_point)``. The model then evaluates
the likelihood at ``nu_point`` and ``TraceMeanField_ELBO`` adds ``-KL + gap``: the ELBO
with ``E_q[l_c]`` in place of ``l_c`` at a draw. Value and gradient are exact (no Monte
Carlo noise from the capture; ``p`` and ``r`` are still drawn), the KL stays closed-form
(anchored priors included, they are Beta/BetaPrime too) and the gap sits in the
``cells`` plate's site, so mini-batch scaling applies to it as to the KL.

It is switched on only where this is exact: a non-mixture model type whose likelihood
offers it, a capture site that is ``nu``, ``1 - nu`` (Beta) or an odds of ``nu``
(BetaPrime), a guide whose capture factor is that family's own (checked at each trace: a
``joint_capture`` factor is left alone), loss exactly ``TraceMeanField_ELBO`` (another
ELBO would use the factor's density at the point), counts held whole
(:class:`~scribe.counts.SparseCounts`, or :class:`~scribe.shard.counts.ShardedCounts`
split across devices, whose cell totals come back in the cells' order). Only training changes:
posterior draws, predictive and denoising read the Beta factor as before.
"""

from __future__ import annotations

import attrs
import jax.numpy as jnp
import numpyro
from numpyro.distributions import Beta
from numpyro.distributions.kl import kl_divergence
from numpyro.infer import TraceMeanField_ELBO
from numpyro.primitives import Messenger

from scribe.anchoring import capture_rule
from scribe.counts import SparseCounts
from scribe.distributions import BetaPrime, FastBeta, kl_beta
from scribe.likelihood import CAPTURE
from scribe.parameterization import Block, Site

PLATE = "cells"


class _AtPoint:
    """A factor whose draw is ``point`` and whose KL to its prior is lowered by ``gap``."""

    def sample(self, key, sample_shape=()):
        return jnp.broadcast_to(self.point, tuple(sample_shape) + self.batch_shape)


class ExpectedCaptureBeta(_AtPoint, FastBeta):
    """``Beta(alpha, beta)`` drawn at ``point``; ``KL(. || Beta) = KL - gap`` per cell."""

    pytree_data_fields = ("point", "gap")

    def __init__(self, concentration1, concentration0, point, gap):
        super().__init__(concentration1, concentration0)
        self.point, self.gap = point, gap


class ExpectedCaptureBetaPrime(_AtPoint, BetaPrime):
    """``BetaPrime(alpha, beta)`` drawn at ``point``; its KL lowered by ``gap``."""

    pytree_data_fields = ("point", "gap")

    def __init__(self, concentration1, concentration0, point, gap):
        super().__init__(concentration1, concentration0)
        self.point, self.gap = point, gap


@kl_divergence.register(ExpectedCaptureBeta, Beta)
def _kl_expected_beta(q, prior):
    return kl_beta(q.concentration1, q.concentration0, prior.concentration1,
                   prior.concentration0) - q.gap


@kl_divergence.register(ExpectedCaptureBetaPrime, BetaPrime)
def _kl_expected_betaprime(q, prior):
    return kl_beta(q.concentration1, q.concentration0, prior.concentration1,
                   prior.concentration0) - q.gap


@attrs.frozen
class CapturePlan:
    """Where a composition's capture sits and how its factor's arguments give ``nu``'s.

    Parameters
    ----------
    site : Site
        The per-cell capture site (``p_capture``, ``phi_capture``, ...).
    capture : str
        The canonical capture name.
    block : Block
        The parameterization's capture block.
    swapped : bool
        ``nu ~ Beta(beta, alpha)`` for a factor with arguments ``(alpha, beta)`` (the site
        is ``1 - nu`` or ``(1 - nu) / nu``); else ``Beta(alpha, beta)``.
    """

    site: Site
    capture: str
    block: Block
    swapped: bool


def capture_plan(composition) -> CapturePlan | None:
    """The plan for ``composition`` (a :class:`~scribe.compose.Composition`), or None
    where the expectation is not offered or not exact (see the module docstring)."""
    likelihood = composition.likelihood
    captures = [lat.name for lat in likelihood.latents if lat.kind == CAPTURE]
    if composition.mixture or not likelihood.expected_capture or len(captures) != 1:
        return None
    if len(composition.cell_sites) != 1:
        return None
    site = composition.cell_sites[0]
    block = next(b for b in composition.blocks if site in b.sites)
    rule = capture_rule(block, captures[0])
    if rule is None or rule[0] not in ("beta", "betaprime"):
        return None
    return CapturePlan(site, captures[0], block, rule[1] in ("1-nu", "odds-"))


class ExpectedCapture(Messenger):
    """Wrap a composed guide so that the capture's expectation is taken exactly.

    Parameters
    ----------
    fn : callable
        The guide, called as ``guide(n_cells, n_genes, counts=None, batch_size=None)``.
    composition : Composition
    plan : CapturePlan
    """

    def __init__(self, fn, composition, plan: CapturePlan):
        self.composition, self.plan = composition, plan
        self._global_names = {s.name for s in composition.global_sites}
        self._reset(None)
        super().__init__(fn)

    def _reset(self, totals) -> None:
        self._totals, self._values, self._cells, self._key = totals, {}, None, None

    def __call__(self, *args, **kwargs):
        counts = kwargs.get("counts", args[2] if len(args) > 2 else None)
        self._reset(_cell_totals(counts))
        with self:
            if self._totals is not None:
                # A key for the exact fallback draw (None outside a seed handler: then
                # the capture is drawn as usual).
                self._key = numpyro.prng_key()
            return self.fn(*args, **kwargs)

    def postprocess_message(self, msg) -> None:
        if msg["type"] == "plate" and msg["name"] == PLATE:
            self._cells = msg["value"]
        elif msg["type"] == "sample" and msg["name"] in self._global_names:
            self._values[msg["name"]] = msg["value"]

    def process_message(self, msg) -> None:
        fn = msg.get("fn")
        if (msg["type"] != "sample" or msg["name"] != self.plan.site.name
                or msg.get("is_observed") or self._totals is None or self._key is None
                or type(fn) not in (FastBeta, BetaPrime)
                or not self._global_names <= self._values.keys()):
            return
        alpha, beta = fn.concentration1, fn.concentration0
        if type(fn) is FastBeta:
            point, at_point = alpha / (alpha + beta), ExpectedCaptureBeta
        else:   # phi = nu/(1 - nu) or its inverse: the point is nu's mean mapped to phi
            point, at_point = alpha / beta, ExpectedCaptureBetaPrime
        nu_a, nu_b = (beta, alpha) if self.plan.swapped else (alpha, beta)
        params = self._global_canonical()
        params[self.plan.capture] = self.plan.block.to_canonical(
            {self.plan.site.name: point})[self.plan.capture]
        totals = self._totals if self._cells is None else self._totals[self._cells]
        likelihood = self.composition.likelihood
        gap = (likelihood.expected_capture_log_prob(totals, params, nu_a, nu_b, self._key)
               - likelihood.capture_log_prob(totals, params))
        msg["fn"] = at_point(alpha, beta, point, gap)

    def _global_canonical(self) -> dict:
        canonical = {}
        for block in self.composition.blocks:
            if all(site.name in self._values for site in block.sites):
                canonical.update(block.to_canonical(self._values))
        return canonical


def _cell_totals(counts):
    """UMI totals ``(C,)`` in the cells' order, for a full matrix on one device or
    split across devices; None for anything else (then the capture is drawn)."""
    from scribe.shard.counts import ShardedCounts
    if isinstance(counts, SparseCounts):
        return counts.cell_totals
    if isinstance(counts, ShardedCounts) and not counts.is_batch:
        return counts.cell_totals
    return None


def training_guide(guide, loss, enabled: bool = True):
    """``guide`` wrapped by :class:`ExpectedCapture` where that is exact, else ``guide``.

    ``guide`` must be a :class:`~scribe.compose.Composition`'s bound ``guide`` (what the
    built-in composition hook returns); a plugin's own guide is returned unchanged.
    """
    from scribe.compose import Composition

    composition = getattr(guide, "__self__", None)
    if not enabled or not isinstance(composition, Composition):
        return guide
    if type(loss) is not TraceMeanField_ELBO:
        return guide
    plan = capture_plan(composition)
    return guide if plan is None else ExpectedCapture(guide, composition, plan)
