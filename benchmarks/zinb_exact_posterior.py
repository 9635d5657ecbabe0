"""Coverage of the *exact* per-gene posterior of zinb's (r, gate), with p at its truth.

Usage: ``python benchmarks/zinb_exact_posterior.py [--size 5000x1000] [--seed 0]``.

Each gene's posterior over ``(log r, logit gate)`` is evaluated on a grid (the counts
enter through the gene's histogram of non-zero values and its number of zeros) under
the prior of ``r`` that ``scribe.fit`` chooses from the data (:mod:`scribe.empirical_prior`)
and, as a second row, the prior the simulation drew from; the gate prior is the default
``Beta(1, 1)`` or the Beta matched to the simulated ``Uniform(0.05, 0.4)`` by mean and
variance (``Beta(3.6, 12.5)``). The default fit's marginals are compared with the exact
ones (sd ratio, mean shift in exact sds). If these exact intervals cover the truth for about 90 %
of genes and the variational ones do not, the variational family is at fault; if the
exact ones miss too, the prior is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import scipy.sparse as sp
from scipy.special import gammaln

sys.path.insert(0, os.path.dirname(__file__))
from time_to_fit import SIMULATION  # noqa: E402

LOG_R = np.linspace(-8.0, 4.0, 241)
LOGIT_GATE = np.linspace(-10.0, 5.0, 151)


def exact_coverage(counts: sp.csc_matrix, truth: dict, r_prior: tuple[float, float],
                   gate_prior: tuple[float, float]) -> dict:
    """Coverage of the central 90 % intervals of the grid posterior's marginals."""
    p = float(truth["p"])
    r = np.exp(LOG_R)[:, None]                                  # (R, 1)
    gate = 1 / (1 + np.exp(-LOGIT_GATE))[None, :]               # (1, Q)
    a, b = gate_prior
    # Log prior density in (log r, logit gate): Normal; Beta times the logit Jacobian.
    log_prior = (-0.5 * ((LOG_R[:, None] - r_prior[0]) / r_prior[1]) ** 2
                 + a * np.log(gate) + b * np.log1p(-gate))
    log_zero = np.log(gate + (1 - gate) * np.exp(r * np.log1p(-p)))
    hits = {"r": [], "gate": []}
    moments = {"r": [], "gate": []}
    n_cells = counts.shape[0]
    for g in range(counts.shape[1]):
        values = counts.data[counts.indptr[g]:counts.indptr[g + 1]]
        distinct, times = np.unique(values, return_counts=True)
        nb = (gammaln(distinct[None, :] + r) - gammaln(r) - gammaln(distinct[None, :] + 1)
              + r * np.log1p(-p) + distinct[None, :] * np.log(p))      # (R, V)
        log_post = (log_prior + (n_cells - values.size) * log_zero
                    + values.size * np.log1p(-gate) + (nb @ times)[:, None])
        post = np.exp(log_post - log_post.max())
        post /= post.sum()
        for name, marginal, grid, true in (
                ("r", post.sum(1), LOG_R, np.log(truth["r"][g])),
                ("gate", post.sum(0), LOGIT_GATE,
                 np.log(truth["gate"][g] / (1 - truth["gate"][g])))):
            cdf = np.cumsum(marginal)
            low, high = np.interp([0.05, 0.95], cdf, grid)
            hits[name].append(low <= true <= high)
            mean = marginal @ grid
            moments[name].append((mean, np.sqrt(marginal @ (grid - mean) ** 2)))
    out = {name: float(np.mean(h)) for name, h in hits.items()}
    out["_moments"] = {name: np.array(m) for name, m in moments.items()}   # (G, 2)
    return out


def compare_fit(results, exact_moments: dict, truth: dict, n_draws: int = 1000) -> dict:
    """Median ratio of the fit's sd to the exact sd (unconstrained scale) and the median
    |mean difference| in exact sds, for log r and logit gate."""
    import jax

    draws = results.get_posterior_samples(jax.random.PRNGKey(1), n_draws, store_samples=False)
    out = {}
    for name, transform in (("r", np.log), ("gate", lambda g: np.log(g / (1 - g)))):
        t = transform(np.asarray(draws[name]))
        mean, sd = exact_moments[name].T
        out[f"{name}_sd_ratio_vi_to_exact"] = float(np.median(t.std(0) / sd))
        out[f"{name}_mean_shift_in_exact_sd"] = float(np.median(np.abs(t.mean(0) - mean) / sd))
        low, high = np.quantile(t, [0.05, 0.95], axis=0)
        true = transform(truth[name])
        out[f"{name}_vi_coverage_low_high"] = [float(np.mean((true >= low) & (true <= high))),
                                               float(np.mean(true < low)),
                                               float(np.mean(true > high))]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="5000x1000")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from scribe.simulate import simulate_counts

    n_cells, n_genes = map(int, args.size.split("x"))
    settings = SIMULATION["plain"]
    dense, truth = simulate_counts("zinb", n_cells, n_genes, seed=args.seed, **settings)
    counts = sp.csc_matrix(dense)
    import scribe

    fitted = scribe.fit(sp.csr_matrix(dense.astype(np.float32)), "zinb", progress=False,
                        seed=args.seed, batch_size="auto")
    empirical = tuple(float(v) for v in fitted.model_config.priors["r"])
    print(json.dumps({"p_map": float(fitted.get_map(use_mean=True, verbose=False)["p"]),
                      "steps": int(fitted.n_steps_run)}), flush=True)
    for r_name, r_prior in (("empirical", empirical),
                            ("truth", (settings["r_loc"], settings["r_scale"]))):
        for gate_name, gate_prior in (("beta11", (1.0, 1.0)), ("matched", (3.6, 12.5))):
            row = dict(size=args.size, r_prior=[r_name, r_prior],
                       gate_prior=[gate_name, gate_prior],
                       **exact_coverage(counts, truth, r_prior, gate_prior))
            exact = row.pop("_moments")
            if r_name == "empirical" and gate_name == "beta11":
                # The default fit has exactly this prior: compare its marginals.
                row["default_fit"] = compare_fit(fitted, exact, truth)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
