"""Small fits shared by the plot, report and CLI tests (made once per test session)."""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

import scribe
from scribe.simulate import simulate_counts

N_CELLS, N_GENES, N_STEPS = 80, 25, 150


@functools.cache
def capture_mixture_fit():
    """An anchored nbvcp_mix (K = 2) fit with its counts stored; stops at its step cap.

    Returns
    -------
    results : ScribeSVIResults
    counts : numpy.ndarray, shape (80, 25)
    """
    counts, _ = simulate_counts("nbvcp_mix", N_CELLS, N_GENES, n_components=2, seed=3)
    # The anchor must exceed every library size (capture < 1): M0 = 10 x the largest.
    m0 = float(10 * counts.sum(axis=1).max())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # the step cap is deliberate
        results = scribe.fit(counts, "nbvcp_mix", "odds_ratio", n_components=2,
                             n_steps=N_STEPS, mrna_per_cell=m0, store_counts=True,
                             progress=False, seed=1)
    return results, np.asarray(counts)


REAL_DATA = Path("/work/shared/data/tenx_v3_subset.h5ad")
# The installed console script; ``python -m scribe.cli`` where it is not on disk.
_SCRIPT = shutil.which("scribe", path=str(Path(sys.executable).parent))
SCRIBE = [_SCRIPT] if _SCRIPT else [sys.executable, "-m", "scribe.cli"]
CLI_CELLS, CLI_GENES, CLI_STEPS = 100, 30, 150


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """Run the console script in a fresh interpreter (as a user would)."""
    return subprocess.run([*SCRIBE, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


@functools.cache
def cli_fit() -> tuple[Path, np.ndarray, subprocess.CompletedProcess]:
    """``scribe fit`` on a subset of the shipped 10x data, once per test session.

    The subset: the first 100 cells and the 30 genes with the most counts, as an h5ad.

    Returns
    -------
    fit_path : Path
    counts : numpy.ndarray, shape (100, 30)
    process : subprocess.CompletedProcess
    """
    import anndata as ad

    folder = Path(tempfile.mkdtemp(prefix="scribe_cli_"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    adata = ad.read_h5ad(REAL_DATA)[:CLI_CELLS]
    totals = np.asarray(adata.X.sum(axis=0)).ravel()
    subset = adata[:, np.sort(np.argsort(-totals)[:CLI_GENES])].copy()
    subset.write_h5ad(folder / "subset.h5ad")
    process = run_cli("fit", folder / "subset.h5ad", "--model", "nbdm", "--parameterization",
                      "odds_ratio", "--max-steps", CLI_STEPS, "--quiet",
                      "-o", folder / "fit.nc")
    return folder / "fit.nc", subset.X.toarray(), process

