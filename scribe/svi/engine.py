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
from scribe.counts import SparseCounts
from scribe.svi.convergence import ConvergenceMonitor


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


def initial_params(model_config: ModelConfig, counts, seed: int) -> dict | None:
    """Data-informed variational parameters for composed model types (None otherwise)."""
    spec = plugins.lookup_model_type(model_config.model_type)
    if spec.likelihood is None:
        return None
    from scribe.compose import Composition
    from scribe.initial_values import initial_canonical

    composition = Composition(model_config)
    guess = initial_canonical(counts, spec.likelihood, model_config.n_components,
                              model_config.component_specific_params, seed,
                              mrna_per_cell=model_config.mrna_total)
    return composition.initial_params(guess, *counts.shape)


def _check_batch_size(batch_size, n_cells: int) -> int | None:
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    # A batch as large as the data is the full data: no subsampling, no scaling.
    return None if batch_size >= n_cells else int(batch_size)


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
            Skip steps whose loss or new parameters are not finite.
        progress : bool, default True
            Show a progress bar with the current loss (and the convergence state).
        stopping : scribe.svi.convergence.ConvergenceMonitor, optional
            A stopping rule, checked on the host after every ``stopping.window`` steps;
            ``n_steps`` is then a cap and the monitor records whether and when the fit
            converged. None (the default) runs exactly ``n_steps`` steps.

        Returns
        -------
        numpyro.infer.svi.SVIRunResult
            ``params`` (constrained variational parameters), ``state``, ``losses``
            ``(n_steps_run,)``: ``n_steps`` unless ``stopping`` ended the fit earlier.
        """
        if count_data.shape != (n_cells, n_genes):
            raise ValueError(
                f"count_data has shape {tuple(count_data.shape)}, expected "
                f"(n_cells, n_genes) = ({n_cells}, {n_genes})"
            )
        if int(n_steps) < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        n_steps = int(n_steps)
        batch_size = _check_batch_size(batch_size, n_cells)
        if plugins.lookup_model_type(model_config.model_type).likelihood is not None:
            counts = SparseCounts.from_matrix(count_data).with_batch_size(batch_size)
        else:
            dense = count_data.toarray() if sp.issparse(count_data) else count_data
            counts = jnp.asarray(dense, dtype=jnp.float32)

        model, guide = resolve_model_and_guide(model_config)
        svi = SVI(model, guide, optimizer, loss)
        init = initial_params(model_config, count_data, seed)
        state = _compiled_init(svi, jax.random.PRNGKey(seed), n_cells, n_genes, counts,
                               batch_size, init)

        update = svi.stable_update if stable_update else svi.update
        if stopping is not None and stopping.enabled:
            stopping.reset()
            chunk = min(n_steps, stopping.window)   # one check per compiled chunk
        else:
            stopping = None
            chunk = _chunk_size(n_steps)

        @jax.jit
        def run_chunk(state, counts, n_active):
            def body(i, carry):
                state, losses = carry
                state, loss_value = update(state, n_cells, n_genes, counts=counts,
                                           batch_size=batch_size)
                return state, losses.at[i].set(loss_value)

            return jax.lax.fori_loop(0, n_active, body, (state, jnp.full(chunk, jnp.nan)))

        losses = None   # filled in place; its dtype is the loss's (float64 under x64)
        with tqdm(total=n_steps, disable=not progress, desc="SVI", unit="step") as bar:
            done = 0
            while done < n_steps:
                n_active = min(chunk, n_steps - done)
                state, chunk_losses = run_chunk(state, counts, n_active)
                chunk_losses = np.asarray(chunk_losses[:n_active])
                if losses is None:
                    losses = np.full(n_steps, np.nan, dtype=chunk_losses.dtype)
                losses[done:done + n_active] = chunk_losses
                done += n_active
                bar.update(n_active)
                postfix = {"loss": f"{losses[done - 1]:.4g}"}
                if stopping is not None:
                    stop = stopping.update(losses[:done])
                    postfix["state"] = stopping.describe()
                    bar.set_postfix(postfix)
                    if stop:
                        break
                else:
                    bar.set_postfix(postfix)
            if stopping is not None and not stopping.converged:
                bar.set_postfix(loss=f"{losses[done - 1]:.4g}",
                                state=f"not converged in {n_steps} steps")
        return SVIRunResult(svi.get_params(state), state, jnp.asarray(losses[:done]))
