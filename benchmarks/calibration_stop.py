"""Does the convergence stop cost the zinbvcp calibration case its coverage?

The case of ``tests/test_calibration.py::test_ninety_percent_intervals_cover_truth``
(zinbvcp, 2,000 x 400, seed 11, Adam decaying 1e-2 -> 2e-4 over 12,000 steps), fitted
with the stop (``tol=1e-5``, as the test does) and without it (all 12,000 steps), with
the default guide and, for comparison, ``joint_capture``. Per fit: steps run, the median
loss of the last 100 steps, and for ``r``, ``gate`` and ``p_hat`` the coverage of the
central 90 % interval (1,000 draws) with the fractions of truths below and above it.

    python benchmarks/calibration_stop.py --out benchmarks/results/calibration_stop_zvcp.json
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

N_STEPS = 12_000


def one_fit(counts, truth, tol, guide_family) -> dict:
    import jax
    import numpy as np
    from numpyro.optim import Adam

    import scribe

    schedule = lambda step: 1e-2 * 0.02 ** (step / N_STEPS)  # noqa: E731
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        results = scribe.fit(counts, "zinbvcp", n_steps=N_STEPS, optimizer=Adam(schedule),
                             progress=False, tol=tol, guide_family=guide_family)
    row = dict(tol=tol, guide_family=guide_family, seconds=time.perf_counter() - start,
               n_steps_run=int(results.n_steps_run),
               final_loss=float(np.median(np.asarray(results.loss_history)[-100:])))
    draws = results.get_posterior_samples(jax.random.PRNGKey(0), 1000, store_samples=False)
    for name in ("r", "gate", "p_hat"):
        values, true = np.asarray(draws[name]), truth[name]
        low, high = np.quantile(values, [0.05, 0.95], axis=0)
        row[name] = dict(coverage=float(np.mean((true >= low) & (true <= high))),
                         below=float(np.mean(true < low)), above=float(np.mean(true > high)))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    from scribe.simulate import simulate_counts

    counts, truth = simulate_counts("zinbvcp", 2000, 400, seed=11)
    rows = []
    for tol, family in ((1e-5, None), (None, None), (1e-5, "joint_capture"),
                        (None, "joint_capture")):
        rows.append(one_fit(counts, truth, tol, family))
        print(json.dumps(rows[-1]), flush=True)
        if args.out:
            with open(args.out, "w") as handle:
                json.dump(dict(case="zinbvcp 2000x400 seed 11", rows=rows), handle, indent=2)


if __name__ == "__main__":
    main()
