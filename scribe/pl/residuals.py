"""Normal QQ plot of randomized quantile residuals, with a pointwise band."""

from __future__ import annotations

import numpy as np
from scipy import stats

from scribe.pl._axes import check_level, get_axes


def qq_data(residuals: np.ndarray, level: float = 0.95,
            max_points: int = 5000) -> dict[str, np.ndarray]:
    """Sample and theoretical normal quantiles, and the band of each order statistic.

    The ``i``-th of ``n`` sorted N(0, 1) values is ``Phi^-1(U_(i))`` with
    ``U_(i) ~ Beta(i, n + 1 - i)``, so the band ``Phi^-1(Beta quantiles)`` holds it with
    probability ``level`` exactly. With more than ``max_points`` values, evenly spaced
    order statistics are kept (no randomness; their positions are exact).

    Parameters
    ----------
    residuals : numpy.ndarray, any shape
        Non-finite values are dropped.
    level : float, default 0.95
    max_points : int, default 5000

    Returns
    -------
    dict
        ``theoretical`` ``Phi^-1((i - 0.5) / n)``, ``sample`` (sorted residuals),
        ``low``, ``high`` (the band), each of shape (min(n, max_points),); ``n``.
    """
    level = check_level(level)
    values = np.asarray(residuals, dtype=float).ravel()
    values = np.sort(values[np.isfinite(values)])
    n = values.size
    if n == 0:
        raise ValueError("residuals holds no finite values")
    rank = np.unique(np.linspace(1, n, min(n, max_points)).round().astype(int))
    a, b = rank, n + 1 - rank
    return {"theoretical": stats.norm.ppf((rank - 0.5) / n), "sample": values[rank - 1],
            "low": stats.norm.ppf(stats.beta.ppf((1 - level) / 2, a, b)),
            "high": stats.norm.ppf(stats.beta.ppf((1 + level) / 2, a, b)), "n": n}


def _as_residuals(residuals, n_cells: int | None) -> np.ndarray:
    if hasattr(residuals, "columns"):   # the goodness-of-fit DataFrame
        if "rqr_mean" not in residuals.columns:
            raise ValueError("a residual DataFrame must have an 'rqr_mean' column (from "
                             "results.goodness_of_fit)")
        if n_cells is None or n_cells < 1:
            raise ValueError("n_cells (cells behind each gene's rqr_mean) is required with "
                             "a goodness-of-fit DataFrame")
        # The mean of n_cells independent N(0, 1) residuals is N(0, 1 / n_cells).
        return np.sqrt(n_cells) * residuals["rqr_mean"].to_numpy(float)
    return np.asarray(residuals, dtype=float)


def residual_qq(residuals, ax=None, *, n_cells: int | None = None, level: float = 0.95,
                max_points: int = 5000):
    """QQ plot of randomized quantile residuals against N(0, 1).

    Parameters
    ----------
    residuals : numpy.ndarray (any shape) or pandas.DataFrame
        Residuals (``results.quantile_residuals(counts)``, (C, G)); or the
        ``results.goodness_of_fit`` table, whose per-gene ``rqr_mean`` is standardised
        by ``sqrt(n_cells)`` (N(0, 1) per gene under the model).
    ax : matplotlib Axes, optional
    n_cells : int, optional
        Required with a DataFrame.
    level : float, default 0.95
        Pointwise band of each order statistic.
    max_points : int, default 5000

    Returns
    -------
    matplotlib.axes.Axes
        Points (a line labelled "residuals"), the band (filled) and the diagonal.
    """
    data = qq_data(_as_residuals(residuals, n_cells), level, max_points)
    ax = get_axes(ax, (4.5, 4.5))
    ax.fill_between(data["theoretical"], data["low"], data["high"], color="C0", alpha=0.25,
                    label=f"{level:.0%} band")
    ax.plot(data["theoretical"], data["sample"], ".", ms=2, color="k", label="residuals")
    lim = [data["theoretical"].min(), data["theoretical"].max()]
    ax.plot(lim, lim, color="C3", lw=0.8, ls="--")
    ax.set_xlabel("N(0, 1) quantile")
    ax.set_ylabel("residual quantile")
    ax.legend(loc="upper left", fontsize="small")
    return ax
