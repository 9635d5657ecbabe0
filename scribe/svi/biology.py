"""The analyses of issue 9 as methods of :class:`~scribe.svi.ScribeSVIResults`.

Each method delegates to a small module (and the same function is in ``scribe.tl``):
write-back to AnnData (:mod:`scribe.svi.writeback`), denoised counts
(:mod:`scribe.svi.denoise`), differential expression (:mod:`scribe.svi.de`) and goodness
of fit (:mod:`scribe.svi.gof`). See those modules for the mathematics.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from scribe.svi import de, denoise, gof, writeback


class BiologyMixin:
    """``to_anndata``, ``denoise_counts``, ``differential_expression``,
    ``quantile_residuals`` and ``goodness_of_fit``."""

    def to_anndata(self, adata=None, *, prefix: str = "scribe_", inplace: bool = False,
                   layers=(), layer: str | None = None, n_samples: int = 100,
                   batch_size: int | None = None, rng_key=None):
        """Write the fit's results into an AnnData; see :func:`scribe.tl.to_anndata`."""
        return writeback.to_anndata(self, adata, prefix=prefix, inplace=inplace,
                                    layers=layers, layer=layer, n_samples=n_samples,
                                    batch_size=batch_size, rng_key=rng_key)

    def denoise_counts(self, counts, *, method: str = "mean", n_samples: int | None = None,
                       batch_size: int | None = None, rng_key=None, devices=None,
                       out=None):
        """Molecules behind the counts; see :func:`scribe.tl.denoise_counts`."""
        return denoise.denoise_counts(self, counts, method=method, n_samples=n_samples,
                                      batch_size=batch_size, rng_key=rng_key,
                                      devices=devices, out=out)

    def differential_expression(self, group_a, group_b=None, *, tau: float = math.log(1.5),
                                target_pefp: float = 0.05,
                                n_samples: int | None = de.DEFAULT_N_SAMPLES,
                                rng_key=None, rule: str = "directional") -> pd.DataFrame:
        """Compositional DE of two components, or of this fit against another
        (``results_a.differential_expression(results_b)``); see
        :func:`scribe.tl.differential_expression`."""
        return de.differential_expression(self, group_a, group_b, tau=tau,
                                          target_pefp=target_pefp, n_samples=n_samples,
                                          rng_key=rng_key, rule=rule)

    def quantile_residuals(self, counts, *, n_samples: int | None = None,
                           batch_size: int | None = None, rng_key=None) -> np.ndarray:
        """Randomized quantile residuals ``(C, G)``; see :func:`scribe.tl.quantile_residuals`."""
        return gof.quantile_residuals(self, counts, n_samples=n_samples,
                                      batch_size=batch_size, rng_key=rng_key)

    def goodness_of_fit(self, counts, *, n_samples: int | None = None,
                        batch_size: int | None = None, rng_key=None,
                        alpha: float = 0.05) -> pd.DataFrame:
        """Per-gene residual summaries, elpd and flags; see :func:`scribe.tl.goodness_of_fit`."""
        return gof.goodness_of_fit(self, counts, n_samples=n_samples, batch_size=batch_size,
                                   rng_key=rng_key, alpha=alpha)
