"""Coverage of central 90% posterior intervals on simulated data (issue 8, item 4).

Usage: ``python benchmarks/calibration.py MODEL GUIDE [N_CELLS N_GENES N_STEPS SEED]``.
Prints one JSON line: coverage of ``r``, ``gate``, ``p_hat`` and the seconds per step
(total fit time minus a 1-step fit, over the steps run; the machine is shared, so compare
guides within one run).
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import jax
import numpy as np
from numpyro.optim import Adam

import scribe
from scribe.simulate import simulate_counts


def coverage(draws: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of entries of ``truth`` inside the central 90% interval of ``draws``."""
    low, high = np.quantile(draws, [0.05, 0.95], axis=0)
    return float(np.mean((truth >= low) & (truth <= high)))


def main(model: str, guide: str, n_cells: int = 2000, n_genes: int = 200,
         n_steps: int = 4000, seed: int = 11) -> dict:
    counts, truth = simulate_counts(model, n_cells, n_genes, seed=seed)
    schedule = lambda step: 1e-2 * 0.02 ** (step / n_steps)  # noqa: E731
    seconds = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for steps in (1, n_steps):
            start = time.perf_counter()
            results = scribe.fit(counts, model, n_steps=steps, optimizer=Adam(schedule),
                                 guide_family=guide, progress=False, tol=None)
            seconds.append(time.perf_counter() - start)
    draws = results.get_posterior_samples(jax.random.PRNGKey(0), 1000, store_samples=False)
    out = {"model": model, "guide": guide, "cells": n_cells, "genes": n_genes,
           "steps": n_steps, "seed": seed,
           "s_per_step": (seconds[1] - seconds[0]) / (n_steps - 1)}
    for name in ("r", "gate", "p_hat"):
        if name in truth:
            values = np.asarray(draws[name])
            low, high = np.quantile(values, [0.05, 0.95], axis=0)
            out[name] = coverage(values, truth[name])
            # Misses below / above the interval: unequal shares point at a bias.
            out[f"{name}_miss_low_high"] = [float(np.mean(truth[name] < low)),
                                            float(np.mean(truth[name] > high))]
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    print(json.dumps(main(args[0], args[1], *(int(a) for a in args[2:]))), flush=True)
