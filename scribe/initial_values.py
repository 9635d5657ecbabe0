"""Data-informed starting values of the canonical parameters.

Method of moments on the counts: with a shared ``p``, ``var/mean = 1/(1-p)`` per gene,
so ``p`` is the median of ``1 - mean/var`` over expressed genes and ``r = mean (1-p)/p``.
Capture models first divide by library-size factors (the per-cell odds of ``p_hat`` are
proportional to library size). Zero-inflation gates take the excess of observed zeros
over the NB prediction. Mixtures split cells by k-means on log-normalised counts so that
components start apart. Every step is vectorised over cells and genes and works on the
sparse matrix (moments of non-zeros; k-means distances by sparse products).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from scribe.likelihood import CAPTURE, PROBABILITY, Likelihood

_P_RANGE = (0.02, 0.98)
_R_FLOOR = 1e-3


def _column_mean(counts: sp.csr_matrix, power: int = 1) -> np.ndarray:
    """``mean_c x_cg^power`` per gene, ``(G,)``, in float64 without copying the matrix."""
    weights = counts.data.astype(np.float64) ** power
    return np.bincount(counts.indices, weights, minlength=counts.shape[1]) / counts.shape[0]


def _rows(counts: sp.csr_matrix, members: np.ndarray) -> sp.csr_matrix:
    """The rows ``members`` (the matrix itself, not a copy, when that is all of them)."""
    if members.size == counts.shape[0] and np.array_equal(members, np.arange(members.size)):
        return counts
    return counts[members]


def _ratio_estimates(counts: sp.csr_matrix, zero_inflated: bool) -> np.ndarray:
    """Per-gene estimates of ``p`` for expressed, over-dispersed genes.

    NB: ``var/mean = 1/(1-p)``. Zero inflation adds variance, so zero-inflated
    likelihoods use factorial moments ``F_k = E[x (x-1) ... (x-k+1)]`` instead: the gate
    scales every ``F_k`` alike, and ``F3/F2 - F2/F1 = p/(1-p)`` exactly.
    """
    f1, m2 = _column_mean(counts), _column_mean(counts, 2)
    if zero_inflated:
        m3 = _column_mean(counts, 3)
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


def _zero_excess(counts: sp.csr_matrix, nb_zero: np.ndarray) -> np.ndarray:
    observed = 1.0 - counts.getnnz(axis=0) / counts.shape[0]
    return np.clip((observed - nb_zero) / np.maximum(1 - nb_zero, 1e-6), 0.01, 0.9)


def kmeans(points, k: int, seed: int, n_iter: int = 30) -> np.ndarray:
    """Cluster labels ``(N,)`` by Lloyd's algorithm with k-means++ seeding.

    ``points`` ``(N, D)`` may be dense or scipy sparse: distances only need ``|x|^2``
    and the products ``x . centre``.
    """
    points = sp.csr_matrix(points)
    n_points = points.shape[0]
    rng = np.random.default_rng(seed)
    sq_norms = np.asarray(points.multiply(points).sum(axis=1)).ravel()

    def sq_distances(centres: np.ndarray) -> np.ndarray:
        return (sq_norms[:, None] - 2 * (points @ centres.T)
                + np.sum(centres**2, axis=1)[None, :])

    centres = points[[rng.integers(n_points)]].toarray()
    for _ in range(1, k):
        dist = np.maximum(np.min(sq_distances(centres), axis=1), 0)
        prob = dist / dist.sum() if dist.sum() > 0 else None
        centres = np.vstack([centres, points[[rng.choice(n_points, p=prob)]].toarray()])
    labels = np.full(n_points, -1)
    for _ in range(n_iter):
        new_labels = np.argmin(sq_distances(centres), axis=1)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        membership = sp.csr_matrix((np.ones(n_points), (labels, np.arange(n_points))),
                                   shape=(k, n_points))
        sizes = np.asarray(membership.sum(axis=1)).ravel()
        sums = np.asarray((membership @ points).todense())
        filled = sizes > 0  # an empty cluster keeps its centre
        centres[filled] = sums[filled] / sizes[filled, None]
    return labels


def initial_canonical(
    counts: np.ndarray, likelihood: Likelihood, n_components: int | None,
    component_specific: bool, seed: int,
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

    Returns
    -------
    dict
        ``p`` (``()`` or ``(K,)``), ``r`` (``(G,)`` or ``(K, G)``), each probability
        latent (like ``r``), each capture latent ``(C,)``, and ``mixing_weights`` ``(K,)``.
    """
    counts = sp.csr_matrix(counts)  # no copy for CSR input; moments are taken in float64
    n_cells = counts.shape[0]
    kinds = {lat.name: lat.kind for lat in likelihood.latents}
    has_capture = CAPTURE in kinds.values()
    library = np.asarray(counts.sum(axis=1)).ravel()

    if n_components is None:
        groups = [np.arange(n_cells)]
    else:
        scale = np.median(library) / np.maximum(library, 1)
        log_normalised = sp.diags(scale) @ counts
        log_normalised.data = np.log1p(log_normalised.data)
        labels = kmeans(log_normalised, n_components, seed)
        groups = [np.flatnonzero(labels == k) for k in range(n_components)]
        groups = [g if g.size else np.arange(n_cells) for g in groups]

    # Moments within groups: between-component differences would inflate the variance.
    # Capture models divide by library-size factors relative to the group's mean library.
    size_factors = np.ones(n_cells)
    if has_capture:
        for members in groups:
            size_factors[members] = library[members] / max(library[members].mean(), 1e-12)
        size_factors = np.maximum(size_factors, 1e-2)
    normalised = (sp.csr_matrix(sp.diags(1.0 / size_factors) @ counts) if has_capture
                  else counts)
    zero_inflated = PROBABILITY in kinds.values()
    per_group = [_ratio_estimates(_rows(normalised, members), zero_inflated)
                 for members in groups]
    pooled_p = _pooled_p(per_group)
    ps, rs, gates = [], [], []
    for members, estimates in zip(groups, per_group, strict=True):
        p = _pooled_p([estimates]) if component_specific else pooled_p
        r = np.maximum(_column_mean(_rows(normalised, members)) * (1 - p) / p, _R_FLOOR)
        gate = _zero_excess(_rows(counts, members), (1 - p) ** r)
        ps.append(p)
        rs.append(r / (1 - gate) if PROBABILITY in kinds.values() else r)
        gates.append(gate)

    guess: dict[str, np.ndarray] = {}
    if n_components is None:
        guess["p"], guess["r"] = np.float64(ps[0]), rs[0]
        gene_latent = gates[0]
    else:
        guess["p"] = np.array(ps) if component_specific else np.float64(pooled_p)
        guess["r"] = np.stack(rs)
        gene_latent = np.stack(gates)
        sizes = np.array([len(g) for g in groups], dtype=float)
        weights = np.maximum(sizes / sizes.sum(), 0.01)
        guess["mixing_weights"] = weights / weights.sum()

    for name, kind in kinds.items():
        if kind == PROBABILITY:
            guess[name] = gene_latent
        elif kind == CAPTURE:
            # Odds of p_hat scale with library size: odds(p_hat_c) = nu_c * odds(p). Only
            # p_hat is identified; along the p-nu ridge, start where the median cell has
            # nu = 1/2, the centre of the Beta(1, 1) prior, which is close to where the
            # ELBO settles (anchoring on the largest library starts far up the ridge).
            odds_p = np.max(guess["p"]) / (1 - np.max(guess["p"]))
            cell_odds = odds_p * size_factors
            model_odds = np.median(cell_odds) / 0.5
            guess["p"] = _odds_to_prob(_prob_to_odds(guess["p"]) * model_odds / odds_p)
            guess[name] = np.clip(cell_odds / model_odds, 1e-3, 0.98)
    return guess


def _prob_to_odds(p):
    return np.asarray(p) / (1 - np.asarray(p))


def _odds_to_prob(odds):
    return np.asarray(odds) / (1 + np.asarray(odds))
