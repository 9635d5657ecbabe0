"""Time and peak memory of every results method on a fitted ``nbdm_mix`` (K = 3).

The fit (default 20,000 x 2,000 simulated counts with 9 % non-zeros, the counts of
``step_time.py``) and ``n_samples`` posterior draws are made once and saved; each method
then runs in its own worker process that loads the saved results, so the reported peak
resident memory (``os.wait4``) is that method's alone on top of loading the results and
the counts (the ``load`` row is that baseline).

    python benchmarks/analyses.py --size 20000x2000 --samples 100 \
        --out benchmarks/results/analyses_20000x2000.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CACHE = Path(__file__).parent / ".cache"

#: Each method with its documented defaults; ``counts`` is the fitted matrix.
METHODS = {
    "load": "None",
    "get_map": "results.get_map()",
    "get_distributions": "results.get_distributions()",
    "get_posterior_samples": "results.get_posterior_samples(n_samples=S, store_samples=False)",
    "log_likelihood": "results.log_likelihood(counts)",
    "log_likelihood_by_gene": "results.log_likelihood(counts, return_by='gene')",
    "log_likelihood_split": "results.log_likelihood(counts, split_components=True)",
    "log_likelihood_map": "results.log_likelihood_map(counts)",
    "mixture_component_entropy": "results.mixture_component_entropy(counts)",
    "assignment_entropy_map": "results.assignment_entropy_map(counts)",
    "cell_type_probabilities": "results.cell_type_probabilities(counts)",
    "cell_type_probabilities_map": "results.cell_type_probabilities_map(counts)",
    "normalize_counts": "results.normalize_counts()",
    "component_divergences": "results.component_divergences()",
    "get_ppc_samples_S10": "results.get_ppc_samples(n_samples=10, store_samples=False)",
    "save": "results.save(str(CACHE / 'resave.nc'))",
    # Issue 9 (docs/analyses.md): S posterior draws where the analysis takes draws.
    "denoise_counts_map": "results.denoise_counts(counts)",
    "denoise_counts": "results.denoise_counts(counts, n_samples=S)",
    "differential_expression": "results.differential_expression(0, 1, n_samples=S)",
    "quantile_residuals_map": "results.quantile_residuals(counts)",
    "quantile_residuals": "results.quantile_residuals(counts, n_samples=S)",
    "goodness_of_fit_map": "results.goodness_of_fit(counts)",
    "goodness_of_fit": "results.goodness_of_fit(counts, n_samples=S)",
    "goodness_of_fit_S10": "results.goodness_of_fit(counts, n_samples=10)",
    "compare": "scribe.compare({'a': results, 'b': results}, counts, n_samples=S)",
    "to_anndata": "results.to_anndata(anndata.AnnData(counts), layers=('denoised',))",
    # The same elementwise analyses on zinbvcp_mix (K = 3): gate, capture and components,
    # the dearest built-in type (nbdm's denoised counts are the counts themselves).
    "denoise_counts_map_zinbvcp_mix": "capture(results).denoise_counts(counts)",
    "denoise_counts_zinbvcp_mix": "capture(results).denoise_counts(counts, n_samples=S)",
    "goodness_of_fit_map_zinbvcp_mix": "capture(results).goodness_of_fit(counts)",
    "goodness_of_fit_S10_zinbvcp_mix":
        "capture(results).goodness_of_fit(counts, n_samples=10)",
    "to_anndata_zinbvcp_mix":
        "capture(results).to_anndata(anndata.AnnData(counts), layers=('denoised',))",
}


def capture(results):
    """A ``zinbvcp_mix`` (K = 3) with the fit's ``p``, ``r`` and weights, plus a gate per
    gene and component and a capture per cell (Beta(5, 5)). The analyses' cost does not
    depend on the parameter values, only on the model type and the sizes."""
    import jax.numpy as jnp

    from scribe import ModelConfig
    from scribe.svi import ScribeSVIResults

    n_cells, n_genes = results.n_cells, results.n_genes
    params = dict(results.params)
    params.update(gate_alpha=jnp.full((3, n_genes), 2.0), gate_beta=jnp.full((3, n_genes), 20.0),
                  p_capture_alpha=jnp.full(n_cells, 5.0), p_capture_beta=jnp.full(n_cells, 5.0))
    config = ModelConfig("zinbvcp_mix", "standard", n_components=3, guide_family="mean_field")
    return ScribeSVIResults(params=params, loss_history=results.loss_history, n_cells=n_cells,
                            n_genes=n_genes, model_type="zinbvcp_mix", model_config=config,
                            prior_params={})


def fit_path(size: str, samples: int, steps: int) -> Path:
    """Fit once, draw the posterior samples and save (cached)."""
    path = CACHE / f"fit_nbdm_mix_{size}_S{samples}_{steps}.nc"
    if not path.exists():
        import scipy.sparse as sp
        from step_time import counts_path

        import scribe

        counts = sp.load_npz(counts_path(size)).tocsr()
        start = time.perf_counter()
        results = scribe.fit(counts, model_type="nbdm_mix", n_components=3, n_steps=steps,
                             progress=False)
        print(f"fit {steps} steps: {time.perf_counter() - start:.1f} s", flush=True)
        results.get_posterior_samples(n_samples=samples)
        results.save(path)
    return path


def worker(size: str, samples: int, steps: int, method: str, once: bool = False) -> dict:
    import anndata
    import jax
    import scipy.sparse as sp
    from step_time import counts_path

    import scribe

    results = scribe.load(fit_path(size, samples, steps))
    counts = sp.load_npz(counts_path(size)).tocsr()
    namespace = dict(results=results, counts=counts, S=samples, CACHE=CACHE,
                     scribe=scribe, anndata=anndata, capture=capture)
    start = time.perf_counter()
    jax.block_until_ready(eval(METHODS[method], namespace))  # noqa: S307 (our own table)
    first = time.perf_counter() - start
    start = time.perf_counter()
    if method not in ("load", "save") and not once:
        jax.block_until_ready(eval(METHODS[method], namespace))  # noqa: S307
    again = None if once else time.perf_counter() - start
    return dict(first_s=first, second_s=again)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="20000x2000")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--out", default=None)
    parser.add_argument("--once", action="store_true",
                        help="time each method once (first call, compilation included)")
    parser.add_argument("--worker", metavar="METHOD")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    if args.worker:
        print(json.dumps(worker(args.size, args.samples, args.steps, args.worker, args.once)))
        return
    # Fit in a child so that this (parent) process stays small: see step_time.py.
    subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                    "import analyses as a; a.fit_path(sys.argv[2], int(sys.argv[3]), "
                    "int(sys.argv[4]))", str(Path(__file__).parent), args.size,
                    str(args.samples), str(args.steps)], check=True)
    rows = []
    for method in args.methods:
        command = [sys.executable, __file__, "--worker", method, "--size", args.size,
                   "--samples", str(args.samples), "--steps", str(args.steps)]
        command += ["--once"] if args.once else []
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        row = dict(method=method, call=METHODS[method], peak_rss_mb=usage.ru_maxrss / 1024)
        if status == 0:
            row.update(json.loads(output.strip().splitlines()[-1]))
        else:
            row["error"] = f"exit status {status}"
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(dict(size=args.size, samples=args.samples,
                                                  steps=args.steps, rows=rows), indent=2))


if __name__ == "__main__":
    main()
