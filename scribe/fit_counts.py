"""The counts a fit holds, from one streamed pass (see :mod:`scribe.counts_stream`).

A composed model type (likelihood x parameterization) is fitted from the statistics of
one pass over the counts, wherever they are (:mod:`scribe.cell_blocks`):

* nbdm, zinb, nbvcp over all cells: the statistics only, ``O(C + 17 G)`` on the device
  (their likelihood totals need no entry; :meth:`scribe.Likelihood.needs_entries`);
* mixtures and zinbvcp over all cells: the non-zeros too, kept compact on the host while
  the pass runs (4 bytes each with < 65,536 genes and counts), then put on the device as
  float32 values and int32 genes and cells (12 bytes each);
* every mini-batch fit (``batch_size``): the statistics on the device and the compact
  non-zeros on the host; each step gathers its batch (:mod:`scribe.host_batches`).
"""

from __future__ import annotations

from typing import Any

from scribe import plugins
from scribe.batching import auto_batch_size
from scribe.cell_blocks import DEFAULT_BLOCK_CELLS, open_counts
from scribe.config import ModelConfig
from scribe.counts import SparseCounts
from scribe.counts_stream import SAMPLE_CELLS, StreamedCounts, stream_counts
from scribe.host_batches import host_batched


def needs_entries(model_config: ModelConfig, batch_size: int | None) -> bool:
    """Whether fitting ``model_config`` must hold the non-zeros (not just statistics)."""
    spec = plugins.lookup_model_type(model_config.model_type)
    if spec.likelihood is None:
        return True
    return batch_size is not None or bool(
        spec.likelihood.needs_entries(model_config.n_components is not None))


def stream_for_fit(data: Any, model_config: ModelConfig, batch_size: int | None, seed: int,
                   layer: str | None = None, cells_axis: int = 0,
                   block_cells: int = DEFAULT_BLOCK_CELLS,
                   sample_cells: int = SAMPLE_CELLS,
                   check_shape=None, keep_entries: bool | None = None,
                   ) -> tuple[StreamedCounts, Any]:
    """One pass over ``data`` keeping what fitting ``model_config`` needs.

    Parameters
    ----------
    data : see :func:`scribe.cell_blocks.open_counts`
    model_config : ModelConfig
    batch_size : int, None or "auto"
        Cells per step (None: all; a batch at least as large as the data counts as None;
        "auto": :func:`scribe.batching.auto_batch_size`).
    seed : int
        Seeds the cell sample of mixtures' starting values.
    layer, cells_axis : as :func:`scribe.fit`
    block_cells, sample_cells : int
    check_shape : callable, optional
        Called with ``(n_cells, n_genes)`` before the pass (arguments that depend on the
        data's size fail before anything is read).
    keep_entries : bool, optional
        Keep the non-zeros whatever the model needs (a sharded fit splits them across
        devices); None: only where :func:`needs_entries` says so.

    Returns
    -------
    streamed : StreamedCounts
    adata : AnnData or None
    """
    blocks, adata = open_counts(data, layer=layer, cells_axis=cells_axis,
                                block_cells=block_cells)
    if block_cells == DEFAULT_BLOCK_CELLS:
        blocks.bound_block_entries()    # wide atlases: bounded block temporaries
    if check_shape is not None:
        check_shape(*blocks.shape)
    if isinstance(batch_size, str):          # "auto" (scribe.batching)
        batch_size = auto_batch_size(plugins.lookup_model_type(model_config.model_type)
                                     .likelihood, model_config.is_mixture, blocks.shape[0])
    if batch_size is not None and batch_size >= blocks.shape[0]:
        batch_size = None
    if keep_entries is None:
        keep_entries = needs_entries(model_config, batch_size)
    streamed = stream_counts(blocks, keep_entries=keep_entries,
                             sample_cells=sample_cells, seed=seed)
    return streamed, adata


def device_counts(streamed: StreamedCounts, model_config: ModelConfig,
                  batch_size: int | None) -> SparseCounts:
    """The :class:`SparseCounts` a fit observes, with mini-batch capacity reserved."""
    with_entries = needs_entries(model_config, batch_size)
    if with_entries and streamed.entries is None:
        raise ValueError(
            f"model type '{model_config.model_type}' with batch_size={batch_size} needs the "
            f"non-zeros, which this pass did not keep: stream with keep_entries=True")
    if batch_size is not None:
        # Mini-batches: the entries stay on the host, each batch is gathered by callback.
        counts = host_batched(streamed)
    else:
        counts = streamed.sparse_counts(with_entries=with_entries)
    # The host copy now lives in the counts (batches) or on the device (full data).
    streamed.entries = None
    return counts.with_batch_size(batch_size)
