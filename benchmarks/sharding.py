"""Step time and per-device memory of fits with cells sharded across devices.

Run on the CPU with forced host devices (the flag is set here, before JAX is imported):

    .venv/bin/python benchmarks/sharding.py --size 50000x2000 --devices 4 \
        --out benchmarks/results/sharding_50000x2000.json

For each model type: one fit on one device and one with ``--devices`` devices, same
counts (simulated, ``--density`` non-zeros), same steps. Step time is the median of the
compiled chunks after the first (which compiles), per step. Memory per device is
``jax.Device.memory_stats()["bytes_in_use"]`` where the backend reports it (GPUs), else
the bytes of the live arrays each device holds (``addressable_shards``), taken during
training: counts, parameters and optimiser state (twice: the loop keeps the last good
state), not XLA's temporaries. On a 2-core CPU, 4 host devices cannot be faster than
one; what matters there is that each device holds a quarter of the counts.
"""

from __future__ import annotations

import argparse
import os
import sys

if __name__ == "__main__":
    _devices = sys.argv[sys.argv.index("--devices") + 1] if "--devices" in sys.argv else "4"
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={_devices}")

import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from scribe.config import ModelConfig  # noqa: E402
from scribe.svi.engine import SVIInferenceEngine  # noqa: E402


class ChunkClock:
    """A stopping rule that never stops: it times each compiled chunk and samples the
    memory each device holds (the engine calls ``update`` after every chunk)."""

    def __init__(self, window: int):
        self.window, self.enabled = window, True
        self.converged, self.converged_step = False, None
        self.times: list[float] = []
        self.memory: dict | None = None

    def reset(self):
        self.times = [time.perf_counter()]

    def update(self, losses) -> bool:
        self.times.append(time.perf_counter())
        if len(self.times) == 3:   # during training, after the first compiled chunk
            self.memory = device_memory()
        return False

    def describe(self) -> str:
        return ""

    def step_seconds(self) -> float:
        chunks = np.diff(self.times)[1:]   # the first chunk compiles
        return float(np.median(chunks) / self.window)


def device_memory() -> dict:
    """``{device: bytes}`` in use on every device."""
    stats = {d: d.memory_stats() for d in jax.devices()}
    if all(s and "bytes_in_use" in s for s in stats.values()):
        return {str(d): int(s["bytes_in_use"]) for d, s in stats.items()}
    held = {str(d): 0 for d in jax.devices()}
    for array in jax.live_arrays():
        for shard in array.addressable_shards:
            held[str(shard.device)] += shard.data.nbytes
    return held


def simulate(n_cells: int, n_genes: int, density: float, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    return sp.random(n_cells, n_genes, density=density, format="csr", random_state=rng,
                     data_rvs=lambda n: rng.geometric(0.3, n).astype(np.float32),
                     dtype=np.float32)


def run(counts, model_type: str, devices, n_steps: int, window: int) -> dict:
    extra = {"n_components": 2} if model_type.endswith("_mix") else {}
    config = ModelConfig(model_type=model_type, parameterization="standard", **extra)
    clock = ChunkClock(window)
    start = time.perf_counter()
    result = SVIInferenceEngine.run_inference(
        config, counts, *counts.shape, n_steps=n_steps, seed=0, progress=False,
        stopping=clock, devices=devices)
    return {"devices": result.n_devices, "step_s": clock.step_seconds(),
            "wall_s": time.perf_counter() - start, "memory_bytes": clock.memory,
            "final_loss": float(np.asarray(result.losses)[-1])}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="50000x2000")
    parser.add_argument("--density", type=float, default=0.05)
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--types", nargs="+", default=["nbdm", "nbvcp", "nbdm_mix"])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    n_cells, n_genes = (int(v) for v in args.size.lower().split("x"))
    counts = simulate(n_cells, n_genes, args.density)
    report = {"size": [n_cells, n_genes], "nnz": int(counts.nnz), "steps": args.steps,
              "window": args.window, "jax": jax.__version__, "backend": jax.default_backend(),
              "machine": platform.machine(), "cpus": os.cpu_count(),
              "load_before": os.getloadavg(), "runs": []}
    for model_type in args.types:
        for devices in (None, args.devices):
            entry = {"model_type": model_type,
                     **run(counts, model_type, devices, args.steps, args.window)}
            report["runs"].append(entry)
            memory = entry["memory_bytes"] or {}
            print(f"{model_type:10s} devices={entry['devices']}: "
                  f"{1e3 * entry['step_s']:.1f} ms/step, per device "
                  f"{', '.join(f'{b / 2**20:.1f}' for b in memory.values())} MiB "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
    report["load_after"] = os.getloadavg()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
