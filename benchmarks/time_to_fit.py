"""Time to a converged fit with the defaults, and what the fit is worth.

Two parts, each case in its own worker process (so compile time is included and peak
memory is the case's own):

* **Simulated** counts with known truth, every built-in model type with its default
  parameterization and ``scribe.fit``'s defaults otherwise (K = 3 for mixtures). Per case:
  wall time from the ``scribe.fit`` call to its return, ``n_steps_run``, ``converged``,
  median relative error of ``r`` (MAP), ``|p - p_true|`` or the median relative error of
  ``p_hat`` (capture models), gate error, the adjusted Rand index of the MAP assignment
  (mixtures), and the coverage of the central 90 % posterior intervals of ``r``, ``gate``
  and ``p_hat``. With ``--reference-steps N`` the same data are also fitted from the same
  start for N steps of Adam(1e-3) without the stopping rule: the floor the defaults should
  reach (the issue asks for 1e5 steps; that takes hours for mixtures on two cores).
* **Real** counts (``--real PATH``, the shipped 10x subset): wall time and the fraction of
  expressed genes whose observed mean, variance and zero fraction across cells fall inside
  the central 90 % band of 100 posterior-predictive replicates.

    python benchmarks/time_to_fit.py --size 20000x2000 --reference-steps 20000 \
        --real ../shared/data/tenx_v3_subset.h5ad --out benchmarks/results/time_to_fit.json

``benchmarks/report.py`` renders the JSON as the tables of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

MODEL_TYPES = ("nbdm", "zinb", "nbvcp", "zinbvcp",
               "nbdm_mix", "zinb_mix", "nbvcp_mix", "zinbvcp_mix")

#: Simulation settings with droplet-like sparsity (see the JSON's ``density``): capture
#: models lose most molecules to a capture of 2-10 %; the others get the same sparsity
#: from small r.
SIMULATION = {
    "capture": dict(p=0.6, r_loc=-1.0, r_scale=1.0, capture_range=(0.02, 0.1)),
    "plain": dict(p=0.6, r_loc=-2.0, r_scale=1.0),
}


# ---- metrics --------------------------------------------------------------------------------
def adjusted_rand_index(labels_true, labels_pred) -> float:
    """Hubert-Arabie adjusted Rand index from the contingency table."""
    import numpy as np

    _, true_codes = np.unique(labels_true, return_inverse=True)
    _, pred_codes = np.unique(labels_pred, return_inverse=True)
    table = np.zeros((true_codes.max() + 1, pred_codes.max() + 1))
    np.add.at(table, (true_codes, pred_codes), 1)

    def pairs(x):
        return float(np.sum(x * (x - 1) / 2))

    n = table.sum()
    index, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected = rows * cols / (n * (n - 1) / 2)
    top = (rows + cols) / 2
    return 1.0 if top == expected else (index - expected) / (top - expected)


def coverage(draws, truth, level: float = 0.9) -> float:
    """Fraction of entries whose true value lies in the central ``level`` interval."""
    import numpy as np

    tail = (1 - level) / 2
    lower, upper = np.quantile(draws, [tail, 1 - tail], axis=0)
    return float(np.mean((truth >= lower) & (truth <= upper)))


def component_order(results, counts, truth) -> tuple:
    """MAP labels and the permutation putting fitted components in the true order."""
    import itertools

    import numpy as np

    # At the means where a mode is undefined (use_mean=True), as ``evaluate``'s get_map:
    # with the contract's use_mean=False a Beta/BetaPrime factor with a concentration
    # <= 1 (a gate near 0, a capture near 0) makes every cell's probabilities NaN, and
    # argmax then puts every cell in component 0 (zinbvcp_mix's "ARI 0.0",
    # docs/benchmarks.md "zinbvcp_mix: no collapse").
    probabilities = np.asarray(results.cell_type_probabilities_map(
        counts, batch_size=2048, verbose=False, use_mean=True)["probabilities"])
    labels = probabilities.argmax(axis=1)
    k = probabilities.shape[1]
    confusion = np.zeros((k, k))
    np.add.at(confusion, (labels, truth["assignment"]), 1)
    perm = max(itertools.permutations(range(k)),
               key=lambda p: confusion[np.arange(k), list(p)].sum())
    return labels, np.argsort(np.array(perm))


def evaluate(results, counts, truth, n_draws: int = 400) -> dict:
    """Errors of the MAP and 90 % coverage of the posterior against the simulated truth."""
    import numpy as np

    config = results.model_config
    estimate = {k: np.asarray(v) for k, v in
                results.get_map(use_mean=True, verbose=False).items()}
    draws = {k: np.asarray(v) for k, v in
             results.get_posterior_samples(n_samples=n_draws, store_samples=False).items()}
    order = slice(None)
    row: dict = {}
    if config.is_mixture:
        labels, order = component_order(results, counts, truth)
        row["ari"] = adjusted_rand_index(truth["assignment"], labels)
        row["collapse"] = getattr(results, "collapse", None)
    r_hat = estimate["r"][order]
    row["r_error"] = float(np.median(np.abs(r_hat / truth["r"] - 1)))
    row["r_coverage"] = coverage(draws["r"][:, order] if config.is_mixture else draws["r"],
                                 truth["r"])
    if "gate" in truth:
        row["gate_error"] = float(np.median(np.abs(estimate["gate"][order] - truth["gate"])))
        gate_draws = draws["gate"][:, order] if config.is_mixture else draws["gate"]
        row["gate_coverage"] = coverage(gate_draws, truth["gate"])
    if "p_hat" in truth:
        row["p_hat_error"] = float(np.median(np.abs(estimate["p_hat"] / truth["p_hat"] - 1)))
        if draws.get("p_hat") is not None and np.ndim(draws["p_hat"]) == 2:
            row["p_hat_coverage"] = coverage(draws["p_hat"], truth["p_hat"])
        row["p_capture_error"] = float(np.median(np.abs(
            estimate["p_capture"] / truth["p_capture"] - 1)))
        if "gate" not in truth:        # the floor: the exact MLE with r known (scribe.simulate)
            from scribe.simulate import p_hat_oracle_error

            row["p_hat_error_oracle"] = p_hat_oracle_error(counts, truth)
        # Where the fit sits on the p-capture ridge (the capture expectation's series
        # needs more terms as p (1 - capture) approaches 1).
        row["p_fit"] = float(np.mean(estimate["p"]))
        row["p_capture_fit_median"] = float(np.median(estimate["p_capture"]))
    else:
        row["p_error"] = float(np.max(np.abs(estimate["p"] - truth["p"])))
    return row


def fit_kwargs(**extra) -> dict:
    """Keyword arguments of ``scribe.fit`` that this version accepts (older ones lack some)."""
    import inspect

    import scribe

    accepted = inspect.signature(scribe.fit).parameters
    return {k: v for k, v in extra.items() if k in accepted}


def batch_used(model_type: str, n_cells: int, batch_size="auto"):
    """Cells per step the fit used (None: all); "auto" resolved as ``scribe.fit`` does."""
    if batch_size != "auto":
        return batch_size
    try:
        from scribe.batching import auto_batch_size
    except ImportError:           # versions before batch_size="auto": full batch
        return None
    from scribe.plugins import lookup_model_type

    return auto_batch_size(lookup_model_type(model_type).likelihood,
                           model_type.endswith("_mix"), n_cells)


def timed_fit(counts, model_type, n_components, **kwargs):
    import scribe

    load_before = os.getloadavg()[0]
    start, cpu_start = time.perf_counter(), time.process_time()
    results = scribe.fit(counts, model_type, n_components=n_components, progress=False,
                         **kwargs)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    losses = __import__("numpy").asarray(results.loss_history)
    return results, dict(
        seconds=seconds,
        # CPU seconds of this process (all its threads): on a shared machine the wall
        # time depends on the others' load, this does less.
        cpu_seconds=cpu_seconds,
        n_steps_run=int(getattr(results, "n_steps_run", losses.shape[0])),
        converged=getattr(results, "converged", None),
        final_loss=float(losses[-1]),
        batch_size=batch_used(model_type, counts.shape[0],
                              kwargs.get("batch_size", "auto")),
        # The machine is shared: 1-minute load averages around the fit.
        load=[round(load_before, 1), round(os.getloadavg()[0], 1)],
    )


# ---- workers --------------------------------------------------------------------------------
def draw_capture(enabled: bool) -> None:
    """``--draws``: make ``scribe.fit`` draw the capture as before
    :mod:`scribe.expected_capture` (the engine's ``expected_capture=False``)."""
    if not enabled:
        return
    import functools
    import inspect

    from scribe import fitting
    from scribe.svi.engine import SVIInferenceEngine

    original = SVIInferenceEngine.run_inference
    if "expected_capture" not in inspect.signature(original).parameters:
        return      # a version that always draws

    class Drawn(SVIInferenceEngine):
        run_inference = staticmethod(functools.partial(original, expected_capture=False))

    fitting.SVIInferenceEngine = Drawn


def staged_optimizer(staged: bool) -> dict:
    """``optimizer=StagedAdam((3e-2, 3e-3))`` when ``staged`` (``--staged-rate``)."""
    if not staged:
        return {}
    from scribe.svi.staged_rate import StagedAdam

    return {"optimizer": StagedAdam((3e-2, 3e-3))}


def simulated_worker(model_type: str, size: str, seed: int, reference_steps: int,
                     n_steps: int | None = None, batch_size="auto",
                     staged: bool = False, draws: bool = False,
                     guide_family: str | None = None, lr: float | None = None,
                     tol: str | None = None, drift_tol: str | None = None) -> dict:
    import numpy as np
    import scipy.sparse as sp

    from scribe.simulate import simulate_counts

    n_cells, n_genes = map(int, size.split("x"))
    base = model_type.removesuffix("_mix")
    k = 3 if model_type.endswith("_mix") else None
    settings = SIMULATION["capture" if base in ("nbvcp", "zinbvcp") else "plain"]
    dense, truth = simulate_counts(model_type, n_cells, n_genes, n_components=k, seed=seed,
                                   **settings)
    counts = sp.csr_matrix(dense.astype(np.float32))
    del dense
    row = dict(model_type=model_type, size=size, density=counts.nnz / (n_cells * n_genes),
               simulation=settings, capture_drawn=draws)
    draw_capture(draws)
    cap = {} if n_steps is None else {"n_steps": n_steps}
    cap["batch_size"] = batch_size      # "auto" by default here; scribe.fit's is None
    if guide_family is not None:
        cap["guide_family"] = guide_family
    if tol is not None:
        cap["tol"] = None if tol == "none" else float(tol)
    if drift_tol is not None:     # the stop's drift criterion (scribe.svi.drift)
        cap.update(fit_kwargs(drift_tol=None if drift_tol == "none" else drift_tol
                              if drift_tol == "auto" else float(drift_tol)))
    if lr is not None:
        from numpyro.optim import Adam

        cap["optimizer"] = Adam(step_size=lr)
    results, timing = timed_fit(counts, model_type, k, seed=seed, **cap,
                                **staged_optimizer(staged))
    row["guide_family"], row["lr"], row["tol"] = results.model_config.guide_family, lr, tol
    row["drift_tol"] = drift_tol
    drift = getattr(results, "final_drift", None)
    if drift is not None:
        row["final_drift"] = drift
    row.update(timing)
    row.update(evaluate(results, counts, truth))
    row["parameterization"] = results.model_config.parameterization
    if reference_steps:
        from numpyro.optim import Adam

        reference, ref_timing = timed_fit(
            counts, model_type, k, seed=seed, n_steps=reference_steps,
            optimizer=Adam(step_size=1e-3), **fit_kwargs(tol=None))
        row["reference"] = dict(steps=reference_steps, **ref_timing,
                                **evaluate(reference, counts, truth))
    return row


def real_worker(model_type: str, path: str, seed: int, n_steps: int | None = None,
                n_replicates: int = 100, staged: bool = False,
                drift_tol: str | None = None) -> dict:
    import anndata
    import numpy as np
    import scipy.sparse as sp

    adata = anndata.read_h5ad(path)
    k = 3 if model_type.endswith("_mix") else None
    cap = {} if n_steps is None else {"n_steps": n_steps}
    if drift_tol is not None:
        cap.update(fit_kwargs(drift_tol=None if drift_tol == "none" else drift_tol
                              if drift_tol == "auto" else float(drift_tol)))
    results, timing = timed_fit(adata, model_type, k, seed=seed, **cap,
                                **staged_optimizer(staged))
    x = sp.csr_matrix(adata.X)
    expressed = np.asarray((x > 0).sum(axis=0)).ravel() > 0
    observed = {
        "mean": np.asarray(x.mean(axis=0)).ravel(),
        "variance": np.asarray(x.multiply(x).mean(axis=0)).ravel()
        - np.asarray(x.mean(axis=0)).ravel() ** 2,
        "zero_fraction": 1 - np.asarray((x > 0).mean(axis=0)).ravel(),
    }
    ppc = np.asarray(results.get_ppc_samples(n_samples=n_replicates, batch_size=20,
                                             store_samples=False)["predictive_samples"],
                     dtype=np.float32)
    replicated = {"mean": ppc.mean(axis=1), "variance": ppc.var(axis=1),
                  "zero_fraction": (ppc == 0).mean(axis=1)}
    inside = {}
    for name, values in observed.items():
        lower, upper = np.quantile(replicated[name], [0.05, 0.95], axis=0)
        inside[name] = (values >= lower) & (values <= upper)
    row = dict(model_type=model_type, data=os.path.basename(path), drift_tol=drift_tol,
               cells=int(x.shape[0]), genes=int(x.shape[1]), expressed_genes=int(expressed.sum()),
               parameterization=results.model_config.parameterization, **timing)
    for name, hits in inside.items():
        row[f"{name}_in_band"] = float(hits[expressed].mean())
    row["all_in_band"] = float(np.logical_and.reduce(list(inside.values()))[expressed].mean())
    return row


def run_worker(task: dict) -> dict:
    if task["kind"] == "simulated":
        return simulated_worker(task["model_type"], task["size"], task["seed"],
                                task["reference_steps"], task.get("n_steps"),
                                task.get("batch_size", "auto"), task.get("staged", False),
                                task.get("draws", False), task.get("guide_family"),
                                task.get("lr"), task.get("tol"), task.get("drift_tol"))
    return real_worker(task["model_type"], task["path"], task["seed"], task.get("n_steps"),
                       staged=task.get("staged", False), drift_tol=task.get("drift_tol"))


# ---- parent ---------------------------------------------------------------------------------
def spawn(task: dict) -> dict:
    """Run one task in a fresh interpreter; its JSON row plus its peak RSS."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(task)],
                            stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    # Reap the child ourselves: wait4 gives its own peak RSS.
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    lines = out.strip().splitlines()
    row = json.loads(lines[-1]) if code == 0 and lines else dict(
        task, error=f"worker exited with {code}")
    row["peak_rss_mb"] = usage.ru_maxrss / 1024
    row["process_s"] = time.perf_counter() - start
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--size", default="20000x2000")
    parser.add_argument("--model-types", nargs="+", default=list(MODEL_TYPES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference-steps", type=int, default=0,
                        help="also fit N steps of Adam(1e-3) without stopping (the floor)")
    parser.add_argument("--n-steps", type=int, default=None,
                        help="override fit's step cap (default: fit's own default)")
    parser.add_argument("--batch-size", default="auto",
                        help="simulated fits: cells per step, 'none' or 'auto' (the default here; "
                        "scribe.fit's own default is the full batch)")
    parser.add_argument("--staged-rate", action="store_true",
                        help="fit with StagedAdam((3e-2, 3e-3)) instead of the default optimiser")
    parser.add_argument("--guide-families", nargs="+", default=[None],
                        help="simulated fits: guide families, each fitted in turn per model type")
    parser.add_argument("--lr", type=float, default=None,
                        help="simulated fits: Adam step size (default: fit's Adam(3e-3))")
    parser.add_argument("--tol", default=None,
                        help="simulated fits: convergence tol ('none': run all --n-steps)")
    parser.add_argument("--drift-tol", nargs="+", default=[None],
                        help="simulated fits: the stop's drift_tol, each in turn per model "
                             "type ('none': the loss rule alone; default: fit's own)")
    parser.add_argument("--real", default=None, help="an .h5ad of raw counts")
    parser.add_argument("--skip-simulated", action="store_true")
    parser.add_argument("--draws", choices=("off", "on", "both"), default="off",
                        help="simulated fits with the capture drawn (the code before "
                             "scribe.expected_capture): off, on, or both interleaved")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))), flush=True)
        return

    variants = {"off": [False], "on": [True], "both": [False, True]}[args.draws]
    # Repeats interleave the variants (a, b, b, a, ...): load drifts hit both alike.
    order = [variants if i % 2 == 0 else variants[::-1] for i in range(args.repeats)]
    tasks = [] if args.skip_simulated else [
        dict(kind="simulated", model_type=m, size=args.size, seed=args.seed,
             reference_steps=args.reference_steps, n_steps=args.n_steps,
             batch_size=(args.batch_size if args.batch_size == "auto" else
                         None if args.batch_size == "none" else int(args.batch_size)),
             staged=args.staged_rate, draws=draws, guide_family=g, lr=args.lr, tol=args.tol,
             drift_tol=d)
        for m in args.model_types for g in args.guide_families for d in args.drift_tol
        for repeat in order for draws in repeat]
    if args.real:
        tasks += [dict(kind="real", model_type=m, path=args.real, seed=args.seed,
                       n_steps=args.n_steps, staged=args.staged_rate, drift_tol=d)
                  for m in args.model_types for d in args.drift_tol]
    meta = dict(machine=platform.machine(), cpus=os.cpu_count(), python=platform.python_version(),
                started=time.strftime("%Y-%m-%d %H:%M:%S"))
    rows = []
    for task in tasks:
        rows.append(spawn(task))
        print(json.dumps(rows[-1]), flush=True)
        if args.out:
            with open(args.out, "w") as handle:
                json.dump(dict(meta=meta, time_to_fit=True, rows=rows), handle, indent=2)


if __name__ == "__main__":
    main()
