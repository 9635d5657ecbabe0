"""Cost of JAX's Gamma draws and of their reparameterised gradient, by concentration.

Beta and BetaPrime variational factors are sampled through Gamma draws; their gradient
(``jax.random.gamma``'s implicit derivative) is evaluated by a series whose length grows
with the concentration, and dominates the step of models with per-cell Beta factors.

    python benchmarks/gamma_gradient.py --size 20000
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp


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
    parser.add_argument("--size", type=int, default=20000)
    args = parser.parse_args()
    key = jax.random.PRNGKey(0)
    print("| concentration | draws (ms) | draws + gradient (ms) "
          "| LogNormal draws + gradient (ms) |")
    print("|---:|---:|---:|---:|")
    normal = median_ms(
        jax.grad(lambda m: jnp.sum(jnp.exp(m + jax.random.normal(key, m.shape)))),
                       jnp.zeros(args.size))
    for alpha in (0.5, 2.0, 10.0, 100.0, 1000.0, 10000.0):
        a = jnp.full(args.size, alpha)
        draws = median_ms(lambda a: jax.random.gamma(key, a), a)
        grad = median_ms(jax.grad(lambda a: jnp.sum(jax.random.gamma(key, a))), a)
        print(f"| {alpha:g} | {draws:.1f} | {grad:.1f} | {normal:.2f} |")


if __name__ == "__main__":
    main()
