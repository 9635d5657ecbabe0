"""Where a mixture fit's steps go: errors against the simulated truth every 100 steps.

One process fits the same simulated counts (as ``time_to_fit.py``: K = 3, 20,000 x 2,000,
default parameterization) once per candidate optimiser / batch size, for a fixed number of
steps without a stopping rule, and records per window of 100 steps: the mini-batch loss
trace, wall seconds, the median relative error of ``r`` (MAP) and, every ``--ari-every``
steps, the ARI and the 90 % coverage of ``r``. Stopping rules are then replayed offline on
the recorded loss traces (``replay``): where each would have stopped, and the errors there.

    python benchmarks/mixture_trajectory.py --model-type nbdm_mix --steps 3000 \
        --candidates adam_3e-3:2048 adam_1e-2:2048 --out benchmarks/results/mix_traj.json
"""

from __future__ import annotations

import argparse
import json
import os
import time


def make_optimizer(name: str):
    """``adam_<lr>`` or ``decay_<lr0>_<lr1>_<steps>`` (exponential lr0 -> lr1 over steps,
    then constant lr1)."""
    import jax.numpy as jnp
    from numpyro.optim import Adam

    kind, *args = name.split("_")
    if kind == "adam":
        return Adam(step_size=float(args[0]))
    if kind == "decay":
        lr0, lr1, steps = float(args[0]), float(args[1]), float(args[2])
        rate = jnp.log(lr1 / lr0) / steps

        def schedule(i):
            return lr0 * jnp.exp(rate * jnp.minimum(i, steps))
        return Adam(step_size=schedule)
    raise ValueError(f"unknown optimiser {name!r}")


def run_candidate(csr, truth, model_type: str, optimizer_name: str, batch_size,
                  n_steps: int, seed: int, ari_every: int, epochs: bool = False) -> dict:
    import jax
    import numpy as np
    from numpyro.infer import SVI, TraceMeanField_ELBO
    from time_to_fit import evaluate

    from scribe.compose import validated_priors
    from scribe.config import ModelConfig
    from scribe.fit_counts import device_counts, stream_for_fit
    from scribe.svi.engine import _compiled_init, initial_params, resolve_model_and_guide
    from scribe.svi.results import ScribeSVIResults

    n_cells, n_genes = csr.shape
    config = ModelConfig(model_type=model_type, n_components=3)
    start = time.perf_counter()
    streamed = stream_for_fit(csr, config, batch_size, seed)[0]
    init = initial_params(config, streamed, seed)
    counts = device_counts(streamed, config, batch_size)
    model, guide = resolve_model_and_guide(config)
    if epochs:
        from scribe.epoch_cells import EpochCells
        model = EpochCells(model, n_cells, batch_size, seed)
        guide = EpochCells(guide, n_cells, batch_size, seed)
    svi = SVI(model, guide, make_optimizer(optimizer_name), TraceMeanField_ELBO())
    state = _compiled_init(svi, jax.random.PRNGKey(seed), n_cells, n_genes, counts,
                           batch_size, init)
    window = 100

    @jax.jit
    def chunk(state, counts):
        def body(i, inner):
            state, losses = inner
            extra = {"step": state.optim_state[0]} if epochs else {}
            state, loss = svi.stable_update(state, n_cells, n_genes, counts=counts,
                                            batch_size=batch_size, **extra)
            return state, losses.at[i].set(loss)
        return jax.lax.fori_loop(0, window, body, (state, jax.numpy.zeros(window)))

    priors = validated_priors(config)

    def snapshot(state, losses, full: bool) -> dict:
        params = {k: np.asarray(v) for k, v in svi.get_params(state).items()}
        results = ScribeSVIResults(n_cells=n_cells, n_genes=n_genes, model_type=model_type,
                                   params=params, loss_history=np.asarray(losses or [0.0]),
                                   model_config=config, prior_params=priors,
                                   n_components=3, converged=None)
        if full:
            return evaluate(results, csr, truth)
        # cheap: r error under the best permutation of components
        import itertools
        r_hat = np.asarray(results.get_map(use_mean=True, verbose=False)["r"])
        return {"r_error": min(float(np.median(np.abs(r_hat[list(p)] / truth["r"] - 1)))
                               for p in itertools.permutations(range(3)))}

    setup_s = time.perf_counter() - start
    losses: list[float] = []
    rows = [dict(step=0, seconds=0.0, **snapshot(state, losses, True))]
    loop_s = 0.0
    for done in range(window, n_steps + 1, window):
        t0 = time.perf_counter()
        state, chunk_losses = chunk(state, counts)
        chunk_losses = np.asarray(chunk_losses)
        loop_s += time.perf_counter() - t0
        losses.extend(chunk_losses.tolist())
        full = done % ari_every == 0 or done == n_steps
        rows.append(dict(step=done, seconds=loop_s, **snapshot(state, losses, full)))
        print(json.dumps(dict(candidate=optimizer_name, batch=batch_size, **rows[-1])),
              flush=True)
    return dict(candidate=optimizer_name, batch_size=batch_size, epochs=epochs, setup_s=setup_s,
                load=os.getloadavg()[0], losses=losses, windows=rows)


def replay(losses, tol: float = 1e-5, patience: int = 3, window: int = 100,
           block: int = 1) -> int | None:
    """Step at which a stopping rule fed this loss trace stops (None: never)."""
    import numpy as np

    from scribe.svi.convergence import ConvergenceMonitor

    monitor = ConvergenceMonitor(tol=tol, patience=patience, window=window, block=block)
    losses = np.asarray(losses)
    for done in range(window, losses.size + 1, window):
        if monitor.update(losses[:done]):
            return done
    return None


def main() -> None:
    import sys

    import numpy as np
    import scipy.sparse as sp

    sys.path.insert(0, os.path.dirname(__file__))
    from time_to_fit import SIMULATION

    from scribe.simulate import simulate_counts

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-type", default="nbdm_mix")
    parser.add_argument("--size", default="20000x2000")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--ari-every", type=int, default=500)
    parser.add_argument("--candidates", nargs="+", default=["adam_3e-3:2048"],
                        help="optimiser:batch[:epoch] ('none' for the full batch; "
                        "':epoch' draws batches epoch by epoch)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    n_cells, n_genes = map(int, args.size.split("x"))
    base = args.model_type.removesuffix("_mix")
    settings = SIMULATION["capture" if base in ("nbvcp", "zinbvcp") else "plain"]
    dense, truth = simulate_counts(args.model_type, n_cells, n_genes, n_components=3,
                                   seed=args.seed, **settings)
    csr = sp.csr_matrix(dense.astype(np.float32))
    del dense
    out = dict(args=vars(args), runs=[])
    for candidate in args.candidates:
        name, batch, *mode = candidate.split(":")
        batch = None if batch == "none" else int(batch)
        epochs = mode == ["epoch"]
        run = run_candidate(csr, truth, args.model_type, name, batch, args.steps,
                            args.seed, args.ari_every, epochs)
        from scribe.epoch_cells import epoch_steps
        block = epoch_steps(n_cells, batch) if epochs else 1
        run["replay_stop_default"] = replay(run["losses"], block=block)
        out["runs"].append(run)
        with open(args.out, "w") as handle:
            json.dump(out, handle)


if __name__ == "__main__":
    main()
