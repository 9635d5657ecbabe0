"""The loss trace of a fit, with where (and whether) it converged."""

from __future__ import annotations

import numpy as np


def window_medians(losses: np.ndarray, window: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Median loss of each full window of steps (the quantity the stopping rule reads).

    Parameters
    ----------
    losses : numpy.ndarray, shape (n_steps,)
        Non-finite values (skipped steps) are ignored.
    window : int, default 100

    Returns
    -------
    steps : numpy.ndarray, shape (n_steps // window,)
        The last step (1-based) of each window.
    medians : numpy.ndarray, shape (n_steps // window,)
    """
    losses = np.asarray(losses, dtype=float)
    n_windows = losses.size // window
    blocks = losses[: n_windows * window].reshape(n_windows, window)
    return (np.arange(1, n_windows + 1) * window,
            np.nanmedian(np.where(np.isfinite(blocks), blocks, np.nan), axis=1))


def loss(results, ax=None, *, window: int = 100):
    """Plot the loss per step, its window medians and the convergence point.

    Parameters
    ----------
    results : ScribeSVIResults or array of shape (n_steps,)
        A fit (its ``loss_history`` and ``converged``) or a loss trace.
    ax : matplotlib Axes, optional
    window : int, default 100
        Steps per median (the convergence rule's window).

    Returns
    -------
    matplotlib.axes.Axes
        Lines: the raw loss (``label="loss"``) and the window medians (``"median"``); a
        vertical line at the last step, labelled "converged at step N" or "stopped at N
        steps (not converged)".
    """
    from scribe.pl._axes import get_axes

    if hasattr(results, "loss_history"):
        losses, converged = np.asarray(results.loss_history, float), results.converged
    else:
        losses, converged = np.asarray(results, float), None
    if losses.ndim != 1 or losses.size == 0:
        raise ValueError(f"the loss trace must be a non-empty 1-D array, got shape "
                         f"{losses.shape}")
    ax = get_axes(ax)
    steps = np.arange(1, losses.size + 1)
    ax.plot(steps, losses, lw=0.5, alpha=0.5, color="0.5", label="loss")
    median_steps, medians = window_medians(losses, window)
    ax.plot(median_steps, medians, lw=1.5, color="C0", label="median")
    finite = losses[np.isfinite(losses)]
    if finite.size and finite.min() > 0:
        ax.set_yscale("log")
    if finite.size > 20:
        # The first steps' loss can be orders of magnitude above the rest: show from the
        # loss after 5 % of the steps down to the minimum.
        top = finite[int(0.05 * finite.size):].max()
        bottom = finite.min()
        pad = 0.05 * (top - bottom) if ax.get_yscale() == "linear" else 0
        ax.set_ylim(bottom - pad, top + pad if pad else top * 1.02)
    label = {True: f"converged at step {losses.size}",
             False: f"stopped at {losses.size} steps (not converged)",
             None: f"{losses.size} steps"}[converged]
    ax.axvline(losses.size, color="C3" if converged is False else "C2", ls="--", label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (negative ELBO)")
    ax.legend(loc="upper right", fontsize="small")
    return ax
