"""``scribe.load``: results saved with ``ScribeSVIResults.save``."""

from __future__ import annotations

import os

from scribe.svi import idata
from scribe.svi.results import ScribeSVIResults


def load(path: str | os.PathLike) -> ScribeSVIResults:
    """Load results written by :meth:`ScribeSVIResults.save`.

    Parameters
    ----------
    path : str or path-like
        A netCDF-4 file (or a ``.zarr`` store).

    Returns
    -------
    ScribeSVIResults
        Equal to the saved results: parameters, loss history, samples, log-likelihood,
        observed counts, configuration, priors, ``obs``, ``var`` and ``uns``.

    Raises
    ------
    ValueError
        The file does not hold scribe results, or its model type or parameterization is
        not provided by an installed plugin.
    """
    return ScribeSVIResults._from_container(idata.load(path))
