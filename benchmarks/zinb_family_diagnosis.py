"""Which per-gene variational family can match zinb's exact conditional posterior?

Usage: ``python benchmarks/zinb_family_diagnosis.py [--size 5000x1000] [--seed 0]
[--steps 3000] [--draws 32]``.

On the simulated zinb data of ``time_to_fit.py`` the default ``scribe.fit`` is run once
(its data-informed ``r`` prior, its fitted ``p`` and its ``joint_gene`` marginals are
kept). Then, for every gene at once (vectorised over genes), candidate families are fitted
by reverse-KL SVI with reparameterised draws to the *exact* conditional posterior of
``(log r, logit gate)`` given ``p`` (closed form from the gene's histogram of non-zero
values and its number of zeros, the fit's prior), once with ``p`` at its truth and once
at the fitted ``p``. Families:

- ``gauss``: full-covariance 2-D Normal ``z = m + L eps``;
- ``sas``: elementwise sinh-arcsinh ``y_i = sinh((asinh(eps_i) + s_i) / t_i)`` then
  ``z = m + L y`` (skew ``s``, tail ``t``);
- ``sas_banana``: as ``sas`` plus ``z_2 += c (y_1^2 - 1)``;
- a ``_gf`` suffix puts the gate first (``log r`` given ``logit gate``), and
  ``softplus`` adds ``c softplus(logit gate)`` to ``log r`` (``softplus_gf``,
  ``sas_softplus_gf``: the ``skew_gene`` guide's block; ``sas_banana_gf``).

``--guide-family`` picks the guide of the reference ``scribe.fit`` (its row
``scribe_fit``); ``--lr`` and ``--fit-steps`` (no convergence stop) change its optimiser.
Results: docs/models.md, "Diagnosis".

Each has an exact log density (triangular Jacobian). Reported per family: coverage of the
truth by the central 90 % marginal intervals (from draws), median sd ratio to the grid
posterior, median |mean shift| in grid sds, and the misses below : above.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.optim
import scipy.sparse as sp
from jax.example_libraries import optimizers
from jax.scipy.special import gammaln

sys.path.insert(0, os.path.dirname(__file__))
from time_to_fit import SIMULATION  # noqa: E402

LOG_R = jnp.linspace(-8.0, 4.0, 241)
LOGIT_GATE = jnp.linspace(-10.0, 5.0, 151)


def gene_histograms(counts: sp.csc_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct non-zero values ``(G, V)``, their multiplicities ``(G, V)`` (0 = padding)
    and the number of zeros ``(G,)``."""
    n_cells, n_genes = counts.shape
    per_gene = [np.unique(counts.data[counts.indptr[g]:counts.indptr[g + 1]],
                          return_counts=True) for g in range(n_genes)]
    width = max(1, max(v.size for v, _ in per_gene))
    values = np.ones((n_genes, width))
    times = np.zeros((n_genes, width))
    for g, (v, t) in enumerate(per_gene):
        values[g, :v.size], times[g, :v.size] = v, t
    zeros = n_cells - times.sum(1)
    return values, times, zeros


def log_posterior(u, v, values, times, zeros, p, r_prior, gate_prior=(1.0, 1.0)):
    """Unnormalised log density of ``(u, v) = (log r, logit gate)``; ``u, v`` of shape
    ``(..., G)`` broadcast against the gene data ``(G, V)``."""
    r, log_gate = jnp.exp(u), jax.nn.log_sigmoid(v)
    log_ungate = jax.nn.log_sigmoid(-v)
    a, b = gate_prior
    prior = -0.5 * ((u - r_prior[0]) / r_prior[1]) ** 2 + a * log_gate + b * log_ungate
    log_zero = jnp.logaddexp(log_gate, log_ungate + r * jnp.log1p(-p))
    nb = (gammaln(values + r[..., None]) - gammaln(r[..., None]) - gammaln(values + 1)
          + r[..., None] * jnp.log1p(-p) + values * jnp.log(p))
    return prior + zeros * log_zero + times.sum(-1) * log_ungate + jnp.sum(nb * times, -1)


def grid_posterior(data, p, r_prior, chunk: int = 100):
    """Exact marginal quantiles (5 %, 95 %), means and sds of ``(u, v)`` per gene."""
    values, times, zeros = data

    @jax.jit
    def one(vals, tms, zrs):
        lp = log_posterior(LOG_R[:, None, None], LOGIT_GATE[None, :, None], vals, tms, zrs,
                           p, r_prior)                          # (R, Q, g)
        post = jnp.exp(lp - lp.max((0, 1)))
        post = post / post.sum((0, 1))
        out = []
        for marginal, grid in ((post.sum(1), LOG_R), (post.sum(0), LOGIT_GATE)):
            mean = grid @ marginal
            sd = jnp.sqrt(((grid[:, None] - mean) ** 2 * marginal).sum(0))
            cdf = jnp.cumsum(marginal, 0)
            q = jax.vmap(lambda c, g=grid: jnp.interp(jnp.array([0.05, 0.95]), c, g),
                         in_axes=1)(cdf)
            out.append((mean, sd, q))
        return out

    parts = [one(values[s:s + chunk], times[s:s + chunk], zeros[s:s + chunk])
             for s in range(0, values.shape[0], chunk)]
    return [tuple(np.concatenate([np.asarray(part[i][j]) for part in parts])
                  for j in range(3)) for i in range(2)]


# ---- families --------------------------------------------------------------------------
def sas(eps, skew, tail):
    """Sinh-arcsinh map and its log derivative (elementwise)."""
    a = (jnp.arcsinh(eps) + skew) / tail
    return jnp.sinh(a), jnp.log(jnp.cosh(a)) - jnp.log(tail) - 0.5 * jnp.log1p(eps**2)


def draw(family: str, params: dict, eps):
    """Draws ``(S, G, 2)`` of ``(u, v)`` and their log density ``(S, G)`` from standard
    ``eps``. Families ending ``_gf`` put the gate first (``v`` then ``u`` given ``v``);
    ``softplus`` adds ``c softplus(v)`` to ``u`` (``u - softplus(v) = log(r (1 - gate))``,
    the gene's ungated mean, is what the counts pin down), a unit-Jacobian shift."""
    log_q = -0.5 * jnp.sum(eps**2, -1) - jnp.log(2 * jnp.pi)
    if "sas" in family:
        y, log_jac = sas(eps, params["skew"], jnp.exp(params["log_tail"]))
        log_q = log_q - log_jac.sum(-1)
    else:
        y = eps
    first, second = (1, 0) if family.endswith("_gf") else (0, 1)
    s1 = jnp.exp(params["log_scale"][:, first])
    s2 = jnp.exp(params["log_scale"][:, second])
    z1 = params["loc"][:, first] + s1 * y[..., 0]
    z2 = params["loc"][:, second] + params["off"] * y[..., 0] + s2 * y[..., 1]
    if "banana" in family:
        z2 = z2 + params["bend"] * (y[..., 0] ** 2 - 1)
    if "softplus" in family:
        z2 = z2 + params["bend"] * jax.nn.softplus(z1)
    log_q = log_q - jnp.log(s1) - jnp.log(s2)
    z = jnp.stack([z1, z2], -1)
    return (z[..., ::-1] if family.endswith("_gf") else z), log_q


def fit_family(family: str, data, p, r_prior, init, steps: int, n_draws: int, seed: int):
    values, times, zeros = (jnp.asarray(x) for x in data)
    n_genes = values.shape[0]
    params = dict(loc=jnp.asarray(init[0]), log_scale=jnp.asarray(np.log(init[1])),
                  off=jnp.zeros(n_genes))
    if "sas" in family:
        params.update(skew=jnp.zeros((n_genes, 2)), log_tail=jnp.zeros((n_genes, 2)))
    if "banana" in family or "softplus" in family:
        params["bend"] = jnp.zeros(n_genes)

    def loss(prm, key):
        eps = jax.random.normal(key, (n_draws, n_genes, 2))
        z, log_q = draw(family, prm, eps)
        log_p = log_posterior(z[..., 0], z[..., 1], values, times, zeros, p, r_prior)
        return jnp.sum(jnp.mean(log_q - log_p, 0))      # genes are independent

    opt_init, opt_update, get_params = optimizers.adam(1e-2)

    @jax.jit
    def run(state, key):
        def body(carry, k):
            st, i = carry
            g = jax.grad(loss)(get_params(st), k)
            return (opt_update(i, g, st), i + 1), None
        (state, _), _ = jax.lax.scan(body, (state, 0), jax.random.split(key, steps))
        return state

    state = run(opt_init(params), jax.random.PRNGKey(seed))
    fitted = get_params(state)
    z, _ = draw(family, fitted, jax.random.normal(jax.random.PRNGKey(seed + 1),
                                                  (4000, n_genes, 2)))
    return np.asarray(z)


def summarise(z: np.ndarray, exact, truth_uv) -> dict:
    """Coverage (misses below : above), sd ratio, mean shift of draws ``(S, G, 2)``."""
    out = {}
    for i, name in enumerate(("r", "gate")):
        low, high = np.quantile(z[..., i], [0.05, 0.95], axis=0)
        true = truth_uv[i]
        mean, sd, _ = exact[i]
        out[name] = dict(
            coverage=round(float(np.mean((true >= low) & (true <= high))), 3),
            below=round(float(np.mean(true < low)), 3),
            above=round(float(np.mean(true > high)), 3),
            sd_ratio=round(float(np.median(z[..., i].std(0) / sd)), 3),
            shift=round(float(np.median(np.abs(z[..., i].mean(0) - mean) / sd)), 3))
    return out


def exact_summary(exact, truth_uv) -> dict:
    out = {}
    for i, name in enumerate(("r", "gate")):
        q = exact[i][2]
        true = truth_uv[i]
        out[name] = dict(coverage=round(float(np.mean((true >= q[:, 0]) & (true <= q[:, 1]))), 3),
                         below=round(float(np.mean(true < q[:, 0])), 3),
                         above=round(float(np.mean(true > q[:, 1])), 3))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="5000x1000")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--draws", type=int, default=32)
    parser.add_argument("--guide-family", default=None)
    parser.add_argument("--lr", type=float, default=None, help="Adam step size of the fit")
    parser.add_argument("--fit-steps", type=int, default=None,
                        help="run the fit this many steps without the convergence stop")
    parser.add_argument("--families", default="gauss,sas,sas_banana")
    parser.add_argument("--p-values", default="truth,fitted")
    args = parser.parse_args()
    import scribe
    from scribe.simulate import simulate_counts

    n_cells, n_genes = map(int, args.size.split("x"))
    dense, truth = simulate_counts("zinb", n_cells, n_genes, seed=args.seed,
                                   **SIMULATION["plain"])
    data = gene_histograms(sp.csc_matrix(dense))
    truth_uv = (np.log(truth["r"]), np.log(truth["gate"] / (1 - truth["gate"])))
    start = time.perf_counter()
    fitted = scribe.fit(sp.csr_matrix(dense.astype(np.float32)), "zinb", progress=False,
                        seed=args.seed, batch_size="auto", guide_family=args.guide_family,
                        **({} if args.fit_steps is None
                           else dict(n_steps=args.fit_steps, tol=None)),
                        **({} if args.lr is None
                           else dict(optimizer=numpyro.optim.Adam(step_size=args.lr))))
    r_prior = tuple(float(v) for v in fitted.model_config.priors["r"])
    p_draws = np.asarray(fitted.get_posterior_samples(
        jax.random.PRNGKey(1), 1000, store_samples=False)["p"])
    draws = fitted.get_posterior_samples(jax.random.PRNGKey(1), 1000, store_samples=False)
    fit_uv = np.stack([np.log(np.asarray(draws["r"])),
                       np.log(np.asarray(draws["gate"]) / (1 - np.asarray(draws["gate"])))],
                      -1)
    p_fit = float(np.mean(p_draws))
    print(json.dumps(dict(size=args.size, steps=int(fitted.n_steps_run),
                          fit_seconds=round(time.perf_counter() - start, 1),
                          load=os.getloadavg()[0], r_prior=r_prior, p_true=float(truth["p"]),
                          p_fit_mean=p_fit, p_fit_sd=float(np.std(p_draws)))), flush=True)
    for p_name, p in (("truth", float(truth["p"])), ("fitted", p_fit)):
        if p_name not in args.p_values.split(","):
            continue
        exact = grid_posterior(data, p, r_prior)
        print(json.dumps(dict(p=p_name, family="exact_grid", **exact_summary(exact, truth_uv))),
              flush=True)
        if p_name == "truth":
            print(json.dumps(dict(p=p_name, family="scribe_fit",
                                  **summarise(fit_uv, exact, truth_uv))), flush=True)
        init = (np.stack([exact[0][0], exact[1][0]], -1),
                np.stack([exact[0][1], exact[1][1]], -1))
        for family in filter(None, args.families.split(",")):
            t0 = time.perf_counter()
            z = fit_family(family, data, p, r_prior, init, args.steps, args.draws, args.seed)
            print(json.dumps(dict(p=p_name, family=family,
                                  seconds=round(time.perf_counter() - t0, 1),
                                  **summarise(z, exact, truth_uv))), flush=True)


if __name__ == "__main__":
    main()
