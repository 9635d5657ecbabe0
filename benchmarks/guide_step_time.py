"""Per-step SVI time of guide families on one matrix, interleaved (shared machine).

    python benchmarks/guide_step_time.py zinbvcp 2000 200 mean_field joint_gene joint_capture

Each guide's update is jitted as a loop of 50 steps; the blocks of the guides alternate
(``rounds`` times) so that load from other processes hits all guides alike, and the
median ms per step of each guide is printed with its ratio to the first guide.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import jax
from numpyro.infer import SVI, TraceMeanField_ELBO
from numpyro.optim import Adam

import scribe
from scribe.counts import SparseCounts
from scribe.simulate import simulate_counts
from scribe.svi.engine import initial_params, resolve_model_and_guide


def main(model_type: str, n_cells: int, n_genes: int, guides: list[str], block: int = 50,
         rounds: int = 7) -> dict:
    counts, _ = simulate_counts(model_type, n_cells, n_genes, seed=11)
    sparse = SparseCounts.from_matrix(counts)
    runners = {}
    for guide in guides:
        config = scribe.ModelConfig(model_type, guide_family=guide)
        model, guide_fn = resolve_model_and_guide(config)
        svi = SVI(model, guide_fn, Adam(1e-3), TraceMeanField_ELBO())
        state = svi.init(jax.random.PRNGKey(0), n_cells, n_genes, counts=sparse,
                         init_params=initial_params(config, counts, 0))

        def steps(s, svi=svi):
            return jax.lax.fori_loop(
                0, block, lambda _, x: svi.update(x, n_cells, n_genes, counts=sparse)[0], s)

        run = jax.jit(steps)
        runners[guide] = [run, jax.block_until_ready(run(state))]
    times = {g: [] for g in guides}
    for _ in range(rounds):
        for guide in guides:
            run, state = runners[guide]
            start = time.perf_counter()
            runners[guide][1] = jax.block_until_ready(run(state))
            times[guide].append((time.perf_counter() - start) / block * 1e3)
    ms = {g: statistics.median(t) for g, t in times.items()}
    return {"model": model_type, "cells": n_cells, "genes": n_genes, "ms_per_step": ms,
            "ratio_to_first": {g: ms[g] / ms[guides[0]] for g in guides}}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])))
