"""Atlas scale: fits of 10^5-10^6 cells from a backed .h5ad and from memory.

Three steps, each case of the last in a fresh worker process (its own compilation and
peak resident set size, ``resource.getrusage``):

    # 1. counts written in chunks of cells to <workdir>/counts_<C>x<G>.h5ad (CSR .X)
    python benchmarks/scale.py generate --sizes 200000x2000 --workdir /tmp/scale
    # 2. the cases (model x batch size x source) on each size
    python benchmarks/scale.py run --sizes 200000x2000 --workdir /tmp/scale \\
        --out benchmarks/results/scale_200000x2000.json
    # 3. the JSON as the markdown table of docs/benchmarks.md ("Atlas scale")
    python benchmarks/scale.py table benchmarks/results/scale_*.json

Per case: read time (opening the backed file, or reading the whole .h5ad into memory),
the one pass over the counts (``read_s``: statistics, cell sample, non-zeros where
needed), starting values, device arrays, ``svi.init`` (compiled), the time to the first
step (everything up to the end of the first compiled chunk, less the chunk's other steps
at the measured step time), the step time (median over the later chunks), steps run and
whether the fit converged, and the peak RSS. ``--steps N`` caps the steps (``tol`` stays
the default, so a fit may stop earlier). Wall and CPU seconds are both recorded (CPU
seconds are what a loaded machine does not inflate).

Counts: cells of three types (equal shares), each with its own gene profile (log-normal
weights, one third of the genes 4-fold up per type); cell ``c`` has gene ``g`` non-zero
with probability ``min(1, s_c q_kg)`` (size factor ``s_c ~ Gamma(4, 1/4)``, mean ``q`` =
the requested density), drawn with one uniform per (cell, gene), vectorised over blocks
of 2,000 cells; values ``1 + NB(1, 0.5)``. 200,000 x 20,000 is written in minutes.
Not drawn from scribe's models: the table measures cost, not accuracy.

``--devices N`` runs every case with its cells split across ``N`` JAX devices
(``scribe.fit(devices=N)``; on the CPU each worker gets ``N`` forced host devices through
``XLA_FLAGS``) and adds the per-device columns: the bytes each device holds during
training (``benchmarks/sharding.py``'s ``device_memory``: ``memory_stats()`` where the
backend reports it, else the live arrays' shards) next to the step time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

#: (model type, batch size) per case; K = 3 for mixtures.
CASES = (("nbdm", None), ("nbvcp", None), ("nbdm_mix", None), ("nbdm_mix", 4096),
         ("zinbvcp", 4096))
DENSITY = 0.075
N_TYPES = 3


def parse_size(text: str) -> tuple[int, int]:
    cells, genes = text.lower().split("x")
    return int(cells), int(genes)


def counts_path(workdir: str, n_cells: int, n_genes: int) -> str:
    return os.path.join(workdir, f"counts_{n_cells}x{n_genes}.h5ad")


# ---- generation -------------------------------------------------------------------------------
#: Rows drawn at once: a (rows, G) float32 uniform buffer (160 MB at 20,000 genes).
DRAW_CELLS = 2_000


def _profiles(rng, n_genes: int, density: float) -> np.ndarray:
    """Per type, each gene's probability of a non-zero in a cell of size factor 1, ``(3, G)``
    float32: log-normal weights, one third of the genes 4-fold up per type, scaled so that
    the mean probability is ``density`` (before the clip at 1 of the few largest)."""
    weights = rng.lognormal(0.0, 1.0, (N_TYPES, n_genes))
    for k in range(N_TYPES):
        weights[k, k * n_genes // N_TYPES:(k + 1) * n_genes // N_TYPES] *= 4
    return (density * n_genes * weights / weights.sum(axis=1, keepdims=True)).astype(
        np.float32)


def _chunk(rng, first: int, n_rows: int, profiles: np.ndarray):
    """CSR rows ``first .. first + n_rows - 1`` (float32 values, int32 sorted indices).

    Cell ``c`` of type ``c mod 3`` has gene ``g`` non-zero with probability
    ``min(1, s_c q_kg)`` (``s_c ~ Gamma(4, 1/4)``, mean 1): one uniform per (cell, gene)
    in blocks of :data:`DRAW_CELLS` rows, so the draw is vectorised and the non-zeros come
    out sorted by cell and gene without a sort. Values are ``1 + NB(1, 1/2)`` (numpy's
    geometric(1/2)).
    """
    import scipy.sparse as sp

    n_genes = profiles.shape[1]
    kinds = (first + np.arange(n_rows)) % N_TYPES
    size = rng.gamma(4.0, 0.25, n_rows).astype(np.float32)
    uniforms = np.empty((min(DRAW_CELLS, n_rows), n_genes), np.float32)
    indices, lengths = [], []
    for lo in range(0, n_rows, DRAW_CELLS):       # blocks of rows, not single cells
        hi = min(lo + DRAW_CELLS, n_rows)
        draw = uniforms[:hi - lo]
        rng.random(dtype=np.float32, out=draw)
        draw /= size[lo:hi, None]                  # u / s < q  <=>  u < s q
        hit = draw < profiles[kinds[lo:hi]]
        lengths.append(hit.sum(axis=1))
        indices.append(np.nonzero(hit)[1].astype(np.int32))
    indices = np.concatenate(indices)
    indptr = np.zeros(n_rows + 1, np.int64)
    np.cumsum(np.concatenate(lengths), out=indptr[1:])
    values = rng.geometric(0.5, indices.size).astype(np.float32)
    return sp.csr_matrix((values, indices, indptr), shape=(n_rows, n_genes))


def generate(n_cells: int, n_genes: int, path: str, density: float = DENSITY,
             chunk_cells: int = 20_000, seed: int = 0) -> dict:
    """Write the counts to ``path`` chunk by chunk (peak: one chunk). Returns metadata."""
    import anndata
    import h5py
    import pandas as pd
    from anndata.io import sparse_dataset, write_elem

    rng = np.random.default_rng(seed)
    profiles = _profiles(rng, n_genes, density)
    started = time.perf_counter()
    skeleton = anndata.AnnData(
        obs=pd.DataFrame(index=pd.Index([f"c{i}" for i in range(n_cells)], name="cell")),
        var=pd.DataFrame(index=pd.Index([f"g{j}" for j in range(n_genes)], name="gene")))
    skeleton.write_h5ad(path)
    nnz = 0
    with h5py.File(path, "a") as handle:
        for first in range(0, n_cells, chunk_cells):
            block = _chunk(rng, first, min(chunk_cells, n_cells - first), profiles)
            nnz += block.nnz
            if first == 0:
                write_elem(handle, "X", block)
            else:
                sparse_dataset(handle["X"]).append(block)
    return {"path": path, "n_cells": n_cells, "n_genes": n_genes, "nnz": nnz,
            "density": nnz / (n_cells * n_genes), "generate_s": time.perf_counter() - started,
            "bytes": os.path.getsize(path)}


# ---- one case (worker process) ----------------------------------------------------------------
def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux: kB


def worker(args) -> dict:
    import warnings

    import anndata

    import scribe

    started = time.perf_counter()
    if args.source == "backed":
        data = anndata.read_h5ad(args.file, backed="r")
    else:
        data = anndata.read_h5ad(args.file)
    open_s = time.perf_counter() - started
    rss_after_read = _rss_mb()
    batch = None if args.batch_size == 0 else args.batch_size
    devices = args.devices if args.devices and args.devices > 1 else None
    seen = sample_device_memory() if devices else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_started = time.perf_counter()
        results = scribe.fit(data, args.model_type, n_components=3 if "_mix" in
                             args.model_type else None, batch_size=batch,
                             n_steps=args.steps, progress=False, devices=devices)
        fit_s = time.perf_counter() - fit_started
    t = results.timings
    later_steps = t.get("loop_steps", 0)
    step_s = t["loop_s"] / later_steps if later_steps else float("nan")
    first_steps = t.get("first_chunk_steps", 1)
    first_step_compile_s = t["first_chunk_s"] - (first_steps - 1) * (
        step_s if np.isfinite(step_s) else 0.0)
    setup_s = sum(t.get(k, 0.0) for k in ("read_s", "initial_values_s", "device_counts_s",
                                          "svi_init_s"))
    return {
        "model_type": args.model_type, "batch_size": batch, "source": args.source,
        "open_s": open_s, "rss_after_read_mb": rss_after_read,
        **{k: v for k, v in t.items()},
        "setup_s": setup_s, "time_to_first_step_s": setup_s + first_step_compile_s,
        "step_ms": 1e3 * step_s, "fit_s": fit_s, "n_steps_run": int(results.n_steps_run),
        "converged": bool(results.converged), "peak_rss_mb": _rss_mb(),
        "process_cpu_s": time.process_time(),
        "initial_values_cells": int(results.idata.optimization.attrs.get(
            "initial_values_cells", -1)),
        **(device_columns(seen, devices) if devices else {}),
    }


def sample_device_memory() -> dict:
    """Have the fit's convergence monitor record each device's bytes once, after its
    second compiled chunk (during training, with the counts and state on the devices)."""
    from sharding import device_memory

    from scribe.svi.convergence import ConvergenceMonitor

    seen: dict = {}
    original = ConvergenceMonitor.update

    def update(self, losses):
        seen["calls"] = seen.get("calls", 0) + 1
        if seen["calls"] == 2:
            seen["memory"] = device_memory()
        return original(self, losses)

    ConvergenceMonitor.update = update
    return seen


def device_columns(seen: dict, n_devices: int) -> dict:
    """Per-device columns: bytes held by each device during training (MiB)."""
    memory = seen.get("memory") or {}
    return {"n_devices": n_devices,
            "device_memory_mib": [b / 2**20 for b in memory.values()]}


# ---- driver -----------------------------------------------------------------------------------
def _load() -> str:
    with open("/proc/loadavg") as handle:
        return handle.read().split(" ")[0]


def run(args) -> None:
    env = dict(os.environ)
    if args.devices and args.devices > 1:
        # Forced host devices on the CPU (ignored by GPU backends); set before JAX starts.
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_"
                            f"device_count={args.devices}").strip()
    rows = []
    for size in args.sizes:
        n_cells, n_genes = parse_size(size)
        path = counts_path(args.workdir, n_cells, n_genes)
        for case in args.cases:
            model_type, _, batch = case.partition(":")
            for source in args.sources:
                command = [sys.executable, __file__, "worker", "--file", path,
                           "--model-type", model_type, "--batch-size", batch or "0",
                           "--source", source, "--steps", str(args.steps),
                           "--devices", str(args.devices or 1)]
                load = _load()
                done = subprocess.run(command, capture_output=True, text=True,
                                      timeout=args.timeout, env=env)
                if done.returncode != 0:
                    row = {"model_type": model_type, "batch_size": batch or None,
                           "source": source, "error": done.stderr[-2000:]}
                else:
                    row = json.loads(done.stdout.strip().splitlines()[-1])
                row.update(size=size, load_before=load)
                print(json.dumps(row), flush=True)
                rows.append(row)
    meta = {"machine": platform.platform(), "cpu_count": os.cpu_count(),
            "steps_cap": args.steps, "python": platform.python_version()}
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"meta": meta, "rows": rows}, handle, indent=1)


def _cpu_columns(r: dict) -> dict:
    """CPU-second equivalents of the wall figures (None for rows without CPU times)."""
    if "first_chunk_cpu_s" not in r:
        return {}
    step = r["loop_cpu_s"] / r["loop_steps"] if r.get("loop_steps") else 0.0
    setup = sum(r.get(k, 0.0) for k in ("read_cpu_s", "initial_values_cpu_s",
                                         "device_counts_cpu_s", "svi_init_cpu_s"))
    first = setup + r["first_chunk_cpu_s"] - (r["first_chunk_steps"] - 1) * step
    return {"setup_cpu_s": setup, "first_step_cpu_s": first, "step_cpu_ms": 1e3 * step}


def _devices_cell(row: dict) -> str:
    memory = row.get("device_memory_mib")
    if not row.get("n_devices"):
        return "1"
    return f"{row['n_devices']}: " + ", ".join(f"{m:.0f}" for m in memory or [])


def table(paths: list[str]) -> str:
    def both(wall, cpu, fmt="{:.1f}"):
        return fmt.format(wall) + ("" if cpu is None else " (" + fmt.format(cpu) + ")")

    lines = ["| size | model | batch | source | pass s | starting values s | svi.init s | "
             "first step s | step ms | steps | conv. | peak RSS GB | devices: MiB each | "
             "load |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for path in paths:
        with open(path) as handle:
            rows = json.load(handle)["rows"]
        for r in rows:
            if "error" in r:
                lines.append(f"| {r['size']} | {r['model_type']} | {r['batch_size']} | "
                             f"{r['source']} | failed: {r['error'][-80:]!r} |")
                continue
            c = _cpu_columns(r)
            lines.append(
                f"| {r['size']} | {r['model_type']} | {r['batch_size'] or 'all'} | "
                f"{r['source']} | {both(r['read_s'], r.get('read_cpu_s'))} | "
                f"{both(r['initial_values_s'], r.get('initial_values_cpu_s'))} | "
                f"{both(r['svi_init_s'], r.get('svi_init_cpu_s'))} | "
                f"{both(r['time_to_first_step_s'], c.get('first_step_cpu_s'))} | "
                f"{both(r['step_ms'], c.get('step_cpu_ms'))} | "
                f"{r['n_steps_run']} | {'yes' if r['converged'] else 'no'} | "
                f"{r['peak_rss_mb'] / 1024:.2f} | {_devices_cell(r)} | "
                f"{r.get('load_before', '')} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate")
    gen.add_argument("--sizes", nargs="+", default=["200000x2000"])
    gen.add_argument("--workdir", default="/tmp/scribe_scale")
    gen.add_argument("--density", type=float, default=DENSITY)
    go = sub.add_parser("run")
    go.add_argument("--sizes", nargs="+", default=["200000x2000"])
    go.add_argument("--workdir", default="/tmp/scribe_scale")
    go.add_argument("--cases", nargs="+",
                    default=[m + (f":{b}" if b else "") for m, b in CASES])
    go.add_argument("--sources", nargs="+", default=["backed", "memory"])
    go.add_argument("--steps", type=int, default=2000)
    go.add_argument("--timeout", type=int, default=3600)
    go.add_argument("--devices", type=int, default=None,
                    help="split cells across N devices (forced host devices on the CPU)")
    go.add_argument("--out")
    work = sub.add_parser("worker")
    work.add_argument("--file", required=True)
    work.add_argument("--model-type", required=True)
    work.add_argument("--batch-size", type=int, default=0)
    work.add_argument("--source", choices=["backed", "memory"], default="backed")
    work.add_argument("--steps", type=int, default=2000)
    work.add_argument("--devices", type=int, default=1)
    tab = sub.add_parser("table")
    tab.add_argument("paths", nargs="+")
    args = parser.parse_args(argv)
    if args.command == "generate":
        os.makedirs(args.workdir, exist_ok=True)
        for size in args.sizes:
            n_cells, n_genes = parse_size(size)
            print(json.dumps(generate(n_cells, n_genes, counts_path(args.workdir, n_cells,
                                                                    n_genes), args.density)))
    elif args.command == "run":
        run(args)
    elif args.command == "worker":
        print(json.dumps(worker(args)))
    else:
        print(table(args.paths))


if __name__ == "__main__":
    main()
