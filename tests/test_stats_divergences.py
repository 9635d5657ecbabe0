"""KL, Hellinger and Jensen-Shannon divergences (scribe.stats.divergences).

References are scipy.integrate.quad integrals of the textbook densities, on the log
scale (LogNormal, BetaPrime, Gamma), the logit scale (Beta) or as is (Normal), split at
scipy.stats quantiles of both distributions.
"""

from __future__ import annotations

import jax
import jax.experimental
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from scipy import integrate, special, stats

from scribe.distributions import BetaPrime
from scribe.stats import (
    hellinger_distance,
    jensen_shannon_divergence,
    kl_divergence,
    pairwise_component_divergences,
)

LOG2 = np.log(2.0)
HALF_LOG_2PI = 0.5 * np.log(2 * np.pi)


def _x64():
    """float64 only inside a test (``jax.experimental.enable_x64`` in older JAX)."""
    legacy = getattr(jax.experimental, "enable_x64", None)
    return legacy() if legacy is not None else jax.enable_x64(True)


def _normal_logpdf(u, loc, scale):
    return -0.5 * ((u - loc) / scale) ** 2 - np.log(scale) - HALF_LOG_2PI


def _lognormal_logpdf(u, loc, scale):  # density of u = log x: pdf_x(e^u) e^u
    return _normal_logpdf(u, loc, scale)  # the 1/x of the density cancels the Jacobian


def _beta_logpdf(u, a, b):  # u = logit x, Jacobian x (1 - x)
    log_x, log_1mx = -np.logaddexp(0, -u), -np.logaddexp(0, u)
    return a * log_x + b * log_1mx - special.betaln(a, b)


def _betaprime_logpdf(u, a, b):  # u = log x
    return a * u - (a + b) * np.logaddexp(0, u) - special.betaln(a, b)


def _gamma_logpdf(u, k, rate):  # u = log x
    return k * np.log(rate) + k * u - rate * np.exp(u) - special.gammaln(k)


# family: (constructor, scipy frozen distribution, integration scale, log-density there)
FAMILIES = {
    "normal": (dist.Normal, lambda a, b: stats.norm(a, b), "identity", _normal_logpdf),
    "lognormal": (
        dist.LogNormal,
        lambda a, b: stats.lognorm(s=b, scale=np.exp(a)),
        "log",
        _lognormal_logpdf,
    ),
    "beta": (dist.Beta, lambda a, b: stats.beta(a, b), "logit", _beta_logpdf),
    "betaprime": (BetaPrime, lambda a, b: stats.betaprime(a, b), "log", _betaprime_logpdf),
    "gamma": (dist.Gamma, lambda a, b: stats.gamma(a, scale=1.0 / b), "log", _gamma_logpdf),
}

# Per family: overlapping, well separated, very unequal widths, close.
CASES = {
    "normal": [((0.3, 1.2), (-0.5, 0.7)), ((0.0, 1.0), (8.0, 1.0)),
               ((0.0, 1.0), (0.5, 0.02)), ((2.0, 0.5), (2.2, 0.6))],
    "lognormal": [((0.3, 1.2), (-0.5, 0.7)), ((0.0, 1.0), (8.0, 1.0)),
                  ((0.0, 1.0), (0.5, 0.02)), ((2.0, 0.5), (2.2, 0.6))],
    "beta": [((2.0, 5.0), (4.5, 1.5)), ((1.2, 30.0), (30.0, 1.2)),
             ((0.5, 0.5), (60.0, 40.0)), ((0.3, 0.8), (0.35, 0.7))],
    "betaprime": [((2.0, 5.0), (4.5, 3.0)), ((40.0, 2.0), (2.0, 40.0)),
                  ((0.7, 2.5), (300.0, 200.0)), ((3.0, 4.0), (3.3, 4.2))],
    "gamma": [((2.5, 1.5), (4.0, 0.8)), ((50.0, 1.0), (1.0, 5.0)),
              ((0.3, 1.0), (200.0, 10.0)), ((1.0, 1.0), (1.3, 1.2))],
}  # fmt: skip

# Tail probabilities at which the integration range is split (both tails).
_LEVELS = np.array([1e-15, 1e-12, 1e-9, 1e-6, 1e-4, 1e-2, 0.05, 0.15, 0.3, 0.5])


def _f32(x):
    return np.float64(np.float32(x))


def _to_scale(x, scale: str):
    if scale == "identity":
        return x
    with np.errstate(divide="ignore"):  # quantiles 0 or 1 map to -inf / inf, dropped later
        return np.log(x) if scale == "log" else special.logit(x)


def _quad_reference(family: str, pa, qa, integrand) -> float:
    """``quad`` of ``integrand(lp, lq)`` on the family's scale, split at quantiles."""
    _, make_scipy, scale, logpdf = FAMILIES[family]
    pa, qa = tuple(map(_f32, pa)), tuple(map(_f32, qa))
    points = []
    for args in (pa, qa):
        d = make_scipy(*args)
        points.append(_to_scale(d.ppf(_LEVELS), scale))
        if scale == "logit":  # x near 1 rounds to 1: take upper quantiles from 1 - x
            points.append(-_to_scale(make_scipy(args[1], args[0]).ppf(_LEVELS), scale))
        else:
            points.append(_to_scale(d.isf(_LEVELS), scale))
    points = np.concatenate(points)
    points = np.unique(points[np.isfinite(points)])
    keep = np.diff(points, prepend=-np.inf) > 1e-9 * (1 + np.abs(points))  # no empty pieces
    points = points[keep]

    def f(u):
        return integrand(logpdf(u, *pa), logpdf(u, *qa))

    return sum(
        integrate.quad(f, lo, hi, limit=200, epsabs=1e-13, epsrel=1e-9)[0]
        for lo, hi in zip(points[:-1], points[1:])
    )


def _kl_integrand(lp, lq):
    return np.exp(lp) * (lp - lq) if lp > -700 else 0.0


def _hellinger_sq_integrand(lp, lq):
    return 0.5 * (np.exp(lp / 2) - np.exp(lq / 2)) ** 2


def _js_integrand(lp, lq):
    if not (np.isfinite(lp) or np.isfinite(lq)):
        return 0.0
    mix = np.logaddexp(lp, lq)
    terms = [np.exp(v) * (LOG2 + v - mix) for v in (lp, lq) if np.isfinite(v)]
    return 0.5 * sum(terms)


def _batched(family: str, cases, which: int, dtype=np.float32):
    """Distribution of ``family`` with batch (4,): argument set ``which`` of each case.

    Every test uses batch (4,) so that the jitted divergences compile once per family.
    """
    make = FAMILIES[family][0]
    # float32-rounded in every dtype, as in the references
    args = np.array([case[which] for case in cases], np.float32).astype(dtype)  # (4, 2)
    return make(jnp.asarray(args[:, 0]), jnp.asarray(args[:, 1]))


METRICS = {
    "kl": (kl_divergence, _kl_integrand),
    "hellinger": (hellinger_distance, _hellinger_sq_integrand),
    "js": (jensen_shannon_divergence, _js_integrand),
}


def _references(family: str, cases) -> dict[str, np.ndarray]:
    refs = {
        name: np.array([_quad_reference(family, pa, qa, integrand) for pa, qa in cases])
        for name, (_, integrand) in METRICS.items()
    }
    refs["hellinger"] = np.sqrt(refs["hellinger"])
    return refs


@pytest.mark.parametrize("family", list(FAMILIES))
def test_divergences_match_quadrature(family):
    cases = CASES[family]
    p, q = _batched(family, cases, 0), _batched(family, cases, 1)
    refs = _references(family, cases)
    np.testing.assert_allclose(np.asarray(kl_divergence(p, q)), refs["kl"], rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(hellinger_distance(p, q)), refs["hellinger"], atol=2e-5)
    np.testing.assert_allclose(np.asarray(jensen_shannon_divergence(p, q)), refs["js"], atol=2e-5)


# Hard cases: widths 1000 times apart, shapes far below 1, shapes in the thousands (where
# lgamma ~ 1e4 and naive float32 differences lose KL and Hellinger entirely).
HARD = {
    "normal": [((0.0, 1.0), (3.0, 0.05)), ((0.0, 1.0), (0.1, 1e-3)),
               ((-2.0, 40.0), (1.0, 0.1)), ((5.0, 0.01), (5.001, 0.0101))],
    "beta": [((0.05, 2.0), (3.0, 0.1)), ((800.0, 700.0), (820.0, 690.0)),
             ((0.5, 900.0), (0.52, 880.0)), ((500.0, 500.0), (505.0, 495.0))],
    "gamma": [((0.03, 1.0), (2.0, 0.5)), ((1500.0, 1.0), (1520.0, 1.01)),
              ((2000.0, 3.0), (2010.0, 3.01)), ((0.2, 0.01), (0.25, 100.0))],
}  # fmt: skip


@pytest.mark.parametrize("family", list(HARD))
def test_hard_cases_match_quadrature_in_float32_and_float64(family):
    cases = HARD[family]
    refs = _references(family, cases)
    for name, (metric, _) in METRICS.items():
        got = np.asarray(metric(_batched(family, cases, 0), _batched(family, cases, 1)))
        np.testing.assert_allclose(got, refs[name], rtol=1e-3, atol=2e-5, err_msg=name)
    with _x64():
        p, q = _batched(family, cases, 0, np.float64), _batched(family, cases, 1, np.float64)
        got = {name: np.asarray(metric(p, q)) for name, (metric, _) in METRICS.items()}
    # quad's own accuracy (~1e-10) and float32-rounded arguments on both sides.
    np.testing.assert_allclose(got["kl"], refs["kl"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got["hellinger"], refs["hellinger"], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(got["js"], refs["js"], atol=1e-6)


def _random_pair(family: str, seed: int):
    rng = np.random.default_rng(seed)

    def args():
        if family in ("normal", "lognormal"):
            return np.stack([rng.normal(0, 2, 4), np.exp(rng.uniform(-3, 1.5, 4))], axis=1)
        return np.exp(rng.uniform(np.log(0.1), np.log(500), (4, 2)))

    cases = list(zip(args(), args()))
    return _batched(family, cases, 0), _batched(family, cases, 1)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_identical_zero_bounds_and_symmetry(family):
    log2 = np.float32(LOG2)  # the float32 value of log 2 is a hair above log 2
    for seed in range(3):
        p, q = _random_pair(family, seed)
        for metric, _ in METRICS.values():
            np.testing.assert_array_equal(np.asarray(metric(p, p)), 0.0)
        kl = np.asarray(kl_divergence(p, q))
        hel = np.asarray(hellinger_distance(p, q))
        js = np.asarray(jensen_shannon_divergence(p, q))
        assert np.all(kl > 0) and np.all((hel > 0) & (hel <= 1)) and np.all((js > 0) & (js <= log2))
        np.testing.assert_allclose(np.asarray(hellinger_distance(q, p)), hel, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(jensen_shannon_divergence(q, p)), js, rtol=1e-6)
        # Pointwise log 2 (1 - 2 sqrt(t (1 - t))) <= log 2 - H(t) <= 1 - 2 sqrt(t (1 - t)),
        # t = p / (p + q), integrates to log 2 H^2 <= JS <= H^2: the two methods agree.
        assert np.all(js <= hel**2 + 1e-5) and np.all(js >= LOG2 * hel**2 - 1e-5)


def _family_args(d):
    """The two arguments of a Beta or Normal."""
    return (d.concentration1, d.concentration0) if isinstance(d, dist.Beta) else (d.loc, d.scale)


@pytest.mark.parametrize("metric", list(METRICS))
def test_bijection_invariance(metric):
    """BetaPrime(a, b) equals Beta(a, b), LogNormal(m, s) equals Normal(m, s)."""
    divergence = METRICS[metric][0]
    for image, original in (("betaprime", "beta"), ("lognormal", "normal")):
        p, q = _random_pair(original, seed=5)
        p_image, q_image = (FAMILIES[image][0](*_family_args(d)) for d in (p, q))
        np.testing.assert_allclose(
            np.asarray(divergence(p_image, q_image)), np.asarray(divergence(p, q)), rtol=1e-6
        )


@pytest.fixture(scope="module")
def components():
    """LogNormal posteriors of r for K = 3 components and G = 4 genes."""
    rng = np.random.default_rng(11)
    loc = jnp.asarray(rng.normal(1.0, 1.0, (3, 4)), jnp.float32)
    scale = jnp.asarray(np.exp(rng.uniform(-3, 0, (3, 4))), jnp.float32)
    return loc, scale


@pytest.mark.parametrize("metric", list(METRICS))
def test_pairwise_component_divergences(components, metric):
    loc, scale = components
    got = np.asarray(pairwise_component_divergences(dist.LogNormal(loc, scale), metric))
    assert got.shape == (3, 3, 4)
    np.testing.assert_array_equal(got[[0, 1, 2], [0, 1, 2]], 0.0)
    direct = METRICS[metric][0]
    for i in range(3):
        for j in range(3):
            pair = dist.LogNormal(loc[i], scale[i]), dist.LogNormal(loc[j], scale[j])
            np.testing.assert_allclose(got[i, j], np.asarray(direct(*pair)), rtol=1e-5, atol=1e-7)
    if metric == "kl":
        assert not np.allclose(got, np.swapaxes(got, 0, 1))  # KL is not symmetric
    else:
        np.testing.assert_allclose(got, np.swapaxes(got, 0, 1), rtol=1e-6)


def test_pairwise_wrappers_only_reshape(components):
    loc, scale = components
    plain = np.asarray(pairwise_component_divergences(dist.LogNormal(loc, scale), "js"))
    wrapped = dist.LogNormal(loc, scale).to_event(1)  # batch (3,), event (4,)
    got = np.asarray(pairwise_component_divergences(wrapped, "js"))
    np.testing.assert_allclose(got, plain, rtol=1e-6)
    shared = dist.LogNormal(loc[0], scale[0]).expand((3, 4))  # three identical components
    np.testing.assert_array_equal(np.asarray(pairwise_component_divergences(shared, "js")), 0.0)


def test_invalid_inputs_raise():
    normal = dist.Normal(jnp.zeros(3), 1.0)
    with pytest.raises(ValueError, match="hellinger, kl, js"):
        pairwise_component_divergences(normal, "total_variation")
    with pytest.raises(ValueError, match="supported families"):
        pairwise_component_divergences(dist.Exponential(jnp.ones(3)), "kl")
    with pytest.raises(ValueError, match="supported families"):
        kl_divergence(dist.Dirichlet(jnp.ones(3)), dist.Dirichlet(jnp.ones(3)))
    with pytest.raises(ValueError, match="one family"):
        hellinger_distance(dist.Beta(2.0, 3.0), dist.Gamma(2.0, 3.0))
