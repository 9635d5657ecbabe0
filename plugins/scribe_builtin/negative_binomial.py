"""The negative binomial likelihood family: nbdm, zinb, nbvcp, zinbvcp.

Zero inflation and variable capture are each written once and switched on by flags;
the four model types are the four combinations. Log-likelihoods of whole count matrices
are evaluated exactly from non-zeros and sufficient statistics (:mod:`.nb_sparse`).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.special import gammaln
from numpyro.distributions import ZeroInflatedDistribution

import scribe
from scribe.likelihood import CAPTURE, PROBABILITY, Latent

from . import nb_capture_expectation
from .nb_fast import FastNegativeBinomialProbs
from .nb_mixture_sparse import mixture_cell_sums
from .nb_posterior import molecules_mean, molecules_sample, nb_cdf
from .nb_sparse import NBSums


def captured_success_prob(p: jnp.ndarray, p_capture: jnp.ndarray) -> jnp.ndarray:
    """``p_hat = p * nu / (1 - p * (1 - nu))``: NB success probability of captured UMIs.

    Shapes: ``p`` scalar or per cell ``(C,)``, ``p_capture`` ``(C,)`` -> ``(C,)``. For a
    component-specific ``p`` of shape ``(K,)``, broadcast to ``(C, K)`` first.
    """
    return p * p_capture / (1.0 - p * (1.0 - p_capture))


def nb_log_prob(counts, r, p):
    """``log NB(x | r, p)`` with NumPyro's convention (mean ``r p / (1 - p)``)."""
    # log p and log(1 - p) at the parameters' shape, broadcast afterwards; p is in (0, 1),
    # so counts * log p needs no xlogy guard.
    return (gammaln(counts + r) - gammaln(r) - gammaln(counts + 1.0)
            + r * jnp.log1p(-p) + counts * jnp.log(p))


class NegativeBinomial(scribe.Likelihood):
    """Negative binomial counts, optionally zero-inflated and with per-cell capture.

    Parameters
    ----------
    name, description : str
    zero_inflated : bool
        Adds the per-gene ``gate``: ``P(0) = gate + (1 - gate) NB(0)``.
    variable_capture : bool
        Adds the per-cell ``p_capture``; counts are ``NB(r, p_hat)``.
    """

    def __init__(self, name: str, description: str, zero_inflated: bool, variable_capture: bool):
        self.name, self.description = name, description
        self.zero_inflated, self.variable_capture = zero_inflated, variable_capture
        # Only zinbvcp's zero term depends on cell and gene (NBSums.total).
        self.statistics_only = not (zero_inflated and variable_capture)
        # nbvcp's capture enters each cell through X_c and sum_g r_g only: its expectation
        # over a Beta factor is exact (.nb_capture_expectation).
        self.expected_capture = variable_capture and not zero_inflated
        latents = []
        if zero_inflated:
            latents.append(Latent("gate", PROBABILITY, "gene"))
            # r and gate are strongly correlated per gene (a zero is either a dropout or
            # a small NB draw): a mean-field guide makes their intervals too narrow.
            self.guide_family = "joint_gene"
        if variable_capture:
            latents.append(Latent("p_capture", CAPTURE, "cell"))
        self.latents = tuple(latents)

    def success_prob(self, params: dict) -> jnp.ndarray:
        """``p`` or ``p_hat``, shaped to broadcast against ``(C, G)``."""
        p = jnp.asarray(params["p"])
        if self.variable_capture:
            p = captured_success_prob(p, params["p_capture"])
        return p[..., None] if p.ndim == 1 else p

    def distribution(self, params: dict):
        dist = FastNegativeBinomialProbs(params["r"], self.success_prob(params))
        if self.zero_inflated:
            dist = ZeroInflatedDistribution(dist, gate=params["gate"])
        return dist

    def log_prob(self, counts, params):
        r, p = params["r"], self.success_prob(params)
        log_nb = nb_log_prob(counts, r, p)
        if not self.zero_inflated:
            return log_nb
        gate = params["gate"]
        # P(0) depends on parameters only: evaluate it at their shape ((G,) without
        # capture) rather than once per count.
        log_zero = jnp.logaddexp(jnp.log(gate), jnp.log1p(-gate) + r * jnp.log1p(-p))
        return jnp.where(counts == 0, log_zero, jnp.log1p(-gate) + log_nb)

    def _sums(self, counts, params: dict) -> NBSums | None:
        """Sparse evaluator, or None for per-cell gene parameters (dense fallback)."""
        r = jnp.asarray(params["r"])
        p = jnp.asarray(params["p"])
        if self.variable_capture:
            p = captured_success_prob(p, params["p_capture"])
        gate = jnp.asarray(params["gate"]) if self.zero_inflated else None
        if r.ndim != 1 or p.ndim > 1 or (gate is not None and gate.ndim != 1):
            return None
        return NBSums(counts, r, p, gate)

    def cell_log_prob(self, counts, params, gene_weights=None):
        sums = self._sums(counts, params)
        if sums is None:
            return super().cell_log_prob(counts, params, gene_weights)
        return sums.by_cell(gene_weights)

    def gene_log_prob(self, counts, params):
        sums = self._sums(counts, params)
        return super().gene_log_prob(counts, params) if sums is None else sums.by_gene()

    def total_log_prob(self, counts, params):
        sums = self._sums(counts, params)
        return super().total_log_prob(counts, params) if sums is None else sums.total()

    def component_cell_log_prob(self, counts, params, gene_weights=None):
        """All components in one pass over the non-zeros (:mod:`.nb_mixture_sparse`);
        None (per-component evaluation) for zinbvcp, gene weights or per-cell ``r``."""
        r = jnp.asarray(params["r"])
        if (gene_weights is not None or r.ndim != 2
                or (self.zero_inflated and self.variable_capture)):
            return None
        p = jnp.asarray(params["p"])                  # () or (K,)
        if self.variable_capture:
            p = captured_success_prob(p, jnp.asarray(params["p_capture"])[:, None])
        gate = jnp.asarray(params["gate"]) if self.zero_inflated else None
        return mixture_cell_sums(counts, r, jnp.log(p), jnp.log1p(-p), gate)

    def capture_log_prob(self, cell_totals, params):
        p_hat = captured_success_prob(jnp.asarray(params["p"]), params["p_capture"])
        return nb_capture_expectation.capture_log_prob(cell_totals, params, p_hat)

    def expected_capture_log_prob(self, cell_totals, params, nu_a, nu_b, rng_key=None):
        return nb_capture_expectation.expected_capture_log_prob(cell_totals, params, nu_a,
                                                                nu_b, rng_key)

    def cdf(self, counts, params):
        """``P(X <= x)``: ``g + (1 - g) F_NB(x)`` with a gate, 0 for ``x < 0``."""
        value = nb_cdf(counts, params["r"], self.success_prob(params))
        if not self.zero_inflated:
            return value
        gate = params["gate"]
        return jnp.where(counts < 0, 0.0, gate + (1.0 - gate) * value)

    def denoised(self, counts, params, rng_key=None):
        """``E[m | x]`` or a draw of ``m | x`` (SPEC section 6; see :mod:`.nb_posterior`)."""
        args = (counts, params["r"], params["p"],
                params["p_capture"] if self.variable_capture else None,
                params["gate"] if self.zero_inflated else None)
        if rng_key is None:
            return molecules_mean(*args)
        return molecules_sample(rng_key, *args)

    def retained_fraction(self, params: dict) -> jnp.ndarray:
        """``sum_g (1 - gate_g) mu_g / sum_g mu_g``: the gate drops that share of molecules.

        ``mu_g = r_g p / (1 - p)``, so ``p`` cancels (per component in mixtures).
        """
        r = jnp.asarray(params["r"])
        if not self.zero_inflated:
            return jnp.ones(r.shape[:-1])
        kept = jnp.sum((1.0 - jnp.asarray(params["gate"])) * r, axis=-1)
        return kept / jnp.sum(r, axis=-1)

    def derived(self, params: dict) -> dict:
        if not self.variable_capture:
            return {}
        p, nu = jnp.asarray(params["p"]), jnp.asarray(params["p_capture"])
        # Component-specific p (K,) gives p_hat per cell and component, (C, K).
        if p.ndim == 1:
            return {"p_hat": captured_success_prob(p[None, :], nu[:, None])}
        return {"p_hat": captured_success_prob(p, nu)}


LIKELIHOODS = (
    NegativeBinomial("nbdm", "negative binomial-Dirichlet multinomial", False, False),
    NegativeBinomial("zinb", "zero-inflated negative binomial", True, False),
    NegativeBinomial("nbvcp", "negative binomial with variable capture", False, True),
    NegativeBinomial("zinbvcp", "zero-inflated NB with variable capture", True, True),
)


@scribe.hookimpl
def scribe_model_types():
    return [spec for likelihood in LIKELIHOODS
            for spec in scribe.ModelType.from_likelihood(likelihood)]
