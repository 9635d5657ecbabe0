"""Parameter recovery for model type x parameterization on simulated data.

    python benchmarks/recovery.py --cells 1000 --genes 500 --steps 5000 \
        --out benchmarks/results/recovery.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import scribe
from scribe.simulate import recovery_errors, simulate_counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-types", nargs="+", default=scribe.available_model_types())
    parser.add_argument("--parameterizations", nargs="+",
                        default=scribe.available_parameterizations())
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--genes", type=int, default=500)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = []
    for model_type, parameterization in itertools.product(args.model_types,
                                                          args.parameterizations):
        k = 3 if model_type.endswith("_mix") else None
        counts, truth = simulate_counts(model_type, args.cells, args.genes, n_components=k,
                                        seed=args.seed)
        start = time.perf_counter()
        results = scribe.fit(counts, model_type, parameterization, n_components=k,
                             n_steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                             progress=False)
        row = dict(model_type=model_type, parameterization=parameterization,
                   seconds=time.perf_counter() - start,
                   **recovery_errors(results, counts, truth))
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "w") as handle:
                json.dump(dict(cells=args.cells, genes=args.genes, steps=args.steps,
                               batch_size=args.batch_size, rows=rows), handle, indent=2)


if __name__ == "__main__":
    main()
