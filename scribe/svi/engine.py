"""``SVIInferenceEngine``: run NumPyro SVI with a compiled training loop.

Steps run in chunks inside one jitted ``fori_loop``. The counts are an *argument* of the
compiled function, never a closed-over constant: XLA would otherwise embed and
constant-fold the whole matrix, which makes compilation take minutes on real data.

Model types composed from a likelihood get the counts as
:class:`~scribe.counts.SparseCounts` (non-zeros and sufficient statistics, built once);
a plugin's own model receives a dense ``(C, G)`` array.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from numpyro.infer import SVI, TraceMeanField_ELBO
from numpyro.infer.svi import SVIRunResult
from numpyro.optim import Adam
from tqdm.auto import tqdm

from scribe import plugins
from scribe.config import ModelConfig
from scribe.counts_stream import StreamedCounts
from scribe.epoch_cells import EpochCells, epoch_steps
from scribe.expected_capture import training_guide
from scribe.fit_counts import device_counts, stream_for_fit
from scribe.progress import is_enabled as progress_enabled
from scribe.shard.batches import StratifiedCells
from scribe.shard.counts import ShardedCounts
from scribe.shard.devices import CellMesh, check_sharded_fit, resolve_devices
from scribe.shard.training import cell_param_names, gather_params, place_carry, shard_state
from scribe.svi.convergence import ConvergenceMonitor
from scribe.svi.divergence import STOP_AFTER_NONFINITE, Divergence, select_tree, tree_finite
from scribe.svi.drift import snapshot_fn
from scribe.svi.phase_times import PhaseTimes
from scribe.svi.staged_rate import next_stage
from scribe.validation import (
    check_bool,
    check_loss,
    check_optimizer,
    check_positive_int,
    check_seed,
)


def resolve_model_and_guide(model_config: ModelConfig):
    """The model and guide callables a plugin provides for ``model_config``."""
    hook = plugins.get_plugin_manager().hook
    model = hook.scribe_model(model_config=model_config)
    guide = hook.scribe_guide(model_config=model_config)
    if model is None or guide is None:
        raise ValueError(
            f"no installed plugin provides a {'model' if model is None else 'guide'} for "
            f"model type '{model_config.model_type}'"
        )
    return model, guide


def canonical_guess(model_config: ModelConfig, counts, seed: int) -> dict:
    """Data-informed starting canonical parameters of a composed model type."""
    from scribe.initial_stream import initial_from_stream
    from scribe.initial_values import initial_canonical

    spec = plugins.lookup_model_type(model_config.model_type)
    start = initial_from_stream if isinstance(counts, StreamedCounts) else initial_canonical
    return start(counts, spec.likelihood, model_config.n_components,
                 model_config.component_specific_params, seed,
                 mrna_per_cell=model_config.mrna_total)


def initial_params(model_config: ModelConfig, counts, seed: int,
                   guess: dict | None = None) -> dict | None:
    """Data-informed variational parameters for composed model types (None otherwise).

    ``guess``: the starting canonical parameters if already computed
    (:func:`canonical_guess`; ``scribe.fit`` also sets its data-informed prior from them).
    """
    spec = plugins.lookup_model_type(model_config.model_type)
    if spec.likelihood is None:
        return None
    from scribe.compose import Composition

    if guess is None:
        guess = canonical_guess(model_config, counts, seed)
    return Composition(model_config).initial_params(guess, *counts.shape)


def check_run_args(model_config, count_data, n_cells, n_genes, *, optimizer, loss, n_steps,
                   seed, stable_update, progress) -> None:
    """Validate ``run_inference``'s arguments (before any data are prepared)."""
    if not isinstance(model_config, ModelConfig):
        raise TypeError(f"model_config must be a scribe.ModelConfig, got "
                        f"{type(model_config).__name__}")
    n_cells = check_positive_int("n_cells", n_cells)
    n_genes = check_positive_int("n_genes", n_genes)
    shape = getattr(count_data, "shape", None)
    if shape is None or tuple(shape) != (n_cells, n_genes):
        raise ValueError(
            f"count_data has shape {None if shape is None else tuple(shape)}, expected "
            f"(n_cells, n_genes) = ({n_cells}, {n_genes})")
    check_optimizer("optimizer", optimizer)
    check_loss("loss", loss)
    check_positive_int("n_steps", n_steps)
    check_seed("seed", seed)
    check_bool("stable_update", stable_update)
    check_bool("progress", progress)


def _check_batch_size(batch_size, n_cells: int) -> int | None:
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise TypeError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    # A batch as large as the data is the full data: no subsampling, no scaling.
    return None if batch_size >= n_cells else int(batch_size)


class ScribeRunResult(SVIRunResult):
    """NumPyro's ``SVIRunResult`` (params, state, losses) with the run's ``divergence``.

    Attributes
    ----------
    divergence : scribe.svi.divergence.Divergence
    n_devices : int
        Devices the cells were split across (1: unsharded).
    """

    def __new__(cls, params, state, losses, divergence: Divergence, n_devices: int = 1):
        result = super().__new__(cls, params, state, losses)
        result.divergence = divergence
        result.n_devices = int(n_devices)
        return result


def _final_state(svi, state, good, good_step: int, n_bad: int, first_bad: int,
                 last_loss_finite: bool, stable_update: bool):
    """The state to return and the run's :class:`Divergence`."""
    params_finite = bool(tree_finite(svi.optim.get_params(state.optim_state)))
    diverged = n_bad > 0 and not (last_loss_finite and params_finite)
    divergence = Divergence(
        n_nonfinite=n_bad, first_step=None if first_bad < 0 else first_bad,
        diverged=diverged, stable_update=bool(stable_update),
        restored_step=(good_step if good_step >= 0 else None) if diverged else None)
    return (good if diverged else state), divergence


def show_bar(progress: bool) -> bool:
    """Whether the fit draws its bar: ``progress=True`` only on a terminal (logs and pipes
    stay clean) and not after ``scribe.progress.set_enabled(False)``; False never."""
    return progress_enabled(None if progress else False)


def _chunk_size(n_steps: int) -> int:
    # About a hundred progress updates, each chunk long enough to amortise dispatch.
    return max(1, min(n_steps, max(100, math.ceil(n_steps / 100))))


def _compiled_init(svi: SVI, key, n_cells: int, n_genes: int, counts, batch_size, init):
    """``svi.init`` as one compiled program.

    Run op by op, the first trace of model and guide compiles every small operation on
    its own (about 150 XLA programs, 10-50 s of setup); jitted it is one program. The
    transforms NumPyro records for ``get_params`` carry no arrays for the constraints
    scribe's guides use; should a plugin's guide make them hold traced values, the init
    runs eagerly instead.
    """
    def init_fn(key, counts, init):
        return svi.init(key, n_cells, n_genes, counts=counts, batch_size=batch_size,
                        init_params=init)

    state = jax.jit(init_fn)(key, counts, init)
    try:
        svi.get_params(state)
    except jax.errors.UnexpectedTracerError:
        state = init_fn(key, counts, init)
    return state


def _drift_snapshot(svi: SVI, model_config: ModelConfig, composed: bool):
    """``state -> {site: (mean, sd)}`` of the per-gene and per-cell sites, for the stopping
    rule's drift criterion, compiled; a plugin's own model (no composition to read its
    posterior from) has no sites. Global sites (``p``, mixing weights) are left out: a
    median over one to K values is no robust statistic, and in the capture models ``p``
    is the unidentified direction of the ``p``-capture ridge (only ``p̂`` is identified)."""
    if not composed:
        return lambda state: {}
    from scribe.compose import Composition
    from scribe.parameterization import CELL, GENE

    composition = Composition(model_config)
    watched = [name for name, site in composition.sites.items() if site.scope in (GENE, CELL)]

    genes = {name for name in watched if composition.sites[name].scope == GENE}

    def posterior(params):
        distributions = composition.posterior_distributions(params)
        return {name: distributions[name] for name in watched}

    compiled = snapshot_fn(posterior, svi.get_params)
    # Collective drift judged for per-gene sites only: a per-cell site's collective
    # direction is the capture scale, which the counts leave unidentified unless anchored.
    return lambda state: {name: (*v, name in genes) for name, v in compiled(state).items()}


class SVIInferenceEngine:
    """Handles SVI inference execution."""

    @staticmethod
    def run_inference(
        model_config: ModelConfig,
        count_data,
        n_cells: int,
        n_genes: int,
        optimizer=Adam(step_size=0.001),
        loss=TraceMeanField_ELBO(),
        n_steps: int = 100_000,
        batch_size: int | None = None,
        seed: int = 42,
        stable_update: bool = True,
        progress: bool = True,
        *,
        stopping: ConvergenceMonitor | None = None,
        devices=None,
        epoch_batches: bool = False,
        initial_guess: dict | None = None,
        expected_capture: bool = True,
    ) -> SVIRunResult:
        """Execute SVI inference.

        Parameters
        ----------
        model_config : ModelConfig
        count_data : array, shape (n_cells, n_genes)
            Counts, cells as rows (dense or scipy sparse).
        n_cells, n_genes : int
        optimizer : numpyro.optim optimizer, default Adam(step_size=0.001)
        loss : numpyro ELBO, default TraceMeanField_ELBO()
        n_steps : int, default 100_000
        batch_size : int, optional
            Cells per step; the ``cells`` plate is subsampled and scaled by C/B.
        seed : int, default 42
        stable_update : bool, default True
            Skip steps whose loss or new parameters are not finite (False: apply them;
            parameters then become NaN). Either way non-finite steps are counted in
            ``divergence``.
        progress : bool, default True
            Show a progress bar with the current loss, steps per second and the
            convergence state, when stderr is a terminal; False: never.
        stopping : scribe.svi.convergence.ConvergenceMonitor, optional
            A stopping rule, checked on the host after every ``stopping.window`` steps;
            ``n_steps`` is then a cap and the monitor records whether and when the fit
            converged. None (the default) runs exactly ``n_steps`` steps.
        devices : None, int or list of jax.Device, optional
            Split the cells across these devices (:mod:`scribe.shard`, docs/scale.md):
            an integer takes the first ``n`` of ``jax.devices()``. None (the default) is
            one device, the unsharded code path. With ``batch_size``, each device draws
            ``batch_size / devices`` of its own cells per step.
        epoch_batches : bool, default False
            With ``batch_size`` on one device: draw the mini-batches epoch by epoch
            (every cell once per epoch, :mod:`scribe.epoch_cells`) instead of
            independently per step, and let ``stopping`` judge epoch means
            (``scribe.fit`` turns this on). Ignored for the full batch and sharded fits.
        initial_guess : dict, optional
            Starting canonical parameters computed beforehand from the same counts and
            seed (:func:`canonical_guess`), so that they are not computed twice; None:
            computed here.
        expected_capture : bool, default True
            Where it is exact (nbvcp, mean-field Beta/BetaPrime capture factor, loss
            ``TraceMeanField_ELBO``; one device or several), take the ELBO's expectation over each
            cell's capture in closed form instead of drawing the capture
            (:mod:`scribe.expected_capture`): the same objective with an exact capture
            term, cheaper steps. False: draw it. The fitted parameters mean the same
            either way.

        Returns
        -------
        ScribeRunResult
            NumPyro's ``SVIRunResult``: ``params`` (constrained variational parameters),
            ``state``, ``losses`` ``(n_steps_run,)``: ``n_steps`` unless ``stopping``
            ended the fit earlier, or the run diverged (no finite loss for
            ``STOP_AFTER_NONFINITE`` steps). Plus ``drift``, the stopping rule's last
            drift check (:class:`~scribe.svi.drift.DriftState`; None without one), and
            ``divergence``
            (:class:`~scribe.svi.divergence.Divergence`): a run that ended diverged
            returns the last parameters at which the loss was finite; and
            ``n_devices``, the number of devices the cells were split across.

        Raises
        ------
        TypeError, ValueError
            An argument of the wrong type or outside its range (naming it), before any
            data are prepared.
        """
        check_run_args(model_config, count_data, n_cells, n_genes, optimizer=optimizer,
                       loss=loss, n_steps=n_steps, seed=seed, stable_update=stable_update,
                       progress=progress)
        check_bool("expected_capture", expected_capture)
        devices = resolve_devices(devices)
        n_steps, seed = int(n_steps), int(seed)
        batch_size = _check_batch_size(batch_size, n_cells)
        timings = PhaseTimes()
        composed = plugins.lookup_model_type(model_config.model_type).likelihood is not None
        cell_mesh = None
        if devices is not None:
            check_sharded_fit(devices, n_cells, batch_size, composed)
            cell_mesh = CellMesh.create(devices, n_cells)
        if composed:
            # One pass over the counts (scribe.fit_counts): statistics, the cell sample of
            # the starting values and, where the model needs them, the non-zeros.
            if not isinstance(count_data, StreamedCounts):
                count_data = stream_for_fit(count_data, model_config, batch_size, seed,
                                            keep_entries=cell_mesh is not None or None)[0]
            init = initial_params(model_config, count_data, seed, initial_guess)
            timings.mark("initial_values")
            if cell_mesh is not None:
                # Each device's cells from the pass's compact non-zeros.
                counts = ShardedCounts.from_matrix(count_data.entries_csr(), cell_mesh,
                                                   batch_size)
            else:
                counts = device_counts(count_data, model_config, batch_size)
            timings.mark("device_counts")
        else:
            if isinstance(count_data, StreamedCounts):
                raise TypeError("a plugin's own model needs the count matrix, not "
                                "StreamedCounts")
            dense = count_data.toarray() if sp.issparse(count_data) else count_data
            # device_put copies once (jnp.asarray of a numpy array copies twice).
            counts = jax.device_put(np.asarray(dense, dtype=np.float32))
            init = None

        model, guide = resolve_model_and_guide(model_config)
        if composed:
            guide = training_guide(guide, loss, expected_capture)
        if cell_mesh is not None and batch_size is not None:
            model = StratifiedCells(model, cell_mesh.layout, batch_size)
            guide = StratifiedCells(guide, cell_mesh.layout, batch_size)
        check_bool("epoch_batches", epoch_batches)
        epochs = bool(epoch_batches) and cell_mesh is None and batch_size is not None
        if epochs:
            model = EpochCells(model, n_cells, batch_size, seed)
            guide = EpochCells(guide, n_cells, batch_size, seed)
        svi = SVI(model, guide, optimizer, loss)
        state = _compiled_init(svi, jax.random.PRNGKey(seed), n_cells, n_genes, counts,
                               batch_size, init)
        if cell_mesh is not None:
            from scribe.compose import Composition
            state = shard_state(svi, state, cell_mesh, cell_param_names(
                Composition(model_config), n_cells, n_genes))
            init = None   # its per-cell (C,) arrays would stay on the first device
        jax.block_until_ready(state)
        timings.mark("svi_init")

        update = svi.stable_update if stable_update else svi.update
        if stopping is not None and stopping.enabled:
            stopping.reset()
            stopping.block = epoch_steps(n_cells, batch_size) if epochs else 1
            chunk = min(n_steps, stopping.window)   # one check per compiled chunk
            # The drift criterion's snapshot: a small compiled program on the chunk's state.
            snapshot = (_drift_snapshot(svi, model_config, composed)
                        if stopping.watches_drift else None)
        else:
            stopping = None
            chunk = _chunk_size(n_steps)

        # The epochs' cell permutation is an argument, like the counts (never a constant).
        order = jnp.asarray(model.order) if epochs else None

        def run_chunk(carry, inputs, offset, n_active):
            counts, order = inputs
            # carry: (state, last state with a finite loss, its step, non-finite steps,
            # first non-finite step, current run of non-finite steps); see divergence.py.
            def step_fn(state):
                # Epoch-drawn batches take their cells from the optimiser's step count.
                extra = {"step": state.optim_state[0], "order": order} if epochs else {}
                return update(state, n_cells, n_genes, counts=counts, batch_size=batch_size,
                              **extra)

            loss_shape = jax.eval_shape(step_fn, carry[0])[1]

            def skip(state):
                # NaN parameters (stable_update=False) stay NaN: don't evaluate the model
                # at them (a rejection sampler would never accept a NaN shape).
                return state, jnp.full(loss_shape.shape, jnp.nan, loss_shape.dtype)

            def body(i, inner):
                (state, good, good_step, n_bad, first_bad, run_bad), losses = inner
                alive = tree_finite(svi.optim.get_params(state.optim_state))
                new, loss_value = jax.lax.cond(alive, step_fn, skip, state)
                step = offset + i
                loss_ok = jnp.isfinite(loss_value)
                ok = loss_ok & tree_finite(svi.optim.get_params(new.optim_state))
                # A finite loss was evaluated at `state`: that state is the last good one.
                good = select_tree(loss_ok, state, good)
                good_step = jnp.where(loss_ok, step, good_step)
                first_bad = jnp.where((first_bad < 0) & ~ok, step, first_bad)
                carry = (new, good, good_step, n_bad + (~ok).astype(jnp.int32), first_bad,
                         jnp.where(ok, 0, run_bad + 1))
                return carry, losses.at[i].set(loss_value)

            return jax.lax.fori_loop(0, n_active, body, (carry, jnp.full(chunk, jnp.nan)))

        minus_one = jnp.asarray(-1, jnp.int32)
        zero = jnp.asarray(0, jnp.int32)
        carry = (state, state, minus_one, zero, minus_one, zero)
        if cell_mesh is None:
            run_chunk = jax.jit(run_chunk)
        else:   # keep per-cell state split and global state replicated across chunks
            carry, shardings = place_carry(carry, cell_mesh)
            run_chunk = jax.jit(run_chunk, out_shardings=(shardings,
                                                          cell_mesh.replicated()))
        losses = None   # filled in place; its dtype is the loss's (float64 under x64)
        with tqdm(total=n_steps, disable=not show_bar(progress), desc="SVI",
                  unit="step") as bar:
            done = 0
            while done < n_steps:
                n_active = min(chunk, n_steps - done)
                carry, chunk_losses = run_chunk(carry, (counts, order),
                                                jnp.asarray(done, jnp.int32),
                                                n_active)
                chunk_losses = np.asarray(chunk_losses[:n_active])
                if losses is None:
                    losses = np.full(n_steps, np.nan, dtype=chunk_losses.dtype)
                losses[done:done + n_active] = chunk_losses
                if done == 0:
                    timings.mark("first_chunk", n_active)
                    first_chunk = n_active
                done += n_active
                bar.update(n_active)
                run_bad = int(carry[5])
                postfix = {"loss": f"{losses[done - 1]:.4g}"}
                if run_bad >= STOP_AFTER_NONFINITE:
                    bar.set_postfix(loss="nan", state=f"diverged at step {int(carry[4])}")
                    break
                if stopping is not None:
                    # Only finite stretches count towards convergence.
                    stop = (stopping.update(losses[:done], None if snapshot is None
                                            else snapshot(carry[0]))
                            if run_bad == 0 else False)
                    postfix["state"] = stopping.describe()
                    bar.set_postfix(postfix)
                    if stop:
                        # A staged optimiser drops its rate and the fit goes on.
                        moved = next_stage(svi.optim, carry[:2])
                        if moved is None:
                            break
                        carry = (*moved, *carry[2:])
                        stopping.reset()
                else:
                    bar.set_postfix(postfix)
            if stopping is not None and not stopping.converged and run_bad == 0:
                bar.set_postfix(loss=f"{losses[done - 1]:.4g}",
                                state=f"not converged in {n_steps} steps")
        state, good, good_step, n_bad, first_bad, _ = carry
        state, divergence = _final_state(svi, state, good, int(good_step), int(n_bad),
                                         int(first_bad), bool(np.isfinite(losses[done - 1])),
                                         stable_update)
        if divergence.diverged and stopping is not None:
            stopping.converged, stopping.converged_step = False, None
        timings.mark("loop", done - first_chunk)
        params = svi.get_params(state)
        if cell_mesh is not None:
            params = gather_params(params)
        result = ScribeRunResult(params, state, jnp.asarray(losses[:done]), divergence,
                                 n_devices=1 if cell_mesh is None else cell_mesh.n_devices)
        result.timings = timings.as_dict()
        result.drift = None if stopping is None else stopping.drift_state
        return result
