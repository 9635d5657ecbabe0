"""Built-in example: simulate counts with known parameters, fit, compare.

Run with ``python -m scribe.demo`` (or ``scribe-demo``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import scribe
from scribe.simulate import simulate_counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-type", default="nbdm")
    parser.add_argument("--parameterization", default="standard")
    parser.add_argument("--n-components", type=int, default=None)
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--genes", type=int, default=500)
    parser.add_argument("--steps", type=int, default=None,
                        help="step cap (default: scribe.fit's; the fit stops once converged)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    counts, truth = simulate_counts(args.model_type, args.cells, args.genes,
                                    n_components=args.n_components, seed=args.seed)
    print(f"simulated {args.model_type}: {args.cells} cells x {args.genes} genes, "
          f"{np.mean(counts > 0):.1%} non-zero")
    start = time.perf_counter()
    cap = {} if args.steps is None else {"n_steps": args.steps}
    results = scribe.fit(counts, args.model_type, args.parameterization,
                         n_components=args.n_components, seed=args.seed, **cap)
    state = "converged" if results.converged else "stopped at the cap without converging"
    print(f"fitted in {time.perf_counter() - start:.1f} s: {state} after "
          f"{results.n_steps_run} steps; final loss {float(results.loss_history[-1]):.1f}")
    estimate = results.get_map(use_mean=True, verbose=False)
    r_true, r_hat = np.asarray(truth["r"]), np.asarray(estimate["r"])
    if "p_hat" in truth:
        p_error = np.median(np.abs(np.asarray(estimate["p_hat"]) / truth["p_hat"] - 1))
        print(f"per-cell p_hat: median relative error {p_error:.1%}")
    else:
        print(f"p: true {float(np.mean(truth['p'])):.4f}, "
              f"estimate {float(np.mean(estimate['p'])):.4f}")
    expressed = r_true.ravel() > 0.05
    r_error = np.median(np.abs(r_hat.ravel() / r_true.ravel() - 1)[expressed])
    print(f"r: median relative error {r_error:.1%} over {int(expressed.sum())} genes")
    print(f"{'gene':>6} {'r true':>10} {'r estimate':>12}")
    for g in range(min(5, r_true.shape[-1])):
        print(f"{g:>6} {r_true.ravel()[g]:>10.3f} {r_hat.ravel()[g]:>12.3f}")


if __name__ == "__main__":
    main()
