"""Cost of the stop's drift rule per 100-step window against the window's steps.

Usage: ``python benchmarks/drift_overhead.py [--size 20000x2000] [--model-type nbvcp_mix]``.

Times the compiled snapshot of the variational posterior
(:func:`scribe.svi.drift.snapshot_fn`, per-gene and per-cell sites, as the engine takes
it) on a 100-step fit's parameters, and the host-side
:class:`~scribe.svi.drift.DriftMonitor` update with a full history; compare with the CPU
seconds per 100 steps of the same fit in docs/convergence.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(__file__))
from time_to_fit import SIMULATION  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="20000x2000")
    parser.add_argument("--model-type", default="nbvcp_mix")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    import jax

    import scribe
    from scribe.compose import Composition
    from scribe.parameterization import CELL, GENE
    from scribe.simulate import simulate_counts
    from scribe.svi.drift import DriftMonitor, snapshot_fn

    n_cells, n_genes = map(int, args.size.split("x"))
    k = 3 if args.model_type.endswith("_mix") else None
    base = args.model_type.removesuffix("_mix")
    settings = SIMULATION["capture" if base in ("nbvcp", "zinbvcp") else "plain"]
    dense, _ = simulate_counts(args.model_type, n_cells, n_genes, n_components=k, seed=0,
                               **settings)
    counts = sp.csr_matrix(dense.astype(np.float32))
    del dense
    results = scribe.fit(counts, args.model_type, n_components=k, n_steps=100, tol=None,
                         batch_size="auto", progress=False, seed=0)
    composition = Composition(results.model_config)
    watched = [n for n, s in composition.sites.items() if s.scope in (GENE, CELL)]
    snap = snapshot_fn(lambda p: {n: composition.posterior_distributions(p)[n]
                                  for n in watched})
    params = {n: jax.numpy.asarray(v) for n, v in results.params.items()}
    jax.block_until_ready(snap(params))
    monitor = DriftMonitor()
    snapshot_s, update_s = [], []
    for i in range(max(args.repeats, 44)):
        start = time.perf_counter()
        values = jax.device_get(snap(params))
        snapshot_s.append(time.perf_counter() - start)
        jitter = {n: (m + 0.01 * i * np.asarray(s), s) for n, (m, s) in values.items()}
        start = time.perf_counter()
        monitor.update(jitter)
        update_s.append(time.perf_counter() - start)
    row = dict(size=args.size, model_type=args.model_type, load=os.getloadavg()[0],
               snapshot_ms_median=1e3 * float(np.median(snapshot_s)),
               update_ms_median_full_history=1e3 * float(np.median(update_s[-10:])),
               sites={n: int(np.size(v[0])) for n, v in values.items()})
    print(json.dumps(row))


if __name__ == "__main__":
    main()
