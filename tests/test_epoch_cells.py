"""Epoch-drawn mini-batches (``scribe.epoch_cells``): coverage of each epoch, no repeats
within a batch, unbiased batch sums, overflow-safe multipliers, and the plate's cells."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from numpyro import handlers

from scribe.epoch_cells import EpochCells, epoch_indices, epoch_steps, multipliers

C, B = 50, 16          # E = 4 steps per epoch, 64 slots: the last batch wraps onto 14


N_EPOCHS, SEED = 1500, 3


@pytest.fixture(scope="module")
def cells() -> np.ndarray:
    """Cells ``(E N, B)`` of the first N epochs, one compiled call."""
    wrapper = EpochCells(lambda: None, C, B, SEED)
    order, table = jnp.asarray(wrapper.order), jnp.asarray(wrapper.table)
    steps = jnp.arange(4 * N_EPOCHS, dtype=jnp.int32)
    return np.asarray(jax.jit(jax.vmap(lambda s: epoch_indices(s, C, B, order, table,
                                                               wrapper.key)))(steps))


def test_epoch_steps():
    assert epoch_steps(50, 16) == 4 and epoch_steps(20_000, 2048) == 10
    assert epoch_steps(50, None) == 1 and epoch_steps(50, 50) == 1 and epoch_steps(50, 80) == 1


def test_each_epoch_covers_every_cell_and_no_batch_repeats_one(cells):
    for epoch in cells[: 4 * 30].reshape(30, 4, B):
        assert all(np.unique(batch).size == B for batch in epoch)
        counts = np.bincount(epoch.ravel(), minlength=C)
        # every cell once, plus E*B - C = 14 cells a second time (the wrapped last batch)
        assert counts.min() == 1 and counts.max() == 2 and (counts == 2).sum() == 4 * B - C
    # epochs differ (fresh multiplier and offset per epoch)
    assert not np.array_equal(cells[:4], cells[4:8])


def test_batch_sums_are_unbiased_at_every_position_in_the_epoch(cells):
    # For f (C,), (C/B) sum_batch f estimates sum f. Epochs are independent draws, so at
    # each of the E positions the mean over N epochs has standard error sd / sqrt(N); a
    # 4.5-sigma bound fails with probability ~7e-6 per position (E = 4 positions).
    f = np.random.default_rng(1).gamma(2.0, 3.0, C)
    n_epochs = N_EPOCHS
    estimates = (C / B) * f[cells].sum(axis=1).reshape(n_epochs, 4)
    mean, se = estimates.mean(axis=0), estimates.std(axis=0, ddof=1) / math.sqrt(n_epochs)
    assert np.all(np.abs(mean - f.sum()) <= 4.5 * se)
    assert np.all(se > 0)


@pytest.mark.parametrize("n_cells", [7, 50, 20_000, 1_000_000, 10_000_000])
def test_multipliers_are_coprime_and_cannot_overflow(n_cells):
    table = multipliers(n_cells, 0)
    assert table.dtype == np.int32 and table.size >= 1
    assert all(math.gcd(int(a), n_cells) == 1 for a in table)
    # (a (j mod C) mod C + b) with j mod C, b < C: a * C + C must stay inside int32
    assert int(table.max()) * n_cells + n_cells <= 2**31 - 1


def test_plate_draws_the_step_cells(cells):
    def model(step_seen=None):
        with numpyro.plate("cells", C, subsample_size=B) as idx:
            numpyro.sample("x", numpyro.distributions.Normal(0.0, 1.0))
        return idx

    wrapped = EpochCells(model, C, B, seed=SEED)
    for step in (0, 7):
        with handlers.seed(rng_seed=step):
            idx = wrapped(step=jnp.asarray(step, jnp.int32))
        np.testing.assert_array_equal(np.asarray(idx), cells[step])
