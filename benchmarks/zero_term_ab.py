"""zinbvcp's zero term: the matrix-product backward pass against the previous one.

The previous backward pass (four reductions over a recomputed ``sigmoid(d)``, kept here
as the reference) is swapped in for the current one by patching
``scribe_builtin.zero_term._log_zero_cell_sums``; both are timed alternately in one
process, (a) as the value and gradient of the term alone at ``(batch, G)`` and (b) as
whole zinbvcp fits of ``--n-steps`` steps (no stop) at that batch size, the loop's CPU
seconds per step (compile excluded). CPU time, because the machine is shared.

    python benchmarks/zero_term_ab.py --size 20000x2000 --batch-size 2048 \
        --out benchmarks/results/zero_term_ab_20000x2000_zvcp.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from time_to_fit import SIMULATION  # noqa: E402


def previous_zero_term():
    """The zero term with the previous backward pass (reductions, no products)."""
    from scribe_builtin import zero_term as zt

    @jax.custom_vjp
    def term(log_gate, log_kept, r, log_q):
        d = zt._logit_kept(log_gate, log_kept, r, log_q)
        return jnp.sum(log_gate) + jnp.sum(zt._softplus(d), axis=-1)

    def forward(*args):
        return term(*args), args

    def backward(residuals, cotangent):
        log_gate, log_kept, r, log_q = residuals
        d = zt._logit_kept(log_gate, log_kept, r, log_q)
        weighted = cotangent[:, None] * jax.nn.sigmoid(d)
        return (jnp.sum(cotangent[:, None] * jax.nn.sigmoid(-d), axis=0),
                jnp.sum(weighted, axis=0), jnp.sum(weighted * log_q[:, None], axis=0),
                jnp.sum(weighted * r, axis=-1))

    term.defvjp(forward, backward)
    return term


def term_seconds(term, n_cells, n_genes, repeats):
    rng = np.random.default_rng(0)
    gate = jnp.asarray(rng.uniform(0.05, 0.4, n_genes), jnp.float32)
    r = jnp.asarray(rng.lognormal(-1, 1, n_genes), jnp.float32)
    log_q = jnp.asarray(np.log1p(-rng.uniform(0.01, 0.06, n_cells)), jnp.float32)

    def loss(gate, r, log_q):
        return jnp.sum(term(jnp.log(gate), jnp.log1p(-gate), r, log_q))

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
    jax.block_until_ready(grad(gate, r, log_q))
    times = []
    for _ in range(repeats):
        start = time.process_time()
        jax.block_until_ready(grad(gate, r, log_q))
        times.append(time.process_time() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="20000x2000")
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--n-steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import scipy.sparse as sp
    from scribe_builtin import zero_term

    import scribe
    from scribe.simulate import simulate_counts

    n_cells, n_genes = map(int, args.size.split("x"))
    terms = {"current": zero_term._log_zero_cell_sums, "previous": previous_zero_term()}
    alone = {name: [] for name in terms}
    for _ in range(5):
        for name, term in terms.items():
            alone[name] += term_seconds(term, args.batch_size, n_genes, 5)
    dense, _ = simulate_counts("zinbvcp", n_cells, n_genes, seed=0, **SIMULATION["capture"])
    counts = sp.csr_matrix(dense.astype(np.float32))
    del dense
    rows = []
    for repeat in range(args.repeats):
        for name, term in terms.items():
            zero_term._log_zero_cell_sums = term
            load = os.getloadavg()[0]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                results = scribe.fit(counts, "zinbvcp", n_steps=args.n_steps, tol=None,
                                     batch_size=args.batch_size, progress=False)
            t = results.timings
            rows.append(dict(term=name, repeat=repeat,
                             step_cpu_ms=1e3 * t["loop_cpu_s"] / t["loop_steps"],
                             first_chunk_cpu_s=t["first_chunk_cpu_s"],
                             final_loss=float(np.asarray(results.loss_history)[-1]),
                             load=[round(load, 1), round(os.getloadavg()[0], 1)]))
            print(json.dumps(rows[-1]), flush=True)
    zero_term._log_zero_cell_sums = terms["current"]
    out = dict(size=args.size, batch_size=args.batch_size,
               term_alone_cpu_ms={k: 1e3 * float(np.median(v)) for k, v in alone.items()},
               term_alone_ratio=float(np.median(np.array(alone["previous"])
                                                / np.array(alone["current"]))),
               fits=rows,
               step_cpu_ms={k: float(np.median([r["step_cpu_ms"] for r in rows
                                                if r["term"] == k])) for k in terms})
    print(json.dumps({k: v for k, v in out.items() if k != "fits"}))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(out, handle, indent=2)


if __name__ == "__main__":
    main()
