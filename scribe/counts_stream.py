"""One pass over the counts: sufficient statistics, moments, a cell sample, non-zeros.

:func:`stream_counts` reads a :class:`~scribe.cell_blocks.CellBlocks` once, block by
block, and keeps only what fitting needs:

* the sufficient statistics of :class:`~scribe.counts.SparseCounts` (per cell and per
  gene totals, log-factorial sums and non-zero counts, the capped exceedance histogram,
  the rare entries above :data:`~scribe.counts.LARGE_COUNT`): ``O(C + 17 G)``;
* per-gene sums of ``x^2`` and ``x^3`` (moments for the starting values);
* a seeded sample of at most ``sample_cells`` cells as a CSR (k-means of mixtures);
* only when asked (mixtures, zinbvcp, mini-batches: the likelihood needs the entries),
  the non-zeros in compact dtypes: values uint16 (uint32 past 65,535), genes uint16
  (int32 past 65,536 genes), row pointers int64.

Peak memory is therefore one block plus what is kept; the non-zeros are written into
arrays allocated once (:class:`~scribe.entry_buffer.EntryBuffer`), never concatenated.
All sums are float64, accumulated block by block in cell order, so the same counts give
the same statistics whatever their source (in memory, backed h5ad, zarr, dask) as long
as the blocks are the same.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from scipy.special import gammaln

from scribe.cell_blocks import CellBlocks
from scribe.counts import LARGE_COUNT, SparseCounts, _exceedance_histogram, device_offsets
from scribe.entry_buffer import EntryBuffer

#: Cells the starting values of mixtures (k-means, per-component moments) use at most.
SAMPLE_CELLS = 20_000


@dataclass
class HostEntries:
    """Non-zeros on the host in compact dtypes, cell-major.

    Attributes
    ----------
    values : (N,) uint16 or uint32
    genes : (N,) uint16 or int32
    indptr : (C + 1,) int64
    """

    values: np.ndarray
    genes: np.ndarray
    indptr: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes + self.genes.nbytes + self.indptr.nbytes)


@dataclass
class StreamedCounts:
    """What one pass over a count matrix keeps (see the module docstring).

    Per-cell arrays are ``(C,)``, per-gene ``(G,)``, all float64.
    """

    shape: tuple[int, int]
    cell_totals: np.ndarray
    cell_log_factorial: np.ndarray
    cell_nonzero: np.ndarray
    gene_totals: np.ndarray
    gene_log_factorial: np.ndarray
    gene_nonzero: np.ndarray
    gene_squares: np.ndarray
    gene_cubes: np.ndarray
    pairs: np.ndarray                        # (G * (LARGE_COUNT + 1),) (gene, min(x, 16))
    large: dict                              # values, cells, genes: int32 (M,)
    max_count: float
    sample_cells: np.ndarray                 # (S,) int64, sorted
    sample: sp.csr_matrix                    # (S, G) float32
    entries: HostEntries | None = None
    read_seconds: float = field(default=0.0)

    @property
    def n_cells(self) -> int:
        return self.shape[0]

    @property
    def n_genes(self) -> int:
        return self.shape[1]

    @property
    def nnz(self) -> int:
        return int(self.cell_nonzero.sum())

    def entries_csr(self) -> sp.csr_matrix:
        """The kept non-zeros as a CSR ``(C, G)`` over the compact arrays (a sharded fit
        slices each device's rows from it)."""
        if self.entries is None:
            raise ValueError("these streamed counts kept no non-zeros: stream with "
                             "keep_entries=True")
        entries = self.entries
        return sp.csr_matrix((entries.values, entries.genes, entries.indptr),
                             shape=self.shape)

    def sparse_counts(self, dtype=np.float32, with_entries: bool | None = None
                      ) -> SparseCounts:
        """The :class:`SparseCounts` of these counts for the device.

        Parameters
        ----------
        dtype : numpy dtype, default float32
        with_entries : bool, optional
            Put the non-zeros (and row pointers) on the device: 12 bytes per non-zero.
            Default: whenever they were kept. Without them the result holds the
            statistics only, enough for likelihoods whose full-data sums need no entry
            (:meth:`scribe.Likelihood.needs_entries`), and cannot give mini-batches.
        """
        with_entries = self.entries is not None if with_entries is None else with_entries
        if with_entries and self.entries is None:
            raise ValueError("the non-zeros were not kept: stream with keep_entries=True")
        n_cells, n_genes = self.shape

        def device(array):
            return jnp.asarray(np.asarray(array).astype(dtype))

        unique = np.flatnonzero(self.pairs)
        large = self.large
        arrays = {
            "cell_totals": device(self.cell_totals),
            "cell_log_factorial": device(self.cell_log_factorial),
            "cell_nonzero": device(self.cell_nonzero),
            "gene_totals": device(self.gene_totals),
            "gene_log_factorial": device(self.gene_log_factorial),
            "gene_nonzero": device(self.gene_nonzero),
            "large_values": jnp.asarray(large["values"]),
            "large_cells": jnp.asarray(large["cells"]),
            "large_genes": jnp.asarray(large["genes"]),
            **{k: jnp.asarray(v) for k, v in _exceedance_histogram(
                unique // (LARGE_COUNT + 1), unique % (LARGE_COUNT + 1), self.pairs[unique],
                dtype).items()},
        }
        if with_entries:
            entries = self.entries
            arrays["indptr"] = device_offsets(entries.indptr)
            arrays["large_indptr"] = device_offsets(np.r_[0, np.cumsum(np.bincount(
                large["cells"], minlength=n_cells))])
            # One device copy at a time, each finished before the next (see
            # SparseCounts.from_matrix): the int32/float32 host temporaries are per array.
            cells = np.repeat(np.arange(n_cells, dtype=np.int32), np.diff(entries.indptr))
            arrays["cells"] = _to_device(cells)
            del cells
            arrays["values"] = _to_device(entries.values.astype(dtype))
            arrays["genes"] = _to_device(entries.genes.astype(np.int32))
        else:
            empty_i = jnp.zeros(0, jnp.int32)
            arrays.update(values=jnp.zeros(0, dtype), cells=empty_i, genes=empty_i)
        return SparseCounts(arrays, (n_cells, n_genes))


def _to_device(array: np.ndarray) -> jax.Array:
    return jax.block_until_ready(jax.device_put(array))


def _sample_index(n_cells: int, sample_cells: int, seed: int) -> np.ndarray:
    """Sorted cells of the seeded sample (all cells when there are few)."""
    if n_cells <= sample_cells:
        return np.arange(n_cells, dtype=np.int64)
    rng = np.random.default_rng([int(seed), 0x5CB])   # not the fit's own key stream
    return np.sort(rng.choice(n_cells, size=sample_cells, replace=False)).astype(np.int64)


def stream_counts(blocks: CellBlocks, keep_entries: bool = False,
                  sample_cells: int = SAMPLE_CELLS, seed: int = 0) -> StreamedCounts:
    """Read ``blocks`` once and keep statistics, moments, a cell sample (and entries).

    Parameters
    ----------
    blocks : CellBlocks
        The counts, ``(C, G)``.
    keep_entries : bool, default False
        Keep the non-zeros (compact, on the host).
    sample_cells : int, default SAMPLE_CELLS
        Cells in the sample (all cells when ``C`` is at most this).
    seed : int, default 0
        Seeds the sample.

    Returns
    -------
    StreamedCounts
    """
    import time

    start_time = time.perf_counter()
    n_cells, n_genes = blocks.shape
    width = LARGE_COUNT + 1
    cell_totals, cell_lf, cell_nonzero = (np.zeros(n_cells) for _ in range(3))
    gene_totals = np.zeros(n_genes)
    pairs = np.zeros(n_genes * width, np.int64)
    large = {"values": [], "cells": [], "genes": []}
    sample_index = _sample_index(n_cells, int(sample_cells), seed)
    sample_parts = []
    gene_dtype = np.uint16 if n_genes <= np.iinfo(np.uint16).max + 1 else np.int32
    # One allocation per kept array (no parts concatenated at the end: see EntryBuffer).
    kept = EntryBuffer(gene_dtype, blocks.stored_entries()) if keep_entries else None
    max_count = 0.0
    for first, csr in blocks:
        n_rows = csr.shape[0]
        rows = slice(first, first + n_rows)
        lengths = np.diff(csr.indptr)
        values = csr.data.astype(np.float64)
        genes = csr.indices
        local = np.repeat(np.arange(n_rows), lengths)
        log_factorial = gammaln(values + 1.0)
        cell_totals[rows] = np.bincount(local, values, minlength=n_rows)
        cell_lf[rows] = np.bincount(local, log_factorial, minlength=n_rows)
        cell_nonzero[rows] = lengths
        gene_totals += np.bincount(genes, values, minlength=n_genes)   # exact integers
        short = np.minimum(values, LARGE_COUNT).astype(np.int64)
        pairs += np.bincount(genes.astype(np.int64) * width + short, minlength=pairs.size)
        is_large = values > LARGE_COUNT
        large["values"].append(values[is_large].astype(np.int32))
        large["cells"].append((local[is_large] + first).astype(np.int32))
        large["genes"].append(genes[is_large].astype(np.int32))
        if values.size:
            max_count = max(max_count, float(values.max()))
        lo, hi = np.searchsorted(sample_index, [first, first + n_rows])
        if hi > lo:
            sample_parts.append(csr[sample_index[lo:hi] - first].astype(np.float32))
        if kept is not None:
            # First block: estimate all entries from its density (dask / dense sources).
            kept.append(csr.data, genes, int(1.05 * csr.nnz * n_cells / max(n_rows, 1)))
        del csr, values, genes, local, log_factorial
    large = {k: np.concatenate(v) if v else np.zeros(0, np.int32) for k, v in large.items()}
    gene_sums = _gene_sums(pairs.reshape(n_genes, width), large)
    sample = (sp.vstack(sample_parts, format="csr") if sample_parts
              else sp.csr_matrix((0, n_genes), dtype=np.float32))
    entries = None
    if kept is not None:
        indptr = np.zeros(n_cells + 1, np.int64)
        np.cumsum(cell_nonzero.astype(np.int64), out=indptr[1:])
        entries = HostEntries(*kept.finish(), indptr)
    return StreamedCounts(
        shape=(n_cells, n_genes), cell_totals=cell_totals, cell_log_factorial=cell_lf,
        cell_nonzero=cell_nonzero, gene_totals=gene_totals, gene_log_factorial=gene_sums[0],
        gene_nonzero=gene_sums[1], gene_squares=gene_sums[2], gene_cubes=gene_sums[3],
        pairs=pairs, large=large, max_count=max_count, sample_cells=sample_index,
        sample=sp.csr_matrix(sample), entries=entries,
        read_seconds=time.perf_counter() - start_time)


def _gene_sums(table: np.ndarray, large: dict) -> np.ndarray:
    """Per-gene ``sum log x!``, ``#{x > 0}``, ``sum x^2``, ``sum x^3``, ``(4, G)``, from the
    value table ``#{c : min(x_cg, 16) = v}`` ``(G, 17)`` and the entries above 16.

    Computed from counts rather than accumulated block by block, so that they do not
    depend on how the cells were split into blocks (float64 sums in another order differ
    in the last bits).
    """
    n_genes, width = table.shape
    v = np.arange(width, dtype=np.float64)
    above = np.bincount(large["genes"], minlength=n_genes).astype(np.float64)
    exact = table.astype(np.float64)
    exact[:, -1] -= above     # the last column counts x >= 16; keep only x == 16
    x = large["values"].astype(np.float64)

    def total(per_value, per_large):
        return exact @ per_value + np.bincount(large["genes"], per_large, minlength=n_genes)

    return np.stack([
        total(gammaln(v + 1.0), gammaln(x + 1.0)),
        exact[:, 1:].sum(axis=1) + above,
        total(v**2, x**2),
        total(v**3, x**3),
    ])


#: Attribute of the results' ``optimization`` group: cells the starting values used.
SAMPLE_ATTR = "initial_values_cells"


def warn_zero_genes(gene_nonzero: np.ndarray) -> None:
    """Warn about genes with no counts (as :func:`scribe.data.prepare_counts` does)."""
    n_zero = int(np.sum(np.asarray(gene_nonzero) == 0))
    if n_zero:
        warnings.warn(
            f"{n_zero} of {len(gene_nonzero)} genes have zero counts in every cell; their "
            f"posteriors will follow the prior", UserWarning, stacklevel=3)


def record_sample(results, streamed: StreamedCounts, model_config) -> None:
    """Record in ``results.idata.optimization.attrs[SAMPLE_ATTR]`` how many cells the
    starting values were computed from: the seeded sample for mixtures, else all."""
    from scribe.svi.storage import OPTIMIZATION

    n_used = (streamed.sample.shape[0] if model_config.n_components is not None
              else streamed.n_cells)
    results._group(OPTIMIZATION).attrs[SAMPLE_ATTR] = int(n_used)
