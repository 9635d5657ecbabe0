"""Cells sharded across devices (scribe.shard, docs/scale.md).

In-process tests check the layout, the mini-batch sampler and argument validation (this
process has one CPU device). Equality of sharded and single-device fits runs in a
subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (set before JAX
is imported there): one subprocess per test, all its model types in a loop.

Tolerances. A sharded fit evaluates the same ELBO with the same random draws
(``jax_threefry_partitionable``: bits do not depend on how an array is split) but sums
the likelihood per device and per cell instead of over the whole matrix at once, so
only float32 rounding differs: a sum of ``n`` terms in another order differs by at most
``n eps sum|terms|`` (``eps = 6e-8``), typically ``sqrt(n) eps`` relative: 3e-6 for the
``C G = 2,060`` entries here. Losses are compared to 1e-5 relative (that, accumulated
over 30 steps of slightly different parameters). Parameters: Adam moves each by at most
about ``lr = 3e-3`` per step whatever the gradient's scale, so a rounding-level gradient
difference changes 30 steps by ``<< 1e-5`` except where a gradient is itself near zero;
we allow ``1e-4 max|theta| + 1e-5`` per parameter array (measured: <= 1.6e-5 at
``max|theta| = 38``, 4e-7 relative). Analyses: per-cell sums over 20 genes and per-gene
sums over 103 cells, ``n eps`` bound ``< 1e-5`` and ``< 1e-4`` relative to the largest
magnitude.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import scribe
from scribe.shard.batches import cell_weights, stratified_indices
from scribe.shard.devices import resolve_devices
from scribe.shard.layout import CellLayout

WORKER = Path(__file__).with_name("_shard_worker.py")


# ---- layout, sampler, validation (in process) ----------------------------------------------

@pytest.mark.parametrize("n_cells, n_devices", [(103, 4), (8, 4), (5, 4), (9, 8), (1, 1)])
def test_layout_is_balanced_contiguous_and_round_trips(n_cells, n_devices):
    layout = CellLayout(n_cells, n_devices)
    sizes = layout.sizes
    assert sizes.sum() == n_cells and sizes.max() - sizes.min() <= 1
    # Brute force: device d holds cells starts[d] .. starts[d] + sizes[d] - 1 in order.
    owner = np.concatenate([np.full(s, d) for d, s in enumerate(sizes)])
    slots = layout.slot_of_cell
    assert np.array_equal(slots // layout.local, owner)
    assert len(set(slots.tolist())) == n_cells
    cells = np.arange(n_cells, dtype=np.float32) * 1.5
    padded = np.asarray(layout.to_slots(cells))
    assert padded.shape == (n_devices * layout.local,)
    assert np.array_equal(np.asarray(layout.from_slots(padded)), cells)
    # Padding repeats a cell of the same device (valid parameter values, never NaN).
    pad = ~layout.valid.reshape(-1)
    assert np.all(owner[layout.cell_of_slot[pad]] == np.nonzero(pad)[0] // layout.local)


def test_layout_refuses_more_devices_than_cells():
    with pytest.raises(ValueError, match="at least one cell"):
        CellLayout(3, 4)


def test_stratified_batches_draw_each_device_share_without_replacement():
    layout, batch = CellLayout(103, 4), 40
    draws = np.stack([np.asarray(stratified_indices(jax.random.PRNGKey(i), layout, batch))
                      for i in range(400)])
    starts, sizes = layout.starts, layout.sizes
    for d in range(4):
        part = draws[:, d * 10:(d + 1) * 10]
        assert np.all((part >= starts[d]) & (part < starts[d] + sizes[d]))
        assert all(len(set(row)) == 10 for row in part)
        # Uniform within the device: each cell drawn with probability b / n_d. Over 400
        # draws a count is Binomial(400, 10/n_d); 5 sd of slack on every cell.
        counts = np.bincount(part.ravel() - starts[d], minlength=sizes[d])
        p = 10 / sizes[d]
        assert np.all(np.abs(counts - 400 * p) < 5 * np.sqrt(400 * p * (1 - p)))


def test_batch_weights_make_the_estimate_unbiased():
    # sum over the batch of (C/B) * weight * f(cell), in expectation, is sum_c f(c):
    # device d's cells each enter with probability b/n_d and weight (C/B)(n_d D/C).
    layout, batch = CellLayout(103, 4), 40
    weights = cell_weights(layout, batch)
    b = batch // 4
    f = np.random.default_rng(0).random(103)
    expected = sum((103 / batch) * weights[d * b] * (b / layout.sizes[d])
                   * f[layout.starts[d]:layout.starts[d] + layout.sizes[d]].sum()
                   for d in range(4))
    assert expected == pytest.approx(f.sum(), rel=1e-6)


@pytest.mark.parametrize("devices, error, match", [
    (0, ValueError, "between 1 and"), ("too many", ValueError, "between 1 and"),
    (True, TypeError, "positive integer"), ("cpu", TypeError, "list of jax.Device"),
    ([1], TypeError, "jax.Device"), ([], ValueError, "empty"), (1.0, TypeError, "devices")])
def test_bad_devices_are_refused_before_training(devices, error, match):
    if devices == "too many":
        devices = len(jax.devices()) + 1
    x = np.ones((10, 3), np.float32)
    with pytest.raises(error, match=match):
        scribe.fit(x, n_steps=5, progress=False, devices=devices)


def test_one_device_is_the_unsharded_path():
    assert resolve_devices(None) is None
    assert resolve_devices(1) is None
    assert resolve_devices([jax.devices()[0]]) is None
    with pytest.raises(ValueError, match="twice"):
        resolve_devices([jax.devices()[0], jax.devices()[0]])


# ---- sharded against single-device (subprocess, 4 forced host devices) ---------------------

#: Cheaper XLA compilation for the default-suite run (both fits compile with the same
#: flags, so the comparison is unaffected; about 25 % less CPU time). The slow test
#: compiles with the defaults.
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def _run_worker(tmp_path, types, extras: bool, fast_compile: bool = False) -> dict:
    out = tmp_path / "report.json"
    command = [sys.executable, str(WORKER), str(out), *types]
    if extras:
        command += ["--extras", str(tmp_path / "sharded.nc")]
    env = dict(os.environ)
    if fast_compile:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {FAST_COMPILE}"
    subprocess.run(command, check=True, capture_output=True, timeout=3000, env=env)
    return json.loads(out.read_text())


def _check_fits(report: dict, types) -> None:
    assert report["n_devices"] == 4
    for model_type in types:
        entry = report["types"][model_type]
        assert entry["n_devices"] == [1, 4], model_type
        assert entry["loss_rel"] < 1e-5, model_type
        for name, p in entry["params"].items():
            assert p["shape_a"] == p["shape_b"], (model_type, name)
            assert p["max_abs"] <= 1e-4 * p["max_scale"] + 1e-5, (model_type, name, p)


def test_sharded_fit_equals_single_device(tmp_path):
    # nbvcp: per-cell capture parameters padded and split (103 cells on 4 devices).
    report = _run_worker(tmp_path, ["nbvcp"], extras=False, fast_compile=True)
    _check_fits(report, ["nbvcp"])


ALL_TYPES = ["nbdm", "zinb", "nbvcp", "zinbvcp", "nbdm_mix", "zinb_mix", "nbvcp_mix",
             "zinbvcp_mix"]


@pytest.mark.slow
def test_sharded_fits_analyses_batches_and_saving(tmp_path):
    report = _run_worker(tmp_path, ALL_TYPES, extras=True)
    _check_fits(report, ALL_TYPES)
    extras = report["extras"]
    assert extras["batch"] == {"finite": True, "loss_finite": True, "shape": [103],
                               "n_devices": 4}
    assert "not divisible by the 4 devices" in extras["indivisible"]
    checks = extras["analyses"]
    for name, rel in (("loglik_cell", 1e-5), ("loglik_gene", 1e-4), ("cell_type", 1e-5),
                      ("denoise_mean", 1e-5)):
        difference, scale = checks[name]
        assert difference <= rel * scale, (name, difference, scale)
    assert checks["denoise_sample_differ"] == 0   # same keys per block: identical draws
    # Saved by a 4-device fit, loaded here on one device: same parameters, n_devices kept.
    loaded = scribe.load(tmp_path / "sharded.nc")
    assert loaded.n_devices == 4
    for name, value in extras["saved_params"].items():
        np.testing.assert_array_equal(np.asarray(loaded.params[name]), np.asarray(value,
                                                                                 np.float32))
