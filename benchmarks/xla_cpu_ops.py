"""Per-element cost of the indexing operations a sparse likelihood is made of, on XLA's CPU
backend, at the size of a mixture step (9.5 M non-zeros, K = 3 components, 20,000 cells,
2,000 genes x 17 table rows).

Why: a mixture's step is one pass over its non-zeros (gather a table row, sum per cell)
and its transpose (gather per cell, scatter-add per table row); this measures which
layout and primitive is cheapest, interleaved in one process (medians), with the load.

    python benchmarks/xla_cpu_ops.py --out benchmarks/results/xla_cpu_ops.json
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nnz", type=int, default=9_500_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp
    import numpy as np
    import scipy.sparse as sp
    from jax.experimental import sparse as jsparse

    n, rows, k, n_cells = args.nnz, 2000 * 17, 3, 20000
    rng = np.random.default_rng(0)
    cells_np = np.sort(rng.integers(0, n_cells, n)).astype(np.int32)
    keys_np = rng.integers(0, rows, n).astype(np.int32)
    order = np.lexsort((cells_np, keys_np))
    cells, keys = jnp.asarray(cells_np), jnp.asarray(keys_np)
    cells_by_key, keys_sorted = jnp.asarray(cells_np[order]), jnp.asarray(keys_np[order])
    table = jnp.asarray(rng.normal(size=(rows, k)), jnp.float32)
    flat = table[:, 0]
    per_cell = jnp.asarray(rng.normal(size=(n_cells, k)), jnp.float32)
    values = jnp.asarray(rng.normal(size=n), jnp.float32)
    indptr = np.r_[0, np.cumsum(np.bincount(cells_np, minlength=n_cells))].astype(np.int32)
    bcsr = jsparse.BCSR((jnp.ones(n, jnp.float32), keys, jnp.asarray(indptr)),
                        shape=(n_cells, rows))
    csr = sp.csr_matrix((np.ones(n, np.float32), keys_np, indptr), shape=(n_cells, rows))
    table_np = np.asarray(table)

    def seg(x, ids, num, is_sorted):
        return jax.ops.segment_sum(x, ids, num_segments=num, indices_are_sorted=is_sorted)

    jitted = {
        "sum (N,)": (lambda v: jnp.sum(v), (values,)),
        "log + sum (N,)": (lambda v: jnp.sum(jnp.log(jnp.abs(v) + 1)), (values,)),
        "gather scalar t[keys]": (lambda t, i: jnp.sum(t[i]), (flat, keys)),
        "gather rows (N, K) t[keys]": (lambda t, i: jnp.sum(t[i]), (table, keys)),
        "segment sum by cell, sorted (N,)": (lambda v, c: seg(v, c, n_cells, True),
                                             (values, cells)),
        "segment sum by cell, sorted (N, K)": (
            lambda v, c: seg(jnp.broadcast_to(v[:, None], (n, k)), c, n_cells, True),
            (values, cells)),
        "forward: gather rows + segment sum": (lambda t, i, c: seg(t[i], c, n_cells, True),
                                               (table, keys, cells)),
        "backward, cell-major: gather + scatter-add": (
            lambda g, c, i: seg(g[c], i, rows, False), (per_cell, cells, keys)),
        "backward, key-sorted: gather + sorted segment sum": (
            lambda g, c, i: seg(g[c], i, rows, True), (per_cell, cells_by_key, keys_sorted)),
        "jax.experimental.sparse BCSR @ table": (lambda m, t: m @ t, (bcsr, table)),
    }
    calls = {name: (lambda f=jax.jit(f), a=a: f(*a)) for name, (f, a) in jitted.items()}
    for call in calls.values():
        jax.block_until_ready(call())
    calls["scipy CSR @ table (reference, not JAX)"] = lambda: csr @ table_np
    times = {name: [] for name in calls}
    load = os.getloadavg()[0]
    for _ in range(args.repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(call())
            times[name].append(time.perf_counter() - start)
    rows_out = [{"operation": name, "ms": 1e3 * float(np.median(t))} for name, t in times.items()]
    for row in rows_out:
        print(f"{row['operation']:52s} {row['ms']:8.1f} ms")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"nnz": n, "components": k, "load": [load, os.getloadavg()[0]],
                       "rows": rows_out}, handle, indent=2)


if __name__ == "__main__":
    main()
