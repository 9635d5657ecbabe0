"""Time of predictive and denoising draws: NumPyro's samplers against scribe.poisson.

``--baseline`` swaps the old samplers back in (``jax.random.gamma`` / ``poisson`` in
the likelihood's ``sample`` and in denoising) so both columns come from one script.

    python benchmarks/predictive_draws.py --out benchmarks/results/predictive_draws.json
    python benchmarks/predictive_draws.py --baseline --out .../predictive_draws_baseline.json
"""

from __future__ import annotations

import argparse
import json
import time

import anndata
import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import NegativeBinomialProbs
from scribe_builtin import nb_fast, nb_posterior

import scribe
from scribe.gamma import gamma
from scribe.poisson import poisson
from scribe.simulate import simulate_counts

DATA = "/work/shared/data/tenx_v3_subset.h5ad"


def use_baseline() -> None:
    nb_fast.FastNegativeBinomialProbs.sample = NegativeBinomialProbs.sample
    nb_posterior.gamma = jax.random.gamma
    nb_posterior.poisson = lambda key, lam: jax.random.poisson(key, lam)


def seconds(fn) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def profile(n: int, baseline: bool) -> dict:
    """Seconds per stage of one NB draw of ``n`` values (compiled; second call)."""
    key = jax.random.PRNGKey(0)
    r = jnp.exp(jax.random.normal(key, (n,)) - 1.0)
    odds = jnp.full((n,), 0.25)
    gam = jax.jit(jax.random.gamma if baseline else gamma)
    poi = jax.jit(jax.random.poisson if baseline else poisson)
    lam = gam(key, r) * odds
    gate = jax.jit(lambda k, x: jnp.where(jax.random.uniform(k, x.shape) < 0.2, 0, x))
    out = {}
    for name, fn in (("gamma", lambda: gam(key, r)), ("poisson", lambda: poi(key, lam)),
                     ("zero_inflation", lambda: gate(key, lam))):
        fn()
        out[name] = seconds(fn)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", action="store_true")
    parser.add_argument("--big-cells", type=int, default=20000)
    parser.add_argument("--skip-report", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.baseline:
        use_baseline()
    rows = {"baseline": args.baseline, "big_cells": args.big_cells}
    rows["profile_561k"] = profile(1107 * 507, args.baseline)
    print(rows, flush=True)

    adata = anndata.read_h5ad(DATA)
    small = scribe.fit(adata, model_type="zinbvcp", n_steps=100, progress=False, tol=None)
    small.get_ppc_samples(n_samples=2)        # compile outside the timing
    rows["ppc20_small"] = seconds(lambda: small.get_ppc_samples(n_samples=20)[
        "predictive_samples"])
    if not args.skip_report:
        rows["report_small"] = seconds(
            lambda: scribe.report(small, adata, "/tmp/pd_report.html", n_samples=20))
    print(rows, flush=True)

    counts, _ = simulate_counts("zinbvcp_mix", args.big_cells, 2000, n_components=3,
                                       p=np.array([0.2, 0.25, 0.3]), r_loc=-1.0, seed=1)
    big = scribe.fit(counts, model_type="zinbvcp_mix", n_components=3, n_steps=20,
                     batch_size=512, progress=False, tol=None)
    big.get_posterior_samples(n_samples=1)
    start = time.perf_counter()
    jax.block_until_ready(big.get_predictive_samples(store_samples=False))
    rows["ppc1_big_with_compile"] = time.perf_counter() - start
    rows["ppc1_big"] = seconds(lambda: big.get_predictive_samples(store_samples=False))
    rows["denoise10_big"] = seconds(lambda: big.denoise_counts(counts, method="sample",
                                                               n_samples=10))
    print(rows, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
