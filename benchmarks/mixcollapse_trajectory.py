"""How a mixture fit with ``scribe.fit``'s defaults evolves: component state every N steps.

Builds the fit exactly as ``scribe.fit`` does (starting values, data-informed prior,
default guide family, epoch-drawn batches, default optimiser) but runs it in chunks of
``--every`` steps without a stop, and records after each chunk: the mini-batch loss,
the ARI of the MAP assignment, the mixing weights, the per-gene spread of ``log r``
between components, each component's mean gate and share of genes with gate > 0.5, the
median capture, ``p`` and the median relative error of ``r`` under the best permutation
of components (matched by ``r`` itself, so it does not depend on the assignment).
Variants change one thing at a time (``--variants``):

* ``default``: the defaults;
* ``adam_<lr>`` / ``staged``: another optimiser;
* ``full``: the full batch instead of ``"auto"``;
* ``fixed_prior``: the SPEC's fixed ``r`` prior instead of the data-informed one;
* ``mean_field``: the mean-field guide.

    python benchmarks/mixcollapse_trajectory.py --model-type zinbvcp_mix --size 2000x500 \
        --steps 3000 --every 250 --variants default full --out /tmp/traj.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time


def build(csr, model_type: str, variant: str, seed: int):
    """The compiled chunk runner, its starting state and the model config of ``variant``."""
    import jax
    import jax.numpy as jnp
    from numpyro.infer import SVI, TraceMeanField_ELBO
    from numpyro.optim import Adam

    from scribe.batching import auto_batch_size
    from scribe.config import ModelConfig
    from scribe.empirical_prior import with_empirical_prior
    from scribe.epoch_cells import EpochCells
    from scribe.expected_capture import training_guide
    from scribe.fit_counts import device_counts, stream_for_fit
    from scribe.fitting import default_optimizer
    from scribe.plugins import lookup_model_type
    from scribe.svi.engine import (
        _compiled_init,
        canonical_guess,
        initial_params,
        resolve_model_and_guide,
    )
    from scribe.svi.staged_rate import StagedAdam

    n_cells, n_genes = csr.shape
    spec = lookup_model_type(model_type)
    guide_family = "mean_field" if variant == "mean_field" else None
    config = ModelConfig(model_type=model_type, n_components=3, guide_family=guide_family)
    batch = (None if variant == "full"
             else auto_batch_size(spec.likelihood, True, n_cells))
    if batch is not None and batch >= n_cells:
        batch = None
    streamed = stream_for_fit(csr, config, batch, seed)[0]
    guess = canonical_guess(config, streamed, seed)
    if variant != "fixed_prior":
        config = with_empirical_prior(config, guess)
    init = initial_params(config, streamed, seed, guess)
    counts = device_counts(streamed, config, batch)
    if variant.startswith("adam_"):
        optimizer = Adam(step_size=float(variant.split("_")[1]))
    elif variant == "staged":
        optimizer = StagedAdam((3e-2, 3e-3))
    else:
        optimizer = default_optimizer(model_type, stopping=True)
    loss = TraceMeanField_ELBO()
    model, guide = resolve_model_and_guide(config)
    guide = training_guide(guide, loss, True)
    epochs = batch is not None
    if epochs:
        model = EpochCells(model, n_cells, batch, seed)
        guide = EpochCells(guide, n_cells, batch, seed)
    svi = SVI(model, guide, optimizer, loss)
    state = _compiled_init(svi, jax.random.PRNGKey(seed), n_cells, n_genes, counts, batch,
                           init)
    order = jnp.asarray(model.order) if epochs else None
    return svi, state, counts, order, batch, config, epochs


def snapshot(svi, state, csr, truth, config, model_type: str) -> dict:
    import numpy as np

    from scribe.compose import validated_priors
    from scribe.svi.results import ScribeSVIResults

    sys.path.insert(0, os.path.dirname(__file__))
    from time_to_fit import adjusted_rand_index

    n_cells, n_genes = csr.shape
    params = {k: np.asarray(v) for k, v in svi.get_params(state).items()}
    results = ScribeSVIResults(n_cells=n_cells, n_genes=n_genes, model_type=model_type,
                               params=params, loss_history=np.zeros(1), model_config=config,
                               prior_params=validated_priors(config), n_components=3,
                               converged=None)
    est = {k: np.asarray(v) for k, v in results.get_map(use_mean=True, verbose=False).items()}
    probs = np.asarray(results.cell_type_probabilities_map(
        csr, batch_size=2048, verbose=False)["probabilities"])
    labels = probs.argmax(1)
    # The assignment at the modes (the default) and at the means, and how many cells'
    # mode-based probabilities are not finite (an undefined Beta/BetaPrime mode).
    probs_mean = np.asarray(results.cell_type_probabilities_map(
        csr, batch_size=2048, verbose=False, use_mean=True)["probabilities"])
    nan_cells = float(np.mean(~np.isfinite(probs).all(1)))
    mode = results.get_map(verbose=False)
    nan_sites = {k: float(np.mean(np.isnan(np.asarray(v, float)))) for k, v in mode.items()
                 if np.isnan(np.asarray(v, float)).any()}
    log_r = np.log(est["r"])
    pairs = [float(np.median(np.abs(log_r[a] - log_r[b])))
             for a, b in itertools.combinations(range(3), 2)]
    r_err = min(float(np.median(np.abs(est["r"][list(p)] / truth["r"] - 1)))
                for p in itertools.permutations(range(3)))
    row = dict(ari=adjusted_rand_index(truth["assignment"], labels),
               ari_mean=adjusted_rand_index(truth["assignment"], probs_mean.argmax(1)),
               nan_cells=nan_cells, nan_sites=nan_sites,
               weights=[round(float(w), 4) for w in est["mixing_weights"]],
               label_counts=np.bincount(labels, minlength=3).tolist(),
               median_dlogr_pairs=[round(x, 3) for x in pairs], r_error_rmatched=r_err,
               p=float(np.mean(est["p"])))
    if "gate" in est:
        row["gate_mean"] = [round(float(g), 3) for g in est["gate"].mean(1)]
        row["gate_gt_half"] = [round(float(g), 3) for g in (est["gate"] > 0.5).mean(1)]
    if "p_capture" in est:
        row["capture_median"] = float(np.median(est["p_capture"]))
        row["p_hat_error"] = float(np.median(np.abs(est["p_hat"] / truth["p_hat"] - 1)))
    return row


def run_variant(csr, truth, model_type: str, variant: str, n_steps: int, every: int,
                seed: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    start = time.perf_counter()
    svi, state, counts, order, batch, config, epochs = build(csr, model_type, variant, seed)
    n_cells, n_genes = csr.shape

    @jax.jit
    def chunk(state, counts, order):
        def body(i, inner):
            state, losses = inner
            extra = {"step": state.optim_state[0], "order": order} if epochs else {}
            state, loss = svi.stable_update(state, n_cells, n_genes, counts=counts,
                                            batch_size=batch, **extra)
            return state, losses.at[i].set(loss)
        return jax.lax.fori_loop(0, every, body, (state, jnp.zeros(every)))

    rows = [dict(step=0, **snapshot(svi, state, csr, truth, config, model_type))]
    print(json.dumps(dict(variant=variant, **rows[-1])), flush=True)
    for done in range(every, n_steps + 1, every):
        state, losses = chunk(state, counts, order)
        rows.append(dict(step=done, loss=float(np.mean(np.asarray(losses))),
                         seconds=time.perf_counter() - start,
                         **snapshot(svi, state, csr, truth, config, model_type)))
        print(json.dumps(dict(variant=variant, **rows[-1])), flush=True)
    return dict(variant=variant, batch_size=batch, load=os.getloadavg()[0], windows=rows)


def main() -> None:
    import warnings

    warnings.simplefilter("ignore")
    import numpy as np
    import scipy.sparse as sp

    sys.path.insert(0, os.path.dirname(__file__))
    from time_to_fit import SIMULATION

    from scribe.simulate import simulate_counts

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-type", default="zinbvcp_mix")
    parser.add_argument("--size", default="2000x500")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--variants", nargs="+", default=["default"])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    n_cells, n_genes = map(int, args.size.split("x"))
    base = args.model_type.removesuffix("_mix")
    settings = SIMULATION["capture" if base in ("nbvcp", "zinbvcp") else "plain"]
    dense, truth = simulate_counts(args.model_type, n_cells, n_genes, n_components=3,
                                   seed=args.seed, **settings)
    csr = sp.csr_matrix(dense.astype(np.float32))
    out = dict(args=vars(args), runs=[])
    for variant in args.variants:
        out["runs"].append(run_variant(csr, truth, args.model_type, variant, args.steps,
                                       args.every, args.seed))
        with open(args.out, "w") as handle:
            json.dump(out, handle)


if __name__ == "__main__":
    main()
