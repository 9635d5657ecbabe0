"""Write a fit's results into an AnnData, following scverse conventions.

Keys (``prefix`` default ``"scribe_"``; ``<p>`` below):

=================================  ===========================================================
key                                contents
=================================  ===========================================================
``obs["<p>p_capture"]``            MAP capture probability ``nu_c`` (capture models)
``obs["<p>p_hat"]``                MAP ``p_hat_c`` (capture models; ``obsm`` when per component)
``obs["<p>log_likelihood"]``       MAP log-likelihood of the cell's counts (needs counts)
``obs["<p>component"]``            most probable component, categorical (mixtures, counts)
``obs["<p>assignment_entropy"]``   entropy of the assignment probabilities (mixtures, counts)
``obsm["<p>assignment_probabilities"]``  ``(C, K)`` MAP ``P(k | x_c)`` (mixtures, counts)
``obsm["<p>p_hat"]``               ``(C, K)`` with component-specific ``p``
``var["<p><name>"]``               MAP of each gene parameter ``r``, ``mu``, ``gate``
``var["<p><name>_sd"]``            its posterior sd (over posterior draws)
``varm["<p><name>"]``, ``varm["<p><name>_sd"]``  ``(G, K)`` the same per component (mixtures)
``var["<p>rqr_mean"]``, ``"<p>rqr_var"``, ``"<p>rqr_ks"``, ``"<p>elpd"``, ``"<p>flagged"``
                                   goodness of fit (:mod:`scribe.svi.gof`; needs counts)
``layers["<p>denoised"]``          ``E[m | x]`` (``layers=("denoised",)``; needs counts)
``layers["<p>normalized"]``        denoised counts divided by the cell's denoised total
``uns["<p>fit"]``                  model, priors, convergence, shared MAP values, versions
                                   and ``keys``: a description of every key written
=================================  ===========================================================

After ``results[genes]`` the AnnData may hold more genes than the fit: only the fit's
genes are written (NaN, or NA for ``flagged``, elsewhere).
"""

from __future__ import annotations

import importlib.metadata

import jax
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scribe.parameterization import CELL, GENE
from scribe.svi import denoise, gof, pointwise
from scribe.svi.lazy_counts import LazyCounts, lazy_counts

LAYERS = ("denoised", "normalized")
GENE_PARAMETERS = ("r", "mu", "gate")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _names(values) -> pd.Index:
    return pd.Index(np.asarray(values).astype(str))


def _first_mismatch(expected: pd.Index, found: pd.Index, what: str) -> None:
    if len(expected) != len(found):
        raise ValueError(f"the AnnData has {len(found)} {what} but the fit has "
                         f"{len(expected)}")
    differ = np.flatnonzero(expected.to_numpy() != found.to_numpy())
    if differ.size:
        i = int(differ[0])
        raise ValueError(f"the AnnData's {what} do not match the fit's: at position {i} "
                         f"the AnnData has {found[i]!r}, the fit {expected[i]!r}")


def _gene_positions(results, adata) -> np.ndarray:
    """Positions of the fit's genes among the AnnData's (all of them, or a subset)."""
    genes = _names(results._axes().coords[GENE])
    named = results.var is not None
    if adata.n_vars == results.n_genes:
        if named:
            _first_mismatch(genes, pd.Index(adata.var_names), "var_names")
        return np.arange(adata.n_vars)
    if not named:
        raise ValueError(f"the AnnData has {adata.n_vars} genes but the fit has "
                         f"{results.n_genes}, and the fit has no gene names to match")
    positions = pd.Index(adata.var_names).get_indexer(genes)
    missing = np.flatnonzero(positions < 0)
    if missing.size:
        raise ValueError(f"the fit's gene {genes[int(missing[0])]!r} is not among the "
                         f"AnnData's var_names")
    return positions


def _check_cells(results, adata) -> None:
    if adata.n_obs != results.n_cells:
        raise ValueError(f"the AnnData has {adata.n_obs} cells (obs) but the fit has "
                         f"{results.n_cells}")
    if results.obs is not None:
        _first_mismatch(_names(results._axes().coords[CELL]), pd.Index(adata.obs_names),
                        "obs_names")


class _Writer:
    """Puts per-gene values at the fit's gene positions and records every key."""

    def __init__(self, target, prefix: str, positions: np.ndarray):
        self.target, self.prefix, self.positions = target, prefix, positions
        self.full = positions.size == target.n_vars and np.array_equal(
            positions, np.arange(target.n_vars))
        self.keys: dict[str, dict[str, str]] = {}   # {slot: {key: description}}

    def _record(self, slot: str, key: str, what: str) -> None:
        self.keys.setdefault(slot, {})[key] = what

    def _genes(self, values: np.ndarray, fill=np.nan) -> np.ndarray:
        if self.full:
            return values
        out = np.full((self.target.n_vars, *values.shape[1:]), fill,
                      np.result_type(values.dtype, np.float64) if fill is np.nan else object)
        out[self.positions] = values
        return out

    def obs(self, name: str, values, what: str) -> None:
        key = self.prefix + name
        self.target.obs[key] = values
        self._record("obs", key, what)

    def obsm(self, name: str, values, what: str) -> None:
        key = self.prefix + name
        self.target.obsm[key] = np.asarray(values)
        self._record("obsm", key, what)

    def var(self, name: str, values, what: str) -> None:
        key = self.prefix + name
        values = np.asarray(values)
        if values.dtype == bool and not self.full:
            column = pd.array([pd.NA] * self.target.n_vars, dtype="boolean")
            column[self.positions] = values
            self.target.var[key] = column
        else:
            self.target.var[key] = self._genes(values)
        self._record("var", key, what)

    def varm(self, name: str, values, what: str) -> None:
        key = self.prefix + name
        self.target.varm[key] = self._genes(np.asarray(values))
        self._record("varm", key, what)

    def layer(self, name: str, values, what: str) -> None:
        key = self.prefix + name
        if not self.full:
            values = values.toarray() if sp.issparse(values) else values
            out = np.full((self.target.n_obs, self.target.n_vars), np.nan, np.float32)
            out[:, self.positions] = values
            values = out
        self.target.layers[key] = values
        self._record("layers", key, what)


def _parameter_entries(results, writer: _Writer, draws: dict, estimate: dict) -> dict:
    """MAP and posterior sd of gene parameters, per-cell MAPs; returns shared MAPs."""
    mixture = bool(results.model_config.is_mixture)
    for name in GENE_PARAMETERS:
        if name not in estimate or np.ndim(estimate[name]) != 1 + mixture:
            continue
        value = np.asarray(estimate[name], np.float64)
        sd = np.asarray(draws[name], np.float64).std(axis=0, ddof=1) if name in draws \
            else np.full(value.shape, np.nan)
        if mixture:
            writer.varm(name, value.T, f"MAP of {name} per component (G, K)")
            writer.varm(f"{name}_sd", sd.T, f"posterior sd of {name} per component (G, K)")
        else:
            writer.var(name, value, f"MAP of {name}")
            writer.var(f"{name}_sd", sd, f"posterior sd of {name}")
    for name in ("p_capture", "p_hat"):
        if name not in estimate:
            continue
        value = np.asarray(estimate[name], np.float64)
        if value.ndim == 1:
            writer.obs(name, value, f"MAP of {name}")
        elif value.ndim == 2:
            writer.obsm(name, value, f"MAP of {name} per component (C, K)")
    return {name: np.asarray(estimate[name], np.float64)
            for name in ("p", "phi", "mixing_weights") if name in estimate}


def _count_entries(results, writer: _Writer, counts, layers, batch_size, rng_key) -> None:
    """Everything computed from the counts."""
    mixture = bool(results.model_config.is_mixture)
    writer.obs("log_likelihood",
               np.asarray(results.log_likelihood_map(counts, batch_size=batch_size,
                                                      verbose=False), np.float64),
               "MAP log-likelihood of the cell's counts (fitted genes)")
    if mixture:
        probabilities = np.asarray(results.cell_type_probabilities_map(
            counts, batch_size=batch_size, use_mean=True, verbose=False)["probabilities"],
            np.float64)
        writer.obsm("assignment_probabilities", probabilities,
                    "MAP component assignment probabilities P(k | x_c) (C, K)")
        writer.obs("component", pd.Categorical(probabilities.argmax(axis=1),
                                                categories=range(results.n_components)),
                   "most probable component")
        entropy = -np.sum(probabilities * np.log(np.maximum(probabilities, 1e-300)), axis=1)
        writer.obs("assignment_entropy", entropy,
                   "entropy of the assignment probabilities (nats, at most log K)")
    if results._view.spec.likelihood is not None:
        fit = gof.goodness_of_fit(results, counts, batch_size=batch_size, rng_key=rng_key)
        for column, what in (("rqr_mean", "mean of the randomized quantile residuals"),
                             ("rqr_var", "variance of the randomized quantile residuals"),
                             ("rqr_ks", "KS distance of the residuals from N(0, 1)"),
                             ("elpd", "per-gene elpd at the MAP, sum_c log p(x_cg)"),
                             ("flagged", "misfit flag (KS test at alpha / G)")):
            writer.var(column, fit[column].to_numpy(), what)
    if layers:
        denoised = denoise.denoise_counts(results, counts, batch_size=batch_size,
                                          rng_key=rng_key)
        if "denoised" in layers:
            writer.layer("denoised", denoised, "denoised counts E[m | x] at the MAP")
        if "normalized" in layers:
            totals = np.asarray(denoised.sum(axis=1)).ravel()
            scale = 1.0 / np.maximum(totals, np.finfo(np.float32).tiny)
            normalized = (sp.csr_matrix(denoised.multiply(scale[:, None]))
                          if sp.issparse(denoised) else denoised * scale[:, None])
            writer.layer("normalized", normalized,
                         "denoised counts divided by the cell's denoised total")


def _uns_entry(results, shared: dict, keys: dict) -> dict:
    """Model, priors, convergence, versions: h5ad-writable values only."""
    config = results.model_config
    loss = np.asarray(results.loss_history, np.float64)
    entry = {
        "model_type": config.model_type,
        "parameterization": config.parameterization,
        "guide_family": str(config.guide_family),
        "component_specific_params": bool(config.component_specific_params),
        "priors": {site: np.asarray(value, np.float64)
                   for site, value in results.prior_params.items()},
        "n_steps_run": int(results.n_steps_run),
        "converged": "unknown" if results.converged is None else bool(results.converged),
        "final_loss": float(loss[-1]) if loss.size else float("nan"),
        "n_cells": int(results.n_cells), "n_genes": int(results.n_genes),
        "map": shared,
        "versions": {name: _version(package) for name, package in (
            ("scribe", "scribe-sc"), ("numpyro", "numpyro"), ("jax", "jax"),
            ("arviz", "arviz"), ("anndata", "anndata"))},
        "keys": {slot: dict(entries) for slot, entries in keys.items()},
    }
    if config.n_components is not None:
        entry["n_components"] = int(config.n_components)
    if results.capture_anchored is not None:
        entry["capture_anchored"] = bool(results.capture_anchored)
    if config.mrna_per_cell is not None:
        entry["mrna_per_cell"] = config.mrna_per_cell
    return entry


def to_anndata(results, adata=None, *, prefix: str = "scribe_", inplace: bool = False,
               layers=(), layer: str | None = None, n_samples: int = 100,
               batch_size: int | None = None, rng_key=None):
    """Write a fit's results into an AnnData (keys in the module doc, also recorded in
    ``uns[prefix + "fit"]["keys"]``).

    Parameters
    ----------
    results : ScribeSVIResults
    adata : AnnData, optional
        The data the model was fitted to: its ``obs_names`` must be the fit's and its
        ``var_names`` the fit's (or, after ``results[genes]``, include them), else a
        ValueError names the first mismatch. Quantities that need the counts (cell
        log-likelihood, assignments, entropy, goodness of fit, layers) are computed from
        its counts (``layer``, the one the model was fitted to). None: a new AnnData with
        the fit's ``obs`` / ``var`` (no ``X``) and only the count-free results. A backed
        AnnData (or a lazy ``.X``) is read block by block, never whole; a backed one is
        written in place only (``inplace=True``), and its ``layers`` are dense
        ``(C, G)`` matrices built in memory (use ``denoise_counts(..., out=...)`` to
        write denoised counts of an atlas to disk instead).
    prefix : str, default "scribe_"
        Prefix of every key written.
    inplace : bool, default False
        Write into ``adata`` itself; otherwise into a copy (``adata`` is not modified).
    layers : iterable of {"denoised", "normalized"}, default ()
        Matrices to add as ``layers[prefix + name]`` (need ``adata``).
    layer : str, optional
        The layer holding the counts (None: ``.X``).
    n_samples : int, default 100
        Posterior draws for the posterior sds when the results hold none (fresh, not
        stored); stored ``posterior_samples`` are used when present.
    batch_size : int, optional
        Cells per block for the count-based quantities (default 512).
    rng_key : jax PRNG key, optional

    Returns
    -------
    AnnData
        The copy, or ``adata`` itself with ``inplace=True``.
    """
    import anndata

    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
    if not isinstance(inplace, bool):
        raise TypeError(f"inplace must be True or False, got {inplace!r}")
    if isinstance(layers, str):
        layers = (layers,)
    layers = tuple(layers)
    unknown = [name for name in layers if name not in LAYERS]
    if unknown:
        raise ValueError(f"layers may contain {', '.join(map(repr, LAYERS))}; got "
                         f"{unknown[0]!r}")
    n_samples = pointwise.check_n_samples(n_samples, allow_none=False)
    batch_size = pointwise.check_batch_size(batch_size)
    rng_key = jax.random.PRNGKey(0) if rng_key is None else rng_key
    if adata is None:
        if layers:
            raise ValueError(f"layers {layers} need the counts: pass the AnnData the model "
                             f"was fitted to")
        if inplace:
            raise ValueError("inplace=True needs an AnnData to write into")
        obs = results.obs.copy() if results.obs is not None else pd.DataFrame(
            index=_names(results._axes().coords[CELL]))
        var = results.var.copy() if results.var is not None else pd.DataFrame(
            index=_names(results._axes().coords[GENE]))
        obs.index, var.index = obs.index.astype(str), var.index.astype(str)
        target, positions, counts = anndata.AnnData(obs=obs, var=var), None, None
    else:
        if not isinstance(adata, anndata.AnnData):
            raise TypeError(f"adata must be an AnnData or None, got {type(adata).__name__}")
        _check_cells(results, adata)
        positions = _gene_positions(results, adata)
        subset = positions.size != adata.n_vars or not np.array_equal(
            positions, np.arange(adata.n_vars))
        counts = lazy_counts(adata, layer)
        if counts is not None:
            # Backed / lazy counts stay on disk: every count-based entry streams them.
            counts = LazyCounts(counts._matrix, positions if subset else None)
        else:
            counts = pointwise.read_counts(adata, layer)
            if subset:
                counts = counts[:, positions]
        if getattr(adata, "isbacked", False) and not inplace:
            raise ValueError("a backed AnnData is written in place: pass inplace=True (the "
                             "annotations are set in memory; save them with "
                             "adata.write_h5ad(...)), or load it with adata.to_memory()")
        target = adata if inplace else adata.copy()
    writer = _Writer(target, prefix, np.arange(results.n_genes) if positions is None
                     else positions)
    draws = results.posterior_samples
    if draws is None:
        draws = pointwise.draws_for(results, n_samples, rng_key)
    estimate = results.get_map(use_mean=True, verbose=False)
    shared = _parameter_entries(results, writer, draws, estimate)
    if counts is not None:
        _count_entries(results, writer, counts, layers, batch_size, rng_key)
    target.uns[prefix + "fit"] = _uns_entry(results, shared, writer.keys)
    return target
