"""Denoised counts: the molecules behind each observed count (SPEC section 6).

With ``m ~ NB(r, p)`` molecules and ``x | m ~ Binomial(m, nu)`` captured ones, the
molecules not captured are ``d = m - x ~ NB(r + x, p (1 - nu))`` given ``x``, so

    E[m | x] = x + (r + x) p (1 - nu) / (1 - p (1 - nu)).

Without capture (``nu = 1``) nothing is lost but to zero inflation: an observed zero is
technical with probability ``pi = g / (g + (1 - g) NB(0 | r, p_hat))`` and then ``m``
follows the prior ``NB(r, p)``. Mixtures weight the components by each cell's assignment
probabilities ``P(k | x_c)`` (per draw). The closed forms live with the likelihood
(``Likelihood.denoised``); this module evaluates them per posterior draw on dense blocks
of ``batch_size`` cells.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from scribe.shard.devices import resolve_devices
from scribe.svi import pointwise
from scribe.svi.lazy_counts import LazyCounts

METHODS = ("mean", "sample")


def _one_draw(likelihood, mixture: bool, block, params: dict, key) -> jnp.ndarray:
    """``E[m | x]`` (``key`` None) or a draw of ``m | x`` under one draw, ``(B, G)``."""
    if not mixture:
        return likelihood.denoised(block, params, key)
    params = dict(params)
    weights = params.pop(pointwise.ASSIGNMENT)                                  # (B, K)
    if key is None:
        means = pointwise.per_component(
            likelihood, lambda x, p: likelihood.denoised(x, p, None), block, params)
        return jnp.einsum("bgk,bk->bg", means, weights)
    key_component, key_molecules = jax.random.split(key)
    # Components one after another (lax.map), not vmapped: under vmap the samplers'
    # re-proposal loops and branches run for all components at the cost of the slowest.
    axes = pointwise.component_axes(likelihood.scopes(), params)
    fixed = {n: v for n, v in params.items() if axes.get(n) is None}
    mapped = {n: jnp.moveaxis(params[n], ax, 0) for n, ax in axes.items() if ax is not None}
    draws = jax.lax.map(lambda m: likelihood.denoised(block, {**fixed, **m}, key_molecules),
                        mapped)
    draws = jnp.moveaxis(draws, 0, -1)                                         # (B, G, K)
    component = jax.random.categorical(key_component, jnp.log(weights), axis=-1)  # (B,)
    return jnp.take_along_axis(draws, component[:, None, None], axis=-1)[..., 0]


@functools.cache
def _mean_program(likelihood, mixture: bool):
    def program(block, params):
        n_draws = next(iter(params.values())).shape[0]

        def add(total, draw):
            return total + _one_draw(likelihood, mixture, block, draw, None), None

        total, _ = jax.lax.scan(add, jnp.zeros(block.shape, jnp.float32), params)
        return total / n_draws
    return jax.jit(program)


@functools.cache
def _sample_program(likelihood, mixture: bool):
    def program(block, params, keys):
        return jax.lax.map(lambda a: _one_draw(likelihood, mixture, block, a[0], a[1]),
                           (params, keys))
    return jax.jit(program)


def _passes_through(likelihood) -> bool:
    """True when ``E[m | x] = x`` exactly: nothing lost to capture or zero inflation."""
    return (getattr(likelihood, "variable_capture", None) is False
            and getattr(likelihood, "zero_inflated", None) is False)


def denoise_counts(results, counts, *, method: str = "mean", n_samples: int | None = None,
                   batch_size: int | None = None, rng_key=None, devices=None, out=None):
    """The molecules behind the observed counts, per cell and gene.

    Parameters
    ----------
    results : ScribeSVIResults
    counts : AnnData (``.X``), array or scipy sparse matrix, shape (C, G)
        The counts the model was fitted to (cells as rows).
    method : {"mean", "sample"}, default "mean"
        ``"mean"``: the posterior mean ``E[m | x]`` averaged over the parameter draws;
        ``"sample"``: one draw of ``m | x`` per parameter draw.
    n_samples : int, optional
        Posterior draws of the parameters (fresh, not stored); None uses the MAP.
    batch_size : int, optional
        Cells per block (memory bound), default 512. The result does not depend on it
        for ``"mean"``; ``"sample"`` draws per block, so its random numbers do.
    rng_key : jax PRNG key, optional
        For the parameter draws and ``"sample"``; default ``PRNGKey(0)``.
    devices : None, int or list of jax.Device, optional
        Run ``D`` blocks at a time, one per device (docs/scale.md); each block keeps its
        random keys, so the result is that of one device. None: one device.
    out : array-like, optional
        Where to write the result block by block: anything with the result's shape that
        takes ``out[cells] = block`` (``out[:, cells]`` for ``"sample"``), e.g. an h5py
        or zarr dataset or a ``numpy.memmap``; it is returned. For counts on disk
        (a backed AnnData, zarr, dask) this keeps memory bounded by one block: the
        counts are read block by block either way, but without ``out`` the dense
        result is built in memory (C x G x 4 bytes: 16 GB at 200,000 x 20,000).

    Returns
    -------
    numpy.ndarray, scipy.sparse.csr_matrix or ``out``
        ``"mean"``: ``(C, G)`` float32. ``"sample"``: ``(S, C, G)`` with ``S = n_samples``
        (1 for the MAP). For a model without capture or zero inflation (``nbdm``) the
        molecules are the counts: ``"mean"`` returns them as float32 (sparse stays
        sparse), ``"sample"`` as ``S`` dense copies.

    Raises
    ------
    ValueError
        Bad ``method``, ``n_samples`` or ``batch_size``; counts of another shape; a model
        type whose likelihood does not model molecules.
    """
    if method not in METHODS:
        raise ValueError(f"method must be 'mean' or 'sample', got {method!r}")
    n_samples = pointwise.check_n_samples(n_samples)
    batch_size = pointwise.check_batch_size(batch_size)
    devices = resolve_devices(devices)
    likelihood = pointwise.likelihood_of(results, "denoise_counts")
    matrix = pointwise.prepared_counts(results, counts)
    copies = 1 if n_samples is None else n_samples
    shape = matrix.shape if method == "mean" else (copies, *matrix.shape)
    _check_out(out, shape)
    if _passes_through(likelihood):
        if out is not None:
            blocks = pointwise.cell_blocks(matrix, batch_size, "denoising")
            return _write_blocks(out, method, (
                (cells, block if method == "mean" else
                 np.broadcast_to(block, (copies, *block.shape))) for cells, block in blocks))
        if isinstance(matrix, LazyCounts):
            matrix = matrix.to_memory()
        if method == "mean":
            return matrix.copy() if sp.issparse(matrix) else np.array(matrix, np.float32)
        dense = matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix, np.float32)
        return np.broadcast_to(dense, (copies, *dense.shape)).copy()
    rng_key = jax.random.PRNGKey(0) if rng_key is None else rng_key
    key_draws, key_molecules = jax.random.split(rng_key)
    draws = pointwise.draws_for(results, n_samples, key_draws)
    global_params, cell_params = pointwise.split_params(results, draws)
    mixture = bool(results.model_config.is_mixture)
    weights = pointwise.assignment_weights(results, matrix, draws, batch_size, devices)
    try:
        probe = jnp.zeros((1, results.n_genes), jnp.float32)
        jax.eval_shape(likelihood.denoised, probe,
                       {n: v[0] for n, v in pointwise.block_params(
                           global_params, cell_params, slice(0, 1)).items()}, None)
    except NotImplementedError as error:
        raise ValueError(f"denoise_counts does not apply to '{results.model_type}': "
                         f"{error}") from None
    n_draws = next(iter(global_params.values())).shape[0]
    program = (_mean_program if method == "mean" else _sample_program)(likelihood, mixture)
    spans = []

    def arguments():
        for index, (cells, block) in enumerate(pointwise.cell_blocks(matrix, batch_size,
                                                                      "denoising")):
            spans.append(cells)
            params = pointwise.block_params(global_params, cell_params, cells, weights)
            if method == "mean":
                yield block, params
            else:
                yield block, params, jax.random.split(jax.random.fold_in(key_molecules,
                                                                         index), n_draws)

    if devices is None:
        parts = (np.asarray(program(jnp.asarray(args[0]), *args[1:])) for args in arguments())
    else:
        parts = iter(_on_devices(devices, program, arguments(), batch_size))
    if out is not None:
        # Blocks come back in order (the devices' last, shorter block comes last too).
        return _write_blocks(out, method, ((spans[i], part) for i, part in enumerate(parts)))
    return np.concatenate(list(parts), axis=0 if method == "mean" else 1)


def _check_out(out, shape: tuple) -> None:
    """``out`` must take the result: its shape, item assignment."""
    if out is None:
        return
    if not hasattr(out, "__setitem__") or not hasattr(out, "shape"):
        raise TypeError(f"out must be an array-like with item assignment (numpy, h5py, "
                        f"zarr), got {type(out).__name__}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"out must have the result's shape {tuple(shape)}, got "
                         f"{tuple(out.shape)}")


def _write_blocks(out, method: str, parts):
    """Write ``(cells, block)`` pairs into ``out``; returns ``out``."""
    for cells, block in parts:
        block = block.toarray() if sp.issparse(block) else np.asarray(block, np.float32)
        if method == "mean":
            out[cells] = block
        else:
            out[:, cells] = block
    return out


def _on_devices(devices: tuple, program, arguments, batch_size: int) -> list:
    """Full blocks ``len(devices)`` at a time, one per device
    (:func:`scribe.shard.analyses.map_blocks`); a last, shorter block runs on one device
    as it is (random draws depend on a block's shape, so it is not padded)."""
    from scribe.shard.analyses import map_blocks

    last = []

    def full():
        for args in arguments:
            if args[0].shape[0] < batch_size:
                last.append(args)
            else:
                yield args

    out = list(map_blocks(devices, program, full()))
    out += [np.asarray(program(jnp.asarray(args[0]), *args[1:])) for args in last]
    return out
