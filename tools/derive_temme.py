"""Derive the Taylor coefficients (in eta) used by ``scribe.gamma`` for dz/da of Gamma draws.

Temme's uniform expansion of the incomplete gamma function (DLMF 8.12.3-8.12.11) reads
``Q(a, x) = erfc(eta sqrt(a/2)) / 2 + exp(-a eta^2/2) / sqrt(2 pi a) sum_k c_k(eta) a^-k``
with ``lambda = x / a``, ``mu = lambda - 1``, ``eta^2 / 2 = mu - log(1 + mu)``,
``c_0 = 1/mu - 1/eta`` and ``c_k = c_{k-1}'(eta) / eta + (-1)^k g_k / mu`` (``g_k`` the
Stirling coefficients of Gamma*). Differentiating in ``a`` at fixed ``x`` and dividing by
the density gives (see ``scribe.gamma``)

    dx/da = lambda (1 + Gamma*(a) sum_k E_k(eta) a^-k),
    E_0 = -eta/2 - eta^2 c_0 / 2,   E_k = -eta^2 c_k / 2 - (k - 1/2) c_{k-1}.

Every ``c_k`` has a removable singularity at ``eta = 0``; this script expands them in exact
rational arithmetic (power series of ``mu(eta)`` solved term by term), so no table is copied.

    python tools/derive_temme.py      # prints the table pasted into scribe/gamma.py
"""

from __future__ import annotations

from fractions import Fraction

# Stirling series of Gamma*(a) = Gamma(a) / (sqrt(2 pi / a) a^a e^-a) = sum_k g_k a^-k.
STIRLING = (Fraction(1), Fraction(1, 12), Fraction(1, 288), Fraction(-139, 51840),
            Fraction(-571, 2488320), Fraction(163879, 209018880))


def _mul(a: list, b: list, n: int) -> list:
    out = [Fraction(0)] * n
    for i, x in enumerate(a[:n]):
        if x:
            for j in range(n - i):
                out[i + j] += x * b[j]
    return out


def _inverse(a: list, n: int) -> list:
    out = [Fraction(0)] * n
    out[0] = 1 / a[0]
    for k in range(1, n):
        out[k] = -sum(a[j] * out[k - j] for j in range(1, k + 1)) / a[0]
    return out


def mu_series(n: int) -> list:
    """Coefficients of ``mu(eta) = eta + eta^2/3 + ...`` solving ``mu - log(1+mu) = eta^2/2``.

    Writes ``mu = eta m(eta)`` and uses ``mu - log(1 + mu) = sum_{j>=2} (-1)^j mu^j / j``:
    the coefficient of ``eta^(k+2)`` is linear in ``m_k`` (slope 1, from ``mu^2 / 2``).
    """
    m = [Fraction(1)] + [Fraction(0)] * (n - 1)
    for k in range(1, n - 1):
        mu = [Fraction(0)] + m[: n - 1]
        total = [Fraction(0)] * (n + 1)
        power = mu[:]
        for j in range(2, n + 1):
            power = _mul(power, mu, n)
            if not any(power):
                break
            for i, c in enumerate(power):
                total[i] += Fraction((-1) ** j, j) * c
        # total[k + 2] currently includes m_k's contribution (m_k = 0 so far): solve for it.
        m[k] = -total[k + 2]
    return m


def e_coefficients(n_terms: int = 16, n_orders: int = 4) -> list[list[Fraction]]:
    """Taylor coefficients ``E_k(eta) = sum_i e_ki eta^i`` for ``k < n_orders``."""
    n = n_terms + 2 * n_orders + 4
    inv_m = _inverse(mu_series(n), n)          # eta / mu as a power series
    c = [inv_m[1:]]                             # c_0 = (eta/mu - 1) / eta
    for k in range(1, n_orders):
        prev = c[-1]
        deriv = [i * prev[i] for i in range(1, len(prev))]
        s = (-1) ** k * STIRLING[k]
        total = [deriv[i] + s * inv_m[i] for i in range(len(deriv))]
        assert total[0] == 0                    # the pole cancels: c_k is regular at 0
        c.append(total[1:])
    e = []
    for k in range(n_orders):
        half_eta2_ck = [Fraction(0), Fraction(0)] + [x / 2 for x in c[k]]
        prev = c[k - 1] if k else [Fraction(0)] * len(c[k])
        row = [-half_eta2_ck[i] - (k - Fraction(1, 2)) * prev[i] for i in range(n_terms)]
        if k == 0:
            row = [-half_eta2_ck[i] for i in range(n_terms)]
            row[1] -= Fraction(1, 2)
        e.append(row)
    return e


if __name__ == "__main__":
    for row in e_coefficients():
        print("    (" + ", ".join(repr(float(x)) for x in row) + "),")
