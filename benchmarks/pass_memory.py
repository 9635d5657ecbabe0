"""Peak memory of the streamed pass alone (keeping the non-zeros), current code against a
commit's ``scribe/counts_stream.py``, each in a fresh process, alternated.

    python benchmarks/pass_memory.py --file /tmp/scale/counts_200000x20000.h5ad \\
        --baseline 9119f0a --repeats 1 --out benchmarks/results/pass_memory_200000x20000.json

The baseline module is read with ``git show <commit>:scribe/counts_stream.py`` and run
against the current ``scribe`` package (its imports are unchanged); it collected
per-block parts and concatenated them at the end. Per run: wall / CPU seconds of the
pass, the kept bytes and the process's peak RSS (``resource.getrusage``) less its RSS
after opening the file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args) -> dict:
    import importlib.util

    import anndata

    from scribe.cell_blocks import open_counts

    if args.baseline:
        source = subprocess.run(["git", "show", f"{args.baseline}:scribe/counts_stream.py"],
                                capture_output=True, text=True, check=True, cwd=ROOT).stdout
        path = f"/tmp/counts_stream_{args.baseline}.py"
        with open(path, "w") as handle:
            handle.write(source)
        spec = importlib.util.spec_from_file_location("baseline_stream", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["baseline_stream"] = module     # dataclasses look their module up
        spec.loader.exec_module(module)
        stream_counts = module.stream_counts
    else:
        from scribe.counts_stream import stream_counts
    data = anndata.read_h5ad(args.file, backed="r")
    blocks, _ = open_counts(data)
    if not args.baseline:
        blocks.bound_block_entries()
    rss_open = _rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    streamed = stream_counts(blocks, keep_entries=True)
    return {"code": args.baseline or "current", "block_cells": blocks.block_cells,
            "pass_s": time.perf_counter() - started, "pass_cpu_s": time.process_time() - cpu,
            "kept_mb": streamed.entries.nbytes / 2**20, "nnz": streamed.nnz,
            "rss_after_open_mb": rss_open, "peak_rss_mb": _rss_mb()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--file", required=True)
    parser.add_argument("--baseline", default=None, help="commit of the old pass")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    rows = []
    for _ in range(args.repeats):
        for baseline in (args.baseline, None):
            command = [sys.executable, __file__, "--worker", "--file", args.file]
            if baseline:
                command += ["--baseline", baseline]
            with open("/proc/loadavg") as handle:
                load = handle.read().split()[0]
            done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
            row = (json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0
                   else {"code": baseline or "current", "error": done.stderr[-1500:]})
            row["load_before"] = load
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"file": args.file, "rows": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
