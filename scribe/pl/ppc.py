"""Posterior-predictive checks: library sizes, and per-gene mean, variance and zero fraction.

Predictive counts are drawn once, ``(S, C, G)`` dense in memory (``4 S C G`` bytes: keep
``n_samples`` small on large data); the fit is not modified (nothing is stored in it).
"""

from __future__ import annotations

import jax
import numpy as np
import scipy.sparse as sp

from scribe.pl._axes import check_level, counts_matrix, get_axes, row_sums

GENE_STATISTICS = ("mean", "variance", "zero_fraction")


def predictive_counts(results, n_samples: int = 20, seed: int = 0) -> np.ndarray:
    """Posterior-predictive counts ``(n_samples, C, G)``; ``results`` is left unchanged."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
    draws = results.get_ppc_samples(jax.random.PRNGKey(seed), n_samples, store_samples=False)
    return np.asarray(draws["predictive_samples"])


def quantile_bands(values: np.ndarray, level: float = 0.9) -> tuple[np.ndarray, ...]:
    """Central band and median over the first axis.

    Parameters
    ----------
    values : numpy.ndarray, shape (S, N)
    level : float, default 0.9

    Returns
    -------
    low, median, high : numpy.ndarray, each (N,)
        The ``(1 - level) / 2``, 0.5 and ``(1 + level) / 2`` quantiles over draws.
    """
    level = check_level(level)
    low, median, high = np.quantile(np.asarray(values, float),
                                     [(1 - level) / 2, 0.5, (1 + level) / 2], axis=0)
    return low, median, high


def sorted_library_sizes(observed: np.ndarray, predictive_totals: np.ndarray,
                         level: float = 0.9) -> dict[str, np.ndarray]:
    """Library sizes by rank: observed, and the predictive band at each rank.

    Parameters
    ----------
    observed : numpy.ndarray, shape (C,)
    predictive_totals : numpy.ndarray, shape (S, C)
    level : float

    Returns
    -------
    dict
        ``quantile`` ``(C,)`` plotting positions ``(i + 0.5) / C``; ``observed``
        ``(C,)`` sorted; ``low``, ``median``, ``high`` ``(C,)``: quantiles over draws of
        each draw's sorted library sizes.
    """
    observed = np.sort(np.asarray(observed, float))
    ordered = np.sort(np.asarray(predictive_totals, float), axis=1)
    low, median, high = quantile_bands(ordered, level)
    n_cells = observed.size
    return {"quantile": (np.arange(n_cells) + 0.5) / n_cells, "observed": observed,
            "low": low, "median": median, "high": high}


def gene_statistics(counts) -> dict[str, np.ndarray]:
    """Per-gene mean, (population) variance and fraction of zeros of counts.

    Parameters
    ----------
    counts : numpy.ndarray or scipy sparse, shape (C, G); or shape (S, C, G) for draws

    Returns
    -------
    dict of numpy.ndarray, each (G,) (or (S, G))
    """
    if sp.issparse(counts):
        matrix = sp.csr_matrix(counts, dtype=np.float64)
        n_cells = matrix.shape[0]
        mean = np.asarray(matrix.mean(axis=0)).ravel()
        second = np.asarray(matrix.multiply(matrix).mean(axis=0)).ravel()
        nonzero = np.bincount(matrix.indices[matrix.data != 0], minlength=matrix.shape[1])
        return {"mean": mean, "variance": second - mean ** 2,
                "zero_fraction": 1 - nonzero / n_cells}
    values = np.asarray(counts, dtype=np.float64)
    return {"mean": values.mean(axis=-2), "variance": values.var(axis=-2),
            "zero_fraction": (values == 0).mean(axis=-2)}


def ppc_library_size(results, counts=None, *, predictive: np.ndarray | None = None,
                     n_samples: int = 20, seed: int = 0, level: float = 0.9, ax=None):
    """Observed library sizes against the posterior-predictive band, by rank.

    Parameters
    ----------
    results : ScribeSVIResults
    counts : AnnData, array or sparse (C, G), optional
        The counts the model was fitted to (default: the fit's stored counts).
    predictive : numpy.ndarray, shape (S, C, G), optional
        Predictive counts already drawn (:func:`predictive_counts`).
    n_samples, seed : int
        Draws to make when ``predictive`` is not given.
    level : float, default 0.9
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        The observed curve is the line labelled "observed"; the band a filled area.
    """
    matrix = counts_matrix(results, counts)
    if predictive is None:
        predictive = predictive_counts(results, n_samples, seed)
    data = sorted_library_sizes(row_sums(matrix), np.asarray(predictive).sum(axis=2), level)
    ax = get_axes(ax)
    ax.fill_between(data["quantile"], data["low"], data["high"], color="C0", alpha=0.3,
                    label=f"predictive {level:.0%}")
    ax.plot(data["quantile"], data["median"], color="C0", lw=1, label="predictive median")
    ax.plot(data["quantile"], data["observed"], color="k", lw=1.5, label="observed")
    ax.set_yscale("log")
    ax.set_xlabel("quantile of cells")
    ax.set_ylabel("library size (UMIs per cell)")
    ax.legend(loc="upper left", fontsize="small")
    return ax


def ppc_genes(results, counts=None, *, predictive: np.ndarray | None = None,
              n_samples: int = 20, seed: int = 0, level: float = 0.9, ax=None):
    """Per-gene mean, variance and zero fraction: observed against predictive.

    One panel per statistic: each gene a point at (observed, predictive median) with its
    predictive band as a vertical bar; on the diagonal when the model reproduces it.
    Genes with no counts are left out of the log-scale panels.

    Parameters
    ----------
    results, counts, predictive, n_samples, seed, level
        As :func:`ppc_library_size`.
    ax : sequence of 3 matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    matrix = counts_matrix(results, counts)
    if predictive is None:
        predictive = predictive_counts(results, n_samples, seed)
    observed = gene_statistics(matrix)
    simulated = gene_statistics(np.asarray(predictive))
    if ax is None:
        from matplotlib.figure import Figure

        axes = Figure(figsize=(12, 4), layout="constrained").subplots(1, 3)
    else:
        axes = list(ax)
        if len(axes) != 3:
            raise ValueError(f"ax must be 3 Axes (mean, variance, zero fraction), got "
                             f"{len(axes)}")
    for panel, name in zip(axes, GENE_STATISTICS):
        low, median, high = quantile_bands(simulated[name], level)
        x = observed[name]
        keep = x > 0 if name != "zero_fraction" else np.ones_like(x, bool)
        panel.errorbar(x[keep], median[keep],
                       yerr=[median[keep] - low[keep], high[keep] - median[keep]],
                       fmt="o", ms=2, lw=0.5, alpha=0.6, color="C0")
        span = [min(x[keep].min(), low[keep].min()), max(x[keep].max(), high[keep].max())]
        panel.plot(span, span, color="k", lw=0.8, ls="--")
        if name != "zero_fraction":
            panel.set_xscale("log")
            panel.set_yscale("log")
        label = name.replace("_", " ")
        panel.set_xlabel(f"observed {label}")
        panel.set_ylabel(f"predictive {label} (median, {level:.0%})")
    return axes[0].figure
