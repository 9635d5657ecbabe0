"""Cost of the exact log-likelihood's value and gradient per SVI step: full batch against a
mini-batch of B cells (its gather of the non-zeros included, timed apart too).

Counts are simulated as in ``time_to_fit.py`` (droplet-like sparsity, K = 3 for
mixtures); the parameters are the truth. Timings are interleaved in one process (medians
of repeats), so ratios are comparable on a loaded machine; the 1-minute load average is
recorded.

    python benchmarks/likelihood_step.py --size 20000x2000 --batch-size 2048 \\
        --model-types nbdm_mix zinb_mix zinbvcp zinbvcp_mix \\
        --out benchmarks/results/likelihood_step_20000x2000.json
"""

from __future__ import annotations

import argparse
import json
import os
import time


def measure(model_type: str, size: str, batch: int, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import scipy.sparse as sp
    from jax.scipy.special import logsumexp
    from time_to_fit import SIMULATION

    from scribe import plugins
    from scribe.counts import SparseCounts
    from scribe.mixture import component_cell_log_prob
    from scribe.simulate import simulate_counts

    n_cells, n_genes = map(int, size.split("x"))
    mixture = model_type.endswith("_mix")
    capture = model_type.removesuffix("_mix").endswith("vcp")
    dense, truth = simulate_counts(model_type, n_cells, n_genes,
                                   n_components=3 if mixture else None, seed=0,
                                   **SIMULATION["capture" if capture else "plain"])
    counts = SparseCounts.from_matrix(sp.csr_matrix(dense.astype(np.float32)))
    del dense
    counts = counts.with_batch_size(batch)
    lik = plugins.lookup_model_type(model_type).likelihood
    params = {"p": jnp.float32(0.6), "r": jnp.asarray(truth["r"], jnp.float32)}
    for name in ("gate", "p_capture"):
        if name in truth:
            params[name] = jnp.asarray(truth[name], jnp.float32)
    if mixture:
        params["mixing_weights"] = jnp.full(3, 1 / 3, jnp.float32)

    def subsample(key):
        return jax.random.permutation(key, n_cells)[:batch].astype(jnp.int32)

    def loglik(params, counts, key, batched):
        c, pr = counts, dict(params)
        if batched:
            index = subsample(key)
            c = counts.take_cells(index)
            if capture:
                pr["p_capture"] = params["p_capture"][index]
        if mixture:
            per = component_cell_log_prob(lik, c, pr)
            return jnp.sum(logsumexp(per + jnp.log(pr["mixing_weights"]), axis=-1))
        return lik.total_log_prob(c, pr)

    def gather_only(counts, key):
        c = counts.take_cells(subsample(key))
        return jnp.sum(c.values) + jnp.sum(c.genes)

    cases = {
        "full_ms": jax.jit(jax.value_and_grad(lambda p, c, k: loglik(p, c, k, False))),
        "batch_ms": jax.jit(jax.value_and_grad(lambda p, c, k: loglik(p, c, k, True))),
    }
    calls = {name: (lambda f=f, k=None: f(params, counts, k)) for name, f in cases.items()}
    gather = jax.jit(gather_only)
    calls["batch_gather_ms"] = lambda k=None: gather(counts, k)
    times = {name: [] for name in calls}
    key = jax.random.PRNGKey(0)
    for call in calls.values():           # compile
        jax.block_until_ready(call(k=key))
    for i in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(call(k=jax.random.PRNGKey(i)))
            times[name].append(time.perf_counter() - start)
    row = {name: 1e3 * float(np.median(t)) for name, t in times.items()}
    return dict(model_type=model_type, size=size, batch_size=batch, nnz=counts.nnz,
                batch_capacity=list(counts.batch_capacity), load=os.getloadavg()[0],
                full_over_batch=row["full_ms"] / row["batch_ms"], **row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="20000x2000")
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--model-types", nargs="+",
                        default=["nbdm_mix", "zinb_mix", "zinbvcp", "zinbvcp_mix"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = []
    for model_type in args.model_types:
        rows.append(measure(model_type, args.size, args.batch_size, args.repeats))
        print(json.dumps(rows[-1]), flush=True)
        if args.out:
            with open(args.out, "w") as handle:
                json.dump({"likelihood_step": True, "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
