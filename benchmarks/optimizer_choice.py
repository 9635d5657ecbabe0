"""Choose ``scribe.fit``'s default optimiser: steps, time and accuracy per candidate.

    python benchmarks/optimizer_choice.py --size 2000x500 --parameterization unconstrained \
        --out benchmarks/results/optimizer_choice.json

For each built-in model type (mixtures with K = 3) on counts simulated with known truth
(``scribe.simulate.simulate_counts``), every candidate optimiser fits with ``scribe.fit``'s
convergence stop (default ``tol`` / ``patience``, ``n_steps`` as a cap) and reports: steps
to convergence, wall time of the ``scribe.fit`` call (compilation included), median
relative error of r, median relative error of p_hat (capture types), ARI of the MAP
assignment (mixtures) and the share of genes whose central 90 % posterior interval of r
holds the true r. Results are written as JSON after every fit (partial runs are kept).
Not part of the test run. ``--report FILE.json`` prints the JSON as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.optim import Adam, ClippedAdam

import scribe
from scribe import plugins
from scribe.simulate import _best_permutation, recovery_errors, simulate_counts


def decaying(start: float, floor: float, half_life: float):
    """Step size ``max(floor, start 2^(-t / half_life))`` (a jittable schedule)."""
    return lambda step: jnp.maximum(floor, start * 2.0 ** (-step / half_life))


CANDIDATES = {
    "adam_1e-3": lambda: Adam(step_size=1e-3),
    "adam_3e-3": lambda: Adam(step_size=3e-3),
    "adam_1e-2": lambda: Adam(step_size=1e-2),
    "adam_3e-2": lambda: Adam(step_size=3e-2),
    "adam_3e-2_decay": lambda: Adam(step_size=decaying(3e-2, 1e-3, 1000.0)),
    "clipped_adam_1e-2": lambda: ClippedAdam(step_size=1e-2, clip_norm=10.0),
    # Fast start, then down to 1e-3 within about a thousand steps (the jitter of the final
    # iterate scales with the step size; 1e-3 keeps it below the posterior's width).
    "adam_1e-2_decay": lambda: Adam(step_size=decaying(1e-2, 1e-3, 300.0)),
}


def adjusted_rand_index(a: np.ndarray, b: np.ndarray) -> float:
    """Hubert-Arabie adjusted Rand index of two labelings of the same items."""
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1)

    def pairs(x):
        return float(np.sum(x * (x - 1) / 2))

    index, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected = rows * cols / pairs(np.array([a.size]))
    return (index - expected) / (0.5 * (rows + cols) - expected)


def map_labels(results, counts: np.ndarray) -> np.ndarray:
    """MAP component of each cell (the same scores as ``recovery_errors``)."""
    estimate = results.get_map(use_mean=True, verbose=False)
    log_prob = plugins.lookup_model_type(results.model_type).log_prob
    per_component = np.asarray(log_prob(jnp.asarray(counts, jnp.float32),
                                        {n: jnp.asarray(v) for n, v in estimate.items()}))
    return (per_component.sum(axis=1) + np.log(np.asarray(estimate["mixing_weights"]))) \
        .argmax(axis=1)


def evaluate(results, counts: np.ndarray, truth: dict) -> dict:
    row = recovery_errors(results, counts, truth)
    draws = np.asarray(results.get_posterior_samples(jax.random.PRNGKey(1), n_samples=400,
                                                     store_samples=False)["r"])
    if results.model_config.is_mixture:
        k = results.n_components
        labels = map_labels(results, counts)
        row["ari"] = adjusted_rand_index(labels, truth["assignment"])
        draws = draws[:, np.argsort(_best_permutation(truth["assignment"], labels, k))]
    low, high = np.quantile(draws, [0.05, 0.95], axis=0)
    row["r_coverage_90"] = float(np.mean((truth["r"] >= low) & (truth["r"] <= high)))
    return row


def report(path: str) -> None:
    """Print the rows of a results file as a Markdown table."""
    with open(path) as f:
        rows = json.load(f)["rows"]
    print("| model type | optimiser | steps | s | r error | p̂ error | ARI | r 90 % coverage |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        steps = f"{row['n_steps_run']}" + ("" if row["converged"] else " (cap)")
        p_hat = f"{100 * row['p_hat_error']:.1f} %" if "p_hat_error" in row else "—"
        ari = f"{row['ari']:.3f}" if "ari" in row else "—"
        print(f"| {row['model_type']} | {row['candidate']} | {steps} | {row['seconds']:.1f} | "
              f"{100 * row['r_error']:.1f} % | {p_hat} | {ari} | "
              f"{100 * row['r_coverage_90']:.0f} % |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-types", nargs="+",
                        default=["nbdm", "zinb", "nbvcp", "zinbvcp", "nbdm_mix", "zinb_mix",
                                 "nbvcp_mix", "zinbvcp_mix"])
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES))
    parser.add_argument("--parameterization", default="unconstrained")
    parser.add_argument("--size", default="2000x500")
    parser.add_argument("--cap", type=int, default=20_000, help="n_steps (a cap)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/optimizer_choice.json")
    parser.add_argument("--report", default=None, help="print this JSON file as a table")
    args = parser.parse_args()
    if args.report:
        report(args.report)
        return
    n_cells, n_genes = (int(v) for v in args.size.split("x"))
    rows = []
    for model_type in args.model_types:
        k = 3 if model_type.endswith("_mix") else None
        counts, truth = simulate_counts(model_type, n_cells, n_genes, n_components=k,
                                        seed=args.seed)
        for name in args.candidates:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)   # recorded as converged
                start = time.perf_counter()
                results = scribe.fit(counts, model_type, args.parameterization,
                                     n_components=k, n_steps=args.cap,
                                     optimizer=CANDIDATES[name](), seed=args.seed,
                                     progress=False)
                seconds = time.perf_counter() - start
            row = dict(model_type=model_type, candidate=name, size=args.size,
                       parameterization=args.parameterization, n_steps_run=results.n_steps_run,
                       converged=results.converged, seconds=round(seconds, 2),
                       **evaluate(results, counts, truth))
            rows.append(row)
            print(json.dumps(row), flush=True)
            with open(args.out, "w") as f:
                json.dump(dict(args=vars(args), rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
