"""``scribe.tl``: analyses on a fit, as functions taking the results first (scanpy style).

Each is also a method of :class:`~scribe.svi.ScribeSVIResults` (``results.<name>(...)``).
"""

from scribe.compare import compare
from scribe.svi.de import differential_expression
from scribe.svi.denoise import denoise_counts
from scribe.svi.gof import goodness_of_fit, quantile_residuals
from scribe.svi.writeback import to_anndata

__all__ = ["compare", "denoise_counts", "differential_expression", "goodness_of_fit",
           "quantile_residuals", "to_anndata"]
