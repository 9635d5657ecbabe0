"""``scribe.pl``: plots of a fit, each returning a matplotlib Axes (or Figure) and taking
``ax=``.

Each plot delegates what it draws to a small pure function (``window_medians``,
``sorted_library_sizes``, ``gene_statistics``, ``qq_data``, ``capture_data``,
``assignment_order``, ``volcano_data``). Figures are made without pyplot, so nothing
is shown or kept open unless you do so.
"""

from scribe.pl.capture import capture_data, capture_vs_library
from scribe.pl.loss import loss, window_medians
from scribe.pl.mixture import assignment_order, assignments, mixture_weights
from scribe.pl.ppc import (
    gene_statistics,
    ppc_genes,
    ppc_library_size,
    predictive_counts,
    quantile_bands,
    sorted_library_sizes,
)
from scribe.pl.residuals import qq_data, residual_qq
from scribe.pl.volcano import volcano, volcano_data

__all__ = [
    "assignment_order",
    "assignments",
    "capture_data",
    "capture_vs_library",
    "gene_statistics",
    "loss",
    "mixture_weights",
    "ppc_genes",
    "ppc_library_size",
    "predictive_counts",
    "qq_data",
    "quantile_bands",
    "residual_qq",
    "sorted_library_sizes",
    "volcano",
    "volcano_data",
    "window_medians",
]
