"""Data-informed starting values of the canonical parameters.

Method of moments on the counts: with a shared ``p``, ``var/mean = 1/(1-p)`` per gene,
so ``p`` is the median of ``1 - mean/var`` over expressed genes and ``r = mean (1-p)/p``.
Capture models use that the per-cell odds of ``p_hat`` are proportional to library size,
``odds(p_hat_c) = kappa L_c``, with ``kappa`` from factorial moments pooled over all genes,
and place ``p`` on the ridge ``odds(p_hat_c) = nu_c odds(p)`` by the capture anchor when
one is given (``nu_c = L_c / M_0``). Zero-inflation gates take the excess of observed zeros
over the NB prediction. Mixtures split cells by k-means on log-normalised counts so that
components start apart. Every step is vectorised over cells and genes and works on the
sparse matrix (moments of non-zeros; k-means distances by sparse products).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from scribe.anchoring import anchor_capture
from scribe.data import chunks
from scribe.initial_widths import (
    CountTally,
    entry_rows,
    gene_log_variances,
    laplace_log_variances,
)
from scribe.likelihood import CAPTURE, PROBABILITY, Likelihood

_P_RANGE = (0.02, 0.98)
_R_FLOOR = 1e-3

#: Without an anchor, capture models start with this capture for the median cell.
UNANCHORED_MEDIAN_CAPTURE = 0.5


def _entry_cells(indptr: np.ndarray, part: slice) -> np.ndarray:
    """Row of each stored entry in ``part`` (``indptr`` int64)."""
    return entry_rows(indptr, part)


class _Moments:
    """Per-group, per-gene sums of ``1[x > 0]``, ``x``, ``x^2``, ``x^3``, ``(K, G)`` each,
    accumulated in float64 over chunks of non-zeros (no copy of the matrix)."""

    def __init__(self, counts: sp.csr_matrix | None, labels: np.ndarray | None,
                 n_groups: int):
        if counts is None:   # filled by from_sums
            return
        n_cells, n_genes = counts.shape
        labels = np.zeros(n_cells, np.int64) if labels is None else labels.astype(np.int64)
        self.sizes = np.bincount(labels, minlength=n_groups).astype(np.float64)
        sums = np.zeros((4, n_groups * n_genes))
        indptr = counts.indptr.astype(np.int64)
        for part in chunks(counts.nnz):
            x = counts.data[part].astype(np.float64)
            key = labels[_entry_cells(indptr, part)] * n_genes + counts.indices[part]
            for power, weights in enumerate((None, x, x * x, x * x * x)):
                sums[power] += np.bincount(key, weights, minlength=n_groups * n_genes)
        self.sums = sums.reshape(4, n_groups, n_genes)

    @classmethod
    def from_sums(cls, n_cells: int, nonzero: np.ndarray, s1: np.ndarray, s2: np.ndarray,
                  s3: np.ndarray) -> _Moments:
        """One group of all cells from per-gene sums ``(G,)`` computed elsewhere (e.g. by
        :func:`scribe.counts_stream.stream_counts`)."""
        moments = cls(None, None, 1)
        moments.sizes = np.array([float(n_cells)])
        moments.sums = np.stack([nonzero, s1, s2, s3]).astype(np.float64)[:, None, :]
        return moments

    def group(self, k: int) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(n, nnz, s1, s2, s3)`` of group ``k``; all cells when the group is empty."""
        if self.sizes[k] == 0:
            return (float(self.sizes.sum()), *self.sums.sum(axis=1))
        return (float(self.sizes[k]), *self.sums[:, k])


def _library(counts: sp.csr_matrix) -> np.ndarray:
    """UMI total per cell ``(C,)`` in float64, by chunks."""
    indptr = counts.indptr.astype(np.int64)
    library = np.zeros(counts.shape[0])
    for part in chunks(counts.nnz):
        library += np.bincount(_entry_cells(indptr, part), counts.data[part].astype(np.float64),
                               minlength=counts.shape[0])
    return library


def _ratio_estimates(n: float, s1: np.ndarray, s2: np.ndarray, s3: np.ndarray,
                     zero_inflated: bool) -> np.ndarray:
    """Per-gene estimates of ``p`` for expressed, over-dispersed genes, from power sums.

    NB: ``var/mean = 1/(1-p)``. Zero inflation adds variance, so zero-inflated
    likelihoods use factorial moments ``F_k = E[x (x-1) ... (x-k+1)]`` instead: the gate
    scales every ``F_k`` alike, and ``F3/F2 - F2/F1 = p/(1-p)`` exactly.
    """
    f1, m2 = s1 / n, s2 / n
    if zero_inflated:
        m3 = s3 / n
        f2 = m2 - f1
        f3 = m3 - 3 * m2 + 2 * f1
        usable = (f1 > 0.05) & (f2 > 0)
        odds = f3[usable] / f2[usable] - f2[usable] / f1[usable]
        odds = odds[odds > 0]
        return odds / (1 + odds)
    var = m2 - f1**2
    expressed = (f1 > 0.05) & (var > f1)
    return 1.0 - f1[expressed] / var[expressed]


def _pooled_p(estimates: list[np.ndarray]) -> float:
    pooled = np.concatenate(estimates) if estimates else np.zeros(0)
    p = float(np.median(pooled)) if pooled.size >= 3 else 0.5
    return float(np.clip(p, *_P_RANGE))


def _zero_excess(n: float, nnz: np.ndarray, nb_zero: np.ndarray) -> np.ndarray:
    observed = 1.0 - nnz / n
    return np.clip((observed - nb_zero) / np.maximum(1 - nb_zero, 1e-6), 0.01, 0.9)


#: k-means restarts: k-means++ can seed a centre on an outlier cell, which then stays a
#: singleton while two real groups share a centre (nbvcp_mix, 20,000 x 2,000: ARI 0.53
#: from seed 0, 1.0 from seeds 1 and 2); the restart with the lowest inertia is kept.
KMEANS_RESTARTS = 4


def kmeans(points, k: int, seed: int, n_iter: int = 30,
           n_init: int = KMEANS_RESTARTS) -> np.ndarray:
    """Cluster labels ``(N,)`` by Lloyd's algorithm with k-means++ seeding, the best
    (lowest within-cluster sum of squares) of ``n_init`` restarts.

    ``points`` ``(N, D)`` may be dense or scipy sparse: distances only need ``|x|^2``
    and the products ``x . centre``; centre sums are accumulated over chunks of
    non-zeros, so a CSR is never copied (centres take its dtype). Restart ``i`` draws
    its seeding from ``seed + i``, so ``n_init=1`` is the single run from ``seed``.
    """
    points = sp.csr_matrix(points)
    n_points = points.shape[0]
    indptr = points.indptr.astype(np.int64)
    sq_norms = np.zeros(n_points)
    for part in chunks(points.nnz):
        x = points.data[part].astype(np.float64)
        sq_norms += np.bincount(_entry_cells(indptr, part), x * x, minlength=n_points)
    best, best_inertia = None, np.inf
    for restart in range(n_init):
        labels, inertia = _lloyd(points, sq_norms, k, np.random.default_rng(seed + restart),
                                 n_iter)
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    return best


def _lloyd(points: sp.csr_matrix, sq_norms: np.ndarray, k: int, rng, n_iter: int):
    """One k-means++ seeding and Lloyd iterations: labels and their inertia."""
    n_points, n_dims = points.shape
    indptr = points.indptr.astype(np.int64)

    def sq_distances(centres: np.ndarray) -> np.ndarray:
        products = points @ centres.T.astype(points.dtype)
        return sq_norms[:, None] - 2 * products + np.sum(centres**2, axis=1)[None, :]

    centres = points[[rng.integers(n_points)]].toarray().astype(np.float64)
    for _ in range(1, k):
        dist = np.maximum(np.min(sq_distances(centres), axis=1), 0)
        prob = dist / dist.sum() if dist.sum() > 0 else None
        centres = np.vstack([centres, points[[rng.choice(n_points, p=prob)]].toarray()])
    labels = np.full(n_points, -1)
    for _ in range(n_iter):
        distances = sq_distances(centres)
        new_labels = np.argmin(distances, axis=1)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        sizes = np.bincount(labels, minlength=k).astype(np.float64)
        sums = np.zeros(k * n_dims)
        for part in chunks(points.nnz):
            key = labels[_entry_cells(indptr, part)] * n_dims + points.indices[part]
            sums += np.bincount(key, points.data[part].astype(np.float64), minlength=sums.size)
        sums = sums.reshape(k, n_dims)
        filled = sizes > 0  # an empty cluster keeps its centre
        centres[filled] = sums[filled] / sizes[filled, None]
    inertia = float(np.sum(np.maximum(np.min(sq_distances(centres), axis=1), 0)))
    return labels, inertia


def _log_normalised(counts: sp.csr_matrix, library: np.ndarray) -> sp.csr_matrix:
    """``log1p(x_cg median(L) / L_c)`` in float32, sharing the indices of ``counts``."""
    scale = np.median(library) / np.maximum(library, 1)
    indptr = counts.indptr.astype(np.int64)
    data = np.empty(counts.nnz, np.float32)
    for part in chunks(counts.nnz):
        data[part] = np.log1p(scale[_entry_cells(indptr, part)] * counts.data[part])
    return sp.csr_matrix((data, counts.indices, counts.indptr), shape=counts.shape,
                         copy=False)


def initial_canonical(
    counts: np.ndarray, likelihood: Likelihood, n_components: int | None,
    component_specific: bool, seed: int, mrna_per_cell: float | None = None,
) -> dict[str, np.ndarray]:
    """Starting canonical parameters shaped as the model expects.

    Parameters
    ----------
    counts : numpy.ndarray or scipy.sparse matrix, shape (C, G)
    likelihood : Likelihood
    n_components : int or None
        None for a non-mixture.
    component_specific : bool
        Whether ``p`` has one value per component.
    seed : int
    mrna_per_cell : float, optional
        The capture anchor ``M_0`` (molecules per cell); capture models then start at
        ``nu_c = L_c / M_0``.

    Returns
    -------
    dict
        ``p`` (``()`` or ``(K,)``), ``r`` (``(G,)`` or ``(K, G)``), each probability
        latent (like ``r``), each capture latent ``(C,)``, and ``mixing_weights`` ``(K,)``.
    """
    # No copy for CSR input: moments are accumulated in float64 over chunks.
    counts = counts if sp.isspmatrix_csr(counts) else sp.csr_matrix(counts)
    library = _library(counts)
    if n_components is None:
        labels, n_groups = None, 1
    else:
        labels = kmeans(_log_normalised(counts, library), n_components, seed)
        n_groups = n_components
    return guess_from_moments(_Moments(counts, labels, n_groups), library, labels,
                              likelihood, n_components, component_specific, mrna_per_cell,
                              tally=lambda: CountTally.from_csr(
                                  counts, labels, n_groups * counts.shape[1]))


def guess_from_moments(
    moments: _Moments, library: np.ndarray, labels: np.ndarray | None,
    likelihood: Likelihood, n_components: int | None, component_specific: bool,
    mrna_per_cell: float | None = None, tally: Callable[[], CountTally] | None = None,
) -> dict[str, np.ndarray]:
    """:func:`initial_canonical` from per-group moments, library sizes ``(C,)`` and the
    cells' group labels ``(C,)`` (None: one group).

    ``tally`` builds the non-zeros' (group, gene, count) tally for the starting widths
    (:mod:`scribe.initial_widths`: Laplace widths of ``r`` for the likelihoods without
    zero inflation, and of the capture for capture models); without it only capture
    models refuse.
    """
    n_cells = library.shape[0]
    kinds = {lat.name: lat.kind for lat in likelihood.latents}
    has_capture = CAPTURE in kinds.values()
    if labels is None:
        groups = [np.arange(n_cells)]
    else:
        groups = [np.flatnonzero(labels == k) for k in range(n_components)]
        groups = [g if g.size else np.arange(n_cells) for g in groups]

    zero_inflated = PROBABILITY in kinds.values()
    if has_capture:
        def retained(r, gate):
            params = {"p": 0.5, "r": r, **{n: gate for n, k in kinds.items() if k == PROBABILITY}}
            return float(likelihood.retained_fraction(params))

        guess = _capture_guess(moments, library, groups, zero_inflated, component_specific,
                               mrna_per_cell, retained)
        if tally is None:
            raise ValueError("capture models need the count tally for their starting widths")
        widths = laplace_log_variances(tally(), guess["r"], guess.pop("_odds_cell"), library,
                                       labels)
    else:
        guess = _plain_guess(moments, groups, zero_inflated, component_specific)
        # nbdm(_mix): r starts at its Laplace width too. Zero-inflated types keep the
        # fixed start: their width at fixed gate (initial_widths.zero_inflated_log_variances)
        # was measured and not adopted (zinb_mix r coverage +1.6 points, zinb -3 points,
        # steps unchanged; docs/benchmarks.md).
        widths = ({"r": gene_log_variances(tally(), guess["r"])}
                  if tally is not None and not zero_inflated else None)
    if n_components is not None:
        sizes = np.array([len(g) for g in groups], dtype=float)
        weights = np.maximum(sizes / sizes.sum(), 0.01)
        guess["mixing_weights"] = weights / weights.sum()
    gene_latent = guess.pop("_gate")
    for name, kind in kinds.items():
        if kind == PROBABILITY:
            guess[name] = gene_latent
        elif kind == CAPTURE:
            guess[name] = guess["_capture"]
    guess.pop("_capture", None)
    if has_capture:
        # Laplace widths of the gene and cell factors (scribe.initial_widths).
        guess["_log_var"] = {"r": widths["r"], **{n: widths["capture"]
                                                for n, k in kinds.items() if k == CAPTURE}}
    elif widths is not None:
        guess["_log_var"] = widths
    return guess


def _stack(values: list, mixture: bool) -> np.ndarray:
    return np.stack(values) if mixture else values[0]


def _plain_guess(moments: _Moments, groups: list[np.ndarray], zero_inflated: bool,
                 component_specific: bool) -> dict[str, np.ndarray]:
    """``p``, ``r`` and gates of models without capture, by moments within each group."""
    # Moments within groups: between-component differences would inflate the variance.
    stats = [moments.group(k) for k in range(len(groups))]
    per_group = [_ratio_estimates(n, s1, s2, s3, zero_inflated)
                 for n, _, s1, s2, s3 in stats]
    pooled_p = _pooled_p(per_group)
    ps, rs, gates = [], [], []
    for (n, nnz, s1, _, _), estimates in zip(stats, per_group, strict=True):
        p = _pooled_p([estimates]) if component_specific else pooled_p
        r = np.maximum(s1 / n * (1 - p) / p, _R_FLOOR)
        gate = _zero_excess(n, nnz, (1 - p) ** r)
        ps.append(p)
        rs.append(r / (1 - gate) if zero_inflated else r)
        gates.append(gate)
    mixture = len(groups) > 1 or component_specific
    p = np.array(ps) if component_specific else np.float64(pooled_p)
    return {"p": p, "r": _stack(rs, mixture), "_gate": _stack(gates, mixture)}


def _capture_scale(s1: np.ndarray, s2: np.ndarray, s3: np.ndarray, library: np.ndarray,
                   zero_inflated: bool) -> float:
    """``kappa`` in ``odds(p_hat_c) = kappa L_c`` from moments pooled over all genes.

    Under capture, ``x_cg ~ NB(r_g, p_hat_c)`` with ``odds(p_hat_c) = nu_c odds(p)``, and
    ``E[L_c] = odds(p_hat_c) sum_g r_g``, so the per-cell odds are proportional to the
    library size: ``o_c = kappa L_c``. With ``S_k = sum_c L_c^k`` and gene sums of the
    factorial moments ``G_k = sum_c x (x-1)...(x-k+1)``, NB gives ``E[G_1] = r kappa S_1``
    and ``E[G_2] = r (r+1) kappa^2 S_2``, hence ``G_2 - G_1^2 S_2 / S_1^2 ~ r kappa^2 S_2``
    and ``kappa = sum_g (G_2 - G_1^2 S_2/S_1^2) / sum_g G_1 S_2 / S_1`` (a ratio of sums
    over genes, so sparse genes add little noise). A gate scales every ``G_k`` by the same
    ``1 - gate``, so zero-inflated models use ``G_3 S_2/(G_2 S_3) - G_2 S_1/(G_1 S_2) =
    kappa`` per gene, averaged with weights ``G_2`` and corrected to first order for the
    noise of ``L_c`` as a proxy of ``o_c`` (checked on simulations: within about 10%).
    """
    g1, m2, m3 = s1, s2, s3      # gene sums of x, x^2, x^3
    s1, s2, s3 = (float(np.sum(library ** k)) for k in (1, 2, 3))
    g2 = m2 - g1
    if zero_inflated:
        g3 = m3 - 3 * m2 + 2 * g1
        used = g2 > 0
        g1, g2, g3 = g1[used], g2[used], g3[used]
        per_gene = g3 * s2 / (g2 * s3) - g2 * s1 / (g1 * s2)
        kappa = np.sum(per_gene * g2) / np.sum(g2) if used.any() else np.nan
        for _ in range(2):
            # L_c is a noisy proxy of o_c / kappa (relative variance v ~ (1 + o_c) / L_c),
            # which biases each gene's estimate by about -v (r_g + 3) to first order.
            v = np.sum(library * (1 + kappa * library)) / s2
            r = np.maximum(g2 * s1 / (g1 * kappa * s2) - 1, 0)
            correction = np.maximum(1 - v * (r + 3), 0.5)
            kappa = np.sum(per_gene * g2 / correction) / np.sum(g2)
        numerator, denominator = kappa, 1.0
    else:
        numerator = np.sum(g2 - g1**2 * s2 / s1**2)
        denominator = np.sum(g1) * s2 / s1
    kappa = numerator / denominator if denominator > 0 else np.nan
    if not np.isfinite(kappa) or kappa <= 0:
        # No detectable over-dispersion: p_hat = 1/2 for the median cell.
        kappa = 1.0 / max(float(np.median(library)), 1.0)
    return float(kappa)


def _capture_guess(moments: _Moments, library: np.ndarray, groups: list[np.ndarray],
                   zero_inflated: bool, component_specific: bool,
                   mrna_per_cell: float | None, retained) -> dict[str, np.ndarray]:
    """``p``, ``r``, gates and capture of capture models.

    Per group, ``o_c = odds(p_hat_c) = kappa L_c`` (:func:`_capture_scale`) and
    ``r_g = G_1 / (kappa S_1)``. Counts fix only ``o_c = nu_c odds(p)``; where along that
    ridge to start: with an anchor, at the anchoring prior's median ``nu_c = L_c / (M_0 f)``
    with ``f = retained(r, gate)`` the likelihood's retained fraction (so ``odds(p)`` is the
    median of ``o_c / nu_c``); without one, at :data:`UNANCHORED_MEDIAN_CAPTURE` for the
    median cell.
    """
    n_cells = library.shape[0]
    library_pos = np.maximum(library, 1.0)
    odds_cell = np.empty(n_cells)
    rs, gates, group_odds_p = [], [], []
    for k, members in enumerate(groups):
        n, nnz, s1, s2, s3 = moments.group(k)
        kappa = _capture_scale(s1, s2, s3, library_pos[members], zero_inflated)
        odds_cell[members] = kappa * library_pos[members]
        r = np.maximum(s1 / n / (kappa * library_pos[members].mean()), _R_FLOOR)
        if zero_inflated:
            # NB zero probability averaged over the cells' p_hat (by quantiles of o_c).
            levels = np.quantile(odds_cell[members], np.linspace(0.01, 0.99, 50))
            nb_zero = np.mean((1 + levels[:, None]) ** -r[None, :], axis=0)
            gate = _zero_excess(n, nnz, nb_zero)
            r = r / (1 - gate)
        else:
            gate = np.zeros_like(r)
        rs.append(r)
        gates.append(gate)
        if mrna_per_cell is not None:
            nu = anchor_capture(library_pos[members] / retained(r, gate), mrna_per_cell)
            group_odds_p.append(float(np.median(odds_cell[members] / nu)))
        else:
            group_odds_p.append(float(np.median(odds_cell[members]) / UNANCHORED_MEDIAN_CAPTURE))
    # The capture is shared by components: one odds(p) for all unless p is per component.
    if component_specific:
        odds_p = np.array(group_odds_p)
        odds_of_cell = np.empty(n_cells)
        for k, members in enumerate(groups):
            odds_of_cell[members] = odds_p[k]
    else:
        sizes = np.array([len(m) for m in groups], float)
        odds_p = float(np.exp(np.sum(sizes * np.log(group_odds_p)) / sizes.sum()))
        odds_of_cell = np.full(n_cells, odds_p)
    # nu <= 1: odds(p) must be at least the largest cell odds (for the bulk of the cells).
    nu = np.clip(odds_cell / odds_of_cell, 1e-4, 0.98)
    mixture = len(groups) > 1 or component_specific
    p = _odds_to_prob(odds_p)
    return {"p": np.asarray(p) if component_specific else np.float64(p),
            "r": _stack(rs, mixture), "_gate": _stack(gates, mixture), "_capture": nu,
            "_odds_cell": nu * odds_of_cell}


def _prob_to_odds(p):
    return np.asarray(p) / (1 - np.asarray(p))


def _odds_to_prob(odds):
    return np.asarray(odds) / (1 + np.asarray(odds))
