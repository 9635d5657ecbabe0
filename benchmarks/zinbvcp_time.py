"""Where a default zinbvcp fit's time goes, and whether its stop is at convergence.

Per configuration (one simulated data set, ``time_to_fit.py``'s droplet-like capture
settings): one ``scribe.fit`` with the stop, its phases (``results.timings``: reading,
starting values, ``svi.init``, first chunk = compile + 100 steps, the loop) and its
errors / 90 % coverage against the truth (``time_to_fit.evaluate``); optionally a fit
from the same start without the stop for ``--long-factor`` times as many steps (is the
stop at convergence?); optionally (``--zero-term``) the value and gradient of the dense
zero term alone at the batch's size, interleaved with the rest, for the per-step split.

    python benchmarks/zinbvcp_time.py --size 20000x2000 --long-factor 4 \
        --out benchmarks/results/zinbvcp_time_20000x2000_zvcp.json

Configurations: ``--batch-size`` (``auto``, ``none`` or an integer), ``--prior``
(``data``: the data-informed r prior; ``fixed``: ``LogNormal(0, 1)``), ``--rate``
(Adam's step size, default 3e-3), ``--staged`` (``StagedAdam((3e-2, rate))``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from time_to_fit import SIMULATION, evaluate  # noqa: E402


def zero_term_seconds(n_cells: int, n_genes: int, repeats: int = 20) -> dict:
    """Median seconds of the zero term's value + gradient at ``(n_cells, n_genes)``."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from scribe_builtin.zero_term import log_zero_cell_sums

    rng = np.random.default_rng(0)
    gate = jnp.asarray(rng.uniform(0.05, 0.4, n_genes), jnp.float32)
    r = jnp.asarray(rng.lognormal(-1, 1, n_genes), jnp.float32)
    log_q = jnp.asarray(np.log1p(-rng.uniform(0.01, 0.06, n_cells)), jnp.float32)

    def loss(gate, r, log_q):
        return jnp.sum(log_zero_cell_sums(jnp.log(gate), jnp.log1p(-gate), r, log_q))

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
    jax.block_until_ready(grad(gate, r, log_q))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(grad(gate, r, log_q))
        times.append(time.perf_counter() - start)
    return dict(zero_term_ms=1e3 * float(np.median(times)), zero_term_cells=n_cells)


def one_fit(counts, truth, *, seed, batch_size, prior, rate, staged, n_steps, tol):
    import numpy as np
    from numpyro.optim import Adam

    import scribe
    from scribe.svi.staged_rate import StagedAdam

    kwargs = {}
    if prior == "fixed":
        kwargs["priors"] = {"r": (0.0, 1.0)}
    # Always explicit: scribe.fit's default for zinbvcp changed during this benchmark's use.
    kwargs["optimizer"] = (StagedAdam((3e-2, rate or 3e-3)) if staged
                           else Adam(step_size=rate or 3e-3))
    load = os.getloadavg()[0]
    start, cpu = time.perf_counter(), time.process_time()
    results = scribe.fit(counts, "zinbvcp", batch_size=batch_size, seed=seed, tol=tol,
                         n_steps=n_steps, progress=False, **kwargs)
    row = dict(seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu,
               load=[round(load, 1), round(os.getloadavg()[0], 1)],
               n_steps_run=int(results.n_steps_run), converged=bool(results.converged))
    losses = np.asarray(results.loss_history)
    row["final_loss"] = float(np.median(losses[-200:]))
    # Median loss of each 100 steps: is it still falling where the stop fired?
    row["loss_per_100"] = [float(np.median(losses[i:i + 100]))
                           for i in range(0, losses.size - 99, 100)]
    row["timings"] = {k: round(float(v), 3) for k, v in results.timings.items()}
    t = results.timings
    if t.get("loop_steps"):
        row["step_ms"] = 1e3 * t["loop_s"] / t["loop_steps"]
        row["step_cpu_ms"] = 1e3 * t["loop_cpu_s"] / t["loop_steps"]
    row["r_prior"] = [float(np.mean(v)) for v in results.model_config.priors.get("r", ())]
    row.update(evaluate(results, counts, truth))
    row["sides"] = missed_sides(results, truth)
    return row


def missed_sides(results, truth, n_draws: int = 400) -> dict:
    """Fractions of truths below and above the central 90 % interval (which way the
    misses go: a bias along a ridge misses on one side, a narrow guide on both)."""
    import numpy as np

    draws = results.get_posterior_samples(n_samples=n_draws, store_samples=False)
    out = {}
    for name in ("r", "gate", "p_hat"):
        values = np.asarray(draws[name])
        low, high = np.quantile(values, [0.05, 0.95], axis=0)
        out[name] = [float(np.mean(truth[name] < low)), float(np.mean(truth[name] > high))]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="20000x2000")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", default="auto")
    parser.add_argument("--prior", choices=("data", "fixed"), default="data")
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--staged", action="store_true")
    parser.add_argument("--n-steps", type=int, default=100_000)
    parser.add_argument("--tol", type=float, default=1e-5)
    parser.add_argument("--long-factor", type=float, default=0.0,
                        help="also fit factor x the stop's steps without the stop")
    parser.add_argument("--zero-term", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import numpy as np
    import scipy.sparse as sp

    from scribe.simulate import simulate_counts

    n_cells, n_genes = map(int, args.size.split("x"))
    dense, truth = simulate_counts("zinbvcp", n_cells, n_genes, seed=args.seed,
                                   **SIMULATION["capture"])
    counts = sp.csr_matrix(dense.astype(np.float32))
    del dense
    batch = (args.batch_size if args.batch_size == "auto" else None
             if args.batch_size == "none" else int(args.batch_size))
    config = dict(size=args.size, seed=args.seed, batch_size=args.batch_size,
                  prior=args.prior, rate=args.rate, staged=args.staged, tol=args.tol)
    out = dict(config=config, density=counts.nnz / (n_cells * n_genes))
    common = dict(seed=args.seed, batch_size=batch, prior=args.prior, rate=args.rate,
                  staged=args.staged)
    out["fit"] = one_fit(counts, truth, n_steps=args.n_steps, tol=args.tol, **common)
    print(json.dumps(out["fit"]), flush=True)
    if args.long_factor:
        steps = int(round(args.long_factor * out["fit"]["n_steps_run"] / 100)) * 100
        out["long"] = one_fit(counts, truth, n_steps=steps, tol=None, **common)
        print(json.dumps(out["long"]), flush=True)
    if args.zero_term:
        cells = n_cells if batch is None or (batch == "auto" and n_cells <= 8192) else (
            2048 if batch == "auto" else batch)
        out["zero_term"] = zero_term_seconds(cells, n_genes)
        print(json.dumps(out["zero_term"]), flush=True)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(out, handle, indent=2)


if __name__ == "__main__":
    main()
