"""Initial widths of the per-gene and per-cell variational factors, from the data.

A factor that starts far narrower (or wider) than the posterior costs thousands of Adam
steps to reach its width: Adam moves a log-scale by about the learning rate per step,
and from the fixed-concentration start the per-cell factors of a capture model had to
widen 2.6x (concentration 1,000 to ~150) and the gene factors 4x (measured on nbvcp,
20,000 x 2,000: 8,300 steps from the fixed-concentration start, 1,300 from the fitted
widths, 1,300 from these). So capture models start each gene and cell factor at its
Laplace width: the inverse of the observed information at the starting values, the width
a mean-field factor has at the optimum (its variance is the inverse diagonal precision
there).

With ``x_cg ~ NB(r_g, p_hat_c)`` (NumPyro's convention, mean ``r o_c`` with ``o_c =
odds(p_hat_c)``):

- ``eta_c = log o_c``: the cell's log-likelihood is ``L_c log p_hat_c + R_c log(1 -
  p_hat_c)`` plus terms free of ``eta_c`` (``R_c = sum_g r_g``), whose second derivative
  in ``eta_c`` is ``-(L_c + R_c) p_hat_c (1 - p_hat_c)``. At fixed ``p``, ``log nu_c =
  eta_c - log odds(p)``, so ``Var(log nu_c) = 1 / ((L_c + R_c) p_hat_c (1 - p_hat_c))``.
- ``log r_g``: the second derivative of ``sum_c log NB`` is ``r^2 sum_c (psi_1(x_cg + r)
  - psi_1(r))`` plus ``r`` times the score (zero at the optimum); zeros add nothing, so
  it is a sum over the non-zeros. The ``LogNormal(0, 1)`` prior adds 1.

Each sampled site then gets the variance of its unconstrained coordinate by the delta
method through the parameterization's ``from_canonical`` (numerically), and the
concentration of its family with that variance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.special import polygamma

from scribe.data import chunks
from scribe.families import BETA, BETA_PRIME, LOG_NORMAL, LOGIT_NORMAL, NORMAL, Family

#: Concentrations (pseudo-observations) are kept in this range.
CONCENTRATION_RANGE = (2.0, 1e6)
_STEP = 1e-2        # log-scale step of the numerical derivative through from_canonical
_COUNT_GRID = 64    # counts below this are tallied per (gene, count) pair
_GRID_CELLS = 4_000_000   # at most this many (gene, count) cells in the tally


def entry_rows(indptr: np.ndarray, part: slice) -> np.ndarray:
    """Row of each stored entry in ``part`` of a CSR (``indptr`` int64), in O(entries +
    rows) (a search per entry cost ~0.25 s per 2 M entries)."""
    if part.stop <= part.start:
        return np.zeros(0, np.int64)
    first, last = np.searchsorted(indptr, [part.start, part.stop - 1], side="right") - 1
    bounds = np.clip(indptr[first:last + 2], part.start, part.stop)
    return np.repeat(np.arange(first, last + 1), np.diff(bounds))


@dataclass
class CountTally:
    """Non-zero counts tallied per (row, count) pair, for the gene information.

    ``rows`` are ``group * G + gene`` (one group outside mixtures). Counts below
    ``pairs.shape[1]`` are tallied in ``pairs`` ``(K G, grid)``; larger ones are kept one
    by one as ``big_rows``/``big_values`` ``(M,)``.
    """

    pairs: np.ndarray
    big_rows: np.ndarray
    big_values: np.ndarray

    @classmethod
    def from_csr(cls, counts: sp.csr_matrix, labels: np.ndarray | None,
                 n_rows: int) -> CountTally:
        """Tally a CSR ``(C, G)``; ``labels`` ``(C,)`` are the cells' groups (or None)."""
        n_cells, n_genes = counts.shape
        groups = (np.zeros(n_cells, np.int64) if labels is None
                  else np.asarray(labels, np.int64))
        indptr = counts.indptr.astype(np.int64)
        # Most counts are small: tally (gene, count) pairs below `grid` and evaluate psi_1
        # once per pair (scipy's psi_1 costs ~0.5 us per element); larger counts one by one.
        grid = int(min(_COUNT_GRID, max(1, _GRID_CELLS // max(n_rows, 1))))
        pairs = np.zeros(n_rows * grid)
        big_rows, big_values = [], []
        for part in chunks(counts.nnz):
            key = groups[entry_rows(indptr, part)] * n_genes + counts.indices[part]
            x = counts.data[part].astype(np.float64)
            small = x < grid
            pairs += np.bincount(key[small] * grid + x[small].astype(np.int64),
                                 minlength=pairs.size)
            big_rows.append(key[~small])
            big_values.append(x[~small])
        return cls(pairs.reshape(n_rows, grid), np.concatenate(big_rows or [np.zeros(0, int)]),
                   np.concatenate(big_values or [np.zeros(0)]))

    @classmethod
    def from_histogram(cls, pairs: np.ndarray, top: int, large: dict) -> CountTally:
        """From one pass's statistics: ``pairs`` ``(G * (top + 1),)`` tallies ``(gene,
        min(x, top))`` and ``large`` holds every entry above ``top`` (``values``,
        ``genes``)."""
        width = top + 1
        tally = pairs.reshape(-1, width).astype(np.float64)
        big_rows = np.asarray(large["genes"], np.int64)
        big_values = np.asarray(large["values"], np.float64)
        # The last column counts x >= top; keep only x == top there.
        tally[:, top] -= np.bincount(big_rows, minlength=tally.shape[0])
        return cls(tally, big_rows, big_values)


def laplace_log_variances(tally: CountTally, r: np.ndarray, odds_cell: np.ndarray,
                          library: np.ndarray, labels: np.ndarray | None) -> dict:
    """Laplace variances of ``log r`` and of each cell's ``log nu`` at the start.

    Parameters
    ----------
    tally : CountTally
        The non-zeros per (group, gene) and count.
    r : numpy.ndarray, shape (G,) or (K, G)
        Starting ``r`` (per k-means group in a mixture).
    odds_cell : numpy.ndarray, shape (C,)
        Starting ``odds(p_hat_c)``.
    library : numpy.ndarray, shape (C,)
        UMI totals ``L_c``.
    labels : numpy.ndarray of int, shape (C,), or None
        The group of each cell (mixtures); None: one group.

    Returns
    -------
    dict
        ``{"r": (G,) or (K, G), "capture": (C,)}`` variances of the logs.
    """
    r = np.asarray(r, np.float64)
    r_rows = r.reshape(-1, r.shape[-1])
    groups = (np.zeros(library.shape[0], np.int64) if labels is None
              else np.asarray(labels, np.int64))
    total_r = r_rows.sum(axis=1)[groups]                          # R_c, (C,)
    return {"r": gene_log_variances(tally, r),
            "capture": cell_log_variances(library, total_r, odds_cell)}


def zero_inflated_log_variances(tally: CountTally, r: np.ndarray, p, gate: np.ndarray,
                                n_zero: np.ndarray) -> np.ndarray:
    """:func:`gene_log_variances` for a zero-inflated NB at fixed ``p`` and gate.

    A zero has log-likelihood ``log(g + (1 - g) q^r)`` (``q = 1 - p``), whose second
    derivative in ``log r`` is ``z r log q + z (1 - z) (r log q)^2`` with ``z`` the
    probability that the zero is an NB zero; the first part is ``r`` times the score
    (zero at the optimum), so the zeros *remove* ``n_zero z (1 - z) (r log q)^2`` of
    information. The marginal width is wider still (``r`` and the gate are correlated);
    this is the width at fixed gate.

    Parameters
    ----------
    tally : CountTally
    r, gate, n_zero : numpy.ndarray, shape (G,) or (K, G)
        Starting ``r``, gate and number of zeros per (group, gene).
    p : float or numpy.ndarray, shape () or (K,)
    """
    r = np.asarray(r, np.float64)
    rows = r.reshape(-1, r.shape[-1])
    p = np.asarray(p, np.float64).reshape(-1, 1) * np.ones_like(rows)
    gate = np.asarray(gate, np.float64).reshape(rows.shape)
    log_q = np.log1p(-p)
    nb_zero = np.exp(rows * log_q)
    z = (1 - gate) * nb_zero / np.maximum(gate + (1 - gate) * nb_zero, 1e-300)
    removed = np.asarray(n_zero, np.float64).reshape(rows.shape) * z * (1 - z) * (rows * log_q)**2
    info = 1.0 / gene_log_variances(tally, r).reshape(rows.shape) - 1.0 - removed
    return (1.0 / (np.maximum(info, 0.0) + 1.0)).reshape(r.shape)


def gene_log_variances(tally: CountTally, r: np.ndarray) -> np.ndarray:
    """Laplace variances of ``log r`` at the start, shaped like ``r``.

    At fixed ``p`` (or ``p_hat_c``) the observed information of ``log r_g`` is
    ``r^2 sum_c (psi_1(r) - psi_1(x_cg + r))`` over the non-zeros (zeros are linear in
    ``r``; the score term vanishes at the optimum) plus the ``LogNormal(0, 1)`` prior's
    precision 1. It does not involve ``p``, so models with and without capture share it.

    Parameters
    ----------
    tally : CountTally
        The non-zeros per (group, gene) and count.
    r : numpy.ndarray, shape (G,) or (K, G)
        Starting ``r`` (per k-means group in a mixture).
    """
    r = np.asarray(r, np.float64)
    flat_r = r.reshape(-1, r.shape[-1]).ravel()
    trigamma_r = polygamma(1, flat_r)
    big = tally.big_rows
    info = np.bincount(big, trigamma_r[big] - polygamma(1, tally.big_values + flat_r[big]),
                       minlength=flat_r.size).astype(np.float64)
    values = np.arange(tally.pairs.shape[1], dtype=np.float64)[None, :]
    terms = trigamma_r[:, None] - polygamma(1, values + flat_r[:, None])    # (K G, grid)
    info += np.sum(tally.pairs * terms, axis=1)
    gene_info = flat_r**2 * info + 1.0          # + the LogNormal(0, 1) prior's precision
    return (1.0 / gene_info).reshape(r.shape)


def cell_log_variances(library: np.ndarray, total_r: np.ndarray,
                       odds_cell: np.ndarray) -> np.ndarray:
    """``Var(log nu_c) = 1 / ((L_c + R_c) p_hat_c (1 - p_hat_c))``, shape ``(C,)``."""
    p_hat = odds_cell / (1 + odds_cell)
    return 1.0 / np.maximum((library + total_r) * p_hat * (1 - p_hat), 1e-6)


def _unconstrained(family: Family, value: np.ndarray) -> np.ndarray:
    """The coordinate in which a site's Normal-like width is measured."""
    value = np.asarray(value, np.float64)
    if family.support is BETA.support:
        value = np.clip(value, 1e-6, 1 - 1e-6)
        return np.log(value) - np.log1p(-value)
    if family.support is LOG_NORMAL.support:
        return np.log(np.maximum(value, 1e-30))
    return value


def concentration_for_variance(family: Family, value, variance) -> np.ndarray | None:
    """Concentration whose factor (``family.init_args``) has ``variance`` in the
    unconstrained coordinate (logit / log / identity); None for other families.

    Beta with mean ``m`` and concentration ``k``: ``Var(logit) ~ 1 / ((k + 1) m (1 - m))``;
    BetaPrime likewise for ``m = phi / (1 + phi)`` (``log phi = logit m``); LogNormal,
    LogitNormal and Normal factors get scale ``1 / sqrt(k)``.
    """
    variance = np.maximum(np.asarray(variance, np.float64), 1e-12)
    if family in (BETA, BETA_PRIME):
        value = np.asarray(value, np.float64)
        m = value if family is BETA else value / (1 + value)
        m = np.clip(m, 1e-3, 1 - 1e-3)
        concentration = 1.0 / (variance * m * (1 - m)) - 1.0
    elif family in (LOG_NORMAL, LOGIT_NORMAL, NORMAL):
        concentration = 1.0 / variance
    else:
        return None
    return np.clip(concentration, *CONCENTRATION_RANGE)


def variance_for_concentration(family: Family, value, concentration) -> np.ndarray | None:
    """Inverse of :func:`concentration_for_variance` (None for other families)."""
    concentration = np.asarray(concentration, np.float64)
    if family in (BETA, BETA_PRIME):
        value = np.asarray(value, np.float64)
        m = np.clip(value if family is BETA else value / (1 + value), 1e-3, 1 - 1e-3)
        return 1.0 / ((concentration + 1.0) * m * (1 - m))
    if family in (LOG_NORMAL, LOGIT_NORMAL, NORMAL):
        return 1.0 / concentration
    return None


def site_concentrations(blocks, sites: dict, guess: dict, log_variances: dict,
                        concentrations: dict) -> dict:
    """Per-element concentrations of the sites that the log-variances inform.

    Parameters
    ----------
    blocks : sequence of Block
        The parameterization's blocks (their ``from_canonical`` maps).
    sites : dict
        ``{name: Site}``.
    guess : dict
        Canonical starting values.
    log_variances : dict
        ``{canonical name: variance of its log}``, shaped like the canonical value.
    concentrations : dict
        ``{site name: default concentration}``; returned updated (a copy).

    Returns
    -------
    dict
        ``{site name: concentration}``, arrays shaped like the site's value where the
        site depends on an informed canonical parameter and its family is known.
    """
    def sampled(canonical):
        values = {}
        for block in blocks:
            values.update(block.from_canonical(canonical))
        return {k: np.asarray(v, np.float64) for k, v in values.items()}

    base = sampled(guess)
    variance = {}
    for name, log_var in log_variances.items():
        shifted = dict(guess, **{name: np.asarray(guess[name], np.float64) * np.exp(_STEP)})
        moved = sampled(shifted)
        for site_name, value in base.items():
            site = sites[site_name]
            if site.family.event_ndim or np.shape(moved[site_name]) != np.shape(log_var):
                continue
            slope = (_unconstrained(site.family, moved[site_name])
                     - _unconstrained(site.family, value)) / _STEP
            if np.any(slope != 0):
                variance[site_name] = variance.get(site_name, 0.0) + slope**2 * log_var
    out = dict(concentrations)
    for site_name, var in variance.items():
        site = sites[site_name]
        concentration = concentration_for_variance(site.family, base[site_name], var)
        if concentration is not None:
            out[site_name] = concentration.astype(np.float32)
    return out
