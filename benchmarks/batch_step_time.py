"""Per-step time of a mini-batched mixture fit for several batch sizes, interleaved.

One process compiles the training chunk (100 steps of ``svi.stable_update`` with
epoch-drawn batches, as ``scribe.fit`` runs it) for each batch size on the same simulated
counts, then runs the chunks in turn for ``--rounds`` rounds, so that every batch size sees
the same machine load; reports the median milliseconds per step and CPU seconds.

    python benchmarks/batch_step_time.py --model-type nbdm_mix --batches 1024 2048 4096
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main() -> None:
    import jax
    import numpy as np
    import scipy.sparse as sp
    from numpyro.infer import SVI, TraceMeanField_ELBO
    from numpyro.optim import Adam

    sys.path.insert(0, os.path.dirname(__file__))
    from time_to_fit import SIMULATION

    from scribe.config import ModelConfig
    from scribe.epoch_cells import EpochCells
    from scribe.fit_counts import device_counts, stream_for_fit
    from scribe.simulate import simulate_counts
    from scribe.svi.engine import _compiled_init, initial_params, resolve_model_and_guide

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-type", default="nbdm_mix")
    parser.add_argument("--size", default="20000x2000")
    parser.add_argument("--batches", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    n_cells, n_genes = map(int, args.size.split("x"))
    base = args.model_type.removesuffix("_mix")
    settings = SIMULATION["capture" if base in ("nbvcp", "zinbvcp") else "plain"]
    dense, _ = simulate_counts(args.model_type, n_cells, n_genes, n_components=3, seed=0,
                               **settings)
    csr = sp.csr_matrix(dense.astype(np.float32))
    del dense
    config = ModelConfig(model_type=args.model_type, n_components=3)
    runners = {}
    for batch in args.batches:
        streamed = stream_for_fit(csr, config, batch, 0)[0]
        init = initial_params(config, streamed, 0)
        counts = device_counts(streamed, config, batch)
        model, guide = resolve_model_and_guide(config)
        model, guide = (EpochCells(f, n_cells, batch, 0) for f in (model, guide))
        svi = SVI(model, guide, Adam(3e-3), TraceMeanField_ELBO())
        state = _compiled_init(svi, jax.random.PRNGKey(0), n_cells, n_genes, counts, batch,
                               init)

        def chunk(state, counts, svi=svi, batch=batch):
            def body(i, state):
                return svi.stable_update(state, n_cells, n_genes, counts=counts,
                                         batch_size=batch, step=state.optim_state[0])[0]
            return jax.lax.fori_loop(0, 100, body, state)

        run = jax.jit(chunk)
        state = jax.block_until_ready(run(state, counts))      # compile + warm up
        runners[batch] = [run, state, counts, [], []]
    for _ in range(args.rounds):
        for entry in runners.values():
            run, state, counts, walls, cpus = entry
            wall, cpu = time.perf_counter(), time.process_time()
            entry[1] = jax.block_until_ready(run(state, counts))
            walls.append((time.perf_counter() - wall) * 10)     # ms per step
            cpus.append((time.process_time() - cpu) * 10)
    rows = [dict(batch=b, ms_per_step=float(np.median(e[3])), cpu_ms_per_step=float(
        np.median(e[4])), walls=e[3]) for b, e in runners.items()]
    out = dict(model_type=args.model_type, size=args.size, load=os.getloadavg()[0],
               rows=rows)
    print(json.dumps(out, indent=1))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(out, handle, indent=1)


if __name__ == "__main__":
    main()
