"""Per-cell capture probability against library size (capture models)."""

from __future__ import annotations

import numpy as np

from scribe.pl._axes import counts_matrix, get_axes, row_sums


def capture_data(results, counts=None) -> dict[str, np.ndarray | float | None]:
    """Library sizes and MAP capture probabilities of each cell.

    Returns
    -------
    dict
        ``library_size`` (C,), ``p_capture`` (C,) (MAP, means where a mode is undefined),
        ``mrna_per_cell`` (the anchor ``M_0`` or None).
    """
    if results.capture_anchored is None:
        raise ValueError(f"model type '{results.model_type}' has no per-cell capture; "
                         f"capture_vs_library needs nbvcp, zinbvcp or their _mix")
    estimates = results.get_map(use_mean=True, canonical=True, verbose=False)
    return {"library_size": row_sums(counts_matrix(results, counts)).astype(float),
            "p_capture": np.asarray(estimates["p_capture"], float).ravel(),
            "mrna_per_cell": results.model_config.mrna_total}


def capture_vs_library(results, counts=None, ax=None):
    """Scatter of MAP ``p_capture`` against library size, log-log.

    An anchored fit also shows the anchor's prior median ``L / M_0``; an unanchored one
    is titled as such (its ``p_capture`` scale is set by the prior, not the data).

    Parameters
    ----------
    results : ScribeSVIResults
        A capture model.
    counts : AnnData, array or sparse (C, G), optional
        Default: the fit's stored counts.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    data = capture_data(results, counts)
    ax = get_axes(ax)
    size, capture = data["library_size"], data["p_capture"]
    ax.scatter(size, capture, s=4, alpha=0.5, color="C0", label="cells (MAP)")
    if data["mrna_per_cell"] is not None:
        line = np.geomspace(max(size.min(), 1), size.max(), 50)
        ax.plot(line, line / data["mrna_per_cell"], color="C3", ls="--",
                label=f"anchor L / M0, M0 = {data['mrna_per_cell']:.3g}")
        ax.set_title("capture (anchored)")
    else:
        ax.set_title("capture (not anchored: scale set by the prior)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("library size (UMIs per cell)")
    ax.set_ylabel("p_capture")
    ax.legend(loc="upper left", fontsize="small")
    return ax
