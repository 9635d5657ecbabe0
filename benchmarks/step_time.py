"""Per-step SVI time of scribe's model types next to a hand-written NumPyro nbdm step.

Both are measured the same way in one process: a jitted ``svi.update`` with the counts
passed as an argument; the first call (compile + one step) is reported separately and
the steady time is the median over repeats of a block of steps.

    python benchmarks/step_time.py --sizes 1000x500 20000x2000 --batch-sizes none 512 \
        --model-types nbdm zinb nbvcp zinbvcp nbdm_mix --out benchmarks/results/step_time.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.infer import SVI, TraceMeanField_ELBO
from numpyro.infer.autoguide import AutoNormal
from numpyro.optim import Adam

import scribe
from scribe.simulate import simulate_counts
from scribe.svi.engine import initial_params, resolve_model_and_guide


def handwritten_nbdm(n_cells, n_genes, counts=None, batch_size=None):
    """The reference: NB(r_g, p) with a shared p, written directly in NumPyro."""
    p = numpyro.sample("p", dist.Beta(1.0, 1.0))
    r = numpyro.sample("r", dist.LogNormal(jnp.zeros(n_genes), 1.0).to_event(1))
    with numpyro.plate("cells", n_cells, subsample_size=batch_size) as idx:
        obs = counts if batch_size is None or counts is None else counts[idx]
        numpyro.sample("counts", dist.NegativeBinomialProbs(r, p).to_event(1), obs=obs)


def time_svi(model, guide, counts, batch_size, init=None, repeats=5, block=10):
    n_cells, n_genes = counts.shape
    svi = SVI(model, guide, Adam(1e-3), TraceMeanField_ELBO())
    state = svi.init(jax.random.PRNGKey(0), n_cells, n_genes, counts=counts,
                     batch_size=batch_size, init_params=init)

    @jax.jit
    def steps(state, counts):
        def body(_, s):
            return svi.update(s, n_cells, n_genes, counts=counts, batch_size=batch_size)[0]
        return jax.lax.fori_loop(0, block, body, state)

    @jax.jit
    def one_step(state, counts):
        return svi.update(state, n_cells, n_genes, counts=counts, batch_size=batch_size)

    start = time.perf_counter()
    jax.block_until_ready(one_step(state, counts))
    first = time.perf_counter() - start
    jax.block_until_ready(steps(state, counts))  # compile the block
    per_step = []
    for _ in range(repeats):
        start = time.perf_counter()
        state = jax.block_until_ready(steps(state, counts))
        per_step.append((time.perf_counter() - start) / block)
    return first, statistics.median(per_step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1000x500"])
    parser.add_argument("--batch-sizes", nargs="+", default=["none", "512"])
    parser.add_argument("--model-types", nargs="+", default=scribe.available_model_types())
    parser.add_argument("--parameterization", default="odds_ratio")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--block", type=int, default=10, help="steps per timed block")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        n_cells, n_genes = map(int, size.split("x"))
        for batch in args.batch_sizes:
            batch_size = None if batch == "none" else int(batch)
            counts_np, _ = simulate_counts("nbdm", n_cells, n_genes, seed=0)
            counts = jnp.asarray(counts_np, jnp.float32)
            first, base = time_svi(handwritten_nbdm, AutoNormal(handwritten_nbdm), counts,
                                   batch_size, repeats=args.repeats, block=args.block)
            rows.append(dict(size=size, batch_size=batch, model_type="handwritten_nbdm",
                             first_call_s=first, step_ms=base * 1e3, ratio_to_handwritten=1.0))
            print(f"{size:>11} batch={batch:>5} {'handwritten nbdm':<14} first {first:6.2f}s "
                  f"step {base * 1e3:8.2f} ms", flush=True)
            for model_type in args.model_types:
                k = 3 if model_type.endswith("_mix") else None
                counts_np, _ = simulate_counts(model_type, n_cells, n_genes, n_components=k,
                                               seed=0)
                counts = jnp.asarray(counts_np, jnp.float32)
                config = scribe.ModelConfig(model_type, args.parameterization, n_components=k)
                model, guide = resolve_model_and_guide(config)
                init = initial_params(config, counts_np, 0)
                first, step = time_svi(model, guide, counts, batch_size, init, args.repeats,
                                       args.block)
                rows.append(dict(size=size, batch_size=batch, model_type=model_type,
                                 first_call_s=first, step_ms=step * 1e3,
                                 ratio_to_handwritten=step / base))
                print(f"{size:>11} batch={batch:>5} {model_type:<16} first {first:6.2f}s "
                      f"step {step * 1e3:8.2f} ms  ({step / base:5.2f}x handwritten)", flush=True)
    if args.out:
        meta = dict(machine=platform.platform(), cpu_count=__import__("os").cpu_count(),
                    jax=jax.__version__, numpyro=numpyro.__version__,
                    parameterization=args.parameterization)
        with open(args.out, "w") as handle:
            json.dump(dict(meta=meta, rows=rows), handle, indent=2)


if __name__ == "__main__":
    main()
