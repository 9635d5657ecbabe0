"""Why do 90 % intervals under-cover? One model type, one simulated data set, four fits.

Usage::

    python benchmarks/calibration_diagnosis.py MODEL [--size 5000x1000] [--long 10]
        [--seed 0] [--out FILE]

Simulation as ``benchmarks/time_to_fit.py`` (``SIMULATION``). Fits, each with
``scribe.fit``'s defaults otherwise:

* ``default``: the prior as the fit chooses it (``priors=None``);
* ``spec``: the SPEC's fixed ``LogNormal(0, 1)`` prior on ``r`` (``priors={"r": (0, 1)}``);
* ``truth``: the ``r`` prior the simulation drew from (``LogNormal(r_loc, r_scale)``);
* ``long``: the default fit's prior, run for ``--long`` times the steps the default fit
  needed, without the stopping rule (is under-coverage a matter of convergence?).

Per fit and quantity (``r``, ``gate``, ``p_hat``): coverage of the central 90 % interval,
misses below / above it (unequal shares: a biased point), the median |z| of the truth
under the posterior marginal (0.67 when calibrated), and for gene quantities the median
ratio of the fitted sd of ``log r`` (``logit gate``) to the Laplace sd at the truth: the
inverse Hessian of the gene's exact log-likelihood plus log-prior in ``(log r, logit
gate)`` with ``p_hat`` fixed at its true value (:func:`laplace_sd`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from time_to_fit import SIMULATION  # noqa: E402


def laplace_sd(counts: np.ndarray, truth: dict, prior_r: tuple[float, float],
               zero_inflated: bool) -> np.ndarray:
    """Laplace sd per gene of ``log r`` (and ``logit gate``) at the true values.

    Returns
    -------
    numpy.ndarray, shape (G, d)
        ``d = 2`` with a gate (sd of ``log r``, sd of ``logit gate``), else ``d = 1``.
    """
    import jax
    import jax.numpy as jnp
    from jax.scipy.special import gammaln

    jax.config.update("jax_enable_x64", True)
    x = jnp.asarray(counts, jnp.float64)                      # (C, G)
    n_cells = x.shape[0]
    p_hat = jnp.asarray(np.broadcast_to(truth.get("p_hat", truth["p"]), (n_cells,)),
                        jnp.float64)
    loc, scale = prior_r

    def gene_log_post(theta, xg):
        r = jnp.exp(theta[0])
        nb = gammaln(xg + r) - gammaln(r) - gammaln(xg + 1) + r * jnp.log1p(-p_hat) \
            + xg * jnp.log(p_hat)
        # log prior in (log r, logit gate): Normal on log r; Beta(1,1) on gate -> logistic.
        prior = -0.5 * ((theta[0] - loc) / scale) ** 2
        if zero_inflated:
            gate = jax.nn.sigmoid(theta[1])
            zero = jnp.logaddexp(jnp.log(gate), jnp.log1p(-gate) + nb)
            ll = jnp.where(xg == 0, zero, jnp.log1p(-gate) + nb)
            prior = prior + jnp.log(gate) + jnp.log1p(-gate)
        else:
            ll = nb
        return jnp.sum(ll) + prior

    theta = [np.log(truth["r"])]
    if zero_inflated:
        theta.append(np.log(truth["gate"] / (1 - truth["gate"])))
    theta = jnp.asarray(np.stack(theta, axis=1))              # (G, d)
    hess = jax.vmap(jax.hessian(gene_log_post), in_axes=(0, 1))(theta, x)
    cov = jnp.linalg.inv(-hess)
    sd = np.sqrt(np.clip(np.asarray(jnp.diagonal(cov, axis1=1, axis2=2)), 0, None))
    jax.config.update("jax_enable_x64", False)
    return sd


def summarise(results, truth: dict, laplace: np.ndarray | None, n_draws: int = 1000) -> dict:
    """Coverage, misses low/high, median |z| and width ratio per quantity."""
    import jax

    draws = {k: np.asarray(v) for k, v in results.get_posterior_samples(
        jax.random.PRNGKey(1), n_draws, store_samples=False).items()}
    out = {}
    for name, transform, column in (("r", np.log, 0), ("gate", lambda g: np.log(g / (1 - g)), 1),
                                    ("p_hat", lambda q: np.log(q / (1 - q)), None)):
        if name not in truth or draws.get(name) is None or np.ndim(draws[name]) != 2:
            continue
        values, true = draws[name], truth[name]
        low, high = np.quantile(values, [0.05, 0.95], axis=0)
        t = transform(values)
        z = (transform(true) - t.mean(0)) / t.std(0)
        row = dict(coverage=float(np.mean((true >= low) & (true <= high))),
                   miss_low=float(np.mean(true < low)), miss_high=float(np.mean(true > high)),
                   median_abs_z=float(np.median(np.abs(z))),
                   mean_z=float(np.mean(z)))
        if laplace is not None and column is not None and column < laplace.shape[1]:
            row["sd_ratio_to_laplace"] = float(np.median(t.std(0) / laplace[:, column]))
        out[name] = row
    return out


def fit(counts, model, **kwargs):
    import scribe

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        results = scribe.fit(counts, model, progress=False, batch_size="auto", **kwargs)
    return results, dict(seconds=round(time.perf_counter() - start, 1),
                         n_steps_run=int(results.n_steps_run),
                         converged=bool(results.converged),
                         p_map=np.asarray(results.get_map(use_mean=True, verbose=False)
                                          ["p"]).round(4).tolist(),
                         priors={k: [float(np.asarray(a).mean()) for a in v]
                                 for k, v in results.model_config.priors.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--size", default="5000x1000")
    parser.add_argument("--long", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fits", nargs="+", default=["default", "spec", "truth"])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import scipy.sparse as sp

    from scribe.simulate import simulate_counts

    n_cells, n_genes = map(int, args.size.split("x"))
    settings = SIMULATION["capture" if args.model in ("nbvcp", "zinbvcp") else "plain"]
    dense, truth = simulate_counts(args.model, n_cells, n_genes, seed=args.seed, **settings)
    counts = sp.csr_matrix(dense.astype(np.float32))
    zi = "gate" in truth
    rows = dict(model=args.model, size=args.size, seed=args.seed, simulation=settings,
                load=os.getloadavg()[0], fits={})
    truth_prior = (settings["r_loc"], settings["r_scale"])
    priors = {"default": None, "spec": {"r": (0.0, 1.0)}, "truth": {"r": truth_prior}}
    laplace = {}
    for name in args.fits:
        prior = priors[name]
        results, info = fit(counts, args.model, seed=args.seed, priors=prior)
        used = results.model_config.priors.get("r", (0.0, 1.0))
        key = (float(np.mean(used[0])), float(np.mean(used[1])))
        if key not in laplace:
            laplace[key] = laplace_sd(dense, truth, key, zi)
        info.update(summarise(results, truth, laplace[key]))
        rows["fits"][name] = info
        print(json.dumps({name: info}), flush=True)
        if name == "default" and args.long:
            steps = args.long * info["n_steps_run"]
            # Same prior as the default fit (data-informed), 10x the steps, no stopping.
            long_results, long_info = fit(counts, args.model, seed=args.seed,
                                          priors=dict(results.model_config.priors),
                                          n_steps=steps, tol=None)
            long_info.update(summarise(long_results, truth, laplace[key]))
            rows["fits"]["long"] = long_info
            print(json.dumps({"long": long_info}), flush=True)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
