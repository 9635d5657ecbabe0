"""Data-informed starting values of the canonical parameters.

Method of moments on the counts: with a shared ``p``, ``var/mean = 1/(1-p)`` per gene,
so ``p`` is the median of ``1 - mean/var`` over expressed genes and ``r = mean (1-p)/p``.
Capture models first divide by library-size factors (the per-cell odds of ``p_hat`` are
proportional to library size). Zero-inflation gates take the excess of observed zeros
over the NB prediction. Mixtures split cells by k-means on log-normalised counts so that
components start apart. Every step is vectorised over cells and genes.
"""

from __future__ import annotations

import numpy as np

from scribe.likelihood import CAPTURE, PROBABILITY, Likelihood

_P_RANGE = (0.02, 0.98)
_R_FLOOR = 1e-3


def _ratio_estimates(counts: np.ndarray, zero_inflated: bool) -> np.ndarray:
    """Per-gene estimates of ``p`` for expressed, over-dispersed genes.

    NB: ``var/mean = 1/(1-p)``. Zero inflation adds variance, so zero-inflated
    likelihoods use factorial moments ``F_k = E[x (x-1) ... (x-k+1)]`` instead: the gate
    scales every ``F_k`` alike, and ``F3/F2 - F2/F1 = p/(1-p)`` exactly.
    """
    f1 = counts.mean(axis=0)
    if zero_inflated:
        f2 = (counts * (counts - 1)).mean(axis=0)
        f3 = (counts * (counts - 1) * (counts - 2)).mean(axis=0)
        usable = (f1 > 0.05) & (f2 > 0)
        odds = f3[usable] / f2[usable] - f2[usable] / f1[usable]
        odds = odds[odds > 0]
        return odds / (1 + odds)
    var = counts.var(axis=0)
    expressed = (f1 > 0.05) & (var > f1)
    return 1.0 - f1[expressed] / var[expressed]


def _pooled_p(estimates: list[np.ndarray]) -> float:
    pooled = np.concatenate(estimates) if estimates else np.zeros(0)
    p = float(np.median(pooled)) if pooled.size >= 3 else 0.5
    return float(np.clip(p, *_P_RANGE))


def _zero_excess(counts: np.ndarray, nb_zero: np.ndarray) -> np.ndarray:
    observed = (counts == 0).mean(axis=0)
    return np.clip((observed - nb_zero) / np.maximum(1 - nb_zero, 1e-6), 0.01, 0.9)


def kmeans(points: np.ndarray, k: int, seed: int, n_iter: int = 30) -> np.ndarray:
    """Cluster labels ``(N,)`` by Lloyd's algorithm with k-means++ seeding."""
    rng = np.random.default_rng(seed)
    sq_norms = np.einsum("ij,ij->i", points, points)
    centres = [points[rng.integers(len(points))]]
    for _ in range(1, k):
        dist = np.min(sq_norms[:, None] - 2 * points @ np.array(centres).T
                      + np.sum(np.square(centres), axis=1)[None, :], axis=1)
        dist = np.maximum(dist, 0)
        prob = dist / dist.sum() if dist.sum() > 0 else None
        centres.append(points[rng.choice(len(points), p=prob)])
    centres = np.array(centres)
    labels = np.zeros(len(points), dtype=int)
    for _ in range(n_iter):
        dist = sq_norms[:, None] - 2 * points @ centres.T + np.sum(centres**2, axis=1)[None, :]
        new_labels = np.argmin(dist, axis=1)
        if np.array_equal(new_labels, labels) and _ > 0:
            break
        labels = new_labels
        for j in range(k):  # k is the number of components, not cells
            members = labels == j
            if members.any():
                centres[j] = points[members].mean(axis=0)
    return labels


def initial_canonical(
    counts: np.ndarray, likelihood: Likelihood, n_components: int | None,
    component_specific: bool, seed: int,
) -> dict[str, np.ndarray]:
    """Starting canonical parameters shaped as the model expects.

    Parameters
    ----------
    counts : numpy.ndarray, shape (C, G)
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
    counts = np.asarray(counts, dtype=np.float64)
    kinds = {lat.name: lat.kind for lat in likelihood.latents}
    has_capture = CAPTURE in kinds.values()
    library = counts.sum(axis=1)

    if n_components is None:
        groups = [np.arange(len(counts))]
    else:
        log_normalised = np.log1p(counts / np.maximum(library, 1)[:, None] * np.median(library))
        labels = kmeans(log_normalised, n_components, seed)
        groups = [np.flatnonzero(labels == k) for k in range(n_components)]
        groups = [g if g.size else np.arange(len(counts)) for g in groups]

    # Moments within groups: between-component differences would inflate the variance.
    # Capture models divide by library-size factors relative to the group's mean library.
    size_factors = np.ones(len(counts))
    if has_capture:
        for members in groups:
            size_factors[members] = library[members] / max(library[members].mean(), 1e-12)
        size_factors = np.maximum(size_factors, 1e-2)
    normalised = counts / size_factors[:, None]
    zero_inflated = PROBABILITY in kinds.values()
    per_group = [_ratio_estimates(normalised[members], zero_inflated) for members in groups]
    pooled_p = _pooled_p(per_group)
    ps, rs, gates = [], [], []
    for members, estimates in zip(groups, per_group, strict=True):
        p = _pooled_p([estimates]) if component_specific else pooled_p
        r = np.maximum(normalised[members].mean(axis=0) * (1 - p) / p, _R_FLOOR)
        gate = _zero_excess(counts[members], (1 - p) ** r)
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
