"""Peak memory of the analyses on counts from a backed .h5ad against counts in memory.

    # a fit to analyse (nbdm_mix, K = 3, batch 4096, a few steps), saved next to the data
    python benchmarks/analyses_memory.py fit --file /tmp/scale/counts_200000x2000.h5ad
    # each analysis x source in a fresh worker process (its own peak RSS)
    python benchmarks/analyses_memory.py run --file /tmp/scale/counts_200000x2000.h5ad \\
        --out benchmarks/results/analyses_memory_200000x2000.json

Analyses: ``log_likelihood_map`` (per cell), ``cell_type_probabilities_map`` and
``to_anndata`` (log-likelihood, assignments, entropy, goodness of fit; in place on the
backed AnnData), and, for ``--model-type nbvcp`` fits, ``denoise_counts`` written to an
h5py dataset (``out=``). Per case: wall / CPU seconds and the worker's peak RSS
(``resource.getrusage``), with the RSS after loading the results and opening the data.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def results_path(file: str, model_type: str) -> str:
    return file.replace(".h5ad", f".{model_type}.results.nc")


def fit(args) -> None:
    import warnings

    import anndata

    import scribe

    data = anndata.read_h5ad(args.file, backed="r")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = scribe.fit(data, args.model_type, n_components=3 if "_mix" in
                             args.model_type else None, batch_size=4096,
                             n_steps=args.steps, progress=False)
    results.save(results_path(args.file, args.model_type))
    print(json.dumps({"saved": results_path(args.file, args.model_type),
                      "peak_rss_mb": _rss_mb()}))


def worker(args) -> dict:
    import warnings

    import anndata
    import h5py

    from scribe.svi.io import load

    results = load(results_path(args.file, args.model_type))
    started, cpu = time.perf_counter(), time.process_time()
    if args.source == "backed":
        data = anndata.read_h5ad(args.file, backed="r")
    else:
        data = anndata.read_h5ad(args.file)
    rss_open = _rss_mb()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if args.analysis == "log_likelihood_map":
            out = results.log_likelihood_map(data, verbose=False)
            shape = out.shape
        elif args.analysis == "cell_type_probabilities_map":
            out = results.cell_type_probabilities_map(data, verbose=False)["probabilities"]
            shape = out.shape
        elif args.analysis == "to_anndata":
            written = results.to_anndata(data, inplace=True)
            shape = written.obs.shape
        else:   # denoise_counts into an h5py dataset
            target = os.path.join(os.path.dirname(args.file), "denoised.h5")
            with h5py.File(target, "w") as handle:
                out = handle.create_dataset("denoised", shape=data.shape, dtype="f4",
                                            chunks=(512, data.shape[1]))
                results.denoise_counts(data, batch_size=4096, out=out)
                shape = out.shape
            os.remove(target)
    return {"analysis": args.analysis, "source": args.source,
            "model_type": args.model_type, "shape": list(shape),
            "seconds": time.perf_counter() - started,
            "cpu_s": time.process_time() - cpu, "rss_after_open_mb": rss_open,
            "peak_rss_mb": _rss_mb()}


def _load() -> str:
    with open("/proc/loadavg") as handle:
        return handle.read().split(" ")[0]


def run(args) -> None:
    rows = []
    for analysis in args.analyses:
        for source in args.sources:
            command = [sys.executable, __file__, "worker", "--file", args.file,
                       "--analysis", analysis, "--source", source,
                       "--model-type", args.model_type]
            load = _load()
            done = subprocess.run(command, capture_output=True, text=True,
                                  timeout=args.timeout)
            row = (json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0
                   else {"analysis": analysis, "source": source,
                         "error": done.stderr[-1500:]})
            row["load_before"] = load
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"file": args.file, "rows": rows}, handle, indent=1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("fit", "run", "worker"):
        p = sub.add_parser(name)
        p.add_argument("--file", required=True)
        p.add_argument("--model-type", default="nbdm_mix")
    sub.choices["fit"].add_argument("--steps", type=int, default=20)
    sub.choices["run"].add_argument("--analyses", nargs="+", default=[
        "log_likelihood_map", "cell_type_probabilities_map", "to_anndata"])
    sub.choices["run"].add_argument("--sources", nargs="+", default=["backed", "memory"])
    sub.choices["run"].add_argument("--timeout", type=int, default=1800)
    sub.choices["run"].add_argument("--out")
    sub.choices["worker"].add_argument("--analysis", required=True)
    sub.choices["worker"].add_argument("--source", default="backed")
    args = parser.parse_args(argv)
    if args.command == "fit":
        fit(args)
    elif args.command == "run":
        run(args)
    else:
        print(json.dumps(worker(args)))


if __name__ == "__main__":
    main()
