"""What the stop's two criteria see along one long fit (docs/convergence.md).

Usage::

    python benchmarks/drift_trace.py --model-type nbvcp_mix --size 5000x1000 \\
        --batch-size 512 --n-steps 6000 --out benchmarks/results/drift_trace_x.json

The counts are ``benchmarks/time_to_fit.py``'s simulation (same settings and seed). One
``scribe.fit`` runs all ``--n-steps`` (patience set beyond reach, so nothing stops it)
while the stopping rule records, per 100-step window, the loss rule's relative
improvement and whether it was flat, and the drift rule's per-site drift (sd per
window), noise level ``q2`` and span (:mod:`scribe.svi.drift`). From these the script
reports where the loss rule alone would have stopped (3 consecutive flat windows) and
where the combined rule stops, and the fit's errors at the end of the trace.
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
from time_to_fit import SIMULATION, evaluate  # noqa: E402

PATIENCE = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-type", default="nbvcp_mix")
    parser.add_argument("--size", default="5000x1000")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--n-steps", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import scribe
    from scribe import fitting
    from scribe.simulate import simulate_counts
    from scribe.svi.convergence import ConvergenceMonitor

    rows: list[dict] = []

    class Recording(ConvergenceMonitor):
        def update(self, losses, snapshot=None):
            stop = super().update(losses, snapshot)
            rows.append(dict(step=int(np.size(losses)), improvement=self.improvement,
                             loss_flat=self.improvement is not None
                             and self.improvement < self.tol,
                             drift_flat=bool(self.drift.flat),
                             threshold=self.drift.state.threshold,
                             sites=self.drift.trace[-1] if self.drift.trace else {}))
            return stop

    fitting.ConvergenceMonitor = Recording
    n_cells, n_genes = map(int, args.size.split("x"))
    base = args.model_type.removesuffix("_mix")
    k = 3 if args.model_type.endswith("_mix") else None
    settings = SIMULATION["capture" if base in ("nbvcp", "zinbvcp") else "plain"]
    dense, truth = simulate_counts(args.model_type, n_cells, n_genes, n_components=k,
                                   seed=args.seed, **settings)
    counts = sp.csr_matrix(dense.astype(np.float32))
    start = time.perf_counter()
    results = scribe.fit(counts, args.model_type, n_components=k, seed=args.seed,
                         n_steps=args.n_steps, batch_size=args.batch_size,
                         patience=10**9, progress=False)
    seconds = time.perf_counter() - start
    run = 0
    loss_stop = combined_stop = None
    for row in rows:
        run = run + 1 if row["loss_flat"] else 0
        if run >= PATIENCE and loss_stop is None:
            loss_stop = row["step"]
        if run >= PATIENCE and row["drift_flat"] and combined_stop is None:
            combined_stop = row["step"]
    out = dict(model_type=args.model_type, size=args.size, batch_size=args.batch_size,
               n_steps=args.n_steps, seconds=seconds, load=os.getloadavg()[0],
               loss_rule_stop=loss_stop, combined_stop=combined_stop,
               end=evaluate(results, counts, truth), windows=rows)
    print(json.dumps({k: v for k, v in out.items() if k != "windows"}), flush=True)
    for row in rows[::5]:
        sites = " ".join(f"{s}:{a[0]:.4f}/{a[3]:.4f}/{a[2]} mean:{b[0]:.4f}/{b[3]:.4f}/{b[2]}"
                         for s, (a, b) in row["sites"].items())
        print(row["step"], row["improvement"], row["loss_flat"], row["drift_flat"], sites)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(out, handle, separators=(",", ":"), default=float)


if __name__ == "__main__":
    main()
