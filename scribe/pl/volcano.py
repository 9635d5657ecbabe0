"""The differential-expression volcano: log-fold change against lfsr."""

from __future__ import annotations

import numpy as np

REQUIRED = ("lfc_mean", "lfsr", "is_de")


def volcano_data(table, lfsr_floor: float = 1e-4) -> dict[str, np.ndarray]:
    """What the volcano draws.

    Parameters
    ----------
    table : pandas.DataFrame
        ``results.differential_expression(...)``: columns ``lfc_mean``, ``lfsr``,
        ``is_de``.
    lfsr_floor : float, default 1e-4
        lfsr values below it (0 with finitely many draws) are drawn at the floor.

    Returns
    -------
    dict
        ``x`` (lfc_mean), ``y`` (``-log10(max(lfsr, lfsr_floor))``), ``is_de`` (bool),
        each (G,).
    """
    missing = [c for c in REQUIRED if c not in getattr(table, "columns", ())]
    if missing:
        raise ValueError(f"the DE table lacks column(s) {', '.join(missing)}; expected the "
                         f"DataFrame of results.differential_expression")
    if not 0 < lfsr_floor < 1:
        raise ValueError(f"lfsr_floor must be in (0, 1), got {lfsr_floor!r}")
    lfsr = table["lfsr"].to_numpy(float)
    return {"x": table["lfc_mean"].to_numpy(float),
            "y": -np.log10(np.maximum(lfsr, lfsr_floor)),
            "is_de": table["is_de"].to_numpy(bool)}


def volcano(table, ax=None, *, lfsr_floor: float = 1e-4, label_top: int = 10):
    """Volcano plot of a differential-expression table.

    Parameters
    ----------
    table : pandas.DataFrame
        From ``results.differential_expression``; ``table.attrs["tau"]``, when present,
        is drawn as vertical lines at +/- tau.
    ax : matplotlib Axes, optional
    lfsr_floor : float, default 1e-4
    label_top : int, default 10
        Name this many called genes with the largest |lfc_mean|.

    Returns
    -------
    matplotlib.axes.Axes
        Two scatter collections: genes not called (grey, first) and called (red).
    """
    from scribe.pl._axes import get_axes

    data = volcano_data(table, lfsr_floor)
    ax = get_axes(ax)
    called = data["is_de"]
    ax.scatter(data["x"][~called], data["y"][~called], s=5, color="0.6", label="not called")
    ax.scatter(data["x"][called], data["y"][called], s=7, color="C3",
               label=f"called ({int(called.sum())})")
    tau = table.attrs.get("tau")
    if tau is not None:
        for sign in (-1, 1):
            ax.axvline(sign * tau, color="k", lw=0.6, ls=":")
    top = np.flatnonzero(called)[np.argsort(-np.abs(data["x"][called]))][:label_top]
    for index in top:
        ax.annotate(str(table.index[index]), (data["x"][index], data["y"][index]),
                    fontsize=6)
    ax.set_xlabel("log-fold change (CLR, posterior mean)")
    ax.set_ylabel("-log10 lfsr")
    ax.legend(loc="upper left", fontsize="small")
    return ax
