"""Per-draw cost of Gamma draws and their reparameterised gradient: JAX's against scribe.gamma.

Beta, BetaPrime and Dirichlet variational factors are sampled through Gamma draws. JAX's
``jax.random.gamma`` (a sequential rejection loop per element on CPU) and its implicit
gradient (a series whose length grows with the concentration) cost microseconds per draw;
``scribe.gamma`` (XLA ThreeFry bits, vectorised Marsaglia-Tsang, Temme-based implicit gradient)
is compared at the same sizes, with a LogNormal draw + gradient as the floor.

    python benchmarks/gamma_gradient.py --size 40000 --out benchmarks/results/gamma_gradient.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from scribe.gamma import gamma


def median_ms(fn, *args, repeats: int = 7) -> float:
    fn = jax.jit(fn)
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=40000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    key = jax.random.PRNGKey(0)
    normal = median_ms(
        jax.grad(lambda m: jnp.sum(jnp.exp(m + jax.random.normal(key, m.shape)))),
        jnp.zeros(args.size))
    rows = []
    print(f"{args.size} draws; ns per draw; LogNormal draw + gradient: "
          f"{normal * 1e6 / args.size:.0f} ns")
    print("| concentration | JAX draws | JAX draws + gradient "
          "| scribe draws | scribe draws + gradient |")
    print("|---:|---:|---:|---:|---:|")
    for alpha in (0.3, 1.0, 5.0, 100.0, 1e4):
        a = jnp.full(args.size, alpha)
        row = dict(
            concentration=alpha,
            jax_draw=median_ms(lambda a: jax.random.gamma(key, a), a),
            jax_grad=median_ms(jax.grad(lambda a: jnp.sum(jax.random.gamma(key, a))), a),
            scribe_draw=median_ms(lambda a: gamma(key, a), a),
            scribe_grad=median_ms(jax.grad(lambda a: jnp.sum(gamma(key, a))), a),
        )
        ns = {k: v * 1e6 / args.size for k, v in row.items() if k != "concentration"}
        rows.append(dict(concentration=alpha, **{f"{k}_ns_per_draw": v for k, v in ns.items()}))
        print(f"| {alpha:g} | {ns['jax_draw']:.0f} | {ns['jax_grad']:.0f} "
              f"| {ns['scribe_draw']:.0f} | {ns['scribe_grad']:.0f} |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(dict(
            size=args.size, lognormal_ns_per_draw=normal * 1e6 / args.size, rows=rows,
            jax=jax.__version__), indent=2))


if __name__ == "__main__":
    main()
