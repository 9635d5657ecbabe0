"""Run in a subprocess by tests/test_sharding.py with 4 forced host devices.

Usage: ``python _shard_worker.py OUT.json MODEL_TYPE ... [--extras SAVE_PATH]``.
Prints nothing; writes a JSON of comparisons between single-device and sharded runs.
"""

import os
import sys

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=4")

import json  # noqa: E402
import warnings  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

import scribe  # noqa: E402

C, G, STEPS = 103, 20, 30   # 103 cells: not divisible by 4 (shards of 26, 26, 26, 25)


def data():
    rng = np.random.default_rng(7)
    x = rng.negative_binomial(3, 0.4, size=(C, G)).astype(np.float32)
    x[:, :5] *= rng.random((C, 5)) < 0.6    # some extra zeros
    return x


def fit(x, model_type, **kw):
    extra = {"n_components": 2} if model_type.endswith("_mix") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return scribe.fit(x, model_type, n_steps=STEPS, tol=None, progress=False, seed=3,
                          **extra, **kw)


def compare(a: dict, b: dict) -> dict:
    out = {}
    for name in a:
        pa, pb = np.asarray(a[name], np.float64), np.asarray(b[name], np.float64)
        out[name] = {"shape_a": list(pa.shape), "shape_b": list(pb.shape),
                     "max_abs": float(np.max(np.abs(pa - pb))),
                     "max_scale": float(np.max(np.abs(pa)))}
    return out


def main():
    out_path, args = sys.argv[1], sys.argv[2:]
    extras = None
    if "--extras" in args:
        extras = args[args.index("--extras") + 1]
        args = args[:args.index("--extras")]
    x = data()
    report = {"n_devices": len(jax.devices()), "types": {}}
    for model_type in args:
        single, sharded = fit(x, model_type), fit(x, model_type, devices=4)
        la, lb = np.asarray(single.loss_history), np.asarray(sharded.loss_history)
        report["types"][model_type] = {
            "params": compare(single.params, sharded.params),
            "loss_rel": float(np.max(np.abs(la - lb) / np.abs(la))),
            "n_devices": [single.n_devices, sharded.n_devices]}
    if extras:
        report["extras"] = run_extras(x, extras)
    with open(out_path, "w") as f:
        json.dump(report, f)


def run_extras(x, save_path: str) -> dict:
    out = {}
    # Mini-batches per device: 40 cells = 10 per device per step.
    batched = fit(x, "nbvcp", devices=4, batch_size=40)
    out["batch"] = {"finite": bool(all(np.all(np.isfinite(np.asarray(v)))
                                       for v in batched.params.values())),
                    "loss_finite": bool(np.all(np.isfinite(np.asarray(batched.loss_history)))),
                    "shape": list(np.shape(batched.params["p_capture_alpha"])),
                    "n_devices": batched.n_devices}
    try:
        fit(x, "nbdm", devices=4, batch_size=42)
        out["indivisible"] = "no error"
    except ValueError as error:
        out["indivisible"] = str(error)
    # Analyses on a sharded mixture fit with capture: devices=4 against one device.
    res = fit(x, "zinbvcp_mix", devices=4)
    res.save(save_path)
    res.get_posterior_samples(n_samples=3)
    checks = {}
    for by in ("cell", "gene"):
        a = res.log_likelihood(x, return_by=by, split_components=True)
        b = res.log_likelihood(x, return_by=by, split_components=True, devices=4, batch_size=7)
        checks[f"loglik_{by}"] = [float(np.max(np.abs(np.asarray(a) - np.asarray(b)))),
                                  float(np.max(np.abs(np.asarray(a))))]
    a = res.cell_type_probabilities(x)["sample_probabilities"]
    b = res.cell_type_probabilities(x, devices=4)["sample_probabilities"]
    checks["cell_type"] = [float(np.max(np.abs(np.asarray(a) - np.asarray(b)))), 1.0]
    a, b = res.denoise_counts(x, batch_size=30), res.denoise_counts(x, batch_size=30, devices=4)
    checks["denoise_mean"] = [float(np.max(np.abs(a - b))), float(np.max(np.abs(a)))]
    a = res.denoise_counts(x, batch_size=30, method="sample", n_samples=2)
    b = res.denoise_counts(x, batch_size=30, method="sample", n_samples=2, devices=4)
    checks["denoise_sample_differ"] = int(np.sum(a != b))
    out["analyses"] = checks
    out["saved_params"] = {k: np.asarray(v).tolist() for k, v in res.params.items()}
    return out


if __name__ == "__main__":
    main()
