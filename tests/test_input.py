"""Count input: formats, orientation, validation errors, and never touching the caller's data.

``scribe.data.prepare_counts`` is what ``scribe.fit`` calls on its ``data`` argument; it
must accept AnnData (``.X`` or a layer), NumPy, JAX and every scipy sparse layout, and
return the same float32 cells x genes values for all of them.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import anndata as ad
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import scribe
from scribe.data import CountsError, prepare_counts, to_dense

REAL_DATA = Path("/work/shared/data/tenx_v3_subset.h5ad")

# 6 cells x 5 genes; gene 3 is zero in every cell.
COUNTS = np.array(
    [
        [0, 1, 2, 0, 7],
        [3, 0, 0, 0, 1],
        [0, 0, 5, 0, 0],
        [1, 4, 0, 0, 2],
        [0, 0, 0, 0, 9],
        [2, 2, 1, 0, 0],
    ],
    dtype=np.int64,
)

CONVERTERS = {
    "numpy_float64": lambda a: np.asarray(a, dtype=np.float64),
    "numpy_float32": lambda a: np.asarray(a, dtype=np.float32),
    "numpy_int64": lambda a: np.asarray(a, dtype=np.int64),
    "numpy_uint16": lambda a: np.asarray(a, dtype=np.uint16),
    "numpy_fortran": lambda a: np.asfortranarray(a, dtype=np.float64),
    "jax": lambda a: jnp.asarray(a, dtype=jnp.float32),
    "csr_matrix": lambda a: sp.csr_matrix(np.asarray(a, np.float32)),
    "csc_matrix": lambda a: sp.csc_matrix(np.asarray(a, np.float64)),
    "csr_array": lambda a: sp.csr_array(np.asarray(a, np.int32)),
    "csc_array": lambda a: sp.csc_array(np.asarray(a, np.float32)),
    "coo_matrix": lambda a: sp.coo_matrix(np.asarray(a, np.float32)),
    "coo_array": lambda a: sp.coo_array(np.asarray(a, np.float64)),
}
SPARSE = {name for name in CONVERTERS if "_matrix" in name or "_array" in name}


def _prepare_quietly(data, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return prepare_counts(data, **kwargs)


def _unsorted_csr(dtype=np.float32) -> sp.csr_matrix:
    """A 3 x 4 CSR whose column indices are not sorted within rows (a valid CSR)."""
    matrix = sp.csr_matrix(
        (np.array([3, 1, 2, 5, 4], dtype=dtype), np.array([2, 0, 1, 0, 3]),
         np.array([0, 2, 4, 5])),
        shape=(3, 4),
    )
    assert not matrix.has_sorted_indices
    return matrix


def _sparse_snapshot(matrix) -> dict:
    return {
        "data": matrix.data.copy(),
        "indices": matrix.indices.copy(),
        "indptr": matrix.indptr.copy(),
        "has_sorted_indices": bool(matrix.has_sorted_indices),
        "dtype": matrix.data.dtype,
        "dense": matrix.toarray(),
    }


def _assert_sparse_unchanged(matrix, snapshot: dict) -> None:
    np.testing.assert_array_equal(matrix.data, snapshot["data"])
    np.testing.assert_array_equal(matrix.indices, snapshot["indices"])
    np.testing.assert_array_equal(matrix.indptr, snapshot["indptr"])
    assert matrix.data.dtype == snapshot["dtype"]
    assert bool(matrix.has_sorted_indices) == snapshot["has_sorted_indices"]
    np.testing.assert_array_equal(matrix.toarray(), snapshot["dense"])


# ---- accepted formats ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", sorted(CONVERTERS))
def test_every_format_gives_the_same_float32_counts(fmt):
    counts, adata = _prepare_quietly(CONVERTERS[fmt](COUNTS))
    assert adata is None
    if fmt in SPARSE:
        assert isinstance(counts, sp.csr_matrix)
        assert counts.has_canonical_format
    else:
        assert isinstance(counts, np.ndarray)
    assert counts.dtype == np.float32
    dense = to_dense(counts)
    assert dense.dtype == np.float32
    np.testing.assert_array_equal(dense, COUNTS.astype(np.float32))


@pytest.mark.parametrize("fmt", sorted(CONVERTERS))
def test_cells_axis_1_transposes(fmt):
    # Genes as rows with cells_axis=1 must give exactly the cells-as-rows result.
    genes_by_cells = CONVERTERS[fmt](COUNTS.T)
    counts, _ = _prepare_quietly(genes_by_cells, cells_axis=1)
    reference, _ = _prepare_quietly(CONVERTERS[fmt](COUNTS), cells_axis=0)
    assert counts.shape == (6, 5)
    np.testing.assert_array_equal(to_dense(counts), to_dense(reference))
    np.testing.assert_array_equal(to_dense(counts), COUNTS.astype(np.float32))


def test_coo_with_duplicate_entries_is_summed():
    # COO may store one position twice; the count is their sum (0.5 + 1.5 = 2 is an integer).
    coo = sp.coo_matrix(
        (np.array([0.5, 1.5, 4.0]), (np.array([0, 0, 1]), np.array([1, 1, 0]))), shape=(2, 2))
    counts, _ = prepare_counts(coo)
    np.testing.assert_array_equal(to_dense(counts), [[0, 2], [4, 0]])


def test_anndata_x_dense_and_sparse():
    obs = pd.DataFrame(index=[f"c{i}" for i in range(6)])
    var = pd.DataFrame(index=[f"g{j}" for j in range(5)])
    for x in (COUNTS.astype(np.float32), sp.csr_matrix(COUNTS.astype(np.float32))):
        adata = ad.AnnData(X=x, obs=obs, var=var)
        counts, returned = _prepare_quietly(adata)
        assert returned is adata
        np.testing.assert_array_equal(to_dense(counts), COUNTS)


def test_anndata_layer_is_read_instead_of_x():
    other = np.ones_like(COUNTS, dtype=np.float32)
    adata = ad.AnnData(X=other, layers={"counts": sp.csr_matrix(COUNTS.astype(np.float32)),
                                        "dense": COUNTS * 2})
    counts, _ = _prepare_quietly(adata, layer="counts")
    np.testing.assert_array_equal(to_dense(counts), COUNTS)
    counts, _ = _prepare_quietly(adata, layer="dense")
    np.testing.assert_array_equal(to_dense(counts), COUNTS * 2)
    counts, _ = _prepare_quietly(adata)  # layer=None reads .X
    np.testing.assert_array_equal(to_dense(counts), other)


def test_anndata_without_x_reads_layer():
    adata = ad.AnnData(X=None, obs=pd.DataFrame(index=list("abcdef")),
                       var=pd.DataFrame(index=list("vwxyz")),
                       layers={"counts": COUNTS.astype(np.float32)})
    counts, _ = _prepare_quietly(adata, layer="counts")
    np.testing.assert_array_equal(to_dense(counts), COUNTS)
    with pytest.raises(CountsError, match="no .X"):
        prepare_counts(adata)


# ---- invalid values: the message names the problem and the first offending cell, gene ------

BAD_VALUES = {
    "nan": (np.nan, r"NaN or infinite value \(nan\)"),
    "inf": (np.inf, r"NaN or infinite value \(inf\)"),
    "neg_inf": (-np.inf, r"NaN or infinite value \(-inf\)"),
    "negative": (-2.0, r"negative value \(-2\.0\)"),
    "non_integer": (1.5, r"non-integer value \(1\.5\)"),
}
LAYOUTS = {
    "numpy": lambda a: a,
    "jax": lambda a: jnp.asarray(a, dtype=jnp.float32),
    "csr_matrix": sp.csr_matrix,
    "csc_matrix": sp.csc_matrix,
    "csr_array": sp.csr_array,
    "coo_matrix": sp.coo_matrix,
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("bad", sorted(BAD_VALUES))
@pytest.mark.parametrize("cells_axis", [0, 1])
def test_invalid_value_names_problem_cell_and_gene(bad, layout, cells_axis):
    value, pattern = BAD_VALUES[bad]
    cells_by_genes = COUNTS.astype(np.float64)
    # Two offenders, (cell 1, gene 2) and (cell 4, gene 3): first in either orientation is
    # cell 1, gene 2, and a cell/gene mix-up would report "cell 2, gene 1".
    cells_by_genes[1, 2] = value
    cells_by_genes[4, 3] = value
    stored = cells_by_genes if cells_axis == 0 else cells_by_genes.T
    with pytest.raises(CountsError, match=pattern) as info:
        prepare_counts(LAYOUTS[layout](stored), cells_axis=cells_axis)
    assert "at cell 1, gene 2" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("layout", ["numpy", "csr_matrix", "csc_matrix", "coo_matrix"])
def test_first_offender_is_in_cell_order(layout):
    cells_by_genes = COUNTS.astype(np.float64)
    cells_by_genes[3, 0] = 0.5   # later cell, earlier gene
    cells_by_genes[2, 4] = 2.5   # earliest cell: this one is reported
    with pytest.raises(CountsError, match=r"non-integer value \(2\.5\) at cell 2, gene 4"):
        prepare_counts(LAYOUTS[layout](cells_by_genes))


def test_checks_run_in_a_fixed_order():
    # NaN is reported before a negative value, a negative before a non-integer.
    data = COUNTS.astype(np.float64)
    data[0, 0], data[1, 1], data[2, 2] = 0.5, -1.0, np.nan
    with pytest.raises(CountsError, match=r"NaN or infinite value \(nan\) at cell 2, gene 2"):
        prepare_counts(data)
    data[2, 2] = 5
    with pytest.raises(CountsError, match=r"negative value \(-1\.0\) at cell 1, gene 1"):
        prepare_counts(data)


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (np.arange(5.0), r"2-D cells x genes matrix, got 1-D with shape \(5,\)"),
        (np.zeros((2, 3, 4)), r"got 3-D with shape \(2, 3, 4\)"),
        (np.zeros((0, 5)), r"counts are empty: shape \(0, 5\)"),
        (np.zeros((5, 0)), r"counts are empty: shape \(5, 0\)"),
        (sp.csr_matrix((0, 5), dtype=np.float32), r"counts are empty: shape \(0, 5\)"),
        (np.array([[1, 2], [3, 4]], dtype=object), "dtype object"),
        (np.array([["1", "2"]]), "counts must be real numbers, got dtype <U1"),
        (np.ones((2, 2), dtype=complex), "counts must be real numbers, got dtype complex128"),
    ],
    ids=["1d", "3d", "no_cells", "no_genes", "sparse_no_cells", "object", "str", "complex"],
)
def test_bad_shapes_and_dtypes(data, pattern):
    with pytest.raises(CountsError, match=pattern):
        prepare_counts(data)


def test_unknown_layer_lists_available_layers():
    adata = ad.AnnData(X=COUNTS.astype(np.float32),
                       layers={"spliced": COUNTS, "unspliced": COUNTS})
    with pytest.raises(CountsError, match="layer 'counts' not found") as info:
        prepare_counts(adata, layer="counts")
    assert "spliced" in str(info.value) and "unspliced" in str(info.value)
    with pytest.raises(CountsError, match=r"its layers: \(none\)"):
        prepare_counts(ad.AnnData(X=COUNTS.astype(np.float32)), layer="counts")


@pytest.mark.parametrize("fmt", ["numpy_float64", "csr_matrix", "jax"])
def test_layer_with_non_anndata_is_an_error(fmt):
    with pytest.raises(CountsError, match="layer= applies to AnnData input only"):
        prepare_counts(CONVERTERS[fmt](COUNTS), layer="counts")


@pytest.mark.parametrize("cells_axis", [2, -1, "1", None])
def test_cells_axis_must_be_0_or_1(cells_axis):
    with pytest.raises(CountsError, match=r"cells_axis must be 0 \(cells are rows\) or 1, got"):
        prepare_counts(COUNTS, cells_axis=cells_axis)


def test_anndata_rejects_cells_axis_1():
    with pytest.raises(CountsError, match="AnnData stores cells as rows"):
        prepare_counts(ad.AnnData(X=COUNTS.astype(np.float32)), cells_axis=1)


def test_fit_validates_data_before_fitting(monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("inference started on invalid counts")

    monkeypatch.setattr(scribe.fitting.SVIInferenceEngine, "run_inference", must_not_run)
    bad = COUNTS.astype(np.float64)
    bad[5, 1] = -3
    with pytest.raises(CountsError, match=r"negative value \(-3\.0\) at cell 5, gene 1"):
        scribe.fit(bad.T, "nbdm", cells_axis=1, n_steps=10, progress=False)


# ---- all-zero genes ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["numpy_float64", "csr_matrix", "csc_array", "jax"])
def test_all_zero_genes_warn_with_their_count(fmt):
    data = COUNTS.copy()
    data[:, 0] = 0  # now genes 0 and 3 are all-zero
    with pytest.warns(UserWarning, match="2 of 5 genes have zero counts in every cell"):
        prepare_counts(CONVERTERS[fmt](data))


def test_all_zero_genes_counted_after_transposing():
    # Genes x cells input: an all-zero *row* is a gene; all-zero columns would be cells.
    data = COUNTS.T.copy()
    data[:, 2] = 0  # cell 2 empty: not a gene, no extra warning count
    with pytest.warns(UserWarning, match="1 of 5 genes have zero counts"):
        prepare_counts(sp.csr_matrix(data), cells_axis=1)


def test_no_warning_without_all_zero_genes():
    data = COUNTS.copy()
    data[0, 3] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare_counts(data)
        prepare_counts(sp.csr_matrix(data))


def test_real_dataset_warns_306_all_zero_genes():
    adata = ad.read_h5ad(REAL_DATA)
    with pytest.warns(UserWarning, match="306 of 507 genes have zero counts"):
        counts, returned = prepare_counts(adata)
    assert returned is adata
    assert counts.shape == (1107, 507)
    assert isinstance(counts, sp.csr_matrix)
    assert int(np.sum(np.asarray(counts.sum(axis=0)).ravel() == 0)) == 306
    np.testing.assert_array_equal(counts.toarray(), adata.X.toarray())


# ---- the caller's object is never modified -----------------------------------------------------


def test_prepare_counts_copies_dense_input():
    data = COUNTS.astype(np.float32)
    before = data.copy()
    counts, _ = _prepare_quietly(data)
    assert not np.shares_memory(counts, data)
    counts[0, 0] = 1000
    np.testing.assert_array_equal(data, before)
    # and the transposed path
    counts, _ = _prepare_quietly(data.T, cells_axis=1)
    assert not np.shares_memory(counts, data)


@pytest.mark.parametrize("fmt", ["csr_matrix", "csc_matrix", "coo_matrix", "csc_array"])
def test_prepare_counts_leaves_sparse_input_unchanged(fmt):
    matrix = CONVERTERS[fmt](COUNTS)
    before = matrix.copy()
    _prepare_quietly(matrix)
    _prepare_quietly(matrix.T, cells_axis=1)
    assert matrix.format == before.format and matrix.dtype == before.dtype
    assert (matrix != before).nnz == 0


def test_canonical_float32_csr_is_read_without_a_copy():
    # Issue 13: a canonical float32 CSR is read as it is (no 8 bytes per non-zero copy),
    # through a new object; the caller's matrix, buffers and cached flags stay untouched.
    matrix = sp.csr_matrix(COUNTS.astype(np.float32))
    snapshot = _sparse_snapshot(matrix)
    counts, _ = _prepare_quietly(matrix)
    assert counts is not matrix
    assert np.shares_memory(counts.data, matrix.data)
    np.testing.assert_array_equal(counts.toarray(), snapshot["dense"])
    _assert_sparse_unchanged(matrix, snapshot)
    # Not canonical (a stored zero) or another dtype: a converted copy.
    with_zero = sp.csr_matrix((np.r_[matrix.data, np.float32(0)], np.r_[matrix.indices, 4],
                               np.r_[matrix.indptr[:-1], matrix.nnz + 1]), shape=matrix.shape)
    counts, _ = _prepare_quietly(with_zero)
    assert not np.shares_memory(counts.data, with_zero.data) and counts.nnz == matrix.nnz
    counts, _ = _prepare_quietly(matrix.astype(np.int64))
    assert counts.dtype == np.float32
    np.testing.assert_array_equal(counts.toarray(), snapshot["dense"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_prepare_counts_leaves_unsorted_csr_unchanged(dtype):
    matrix = _unsorted_csr(dtype)
    snapshot = _sparse_snapshot(matrix)
    counts, _ = prepare_counts(matrix)
    # The prepared values themselves are right...
    np.testing.assert_array_equal(counts.toarray(), snapshot["dense"])
    # ...but the caller's matrix must be untouched.
    _assert_sparse_unchanged(matrix, snapshot)


def test_prepare_counts_of_unsorted_csr_gives_right_values():
    matrix = _unsorted_csr(np.float64)
    expected = np.array([[1, 0, 3, 0], [5, 2, 0, 0], [0, 0, 0, 4]], dtype=np.float32)
    np.testing.assert_array_equal(matrix.toarray(), expected)
    counts, _ = _prepare_quietly(matrix)
    np.testing.assert_array_equal(counts.toarray(), expected)
    assert counts.has_sorted_indices


def _small_counts(seed=0, n_cells=40, n_genes=10) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.negative_binomial(2.0, 0.4, size=(n_cells, n_genes)).astype(np.float64)


def test_fit_leaves_numpy_input_unchanged():
    data = _small_counts()
    before = data.copy()
    res = scribe.fit(data, "nbdm", n_steps=30, seed=3, progress=False)
    np.testing.assert_array_equal(data, before)
    assert data.dtype == np.float64 and data.flags.writeable
    assert res.n_cells == 40 and res.n_genes == 10
    assert res.obs is None and res.var is None
    assert res.loss_history.shape == (30,)
    assert np.all(np.isfinite(np.asarray(res.loss_history)))


def test_fit_leaves_unsorted_csr_unchanged():
    matrix = _unsorted_csr(np.float64)
    snapshot = _sparse_snapshot(matrix)
    _prepare_quietly(matrix)  # fails here today, before spending time on a fit
    _assert_sparse_unchanged(matrix, snapshot)
    scribe.fit(matrix, "nbdm", n_steps=5, progress=False)
    _assert_sparse_unchanged(matrix, snapshot)


def test_fit_on_real_anndata_copies_metadata_and_leaves_it_unchanged():
    adata = ad.read_h5ad(REAL_DATA)
    adata.obs["batch"] = pd.Categorical(np.where(np.arange(adata.n_obs) % 2, "a", "b"))
    adata.uns["note"] = {"source": "10x v3"}
    adata.layers["raw"] = adata.X.copy()
    x_snapshot = _sparse_snapshot(adata.X)
    layer_snapshot = _sparse_snapshot(adata.layers["raw"])
    obs, var, uns = adata.obs.copy(), adata.var.copy(), copy.deepcopy(adata.uns)
    var_names = adata.var_names.copy()

    with pytest.warns(UserWarning, match="306 of 507 genes"):
        res = scribe.fit(adata, "nbdm", n_steps=10, progress=False)

    _assert_sparse_unchanged(adata.X, x_snapshot)
    _assert_sparse_unchanged(adata.layers["raw"], layer_snapshot)
    assert list(adata.layers.keys()) == ["raw"]
    pd.testing.assert_frame_equal(adata.obs, obs)
    pd.testing.assert_frame_equal(adata.var, var)
    assert adata.uns == uns and list(adata.uns) == ["note"]

    assert (res.n_cells, res.n_genes) == (1107, 507)
    pd.testing.assert_index_equal(res.var.index, var_names)
    pd.testing.assert_index_equal(res.obs.index, adata.obs_names)
    pd.testing.assert_frame_equal(res.var, var)
    pd.testing.assert_frame_equal(res.obs, obs)
    assert res.uns == {"note": {"source": "10x v3"}}
    # Copies, not views: editing the results leaves the AnnData alone.
    res.var["edited"] = 1
    res.obs.loc[res.obs.index[0], "batch"] = "a" if obs["batch"].iloc[0] == "b" else "b"
    assert "edited" not in adata.var
    pd.testing.assert_frame_equal(adata.obs, obs)
    assert np.all(np.isfinite(np.asarray(res.loss_history)))
    assert res.params["r_loc"].shape == (507,)
