"""``scribe.report``: one self-contained HTML file describing a fit.

Contents: the model and its convergence (with the loss trace), warnings (non-convergence,
Pareto k-hat of PSIS-LOO over cells, a capture model without an anchor, genes without
counts), posterior-predictive checks of library sizes and of per-gene mean, variance
and zero fraction, residual QQ (when the library provides ``quantile_residuals``),
capture against library size (capture models), assignment probabilities and weights
(mixtures), and tables of the most expressed and the worst reproduced genes.

The fit is not modified: samples are drawn on a copy.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from scribe import pl
from scribe import report_html as H
from scribe.fit_info import info
from scribe.pl._axes import counts_matrix
from scribe.progress import progress_blocks
from scribe.svi.results import ScribeSVIResults

PARETO_K_BAD = 0.7          # PSIS is unreliable above it (Vehtari et al. 2017, 2024)
PREDICTIVE_BYTES = 2 ** 30  # the most memory the (S, C, G) predictive draws may take
N_LOO_DRAWS = 100           # posterior draws for k-hat; PSIS needs of the order of 100


def _gene_names(results: ScribeSVIResults) -> pd.Index:
    var = results.var
    if var is not None and len(var.index) == results.n_genes:
        return pd.Index(var.index.astype(str), name="gene")
    return pd.Index([str(g) for g in range(results.n_genes)], name="gene")


def _warn_fit(results: ScribeSVIResults) -> list[str]:
    messages = []
    if results.converged is False:
        messages.append(f"The fit did not converge: it stopped at its cap of "
                        f"{results.n_steps_run} steps with the loss still falling. Estimates "
                        f"may be far from the optimum; refit with more steps.")
    elif results.converged is None:
        messages.append("Convergence was not recorded (a fixed-step run): check the loss "
                        "trace has flattened.")
    if results.capture_anchored is False:
        messages.append("Capture model fitted without an anchor (mrna_per_cell / "
                        "--organism): the counts identify only p_hat and r; p and p_capture "
                        "separately reflect the prior, not the data.")
    return messages


def pareto_k(results: ScribeSVIResults, matrix, seed: int,
             n_draws: int = N_LOO_DRAWS) -> np.ndarray:
    """PSIS Pareto k-hat of each cell's leave-one-out weights, shape (C,)."""
    from scribe.svi.idata import _arviz

    work = copy.deepcopy(results)
    work.get_posterior_samples(jax.random.PRNGKey(seed), n_draws)
    per_cell = np.asarray(work.log_likelihood(matrix, batch_size=1024), dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # ArviZ warns about high k itself; we report it
        _, k_hat = _arviz().psislw(-per_cell.T)
    return np.asarray(k_hat)


def _pareto_message(k_hat: np.ndarray) -> str | None:
    bad = int(np.sum(k_hat > PARETO_K_BAD))
    if bad == 0:
        return None
    return (f"Pareto k-hat > {PARETO_K_BAD} for {bad} of {k_hat.size} cells "
            f"({bad / k_hat.size:.1%}; max {np.nanmax(k_hat):.2f}): PSIS-LOO (az.loo, "
            f"scribe.compare) is unreliable for them; the variational posterior is too "
            f"narrow for these cells or the model misfits them.")


def gene_check_table(names: pd.Index, observed: dict, simulated: dict,
                     level: float) -> pd.DataFrame:
    """Per gene: observed statistics, predictive medians and bands, and how far outside.

    ``miss_<stat>`` is the distance of the observed value outside its predictive band in
    units of the band's half-width (0 inside); ``worst`` is their maximum.
    """
    columns = {}
    misses = []
    for name in pl.ppc.GENE_STATISTICS:
        low, median, high = pl.quantile_bands(simulated[name], level)
        half = np.maximum((high - low) / 2, 1e-12)
        x = observed[name]
        miss = np.maximum(np.maximum(low - x, x - high), 0) / half
        columns[f"{name}"] = x
        columns[f"{name}_predicted"] = median
        columns[f"miss_{name}"] = miss
        misses.append(miss)
    frame = pd.DataFrame(columns, index=names)
    frame["worst"] = np.max(misses, axis=0)
    return frame


def _map_table(results: ScribeSVIResults, names: pd.Index, top: int) -> pd.DataFrame:
    estimates = results.get_map(use_mean=True, canonical=True, verbose=False)
    if "r" not in estimates:   # a plugin's model type without the NB pair
        return pd.DataFrame(index=names[:0])
    r = np.asarray(estimates["r"], float)
    frame = (pd.DataFrame({"r": r}, index=names) if r.ndim == 1 else
             pd.DataFrame({f"r_{k}": r[k] for k in range(r.shape[0])}, index=names))
    return frame.loc[frame.max(axis=1).sort_values(ascending=False).index[:top]]


def _usable_draws(results: ScribeSVIResults, n_samples: int) -> int:
    per_draw = 4 * results.n_cells * results.n_genes
    return int(min(n_samples, PREDICTIVE_BYTES // per_draw))


class _Report:
    """Builds the sections in order, one progress step each."""

    def __init__(self, results, matrix, n_samples: int, seed: int, top: int, level: float):
        self.results, self.matrix = results, matrix
        self.n_samples, self.seed, self.top, self.level = n_samples, seed, top, level
        self.messages = _warn_fit(results)
        self.names = _gene_names(results)
        self.body: list[str] = []
        self.predictive = None

    def model(self):
        summary = pd.DataFrame({"value": [str(v) for v in info(self.results).values()]},
                               index=pd.Index(list(info(self.results)), name="field"))
        figure = pl.loss(self.results).figure
        self.body.append(H.section("Model and convergence", H.table(summary),
                                   H.figure_png(figure)))

    def checks(self):
        matrix, results = self.matrix, self.results
        if matrix is None:
            self.body.append(H.section("Posterior-predictive checks", H.note(
                "No counts: the fit holds none and none were given (counts=, --counts). "
                "Predictive checks, residuals, Pareto k-hat and capture plots need them.")))
            self.body.append(H.section("Genes with the largest MAP r",
                                       H.table(_map_table(results, self.names, self.top))))
            return
        n_zero = int(np.sum(pl.gene_statistics(matrix)["mean"] == 0))
        if n_zero:
            self.messages.append(f"{n_zero} of {results.n_genes} genes have no counts: their "
                                 f"posteriors are the prior's.")
        draws = _usable_draws(results, self.n_samples)
        if draws < 2:
            self.body.append(H.section("Posterior-predictive checks", H.note(
                "Skipped: two predictive draws of this data set exceed the 1 GiB budget.")))
            return
        self.predictive = pl.predictive_counts(results, draws, self.seed)
        parts = [H.note(f"{draws} posterior-predictive draws; bands are central "
                        f"{self.level:.0%} intervals over draws.")]
        parts.append(H.figure_png(pl.ppc_library_size(
            results, matrix, predictive=self.predictive, level=self.level).figure))
        parts.append(H.figure_png(pl.ppc_genes(
            results, matrix, predictive=self.predictive, level=self.level)))
        table = gene_check_table(self.names, pl.gene_statistics(matrix),
                                 pl.gene_statistics(self.predictive), self.level)
        self.predictive = None   # free the (S, C, G) draws
        shown = ["mean", "mean_predicted", "variance", "variance_predicted",
                 "zero_fraction", "zero_fraction_predicted", "worst"]
        parts.append("<h3>Most expressed genes</h3>")
        parts.append(H.table(table.sort_values("mean", ascending=False)[shown][:self.top]))
        parts.append("<h3>Genes the model reproduces worst</h3>")
        parts.append(H.note("worst: distance of an observed statistic outside its predictive "
                            "band, in half-widths of the band (0: inside)."))
        parts.append(H.table(table.sort_values("worst", ascending=False)[shown][:self.top]))
        self.body.append(H.section("Posterior-predictive checks", *parts))

    def pareto(self):
        if self.matrix is None:
            return
        message = _pareto_message(pareto_k(self.results, self.matrix, self.seed))
        if message:
            self.messages.append(message)

    def residuals(self):
        results, matrix = self.results, self.matrix
        if matrix is None:
            return
        if not hasattr(results, "quantile_residuals"):
            self.body.append(H.section("Residuals", H.note(
                "Randomized quantile residuals are not available in this version.")))
            return
        work = copy.deepcopy(results)
        values = np.asarray(work.quantile_residuals(matrix))
        parts = [H.figure_png(pl.residual_qq(values).figure)]
        if hasattr(work, "goodness_of_fit"):
            fit = work.goodness_of_fit(matrix)
            fraction = fit.attrs.get("fraction_flagged")
            if fraction is not None and fraction > 0:
                self.messages.append(f"{fraction:.1%} of genes are flagged by the "
                                     f"goodness-of-fit check (residuals far from N(0, 1)).")
            parts.append(H.table(fit.sort_values("rqr_ks", ascending=False)[:self.top]))
        self.body.append(H.section("Randomized quantile residuals", *parts))

    def capture(self):
        if self.results.capture_anchored is None or self.matrix is None:
            return
        figure = pl.capture_vs_library(self.results, self.matrix).figure
        self.body.append(H.section("Capture against library size", H.figure_png(figure)))

    def mixture(self):
        results = self.results
        if not results.model_config.is_mixture:
            return
        parts = []
        weights = results.get_map(use_mean=True, verbose=False)["mixing_weights"]
        parts.append(H.figure_png(pl.mixture_weights(weights).figure))
        if self.matrix is not None:
            # Means where a mode is undefined (as the AnnData write-back): at the modes
            # a gate near 0 makes every row NaN (scribe.svi.assignment_nan).
            probabilities = results.cell_type_probabilities_map(
                self.matrix, use_mean=True, verbose=False)["probabilities"]
            parts.append(H.figure_png(pl.assignments(np.asarray(probabilities)).figure))
        self.body.append(H.section("Mixture components", *parts))

    def html(self) -> str:
        return H.page(f"scribe fit report: {self.results.model_type} "
                      f"({self.results.model_config.parameterization})",
                      [H.section("Warnings", H.warnings_block(self.messages)), *self.body])


def _stages(stages: list, progress: bool):
    """The report's stages, behind a progress bar on a terminal (``scribe.progress``'s
    switch silences it)."""
    return progress_blocks(stages, total=len(stages), desc="report",
                           enabled=None if progress else False)


def report(results: ScribeSVIResults, counts=None, path: str | os.PathLike | None = None, *,
           n_samples: int = 10, seed: int = 0, top_genes: int = 20, level: float = 0.9,
           progress: bool = True) -> str:
    """Write a self-contained HTML report of a fit.

    Parameters
    ----------
    results : ScribeSVIResults
    counts : AnnData, array or scipy sparse (C, G), optional
        The counts the model was fitted to; default: those stored in the fit
        (``store_counts=True``, which ``scribe fit`` does). Without counts the report
        has the model, convergence and MAP parameters only.
    path : str or path-like, optional
        Where to write the file (None: only return the HTML).
    n_samples : int, default 10
        Posterior-predictive draws (fewer when ``n_samples x C x G`` float32 would
        exceed 1 GiB).
    seed : int, default 0
    top_genes : int, default 20
        Rows of each gene table.
    level : float, default 0.9
        Predictive band.
    progress : bool, default True
        Progress bar over the report's stages (on a terminal only).

    Returns
    -------
    str
        The HTML document (images as base64 PNG, no scripts, no external resources).
    """
    if not isinstance(results, ScribeSVIResults):
        raise TypeError(f"results must be a ScribeSVIResults, got {type(results).__name__}")
    for name, value in (("n_samples", n_samples), ("top_genes", top_genes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples}")
    pl._axes.check_level(level)
    if path is not None and not Path(path).parent.exists():
        raise ValueError(f"path {path}: folder {Path(path).parent} does not exist")
    has_counts = counts is not None or results.observed_counts is not None
    matrix = counts_matrix(results, counts) if has_counts else None
    builder = _Report(results, matrix, n_samples, seed, top_genes, level)
    stages = [("model", builder.model), ("predictive checks", builder.checks),
              ("Pareto k", builder.pareto), ("residuals", builder.residuals),
              ("capture", builder.capture), ("mixture", builder.mixture)]
    with warnings.catch_warnings():
        # Each analysis re-reads the counts; the report states genes without counts once.
        warnings.filterwarnings("ignore", message=".*genes have zero counts in every cell")
        for _, stage in _stages(stages, progress):
            stage()
    document = builder.html()
    if path is not None:
        Path(path).write_text(document, encoding="utf-8")
    return document
