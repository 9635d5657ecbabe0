"""scribe.special: fixed-cost gammaln, digamma, betaln and their derivatives against scipy.

Tolerances: the Stirling series truncated after B_10 errs by < 1e-11 at y >= 6, so what
remains is float32 rounding of the inputs (relative 6e-8, amplified by |x psi(x)| for
gammaln and |x psi'(x) / psi(x)| for digamma) and of the terms summed. Values are compared
at the float32-rounded arguments, with an absolute tolerance of a few ulps of the largest
term (``(y - 1/2) log y`` for gammaln, ``log y`` and ``1/x`` for digamma).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special as sc

from scribe.special import betaln, digamma, gammaln, trigamma

X = np.logspace(-3, 6, 1500)


def _f32(x):
    xf = jnp.asarray(x, jnp.float32)
    return xf, np.asarray(xf, np.float64)


def test_gammaln_against_scipy():
    xf, x = _f32(X)
    got = np.asarray(gammaln(xf), np.float64)
    ref = sc.gammaln(x)
    # a few float32 ulps (1.2e-7) of the largest term, |(y - 1/2) log y| + y, or of 1
    scale = np.maximum(1.0, (x + 6) * (np.abs(np.log(x + 6)) + 1))
    assert np.all(np.abs(got - ref) <= 4e-7 * scale), np.max(np.abs(got - ref) / scale)


def test_digamma_against_scipy():
    xf, x = _f32(X)
    got = np.asarray(digamma(xf), np.float64)
    ref = sc.digamma(x)
    scale = np.maximum(1.0, np.abs(np.log(x + 6)) + 1 / x)
    assert np.all(np.abs(got - ref) <= 4e-7 * scale), np.max(np.abs(got - ref) / scale)


def test_derivatives_chain():
    xf, x = _f32(X)
    d_gammaln = np.asarray(jax.vmap(jax.grad(gammaln))(xf), np.float64)
    d_digamma = np.asarray(jax.vmap(jax.grad(digamma))(xf), np.float64)
    np.testing.assert_allclose(d_gammaln, np.asarray(digamma(xf)), rtol=1e-6)
    np.testing.assert_allclose(d_digamma, sc.polygamma(1, x), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(trigamma(xf)), sc.polygamma(1, x), rtol=1e-6)


def test_betaln_against_scipy():
    a = np.array([0.3, 2.0, 5.0, 500.0, 1e4, 0.01])
    b = np.array([2.0, 0.4, 7.0, 20.0, 1e4, 3e3])
    af, a64 = _f32(a)
    bf, b64 = _f32(b)
    got = np.asarray(betaln(af, bf), np.float64)
    # three gammaln terms, each with the error bound of test_gammaln_against_scipy
    scale = sum(np.maximum(1.0, (x + 6) * (np.abs(np.log(x + 6)) + 1))
                for x in (a64, b64, a64 + b64))
    assert np.all(np.abs(got - sc.betaln(a64, b64)) <= 4e-7 * scale)
