"""Peak memory of a fit and of a log-likelihood call, per non-zero of the counts.

Each measurement runs in its own process under ``/usr/bin/time -v`` (peak resident set
size). A *baseline* process only imports scribe and builds the caller's CSR (float32
values, int32 indices, the same seed), so ``peak - baseline`` is what scribe adds; divided
by the number of non-zeros it gives bytes per non-zero. Fits run a few steps only (their
setup and first step set the peak). The log-likelihood rows time the first call
(validation, statistics, compilation, evaluation) and a second call on the same matrix
(cached statistics), and report the call's own peak: ``VmHWM`` is reset just before it
(``/proc/self/clear_refs``) and read after, minus the resident size before the call.

    .venv/bin/python benchmarks/memory.py --sizes 200000x2000 --out \\
        benchmarks/results/memory.json

``--code DIR`` runs the workers with another checkout's ``scribe`` and ``plugins`` first on
``PYTHONPATH`` (a "before" measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def simulated_csr(n_cells: int, n_genes: int, per_cell: int, seed: int = 0):
    """Counts with exactly ``per_cell`` non-zeros per cell (genes uniform), values
    ``1 + NB(1, 0.5)``; filled block by block into preallocated arrays, so building
    them peaks at the CSR plus one block."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    nnz = n_cells * per_cell
    data = np.empty(nnz, np.float32)
    indices = np.empty(nnz, np.int32)
    block = max(1, (1 << 22) // n_genes)
    for start in range(0, n_cells, block):
        stop = min(start + block, n_cells)
        keys = rng.random((stop - start, n_genes), dtype=np.float32)
        genes = np.sort(np.argpartition(keys, per_cell, axis=1)[:, :per_cell], axis=1)
        part = slice(start * per_cell, stop * per_cell)
        indices[part] = genes.ravel()
        data[part] = 1 + rng.negative_binomial(1, 0.5, genes.size)
    indptr = np.arange(n_cells + 1, dtype=np.int64) * per_cell
    if nnz < 2**31:
        indptr = indptr.astype(np.int32)
    return sp.csr_matrix((data, indices, indptr), shape=(n_cells, n_genes))


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        return int(re.search(r"VmRSS:\s+(\d+)", status.read()).group(1))


def _hwm_kb() -> int:
    with open("/proc/self/status") as status:
        return int(re.search(r"VmHWM:\s+(\d+)", status.read()).group(1))


def _reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def _results(csr, model_type: str):
    """Results at the data-informed starting values (no training: analyses only need
    parameters)."""
    import jax.numpy as jnp
    from numpyro.infer.svi import SVIRunResult

    import scribe
    from scribe.data import prepare_counts
    from scribe.svi.engine import initial_params
    from scribe.svi.factory import SVIResultsFactory

    k = 2 if model_type.endswith("_mix") else None
    config = scribe.ModelConfig(model_type=model_type, n_components=k)
    counts, _ = prepare_counts(csr)
    run = SVIRunResult(initial_params(config, counts, seed=0), None, jnp.zeros(1))
    return SVIResultsFactory.create_results(run, config, None, counts, *csr.shape,
                                            model_type, k, {})


def worker(args) -> dict:
    warnings.simplefilter("ignore")
    import scribe

    n_cells, n_genes = (int(v) for v in args.size.split("x"))
    t0 = time.perf_counter()
    csr = simulated_csr(n_cells, n_genes, args.per_cell)
    out = {"nnz": int(csr.nnz), "build_s": time.perf_counter() - t0,
           "csr_bytes": int(csr.data.nbytes + csr.indices.nbytes + csr.indptr.nbytes)}
    batch = None if args.batch_size == "none" else int(args.batch_size)
    if args.worker == "fit":
        t0 = time.perf_counter()
        scribe.fit(csr, args.model_type, n_components=2 if "_mix" in args.model_type
                   else None, n_steps=args.steps, batch_size=batch, tol=None, progress=False)
        out["fit_s"] = time.perf_counter() - t0
    elif args.worker == "loglik":
        results = _results(csr, args.model_type)
        results.get_posterior_samples(n_samples=args.draws)
        for call in ("first", "second"):
            rss = _rss_kb()
            _reset_hwm()
            t0 = time.perf_counter()
            values = results.log_likelihood(csr, batch_size=batch)
            values.block_until_ready()
            out[f"{call}_s"] = time.perf_counter() - t0
            out[f"{call}_extra_peak_bytes"] = (_hwm_kb() - rss) * 1024
            del values
    return out


def run(args, mode: str, model_type: str = "", batch_size: str = "none") -> dict:
    command = ["/usr/bin/time", "-v", sys.executable, os.path.abspath(__file__),
               "--worker", mode, "--size", args.size_now, "--per-cell", str(args.per_cell),
               "--model-type", model_type or "nbdm", "--batch-size", batch_size,
               "--steps", str(args.steps), "--draws", str(args.draws)]
    env = dict(os.environ)
    if args.code:
        env["PYTHONPATH"] = os.pathsep.join(
            [args.code, os.path.join(args.code, "plugins"), env.get("PYTHONPATH", "")])
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    row = {"mode": mode, "model_type": model_type, "batch_size": batch_size}
    if proc.returncode != 0 or peak is None:
        row["error"] = proc.stderr.strip().splitlines()[-1:] if proc.stderr else "failed"
        return row
    row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    row["peak_rss_bytes"] = int(peak.group(1)) * 1024
    return row


def table(paths: list[str]) -> str:
    """Markdown tables of fit rows (with the per-non-zero slope between sizes) and of
    log-likelihood rows."""
    rows = []
    for path in paths:
        with open(path) as f:
            report = json.load(f)
        for row in report["rows"]:
            rows.append({**row, "code": report["meta"].get("label", report["meta"]["code"])})
    fits = [r for r in rows if r["mode"] == "fit" and "extra_bytes" in r]
    lines = ["| model type | batch | size | non-zeros | peak − baseline | per non-zero | "
             "slope between sizes |", "|---|---|---|---|---|---|---|"]
    for key in sorted({(r["model_type"], r["batch_size"]) for r in fits}):
        group = sorted((r for r in fits if (r["model_type"], r["batch_size"]) == key),
                       key=lambda r: r["nnz"])
        slope = ""
        if len(group) >= 2:
            a, b = group[0], group[-1]
            per = (b["extra_bytes"] - a["extra_bytes"]) / (b["nnz"] - a["nnz"])
            slope = (f"{a['extra_bytes'] / 1e9 - per * a['nnz'] / 1e9:.2f} GB + "
                     f"{per:.1f} B/nnz")
        for r in group:
            lines.append(f"| `{key[0]}` | {key[1]} | {r['size']} | {r['nnz'] / 1e6:.0f} M | "
                         f"{r['extra_bytes'] / 1e9:.2f} GB | {r['bytes_per_nnz']:.1f} B | "
                         f"{slope if r is group[-1] else ''} |")
    lines += ["", "| code | size | batch | first call | second call | first call's peak | "
                  "second call's peak |", "|---|---|---|---|---|---|---|"]
    for r in (r for r in rows if r["mode"] == "loglik" and "first_s" in r):
        lines.append(f"| {r['code']} | {r['size']} | {r['batch_size']} | {r['first_s']:.1f} s"
                     f" | {r['second_s']:.1f} s | {r['first_extra_peak_bytes'] / 1e9:.2f} GB"
                     f" | {r['second_extra_peak_bytes'] / 1e9:.2f} GB |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["200000x2000"])
    parser.add_argument("--per-cell", type=int, default=100, help="non-zeros per cell")
    parser.add_argument("--model-types", nargs="*",
                        default=["nbdm", "zinb", "nbvcp", "zinbvcp", "nbdm_mix",
                                 "zinbvcp_mix"])
    parser.add_argument("--batch-sizes", nargs="*", default=["1024", "none"])
    parser.add_argument("--loglik", nargs="*", default=["none", "4096"],
                        help="batch sizes of the log-likelihood rows (nbdm)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--code", default=None)
    parser.add_argument("--label", default=None, help="name of the code in the tables")
    parser.add_argument("--out", default=None)
    parser.add_argument("--table", nargs="+", default=None,
                        help="print markdown tables of these JSON files and exit")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--size", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model-type", default="nbdm", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", default="none", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.table:
        print(table(args.table))
        return
    import jax

    meta = {"machine": platform.platform(), "cpu_count": os.cpu_count(),
            "jax": jax.__version__, "code": args.code or "this checkout",
            "label": args.label or ("after" if not args.code else "before"),
            "steps": args.steps, "draws": args.draws, "per_cell": args.per_cell}
    report = {"meta": meta, "rows": []}
    for size in args.sizes:
        args.size_now = size
        base = run(args, "baseline")
        base["size"] = size
        report["rows"].append(base)
        print(json.dumps(base), flush=True)
        jobs = [("fit", m, b) for b in args.batch_sizes for m in args.model_types]
        jobs += [("loglik", "nbdm", b) for b in args.loglik]
        for mode, model_type, batch in jobs:
            row = run(args, mode, model_type, batch)
            row["size"] = size
            if "peak_rss_bytes" in row and "peak_rss_bytes" in base:
                extra = row["peak_rss_bytes"] - base["peak_rss_bytes"]
                row["extra_bytes"] = extra
                row["bytes_per_nnz"] = extra / row["nnz"]
            report["rows"].append(row)
            print(json.dumps(row), flush=True)
            if args.out:
                with open(args.out, "w") as f:
                    json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
