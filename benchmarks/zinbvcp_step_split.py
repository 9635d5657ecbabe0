"""zinbvcp's mini-batch step split into its dense zero term and the rest.

nbvcp is zinbvcp without the gate: the same capture factors, the same non-zeros, no
``C x G`` zero term. Both are fitted to the same simulated zinbvcp counts for a fixed
number of steps (no stop) at the same batch size, alternating in one process; the loop's
CPU seconds per step (``results.timings``, compile excluded: the first chunk of 100
steps is left out) give zinbvcp's step and nbvcp's, whose difference bounds the zero term
and the gate's factors.

    python benchmarks/zinbvcp_step_split.py --size 20000x2000 --batch-size 2048 \
        --out benchmarks/results/zinbvcp_step_split_zvcp.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from time_to_fit import SIMULATION  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="20000x2000")
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--n-steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import numpy as np
    import scipy.sparse as sp

    import scribe
    from scribe.simulate import simulate_counts

    n_cells, n_genes = map(int, args.size.split("x"))
    dense, _ = simulate_counts("zinbvcp", n_cells, n_genes, seed=0, **SIMULATION["capture"])
    counts = sp.csr_matrix(dense.astype(np.float32))
    del dense
    rows = []
    for repeat in range(args.repeats):
        for model_type in ("zinbvcp", "nbvcp"):
            load = os.getloadavg()[0]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                results = scribe.fit(counts, model_type, n_steps=args.n_steps, tol=None,
                                     batch_size=args.batch_size, progress=False)
            t = results.timings
            rows.append(dict(model_type=model_type, repeat=repeat,
                             step_cpu_ms=1e3 * t["loop_cpu_s"] / t["loop_steps"],
                             step_ms=1e3 * t["loop_s"] / t["loop_steps"],
                             first_chunk_cpu_s=t["first_chunk_cpu_s"],
                             load=[round(load, 1), round(os.getloadavg()[0], 1)]))
            print(json.dumps(rows[-1]), flush=True)
    summary = {m: float(np.median([r["step_cpu_ms"] for r in rows if r["model_type"] == m]))
               for m in ("zinbvcp", "nbvcp")}
    out = dict(size=args.size, batch_size=args.batch_size, rows=rows,
               median_step_cpu_ms=summary, started=time.strftime("%Y-%m-%d %H:%M:%S"))
    print(json.dumps(summary))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(out, handle, indent=2)


if __name__ == "__main__":
    main()
