"""Capture anchoring (SPEC section 6): arguments, the anchored prior, initial values, recovery."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers
from scipy import integrate, special, stats

import scribe
from scribe import plugins
from scribe.anchoring import NU_MAX, capture_anchor, resolve_mrna_per_cell
from scribe.compose import Composition
from scribe.counts import SparseCounts
from scribe.families import BETA, BETA_PRIME, LOG_NORMAL
from scribe.initial_values import initial_canonical
from scribe.mrna_totals import ORGANISMS
from scribe.parameterization import CELL, Block, Site
from scribe.simulate import simulate_counts

PARAMETERIZATIONS = ["standard", "linked", "odds_ratio", "unconstrained"]
CAPTURE_SITE = {"standard": "p_capture", "linked": "p_capture", "odds_ratio": "phi_capture",
                "unconstrained": "p_capture_unconstrained"}

# ---- arguments ------------------------------------------------------------------------------


def test_organism_names_resolve_to_documented_totals():
    assert resolve_mrna_per_cell("human") == ORGANISMS["human"].molecules == 2e5
    assert resolve_mrna_per_cell("Mus musculus") == ORGANISMS["mouse"].molecules
    assert resolve_mrna_per_cell(5e4) == 5e4
    assert resolve_mrna_per_cell(np.int64(30_000)) == 3e4
    assert resolve_mrna_per_cell(None) is None
    assert all(o.source for o in ORGANISMS.values())


def test_unknown_organism_lists_known_ones():
    with pytest.raises(ValueError, match=r"unknown organism 'axolotl'.*human.*mouse"):
        resolve_mrna_per_cell("axolotl")


@pytest.mark.parametrize("bad, error", [(-5.0, ValueError), (0, ValueError),
                                        (float("inf"), ValueError), (True, TypeError),
                                        ([2e5], TypeError)])
def test_bad_mrna_per_cell(bad, error):
    with pytest.raises(error, match="mrna_per_cell"):
        scribe.ModelConfig("nbvcp", mrna_per_cell=bad)


def test_anchor_on_model_without_capture_names_the_argument():
    with pytest.raises(ValueError, match="mrna_per_cell.*'zinb'"):
        scribe.ModelConfig("zinb", mrna_per_cell="human")
    with pytest.raises(ValueError, match="mrna_per_cell"):
        scribe.fit(np.ones((5, 3), int), "nbdm", mrna_per_cell=1e5, n_steps=1, progress=False)


@pytest.mark.parametrize("bad", [0.0, -0.3, 5.0, float("nan")])
def test_bad_mrna_log_sd(bad):
    with pytest.raises(ValueError, match="mrna_log_sd"):
        scribe.ModelConfig("nbvcp", mrna_per_cell=1e5, mrna_log_sd=bad)


def test_log_sd_without_anchor_is_an_error():
    with pytest.raises(ValueError, match="mrna_log_sd.*mrna_per_cell"):
        scribe.ModelConfig("nbvcp", mrna_log_sd=0.5)


def test_prior_on_anchored_site_conflicts():
    with pytest.raises(ValueError, match="priors\\['p_capture'\\] and mrna_per_cell"):
        scribe.ModelConfig("nbvcp", priors={"p_capture": (2, 2)}, mrna_per_cell="human")


def test_config_round_trip_keeps_the_anchor():
    config = scribe.ModelConfig("zinbvcp_mix", "odds_ratio", n_components=2,
                                mrna_per_cell="mouse", mrna_log_sd=0.5)
    again = scribe.ModelConfig.from_dict(config.to_dict())
    assert again == config and again.mrna_total == 2e5 and again.mrna_log_sd == 0.5


def test_saved_results_keep_the_anchor_and_say_whether_anchored(tmp_path):
    counts, _ = simulate_counts("nbvcp", 30, 8, seed=1)
    anchored = scribe.fit(counts, "nbvcp", "unconstrained", n_steps=2, progress=False,
                          mrna_per_cell=1e3, mrna_log_sd=0.4)
    anchored.save(tmp_path / "fit.nc")
    loaded = scribe.load(tmp_path / "fit.nc")
    assert loaded.model_config.mrna_per_cell == 1e3 and loaded.model_config.mrna_log_sd == 0.4
    assert loaded.capture_anchored is True
    free = scribe.fit(counts, "nbvcp", "unconstrained", n_steps=2, progress=False)
    assert free.capture_anchored is False
    plain = scribe.fit(counts, "nbdm", "unconstrained", n_steps=2, progress=False)
    assert plain.capture_anchored is None


@pytest.mark.slow   # two compilations: ~15 s alone, ~55 s on the shared two cores
def test_loaded_anchored_fit_draws_posterior_samples(tmp_path):
    # Regression: a loaded fit builds its composition while the sampler is traced (jit);
    # the anchor's probe must be evaluated eagerly there (it raised a tracer error).
    counts, _ = simulate_counts("nbvcp", 30, 8, seed=1)
    scribe.fit(counts, "nbvcp", "odds_ratio", n_steps=2, progress=False,
               mrna_per_cell=1e3).save(tmp_path / "fit.nc")
    draws = scribe.load(tmp_path / "fit.nc").get_posterior_samples(n_samples=3)
    capture = np.asarray(draws["p_capture"])
    assert capture.shape == (3, 30) and np.all((capture > 0) & (capture < 1))


# ---- the anchored prior ---------------------------------------------------------------------
# Tolerance of the prior's median and sd(log nu): the family's arguments are solved in
# float64 (residuals < 1e-8) on a grid of 512 points in log median over [1e-6, 0.9]
# (spacing h = 0.0224) and linearly interpolated in float32. Interpolation error is at
# most h^2/8 |f''| ~ 6e-5 |f''| for the (log-)arguments, smooth functions of the log
# median with |f''| of order 1, so both quantities are right to well under 1e-3.
TOL = 1e-3


def _nu_law(parameterization: str, args):
    """Median of nu and sd(log nu) from the site's own law, computed with scipy.

    Moments are integrated over ``y``, the log of a positive site (the site itself for the
    Normal), where the density is smooth with light tails.
    """
    a, b = (float(x) for x in args)
    if parameterization in ("standard", "linked"):            # nu ~ Beta(a, b)
        law, log_nu, to_y = stats.beta(a, b), lambda y: y, np.log
        median = law.median()
    elif parameterization == "odds_ratio":                     # phi ~ BetaPrime, nu = 1/(1+phi)
        law, log_nu, to_y = stats.betaprime(a, b), lambda y: -np.logaddexp(0, y), np.log
        median = 1 / (1 + law.median())
    else:                                                      # logit nu ~ Normal(a, b)
        law, log_nu, to_y = stats.norm(a, b), lambda z: -np.logaddexp(0, -z), lambda z: z
        median = special.expit(a)
    positive = parameterization != "unconstrained"

    def density(y):
        return law.pdf(np.exp(y)) * np.exp(y) if positive else law.pdf(y)

    quantiles = to_y(law.ppf([1e-15, 1e-4, 0.5, 1 - 1e-4, 1 - 1e-15]))
    moment = [integrate.quad(lambda y, k=k: log_nu(y) ** k * density(y), quantiles[0],
                             quantiles[-1], points=quantiles[1:-1], limit=400, epsabs=0,
                             epsrel=1e-11)[0]
              for k in (0, 1, 2)]
    mean = moment[1] / moment[0]
    return median, np.sqrt(moment[2] / moment[0] - mean**2)


@pytest.mark.parametrize("parameterization", PARAMETERIZATIONS)
@pytest.mark.parametrize("log_sd", [0.1, 0.3, 1.0])
def test_anchored_prior_has_requested_median_and_log_sd(parameterization, log_sd):
    m0 = 2e4
    config = scribe.ModelConfig("nbvcp", parameterization, mrna_per_cell=m0, mrna_log_sd=log_sd)
    anchor = Composition(config).anchors[CAPTURE_SITE[parameterization]]
    totals = np.array([0.0, 3.0, 150.0, 2_000.0, 12_000.0])   # 0 is clipped to 1 UMI
    args = np.asarray(anchor.prior_args(jnp.asarray(totals)), np.float64)
    for cell, total in enumerate(totals):
        median, sd = _nu_law(parameterization, args[:, cell])
        assert median == pytest.approx(max(total, 1.0) / m0, rel=TOL)
        assert sd == pytest.approx(log_sd, rel=TOL)


def test_prior_median_is_clipped_for_cells_above_the_anchor():
    config = scribe.ModelConfig("nbvcp", mrna_per_cell=1e3)
    anchor = Composition(config).anchors["p_capture"]
    a, b = (float(x[0]) for x in anchor.prior_args(jnp.asarray([5e3])))
    assert stats.beta(a, b).median() == pytest.approx(NU_MAX, rel=TOL)
    with pytest.warns(UserWarning, match="1 cells have more than"):
        scribe.fit(np.array([[2000, 10], [3, 4]]), "nbvcp", mrna_per_cell=1e3, n_steps=1,
                   progress=False)


@pytest.mark.parametrize("model_type", ["nbvcp", "zinbvcp", "zinbvcp_mix"])
@pytest.mark.parametrize("batch_size", [None, 7])
def test_model_centres_each_batch_cell_on_its_total(model_type, batch_size):
    """Inside the model, cell c's capture prior has median L_c / (M_0 f), with f the
    expression-weighted share of molecules the gate keeps (1 without gates), for the
    cells of the mini-batch."""
    mixture = model_type.endswith("_mix")
    counts, _ = simulate_counts(model_type, 20, 12, n_components=2 if mixture else None,
                                seed=4)
    m0 = 5e3
    config = scribe.ModelConfig(model_type, "standard", n_components=2 if mixture else None,
                                mrna_per_cell=m0)
    comp = Composition(config)
    sparse = SparseCounts.from_matrix(counts).with_batch_size(batch_size)
    rng = np.random.default_rng(0)
    r = rng.lognormal(0, 1, (2, 12) if mixture else 12)
    gate = rng.uniform(0.1, 0.6, r.shape)
    weights = np.array([0.3, 0.7])
    values = {"p": 0.4, "r": r, "gate": gate, "mixing_weights": weights}
    values = {k: jnp.asarray(v) for k, v in values.items() if k in comp.sites}
    model = handlers.substitute(handlers.seed(comp.model, 0), data=values)
    trace = handlers.trace(model).get_trace(20, 12, counts=sparse, batch_size=batch_size)
    idx = np.asarray(trace["cells"]["value"])
    kept = np.ones(()) if model_type == "nbvcp" else ((1 - gate) * r).sum(-1) / r.sum(-1)
    if mixture:
        kept = np.sum(weights * kept)
    dist = trace["p_capture"]["fn"]
    a, b = np.asarray(dist.concentration1), np.asarray(dist.concentration0)
    expected = np.maximum(counts.sum(1)[idx], 1) / (m0 * kept)
    np.testing.assert_allclose(stats.beta(a, b).median(), expected, rtol=TOL)


def test_model_without_counts_uses_the_unanchored_prior():
    config = scribe.ModelConfig("nbvcp", mrna_per_cell=1e4)
    comp = Composition(config)
    trace = handlers.trace(handlers.seed(comp.model, 0)).get_trace(6, 4)
    dist = trace["p_capture"]["fn"]
    dist = getattr(dist, "base_dist", dist)   # the plate expands the scalar Beta(1, 1)
    np.testing.assert_array_equal(np.asarray(dist.concentration1), 1.0)
    np.testing.assert_array_equal(np.asarray(dist.concentration0), 1.0)


def _block(site: Site, to_site) -> Block:
    return Block((site,), lambda v: {"p_capture": v[site.name]},
                 lambda c: {site.name: to_site(c["p_capture"])})


def test_third_party_capture_site_is_anchored_or_refused():
    # BetaPrime on nu / (1 - nu): nu = phi / (1 + phi) is Beta(a, b) when phi ~ BetaPrime(a, b).
    odds = _block(Site("capture_odds", BETA_PRIME, CELL), lambda nu: nu / (1 - nu))
    anchor = capture_anchor(odds, "p_capture", "mine", 1e4, 0.3)
    a, b = (float(x[0]) for x in anchor.prior_args(jnp.asarray([500.0])))
    assert 1 / (1 + 1 / stats.betaprime(a, b).median()) == pytest.approx(0.05, rel=TOL)
    # A Beta on 1 - nu is Beta(b, a).
    loss = _block(Site("capture_loss", BETA, CELL), lambda nu: 1 - nu)
    a, b = (float(x[0]) for x in capture_anchor(loss, "p_capture", "mine", 1e4, 0.3)
            .prior_args(jnp.asarray([500.0])))
    assert 1 - stats.beta(a, b).median() == pytest.approx(0.05, rel=TOL)
    # A LogNormal capture cannot be centred by these rules: refused, naming what works.
    lognormal = _block(Site("capture_log", LOG_NORMAL, CELL), lambda nu: nu)
    with pytest.raises(ValueError, match="parameterization 'mine'.*'capture_log'.*lognormal"
                                         ".*supports.*beta on nu"):
        capture_anchor(lognormal, "p_capture", "mine", 1e4, 0.3)


def test_builtin_parameterizations_use_their_own_capture_family():
    families = {}
    for par in PARAMETERIZATIONS:
        comp = Composition(scribe.ModelConfig("zinbvcp", par, mrna_per_cell="human"))
        (name, anchor), = comp.anchors.items()
        assert name == CAPTURE_SITE[par]
        families[par] = anchor.site.family.name
    assert families == {"standard": "beta", "linked": "beta", "odds_ratio": "betaprime",
                        "unconstrained": "normal"}


# ---- initial values -------------------------------------------------------------------------


def _sparse_case(model_type: str, seed: int):
    # Sparse counts: capture 0.05-0.2, r ~ LogNormal(0.5, 1): about 75% zeros.
    return simulate_counts(model_type, 2000, 500, p=0.6, r_loc=0.5, r_scale=1.0,
                           capture_range=(0.05, 0.2), seed=seed)


def _p_hat(guess):
    p, nu = guess["p"], guess["p_capture"]
    return p * nu / (1 - p * (1 - nu))


@pytest.mark.parametrize("model_type, tol", [("nbvcp", 0.10), ("zinbvcp", 0.20)])
def test_initial_p_hat_is_near_the_truth_without_anchor(model_type, tol):
    """Starting p_hat: odds(p_hat_c) = kappa L_c. The median ratio to the truth carries the
    error of the pooled kappa (spread over 10-12 simulations of this size: within 7% for
    nbvcp; 0.89-1.16 for zinbvcp, whose estimator rests on noisier third moments) and, per
    cell, the counting noise of L_c (relative sd sqrt((1 + o)/L) ~ 7% at L ~ 230, which
    averages out of the median ratio). Before this estimator the start was 1.6x off here.
    For zinbvcp the start of r is also low (0.68-0.95 of the truth) because the gates,
    from the excess of zeros, start too small."""
    counts, truth = _sparse_case(model_type, seed=11)
    assert np.mean(counts == 0) > 0.7
    likelihood = plugins.lookup_model_type(model_type).likelihood
    guess = initial_canonical(counts, likelihood, None, False, 0)
    ratio = np.median(_p_hat(guess) / truth["p_hat"])
    assert abs(ratio - 1) < tol
    # r is identified too; its start carries the same kappa error (and, with gates, theirs).
    assert abs(np.median(guess["r"] / truth["r"]) - 1) < 2 * tol


def test_initial_values_with_anchor_start_on_the_anchor():
    """With M_0 = sum_g E[m_g], nu_c starts at L_c / M_0, whose median ratio to the true
    capture is 1 up to the counting noise of L_c (sd of the median ratio ~ 0.2% over 2000
    cells), and p at the median of odds(p_hat_c) / nu_c, within 0.05 given the kappa error."""
    counts, truth = _sparse_case("nbvcp", seed=12)
    m0 = float(np.sum(truth["r"] * 0.6 / 0.4))
    likelihood = plugins.lookup_model_type("nbvcp").likelihood
    guess = initial_canonical(counts, likelihood, None, False, 0, mrna_per_cell=m0)
    np.testing.assert_allclose(guess["p_capture"], counts.sum(1) / m0, rtol=1e-6)
    assert abs(np.median(guess["p_capture"] / truth["p_capture"]) - 1) < 0.02
    assert abs(guess["p"] - 0.6) < 0.05


# ---- recovery (slow) ------------------------------------------------------------------------


def _fit(counts, model_type, parameterization, n_steps, **kwargs):
    from numpyro.optim import Adam

    results = scribe.fit(counts, model_type, parameterization, n_steps=n_steps,
                         optimizer=Adam(1e-2), progress=False, **kwargs)
    return {k: np.asarray(v) for k, v in results.get_map(use_mean=True, verbose=False).items()}


def _median_rel(estimate, truth):
    return float(np.median(np.abs(estimate / truth - 1)))


@pytest.mark.slow
@pytest.mark.parametrize("model_type", ["nbvcp", "zinbvcp"])
def test_anchored_fit_recovers_p_and_capture(model_type):
    """With the correct anchor (M_0 = sum_g r_g p/(1-p)), p and p_capture are identified:
    the prior sets the ridge point through all cells at once (C = 2000 cells with log sd
    0.3 fix the common scale to ~0.3/sqrt(2000) < 1%), so the capture error is that of
    each cell's p_hat (counting noise ~5-7% at these depths), well inside 20%."""
    counts, truth = _sparse_case(model_type, seed=21)
    m0 = float(np.sum(truth["r"] * 0.6 / 0.4))
    est = _fit(counts, model_type, "unconstrained", 3000, mrna_per_cell=m0)
    assert _median_rel(est["p_capture"], truth["p_capture"]) <= 0.20
    assert abs(float(est["p"]) - 0.6) <= 0.05


@pytest.mark.slow
def test_anchored_fit_odds_ratio():
    """The BetaPrime capture prior anchors odds_ratio the same way (smaller data: its
    Beta/BetaPrime factors are slower per step)."""
    counts, truth = simulate_counts("nbvcp", 800, 400, p=0.6, capture_range=(0.1, 0.3),
                                    seed=22)
    m0 = float(np.sum(truth["r"] * 0.6 / 0.4))
    est = _fit(counts, "nbvcp", "odds_ratio", 2000, mrna_per_cell=m0)
    assert _median_rel(est["p_capture"], truth["p_capture"]) <= 0.20
    assert abs(float(est["p"]) - 0.6) <= 0.05


@pytest.mark.slow
@pytest.mark.parametrize("model_type", ["nbvcp", "zinbvcp"])
def test_unanchored_fit_recovers_p_hat_and_r(model_type):
    """Without an anchor p_hat and r are still identified. Capture 0.1-0.3 gives about
    400 UMIs per cell; p_hat's relative error per cell is then about
    sqrt((1 + o)/L) / (1 + o) ~ 4.4% (sd), median absolute ~ 3%, within 5%. r: each gene
    is informed by 2000 cells; median relative error within 10%."""
    counts, truth = simulate_counts(model_type, 2000, 500, p=0.6, r_loc=0.5, r_scale=1.0,
                                    capture_range=(0.1, 0.3), seed=23)
    est = _fit(counts, model_type, "unconstrained", 3000)
    assert _median_rel(est["p_hat"], truth["p_hat"]) <= 0.05
    assert _median_rel(est["r"], truth["r"]) <= 0.10
