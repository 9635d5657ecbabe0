"""Starting values from one streamed pass (:mod:`scribe.counts_stream`).

* Non-mixtures: the method of moments of :mod:`scribe.initial_values` on the streamed
  per-gene sums of ``1[x > 0]``, ``x``, ``x^2``, ``x^3`` and the library sizes of all
  cells: no further pass over the counts.
* Mixtures: k-means and the per-component moments on the seeded cell sample the pass
  kept (at most :data:`scribe.counts_stream.SAMPLE_CELLS` cells; all cells when there
  are fewer). Per-cell capture starts of cells outside the sample follow the sample's
  ratio of capture to library size (``nu_c`` is proportional to ``L_c`` within a
  component), so they cost ``O(C)``.
"""

from __future__ import annotations

import numpy as np

from scribe.counts import LARGE_COUNT
from scribe.counts_stream import StreamedCounts
from scribe.initial_values import _Moments, guess_from_moments, initial_canonical
from scribe.initial_widths import CountTally, cell_log_variances
from scribe.likelihood import CAPTURE, Likelihood

#: The clip of ``nu`` in :func:`scribe.initial_values._capture_guess`.
_NU_RANGE = (1e-4, 0.98)


def initial_from_stream(streamed: StreamedCounts, likelihood: Likelihood,
                        n_components: int | None, component_specific: bool, seed: int,
                        mrna_per_cell: float | None = None) -> dict[str, np.ndarray]:
    """Starting canonical parameters, as :func:`scribe.initial_values.initial_canonical`.

    Parameters
    ----------
    streamed : StreamedCounts
    likelihood : Likelihood
    n_components : int or None
    component_specific : bool
    seed : int
        Seeds k-means (the sample was seeded by the pass).
    mrna_per_cell : float, optional

    Returns
    -------
    dict
        As :func:`~scribe.initial_values.initial_canonical`; capture latents ``(C,)``.
    """
    library = streamed.cell_totals
    if n_components is None:
        moments = _Moments.from_sums(streamed.n_cells, streamed.gene_nonzero,
                                     streamed.gene_totals, streamed.gene_squares,
                                     streamed.gene_cubes)
        return guess_from_moments(
            moments, library, None, likelihood, None, component_specific, mrna_per_cell,
            tally=lambda: CountTally.from_histogram(streamed.pairs, LARGE_COUNT,
                                                     streamed.large))
    guess = initial_canonical(streamed.sample, likelihood, n_components, component_specific,
                              seed, mrna_per_cell=mrna_per_cell)
    if streamed.sample.shape[0] == streamed.n_cells:
        return guess
    for latent in likelihood.latents:
        if latent.kind == CAPTURE:
            guess[latent.name] = _extend_capture(guess[latent.name], streamed)
    if "_log_var" in guess:
        guess["_log_var"] = _extend_widths(guess, likelihood, streamed)
    return guess


def _extend_capture(sample_nu: np.ndarray, streamed: StreamedCounts) -> np.ndarray:
    """``nu`` ``(C,)`` for all cells from the sample's ``nu`` ``(S,)``: the median ratio
    ``nu / L`` of the sample's unclipped cells times each cell's ``L``; sampled cells keep
    their own value."""
    library = np.maximum(streamed.cell_totals, 1.0)
    sample_library = library[streamed.sample_cells]
    inside = (sample_nu > _NU_RANGE[0]) & (sample_nu < _NU_RANGE[1])
    ratios = sample_nu / sample_library
    ratio = float(np.median(ratios[inside] if inside.any() else ratios))
    nu = np.clip(ratio * library, *_NU_RANGE)
    nu[streamed.sample_cells] = sample_nu
    return nu


def _extend_widths(guess: dict, likelihood: Likelihood, streamed: StreamedCounts) -> dict:
    """The starting widths' per-cell variances ``(C,)`` for all cells, from each cell's
    extended ``nu`` (``odds(p_hat_c) = nu_c odds(p)``). Cells outside the sample have no
    k-means group, so ``R_c`` is the groups' mean. A gene's information grows with the
    cells, so the sample's gene variances are scaled by ``S / C``."""
    widths = dict(guess["_log_var"])
    widths["r"] = np.asarray(widths["r"]) * (streamed.sample_cells.size / streamed.n_cells)
    p = float(np.median(np.asarray(guess["p"], np.float64)))
    total_r = float(np.mean(np.asarray(guess["r"], np.float64).reshape(
        -1, streamed.n_genes).sum(axis=1)))
    library = streamed.cell_totals
    for latent in likelihood.latents:
        if latent.kind == CAPTURE and latent.name in widths:
            odds_cell = np.asarray(guess[latent.name]) * p / (1 - p)
            full = cell_log_variances(library, np.full_like(library, total_r), odds_cell)
            full[streamed.sample_cells] = widths[latent.name]
            widths[latent.name] = full
    return widths
