"""Per-step SVI time and peak memory of every model type next to a hand-written NumPyro step.

Counts are simulated once per size with low capture, so that 5-10 % of entries are
non-zero as in real droplet data; every model type fits the same matrix. Each
configuration runs in its own worker process, so its peak resident memory is its own
(``os.wait4``; the parent stays small and never imports numpy or JAX, because a forked
child's peak RSS starts at its parent's). A worker measures:

* ``setup_s``: from the CSR matrix to a ready SVI state (statistics, initial values);
* ``first_call_s``: the first call of the jitted ``svi.update`` (compile + one step);
* ``step_ms``: the steady time per step, median over repeats;
* ``peak_rss_mb``: the worker's peak resident set size.

The reference is a hand-written dense NumPyro ``nbdm`` (``NegativeBinomialProbs``,
``AutoNormal`` guide, the dense counts passed as an argument), measured in the same run.

    python benchmarks/step_time.py --sizes 1000x500 20000x2000 100000x2000 \
        --batch-sizes none 512 --out benchmarks/results/step_time.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

CACHE = Path(__file__).parent / ".cache"
MODEL_TYPES = ("nbdm", "zinb", "nbvcp", "zinbvcp",
               "nbdm_mix", "zinb_mix", "nbvcp_mix", "zinbvcp_mix")


def counts_path(size: str) -> Path:
    """Simulated counts for ``size`` ("CxG"), made once and cached as a CSR ``.npz``."""
    import numpy as np
    import scipy.sparse as sp

    from scribe.simulate import simulate_counts

    path = CACHE / f"counts_{size}.npz"
    if not path.exists():
        n_cells, n_genes = map(int, size.split("x"))
        CACHE.mkdir(exist_ok=True)
        rows = []
        # In blocks of cells, so the dense simulation never holds the whole matrix.
        for start in range(0, n_cells, 10_000):
            block, _ = simulate_counts("nbvcp_mix", min(10_000, n_cells - start), n_genes,
                                       n_components=3, r_loc=-1.0, capture_range=(0.02, 0.1),
                                       seed=start)
            rows.append(sp.csr_matrix(block.astype(np.float32)))
        sp.save_npz(path, sp.vstack(rows).tocsr())
    return path


# ---- worker ---------------------------------------------------------------------------------
def handwritten_nbdm(n_cells, n_genes, counts=None, batch_size=None):
    """The reference: NB(r_g, p) with a shared p, written directly in NumPyro."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    p = numpyro.sample("p", dist.Beta(1.0, 1.0))
    r = numpyro.sample("r", dist.LogNormal(jnp.zeros(n_genes), 1.0).to_event(1))
    with numpyro.plate("cells", n_cells, subsample_size=batch_size) as idx:
        obs = counts if batch_size is None or counts is None else counts[idx]
        numpyro.sample("counts", dist.NegativeBinomialProbs(r, p).to_event(1), obs=obs)


def worker(size: str, model_type: str, batch: str, parameterization: str,
           seconds: float) -> dict:
    import jax
    import jax.numpy as jnp
    import scipy.sparse as sp
    from numpyro.infer import SVI, TraceMeanField_ELBO
    from numpyro.infer.autoguide import AutoNormal
    from numpyro.optim import Adam

    import scribe
    from scribe.counts import SparseCounts
    from scribe.svi.engine import initial_params, resolve_model_and_guide

    csr = sp.load_npz(counts_path(size)).tocsr()
    n_cells, n_genes = csr.shape
    batch_size = None if batch == "none" or int(batch) >= n_cells else int(batch)
    start = time.perf_counter()
    if model_type == "idle":
        return dict(setup_s=0.0)
    if model_type == "handwritten_nbdm":
        counts = jnp.asarray(csr.toarray())
        model, guide, init = handwritten_nbdm, AutoNormal(handwritten_nbdm), None
    else:
        k = 3 if model_type.endswith("_mix") else None
        config = scribe.ModelConfig(model_type, parameterization, n_components=k)
        model, guide = resolve_model_and_guide(config)
        counts = SparseCounts.from_matrix(csr).with_batch_size(batch_size)
        init = initial_params(config, csr, 0)
    svi = SVI(model, guide, Adam(1e-3), TraceMeanField_ELBO())
    state = svi.init(jax.random.PRNGKey(0), n_cells, n_genes, counts=counts,
                     batch_size=batch_size, init_params=init)
    jax.block_until_ready(state)
    setup = time.perf_counter() - start

    def update(state, counts):
        return svi.update(state, n_cells, n_genes, counts=counts, batch_size=batch_size)[0]

    one_step = jax.jit(update)
    start = time.perf_counter()
    state = jax.block_until_ready(one_step(state, counts))
    first = time.perf_counter() - start
    start = time.perf_counter()
    state = jax.block_until_ready(one_step(state, counts))
    estimate = time.perf_counter() - start
    # Blocks of steps in one compiled loop when steps are short (dispatch would dominate).
    block = max(1, min(50, math.ceil(0.2 / max(estimate, 1e-6))))
    steps = one_step
    if block > 1:
        steps = jax.jit(lambda s, c: jax.lax.fori_loop(0, block, lambda _, x: update(x, c), s))
        state = jax.block_until_ready(steps(state, counts))
    repeats = max(3, min(10, int(seconds / max(estimate * block, 1e-6))))
    per_step = []
    for _ in range(repeats):
        start = time.perf_counter()
        state = jax.block_until_ready(steps(state, counts))
        per_step.append((time.perf_counter() - start) / block)
    return dict(setup_s=setup, first_call_s=first, step_ms=statistics.median(per_step) * 1e3,
                repeats=repeats, block=block)


# ---- parent ---------------------------------------------------------------------------------
def run_worker(args, size, model_type, batch) -> dict:
    command = [sys.executable, __file__, "--worker", size, model_type, batch,
               "--parameterization", args.parameterization, "--seconds", str(args.seconds)]
    if model_type == "summary":
        command = [sys.executable, __file__, "--summary", size]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        return dict(error=f"worker exited with status {status}")
    row = json.loads(output.strip().splitlines()[-1])
    row["peak_rss_mb"] = usage.ru_maxrss / 1024  # kilobytes on Linux
    return row


def data_summary(size: str) -> dict:
    import numpy as np
    import scipy.sparse as sp

    csr = sp.load_npz(counts_path(size)).tocsr()
    sparse_bytes = csr.data.nbytes + csr.indices.nbytes + csr.indptr.nbytes
    max_per_gene = np.asarray(csr.max(axis=0).todense()).ravel()
    n_cells, n_genes = csr.shape
    # O(C + G max x): per-cell and per-gene statistics and the exceedance histogram.
    statistics_bytes = 4 * (3 * n_cells + 3 * n_genes + 3 * int(max_per_gene.sum()))
    return dict(size=size, density=csr.nnz / (n_cells * n_genes), nnz=int(csr.nnz),
                max_count=float(csr.max()), histogram_entries=int(max_per_gene.sum()),
                sparse_input_mb=sparse_bytes / 2**20, statistics_mb=statistics_bytes / 2**20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1000x500"])
    parser.add_argument("--batch-sizes", nargs="+", default=["none", "512"])
    parser.add_argument("--model-types", nargs="+", default=list(MODEL_TYPES))
    parser.add_argument("--parameterization", default="odds_ratio")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="aim for this much timed work per configuration")
    parser.add_argument("--out", default=None)
    parser.add_argument("--skip-reference", action="store_true",
                        help="skip the hand-written dense NumPyro reference (slow at scale)")
    parser.add_argument("--worker", nargs=3, metavar=("SIZE", "MODEL_TYPE", "BATCH"))
    parser.add_argument("--summary", metavar="SIZE")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.parameterization, args.seconds)))
        return
    if args.summary:
        import jax
        import numpyro

        print(json.dumps(dict(data_summary(args.summary), jax=jax.__version__,
                              numpyro=numpyro.__version__)))
        return

    data, rows = [], []
    for size in args.sizes:
        summary = run_worker(args, size, "summary", "none")
        versions = dict(jax=summary.pop("jax"), numpyro=summary.pop("numpyro"))
        summary.pop("peak_rss_mb")
        summary["idle_rss_mb"] = run_worker(args, size, "idle", "none")["peak_rss_mb"]
        data.append(summary)
        print(json.dumps(summary), flush=True)
        for batch in args.batch_sizes:
            base = None
            reference = [] if args.skip_reference else ["handwritten_nbdm"]
            for model_type in [*reference, *args.model_types]:
                row = dict(size=size, batch_size=batch, model_type=model_type,
                           **run_worker(args, size, model_type, batch))
                if "step_ms" in row:
                    base = row["step_ms"] if model_type == "handwritten_nbdm" else base
                    row["speedup"] = base / row["step_ms"] if base else None
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.out:
        meta = dict(machine=platform.platform(), cpu_count=os.cpu_count(), **versions,
                    parameterization=args.parameterization)
        Path(args.out).write_text(json.dumps(dict(meta=meta, data=data, rows=rows), indent=2))


if __name__ == "__main__":
    main()
