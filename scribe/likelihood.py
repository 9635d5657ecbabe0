"""Likelihoods: the observation model given canonical parameters.

A likelihood always uses the negative binomial pair ``p`` (shared) and ``r`` (per gene),
and declares any further latents it needs (:class:`Latent`), which the chosen
parameterization then supplies. It offers several views of the same law:

1. ``distribution(params)``: the generative observation distribution;
2. ``log_prob(counts, params)``: elementwise log-probabilities ``(C, G)`` of dense counts;
3. ``cell_log_prob``, ``gene_log_prob``, ``total_log_prob``: log-likelihoods of a
   :class:`~scribe.counts.SparseCounts` summed by cell, by gene or over everything.

Fitting and analyses only call (3). Their defaults densify the counts and sum (2), so
a new likelihood needs only (1) and (2); a likelihood with an exact sparse evaluation
(the built-in negative binomials) overrides (3) and never densifies.

Canonical parameter shapes seen by a likelihood: ``p`` is ``()`` or ``(C,)`` (per-cell
after a mixture assignment), ``r`` and gene latents ``(G,)`` or ``(C, G)``, cell latents
``(C,)``.
"""

from __future__ import annotations

import attrs
import jax
import jax.numpy as jnp
from numpyro.distributions import Distribution

from scribe.counts import SparseCounts
from scribe.parameterization import CELL, GENE, SHARED

#: Kinds of latent a likelihood can request from a parameterization.
PROBABILITY, CAPTURE = "probability", "capture"


@attrs.frozen
class Latent:
    """A canonical latent requested by a likelihood beyond ``p`` and ``r``.

    Parameters
    ----------
    name : str
        Canonical name, e.g. ``"gate"`` or ``"p_capture"``.
    kind : str
        ``"probability"`` (per-gene probability, e.g. a dropout gate) or ``"capture"``
        (per-cell capture probability).
    scope : str
        ``"gene"`` or ``"cell"``; gene latents are component-specific in mixtures.
    """

    name: str
    kind: str = attrs.field(validator=attrs.validators.in_((PROBABILITY, CAPTURE)))
    scope: str = attrs.field(validator=attrs.validators.in_((GENE, CELL)))


class Likelihood:
    """Base class of likelihoods; subclasses implement ``distribution`` and ``log_prob``.

    Attributes
    ----------
    name : str
        Model type name it registers under (``<name>_mix`` for its mixture).
    description : str
    latents : tuple of Latent
        Latents needed beyond ``p`` and ``r``.
    guide_family : str
        Guide family used when the user names none (``ModelConfig(guide_family=None)``).
    statistics_only : bool
        ``total_log_prob`` of a full matrix costs O(cells + genes), not O(non-zeros).
    """

    name: str = ""
    description: str = ""
    latents: tuple[Latent, ...] = ()
    guide_family: str = "mean_field"
    #: True when ``total_log_prob`` of a full matrix reads only sufficient statistics (its
    #: cost does not grow with the non-zeros); ``batch_size="auto"`` then keeps a full
    #: batch (:mod:`scribe.batching`).
    statistics_only: bool = False
    #: True when the likelihood offers :meth:`capture_log_prob` and
    #: :meth:`expected_capture_log_prob`: training then takes the expectation over a
    #: mean-field Beta capture factor exactly instead of drawing the capture
    #: (:mod:`scribe.expected_capture`). Non-mixture use only.
    expected_capture: bool = False

    def scopes(self) -> dict[str, str]:
        """Scope of every canonical parameter: ``{"p": "shared", "r": "gene", ...}``."""
        return {"p": SHARED, "r": GENE, **{lat.name: lat.scope for lat in self.latents}}

    def distribution(self, params: dict) -> Distribution:
        """Generative distribution of counts, batch shape broadcastable to ``(C, G)``."""
        raise NotImplementedError

    def log_prob(self, counts: jnp.ndarray, params: dict) -> jnp.ndarray:
        """Elementwise log-probability, shape ``(C, G)``."""
        raise NotImplementedError

    def cell_log_prob(self, counts: SparseCounts, params: dict,
                      gene_weights: jnp.ndarray | None = None) -> jnp.ndarray:
        """Log-likelihood of each cell's counts, ``(C,)``.

        Parameters
        ----------
        counts : SparseCounts
        params : dict
            Canonical parameters (gene parameters ``(G,)``, cell parameters ``(C,)``).
        gene_weights : (G,) array, optional
            Multiplies each gene's log-probability before summing over genes.
        """
        log_prob = self.log_prob(counts.to_dense(), params)
        if gene_weights is not None:
            log_prob = log_prob * gene_weights
        return jnp.sum(log_prob, axis=-1)

    def gene_log_prob(self, counts: SparseCounts, params: dict) -> jnp.ndarray:
        """Log-likelihood of each gene's counts over all cells, ``(G,)``."""
        return jnp.sum(self.log_prob(counts.to_dense(), params), axis=0)

    def total_log_prob(self, counts: SparseCounts, params: dict) -> jnp.ndarray:
        """Log-likelihood of all counts, a scalar."""
        return jnp.sum(self.cell_log_prob(counts, params))

    def needs_entries(self, mixture: bool) -> bool:
        """Whether a full-data fit must hold the non-zero entries, not only the statistics.

        A non-mixture whose ``total_log_prob`` reads only the statistics of
        :class:`SparseCounts` (totals, log-factorial sums, the exceedance histogram, the
        large entries; ``statistics_only``) lets fitting keep ``O(C + G)`` instead of the
        non-zeros. Mixtures evaluate per cell (``cell_log_prob``).
        """
        return mixture or not self.statistics_only

    def component_cell_log_prob(self, counts: SparseCounts, params: dict,
                                gene_weights: jnp.ndarray | None = None
                                ) -> jnp.ndarray | None:
        """Log-likelihood of each cell under each mixture component, ``(C, K)``, or None.

        ``params`` carry the component axis (``r`` ``(K, G)``, ...). None (the default)
        means "no joint evaluation": :func:`scribe.mixture.component_cell_log_prob` then
        maps :meth:`cell_log_prob` over the components. Override it when the components
        can share work per non-zero (see ``scribe_builtin.nb_mixture_sparse``).
        """
        return None

    def capture_log_prob(self, cell_totals: jnp.ndarray, params: dict) -> jnp.ndarray:
        """The part of each cell's log-likelihood that depends on its capture, ``(C,)``.

        Only for likelihoods with ``expected_capture``, whose per-cell capture (the
        ``capture`` latent) enters a cell's log-likelihood only through a function of the
        capture, the global parameters and the cell's UMI total, ``l_c(nu_c)``; the rest
        must not involve the capture.

        Parameters
        ----------
        cell_totals : array ``(C,)``
        params : dict
            Canonical parameters: global ones unbatched, the capture ``(C,)``.
        """
        raise NotImplementedError(f"likelihood '{self.name}' has no expected_capture")

    def expected_capture_log_prob(self, cell_totals: jnp.ndarray, params: dict, nu_a,
                                  nu_b, rng_key=None) -> jnp.ndarray:
        """``E[l_c(nu_c)]`` over ``nu_c ~ Beta(nu_a_c, nu_b_c)``, ``(C,)``, exact or (where
        the exact form cannot be evaluated) an unbiased estimate drawn with ``rng_key``;
        its gradient in ``nu_a``, ``nu_b`` and the global parameters likewise.

        ``params`` as in :meth:`capture_log_prob` (its capture entry is not used).
        """
        raise NotImplementedError(f"likelihood '{self.name}' has no expected_capture")

    def cdf(self, counts: jnp.ndarray, params: dict) -> jnp.ndarray:
        """Elementwise ``P(X <= x)``, shape ``(C, G)`` (goodness of fit).

        The default sums ``exp(log_prob(k))`` for ``k = 0 .. x`` (cost grows with the
        largest count); override it with a closed form when there is one. ``x < 0``
        gives 0.
        """
        counts = jnp.asarray(counts)
        top = jnp.max(counts).astype(jnp.int32)

        def add(k, total):
            at_k = jnp.exp(self.log_prob(jnp.full_like(counts, k), params))
            return total + jnp.where(counts >= k, at_k, 0.0)

        total = jax.lax.fori_loop(0, top + 1, add, jnp.zeros(counts.shape, counts.dtype))
        return jnp.clip(total, 0.0, 1.0)

    def denoised(self, counts: jnp.ndarray, params: dict, rng_key=None) -> jnp.ndarray:
        """Molecules behind the counts: ``E[m | x]`` (``rng_key=None``) or a draw of
        ``m | x``, elementwise ``(C, G)`` (``results.denoise_counts``).

        Only a likelihood that models how counts arise from molecules can say this; the
        default raises ``NotImplementedError``.
        """
        raise NotImplementedError(
            f"likelihood '{self.name}' does not define the molecules behind a count "
            f"(Likelihood.denoised)")

    def derived(self, params: dict) -> dict:
        """Extra canonical quantities reported with estimates (e.g. ``p_hat``)."""
        return {}

    def retained_fraction(self, params: dict) -> jnp.ndarray:
        """Expected fraction of a cell's captured molecules that its counts report.

        Capture anchoring (:mod:`scribe.anchoring`) centres the capture on
        ``L_c / (M_0 retained)``, since ``E[L_c] = nu_c retained M_0``. The default, 1,
        suits likelihoods whose only loss is capture; a likelihood that also drops
        molecules (zero inflation) overrides it.

        Parameters
        ----------
        params : dict
            Global canonical parameters: ``p``, ``r`` ``(G,)`` or ``(K, G)`` and gene latents.

        Returns
        -------
        jax.Array
            Shape ``()``, or ``(K,)`` per mixture component.
        """
        return jnp.ones(jnp.shape(params["r"])[:-1])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
