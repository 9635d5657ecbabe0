"""Cost of the variational factors: each parameterization's full-batch step against the
``unconstrained`` step of the same model type, measured interleaved in one process.

The shared two-core machine is noisy, so the parameterizations of a model type are
compiled side by side and timed in turns (round robin over blocks of steps); the ratio
uses the minimum and the median block time of each, so a burst of load from other
processes hits every parameterization alike.

    python benchmarks/factor_cost.py --sizes 20000x2000 100000x2000 \
        --out benchmarks/results/factor_cost.json

``--draws both`` also times each capture model's parameterizations with the capture drawn
(``expected_capture=False``, the code before :mod:`scribe.expected_capture`) in the same
turns, as ``<parameterization>/draws``: before and after, interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

PARAMETERIZATIONS = ("unconstrained", "standard", "linked", "odds_ratio")
MODEL_TYPES = ("nbdm", "zinb", "nbvcp", "zinbvcp", "nbvcp_mix")


def steps_for(model_type: str, parameterization: str, csr, block: int,
              expected_capture: bool = True, warm_steps: int = 0):
    """A jitted function running ``block`` full-batch SVI steps, and its initial state.

    ``expected_capture``: the engine's switch (:func:`scribe.expected_capture.training_guide`).
    ``warm_steps``: steps of Adam(3e-3) (``scribe.fit``'s rate) taken before timing, so
    that the factors are timed where a fit spends its steps rather than at the start.
    """
    import jax
    from numpyro.infer import SVI, TraceMeanField_ELBO
    from numpyro.optim import Adam

    import scribe
    from scribe.counts import SparseCounts
    from scribe.expected_capture import training_guide
    from scribe.svi.engine import initial_params, resolve_model_and_guide

    n_cells, n_genes = csr.shape
    k = 3 if model_type.endswith("_mix") else None
    config = scribe.ModelConfig(model_type, parameterization, n_components=k)
    model, guide = resolve_model_and_guide(config)
    counts = SparseCounts.from_matrix(csr)
    loss = TraceMeanField_ELBO()
    svi = SVI(model, training_guide(guide, loss, expected_capture),
              Adam(3e-3 if warm_steps else 1e-3), loss)
    state = svi.init(jax.random.PRNGKey(0), n_cells, n_genes, counts=counts,
                     init_params=initial_params(config, csr, 0))

    def update(state, counts):
        return svi.update(state, n_cells, n_genes, counts=counts)[0]

    run = jax.jit(lambda s, c: jax.lax.fori_loop(0, block, lambda _, x: update(x, c), s))
    state = jax.block_until_ready(run(state, counts))
    if warm_steps:
        warm = jax.jit(lambda s, c: jax.lax.fori_loop(0, warm_steps,
                                                      lambda _, x: update(x, c), s))
        state = jax.block_until_ready(warm(state, counts))
    return run, state, counts


def variants(model_type: str, draws: str) -> dict[str, tuple[str, bool]]:
    """``{label: (parameterization, expected_capture)}`` to time for ``model_type``."""
    out = {}
    for p in PARAMETERIZATIONS:
        if draws in ("off", "both"):
            out[p] = (p, True)
        if draws in ("on", "both") and p != "unconstrained" and "vcp" in model_type:
            out[f"{p}/draws"] = (p, False)
        elif draws == "on":
            out[p] = (p, True)
    return out


def measure(model_type: str, csr, seconds: float, draws: str = "off",
            warm_steps: int = 0) -> dict:
    """Interleaved block times (ms per step) of every parameterization of ``model_type``."""
    import jax

    probe, state, counts = steps_for(model_type, "unconstrained", csr, 1)
    start = time.perf_counter()
    jax.block_until_ready(probe(state, counts))
    estimate = time.perf_counter() - start
    block = max(1, min(50, int(0.05 / max(estimate, 1e-6))))
    runs = {label: list(steps_for(model_type, p, csr, block, expected, warm_steps))
            for label, (p, expected) in variants(model_type, draws).items()}
    times = {label: [] for label in runs}
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or min(len(t) for t in times.values()) < 5:
        for p, entry in runs.items():
            run, state, counts = entry
            start = time.perf_counter()
            entry[1] = jax.block_until_ready(run(state, counts))
            times[p].append((time.perf_counter() - start) / block * 1e3)
    base_min = min(times["unconstrained"])
    base_med = statistics.median(times["unconstrained"])
    return {p: dict(min_ms=min(t), median_ms=statistics.median(t), blocks=len(t), block=block,
                    ratio_min=min(t) / base_min,
                    ratio_median=statistics.median(t) / base_med)
            for p, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["20000x2000"])
    parser.add_argument("--model-types", nargs="+", default=list(MODEL_TYPES))
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="timed work per model type")
    parser.add_argument("--draws", choices=("off", "on", "both"), default="off",
                        help="capture drawn (the code before expected_capture): off = "
                             "never, on = always, both = side by side")
    parser.add_argument("--warm-steps", type=int, default=0,
                        help="untimed steps of Adam(3e-3) before timing (0: time from "
                             "the starting values with Adam(1e-3))")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import jax
    import scipy.sparse as sp
    from step_time import counts_path

    rows = []
    for size in args.sizes:
        csr = sp.load_npz(counts_path(size)).tocsr()
        for model_type in args.model_types:
            result = measure(model_type, csr, args.seconds, args.draws, args.warm_steps)
            for p, row in result.items():
                rows.append(dict(size=size, model_type=model_type, parameterization=p,
                                 warm_steps=args.warm_steps, **row))
            print(size, model_type, "  ".join(
                f"{p} {r['median_ms']:.3g} ms ({r['ratio_median']:.2f}x, min {r['ratio_min']:.2f}x)"
                for p, r in result.items()), flush=True)
    if args.out:
        meta = dict(machine=platform.platform(), cpu_count=os.cpu_count(),
                    jax=jax.__version__, load_average=os.getloadavg())
        Path(args.out).write_text(json.dumps(dict(meta=meta, rows=rows), indent=2))


if __name__ == "__main__":
    main()
