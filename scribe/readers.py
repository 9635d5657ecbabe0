"""``scribe.read_counts``: a count matrix from a file, as an AnnData.

The formats a command-line user meets: ``.h5ad``, ``.loom``, Matrix Market ``.mtx``
(optionally gzipped), 10x Genomics ``.h5`` (through scanpy, when installed), dense
``.csv``/``.tsv`` tables and ``.npz`` scipy sparse matrices (``scipy.sparse.save_npz``).
Every failure is a :class:`ReadError` (a ``ValueError``) with one line that names the
file and what went wrong.
"""

from __future__ import annotations

import os
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

SUFFIXES = (".h5ad", ".loom", ".mtx", ".mtx.gz", ".h5", ".csv", ".tsv", ".npz")


class ReadError(ValueError):
    """A counts file that cannot be read (missing, unknown format, malformed)."""


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def _read_table(path: Path, sep: str) -> anndata.AnnData:
    """A dense table, cells as rows; a non-numeric first column holds the cell names."""
    frame = pd.read_csv(path, sep=sep, header=0)
    if frame.shape[1] > 0 and not pd.api.types.is_numeric_dtype(frame.iloc[:, 0]):
        frame = frame.set_index(frame.columns[0])
    non_numeric = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        raise ReadError(f"{path}: column {non_numeric[0]!r} is not numeric (a table of "
                        f"counts has cells as rows, genes as columns, and optionally the "
                        f"cell names as its first column)")
    adata = anndata.AnnData(frame.to_numpy())
    adata.obs_names = frame.index.astype(str)
    adata.var_names = frame.columns.astype(str)
    return adata


def _read_10x_h5(path: Path) -> anndata.AnnData:
    try:
        import scanpy
    except ImportError as error:
        raise ReadError(f"{path}: reading 10x .h5 files needs scanpy (pip install scanpy); "
                        f"or convert the file to .h5ad") from error
    return scanpy.read_10x_h5(path)


def _anndata_reader(name: str):
    # anndata >= 0.11 keeps its readers in anndata.io (the top-level names are deprecated).
    io = getattr(anndata, "io", None)
    return getattr(io, name, None) or getattr(anndata, name)


def _read(path: Path, suffix: str) -> anndata.AnnData:
    if suffix == ".h5ad":
        return anndata.read_h5ad(path)
    if suffix == ".loom":
        return _anndata_reader("read_loom")(path)
    if suffix in (".mtx", ".mtx.gz"):
        return _anndata_reader("read_mtx")(path)
    if suffix == ".h5":
        return _read_10x_h5(path)
    if suffix in (".csv", ".tsv"):
        return _read_table(path, "," if suffix == ".csv" else "\t")
    if suffix == ".npz":
        return anndata.AnnData(sp.csr_matrix(sp.load_npz(path)))
    raise ReadError(f"{path}: unknown file type {suffix or '(none)'!r}; scribe reads "
                    f"{', '.join(SUFFIXES)}")


def read_counts(path: str | os.PathLike, *, transpose: bool = False) -> anndata.AnnData:
    """Read a count matrix from a file.

    Parameters
    ----------
    path : str or path-like
        ``.h5ad``, ``.loom``, ``.mtx`` / ``.mtx.gz`` (rows as stored), 10x ``.h5`` (needs
        scanpy), ``.csv`` / ``.tsv`` (header row of gene names, cells as rows, optional
        first column of cell names) or ``.npz`` (``scipy.sparse.save_npz``).
    transpose : bool, default False
        The file stores genes as rows (e.g. a 10x ``matrix.mtx``): return cells as rows.

    Returns
    -------
    anndata.AnnData
        Shape (n_cells, n_genes); values as stored (validated later by ``scribe.fit``).

    Raises
    ------
    ReadError
        The file is missing, of an unknown type, or cannot be parsed.
    """
    path = Path(path)
    if not path.exists():
        raise ReadError(f"{path}: no such file")
    if path.is_dir():
        raise ReadError(f"{path}: is a directory, not a counts file")
    suffix = _suffix(path)
    try:
        adata = _read(path, suffix)
    except ReadError:
        raise
    except Exception as error:   # parsers raise many types; the user needs one line
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ReadError(f"{path}: cannot read as {suffix}: {message}") from error
    if adata.X is None or np.prod(adata.shape) == 0:
        raise ReadError(f"{path}: holds no counts (shape {adata.shape})")
    return adata.T.copy() if transpose else adata
