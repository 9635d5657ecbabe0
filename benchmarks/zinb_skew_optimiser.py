"""Which optimiser and stop bring zinb's ``skew_gene`` fit to its calibrated optimum soonest.

Usage::

    python benchmarks/zinb_skew_optimiser.py --size 20000x2000 [--only NAME ...] \
        --out benchmarks/results/zinb_skew_optimiser_20000x2000.json

The same simulated zinb counts as ``time_to_fit.py`` (seed 0, full batch); each row is one
``scribe.fit(counts, "zinb", guide_family="skew_gene", ...)`` with the settings named,
timed from the call to its return, with the MAP errors and 90 % coverage of
``time_to_fit.evaluate``. Results: docs/benchmarks.md, "zinb with skew_gene: which
optimiser".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from time_to_fit import SIMULATION, evaluate  # noqa: E402


def _configs() -> dict:
    import jax.numpy as jnp
    from numpyro.infer import TraceMeanField_ELBO
    from numpyro.optim import Adam

    from scribe.svi.staged_rate import StagedAdam

    def two_rates(first: float, second: float, switch: int) -> Adam:
        return Adam(step_size=lambda i: jnp.where(i < switch, first, second))

    def decay(high: float, low: float, steps: int) -> Adam:
        rate = jnp.log(low / high) / steps
        return Adam(step_size=lambda i: jnp.maximum(high * jnp.exp(rate * i), low))

    fixed = dict(tol=None)
    four = dict(loss=TraceMeanField_ELBO(num_particles=4, vectorize_particles=True))
    return {
        "adam1e-2_6000": dict(optimizer=Adam(1e-2), n_steps=6000, **fixed),
        "adam3e-2_1500": dict(optimizer=Adam(3e-2), n_steps=1500, **fixed),
        "adam3e-2_4000": dict(optimizer=Adam(3e-2), n_steps=4000, **fixed),
        "adam3e-2_8000": dict(optimizer=Adam(3e-2), n_steps=8000, **fixed),
        "particles4_adam1e-2_2000": dict(optimizer=Adam(1e-2), n_steps=2000, **four, **fixed),
        "particles4_adam3e-2_1500": dict(optimizer=Adam(3e-2), n_steps=1500, **four, **fixed),
        "decay3e-2to3e-3_4000": dict(optimizer=decay(3e-2, 3e-3, 4000), n_steps=4000, **fixed),
        "decay3e-2to3e-3_8000": dict(optimizer=decay(3e-2, 3e-3, 8000), n_steps=8000, **fixed),
        "two3e-2_3e-3_3000+1500": dict(optimizer=two_rates(3e-2, 3e-3, 3000), n_steps=4500,
                                       **fixed),
        "two3e-2_3e-3_3000+3000": dict(optimizer=two_rates(3e-2, 3e-3, 3000), n_steps=6000,
                                       **fixed),
        "two3e-2_1e-3_3000+3000": dict(optimizer=two_rates(3e-2, 1e-3, 3000), n_steps=6000,
                                       **fixed),
        "staged1e-2,3e-3_stop": dict(optimizer=StagedAdam((1e-2, 3e-3))),
        "staged3e-2,1e-2,3e-3_stop": dict(optimizer=StagedAdam((3e-2, 1e-2, 3e-3))),
        "staged3e-2,3e-3,1e-3_stop": dict(optimizer=StagedAdam((3e-2, 3e-3, 1e-3))),
        "staged3e-2,3e-3,1e-3_tol3e-6": dict(optimizer=StagedAdam((3e-2, 3e-3, 1e-3)),
                                             tol=3e-6),
        "staged3e-2,3e-3_tol3e-6": dict(optimizer=StagedAdam((3e-2, 3e-3)), tol=3e-6),
        "staged3e-2,3e-3_tol1e-6": dict(optimizer=StagedAdam((3e-2, 3e-3)), tol=1e-6),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="20000x2000")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None, help="names of the settings to run")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    import numpy as np
    import scipy.sparse as sp

    import scribe
    from scribe.simulate import simulate_counts

    n_cells, n_genes = map(int, args.size.split("x"))
    dense, truth = simulate_counts("zinb", n_cells, n_genes, seed=args.seed,
                                   **SIMULATION["plain"])
    counts = sp.csr_matrix(dense.astype(np.float32))
    del dense
    rows = []
    for name, settings in _configs().items():
        if args.only and name not in args.only:
            continue
        start, cpu = time.perf_counter(), time.process_time()
        results = scribe.fit(counts, "zinb", guide_family="skew_gene", progress=False,
                             seed=args.seed, **settings)
        row = dict(name=name, size=args.size, seconds=time.perf_counter() - start,
                   cpu_seconds=time.process_time() - cpu, n_steps_run=int(results.n_steps_run),
                   converged=bool(results.converged),
                   final_loss=float(np.asarray(results.loss_history)[-1]),
                   load=round(os.getloadavg()[0], 1))
        row.update(evaluate(results, counts, truth))
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
