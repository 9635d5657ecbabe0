"""``scribe.read_counts``: every supported format reads back the matrix it was written from."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

from scribe.readers import ReadError, read_counts

RNG = np.random.default_rng(0)
COUNTS = RNG.poisson(1.5, size=(7, 5)).astype(np.float32)
CELLS = [f"cell{i}" for i in range(7)]
GENES = [f"gene{g}" for g in range(5)]


def _dense(adata) -> np.ndarray:
    return adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)


def test_h5ad_reads_back_values_and_names(tmp_path):
    path = tmp_path / "c.h5ad"
    ad.AnnData(sp.csr_matrix(COUNTS), obs=pd.DataFrame(index=CELLS),
               var=pd.DataFrame(index=GENES)).write_h5ad(path)
    adata = read_counts(path)
    np.testing.assert_array_equal(_dense(adata), COUNTS)
    assert list(adata.obs_names) == CELLS and list(adata.var_names) == GENES


@pytest.mark.parametrize("sep,suffix", [(",", ".csv"), ("\t", ".tsv")])
def test_table_with_cell_names_column(tmp_path, sep, suffix):
    path = tmp_path / f"c{suffix}"
    pd.DataFrame(COUNTS.astype(int), index=pd.Index(CELLS, name="cell"),
                 columns=GENES).to_csv(path, sep=sep)
    adata = read_counts(path)
    np.testing.assert_array_equal(_dense(adata), COUNTS)
    assert list(adata.obs_names) == CELLS and list(adata.var_names) == GENES


def test_table_without_cell_names(tmp_path):
    path = tmp_path / "c.csv"
    pd.DataFrame(COUNTS.astype(int), columns=GENES).to_csv(path, index=False)
    adata = read_counts(path)
    np.testing.assert_array_equal(_dense(adata), COUNTS)
    assert adata.shape == (7, 5)


def test_npz_and_mtx_and_transpose(tmp_path):
    sp.save_npz(tmp_path / "c.npz", sp.csr_matrix(COUNTS))
    np.testing.assert_array_equal(_dense(read_counts(tmp_path / "c.npz")), COUNTS)
    # A 10x matrix.mtx stores genes as rows: --transpose gives cells as rows.
    scipy.io.mmwrite(tmp_path / "m.mtx", sp.coo_matrix(COUNTS.T))
    np.testing.assert_array_equal(_dense(read_counts(tmp_path / "m.mtx", transpose=True)),
                                  COUNTS)


def test_loom_when_loompy_is_installed(tmp_path):
    pytest.importorskip("loompy", reason="writing .loom needs loompy")
    path = tmp_path / "c.loom"
    ad.AnnData(COUNTS, obs=pd.DataFrame(index=CELLS), var=pd.DataFrame(index=GENES)
               ).write_loom(path)
    np.testing.assert_array_equal(_dense(read_counts(path)), COUNTS)


@pytest.mark.parametrize("name,content,match", [
    ("missing.h5ad", None, "no such file"),
    ("c.xlsx", b"x", "unknown file type '.xlsx'"),
    ("bad.csv", b"gene0,gene1\n1,a\n2,b\n", "column 'gene1' is not numeric"),
    ("bad.h5ad", b"not hdf5 at all", r"bad.h5ad: cannot read as \.h5ad"),
    ("bad.npz", b"PK garbage", r"cannot read as \.npz"),
])
def test_unreadable_files_give_one_line_errors(tmp_path, name, content, match):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ReadError, match=match) as error:
        read_counts(path)
    assert "\n" not in str(error.value)


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(ReadError, match="is a directory"):
        read_counts(tmp_path)
