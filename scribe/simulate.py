"""Simulate count matrices from the built-in models with known parameters.

Sampling uses NumPy's generators, independently of the likelihood code it is used to
test (numpy's ``negative_binomial(n, q)`` is NB with ``r = n`` and ``p = 1 - q``).
"""

from __future__ import annotations

import numpy as np


def simulate_counts(
    model_type: str = "nbdm",
    n_cells: int = 1000,
    n_genes: int = 500,
    *,
    n_components: int | None = None,
    p: float | np.ndarray = 0.6,
    r_loc: float = 0.5,
    r_scale: float = 1.0,
    gate_range: tuple[float, float] = (0.05, 0.4),
    capture_range: tuple[float, float] = (0.3, 0.9),
    separation: float = 1.5,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draw counts from ``model_type`` and return them with the true parameters.

    Parameters
    ----------
    model_type : str
        ``nbdm``, ``zinb``, ``nbvcp``, ``zinbvcp``, optionally with ``_mix``.
    n_cells, n_genes : int
    n_components : int, optional
        Required for ``_mix`` types.
    p : float or array of shape (K,)
        NB success probability (NumPyro convention: mean ``r p / (1 - p)``).
    r_loc, r_scale : float
        ``r ~ LogNormal(r_loc, r_scale)`` per gene.
    gate_range, capture_range : (float, float)
        Uniform ranges of the dropout gate and of the capture probability.
    separation : float
        Mixtures: each component multiplies ``r`` by ``exp(N(0, separation))`` per gene.
    seed : int

    Returns
    -------
    counts : numpy.ndarray of int64, shape (n_cells, n_genes)
    truth : dict
        ``p``, ``r`` (``(G,)`` or ``(K, G)``), and as applicable ``gate``, ``p_capture``
        ``(C,)``, ``p_hat`` ``(C,)``, ``mixing_weights`` ``(K,)``, ``assignment`` ``(C,)``.
    """
    base = model_type.removesuffix("_mix")
    if base not in ("nbdm", "zinb", "nbvcp", "zinbvcp"):
        raise ValueError(f"cannot simulate model type '{model_type}'")
    mixture = model_type.endswith("_mix")
    if mixture and (n_components is None or n_components < 2):
        raise ValueError("mixtures need n_components >= 2")
    rng = np.random.default_rng(seed)
    n_groups = n_components if mixture else 1

    r = rng.lognormal(r_loc, r_scale, size=n_genes)
    if mixture:
        r = r[None, :] * np.exp(rng.normal(0.0, separation, size=(n_groups, n_genes)))
    p_values = np.broadcast_to(np.asarray(p, float), (n_groups,)) if mixture else float(p)
    truth: dict[str, np.ndarray] = {"p": np.asarray(p, float), "r": r}

    if mixture:
        weights = rng.dirichlet(np.full(n_groups, 10.0))
        assignment = rng.choice(n_groups, size=n_cells, p=weights)
        r_cells = r[assignment]
        p_cells = p_values[assignment]
        truth.update(mixing_weights=weights, assignment=assignment)
    else:
        r_cells = np.broadcast_to(r, (n_cells, n_genes))
        p_cells = np.full(n_cells, p_values)

    if base in ("nbvcp", "zinbvcp"):
        nu = rng.uniform(*capture_range, size=n_cells)
        p_cells = p_cells * nu / (1 - p_cells * (1 - nu))
        truth.update(p_capture=nu, p_hat=p_cells)

    counts = rng.negative_binomial(r_cells, 1.0 - p_cells[:, None])
    if base in ("zinb", "zinbvcp"):
        gate = rng.uniform(*gate_range, size=r.shape)
        gate_cells = gate[truth["assignment"]] if mixture else gate[None, :]
        counts = np.where(rng.random((n_cells, n_genes)) < gate_cells, 0, counts)
        truth["gate"] = gate
    return counts.astype(np.int64), truth


def _best_permutation(true_labels: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Permutation ``perm`` maximising agreement of ``perm[labels]`` with ``true_labels``."""
    import itertools

    confusion = np.zeros((k, k))
    np.add.at(confusion, (labels, true_labels), 1)
    best = max(itertools.permutations(range(k)),
               key=lambda perm: confusion[np.arange(k), list(perm)].sum())
    return np.array(best)


def recovery_errors(results, counts: np.ndarray, truth: dict) -> dict[str, float]:
    """How well a fit recovered simulated parameters.

    Returns
    -------
    dict
        ``r_error`` (median relative error of ``r``), ``p_error`` (``|p - p_true|``,
        models without capture), ``p_hat_error`` (median relative error per cell, capture
        models), ``gate_error`` (median absolute error), and for mixtures
        ``assignment_accuracy`` (MAP assignment after matching component labels).
    """
    import jax.numpy as jnp

    from scribe import plugins

    estimate = {k: np.asarray(v) for k, v in results.get_map(use_mean=True, verbose=False).items()}
    config = results.model_config
    errors: dict[str, float] = {}
    r_hat, gate_hat, p_hat_map = estimate["r"], estimate.get("gate"), estimate.get("p")
    if config.is_mixture:
        k = config.n_components
        log_prob = plugins.lookup_model_type(config.model_type).log_prob
        per_component = np.asarray(log_prob(jnp.asarray(counts, jnp.float32),
                                            {n: jnp.asarray(v) for n, v in estimate.items()}))
        scores = per_component.sum(axis=1) + np.log(estimate["mixing_weights"])
        labels = scores.argmax(axis=1)
        perm = _best_permutation(truth["assignment"], labels, k)
        errors["assignment_accuracy"] = float(np.mean(perm[labels] == truth["assignment"]))
        # Put estimated components in the order of the true ones.
        order = np.argsort(perm)
        r_hat = r_hat[order]
        gate_hat = None if gate_hat is None else gate_hat[order]
        if np.ndim(p_hat_map) == 1:
            p_hat_map = p_hat_map[order]
    errors["r_error"] = float(np.median(np.abs(r_hat / truth["r"] - 1)))
    if "p_hat" in truth:
        errors["p_hat_error"] = float(np.median(np.abs(estimate["p_hat"] / truth["p_hat"] - 1)))
    else:
        errors["p_error"] = float(np.max(np.abs(p_hat_map - truth["p"])))
    if "gate" in truth:
        errors["gate_error"] = float(np.median(np.abs(gate_hat - truth["gate"])))
    return errors


def p_hat_oracle_error(counts, truth: dict) -> float:
    """Median relative error of ``p_hat`` when ``r`` (and ``p``) are known: the floor.

    With every ``r_g`` known, cell ``c``'s likelihood in ``p_hat_c`` is
    ``X_c log p_hat + R_c log(1 - p_hat)`` (``X_c`` its total count, ``R_c = sum_g r_g``
    of its component), maximised at ``X_c / (X_c + R_c)``: no estimator that does not
    know more about the cell can be expected to beat this one's error (its Cramer-Rao
    sd is ``(1 - p_hat) / sqrt(R_c p_hat)``). Variable-capture models without zero
    inflation only.

    Parameters
    ----------
    counts : array or scipy sparse, shape ``(C, G)``
    truth : dict
        As returned by :func:`simulate_counts` (``r``, ``p_hat``, ``assignment`` for
        mixtures).

    Returns
    -------
    float
        ``median_c |MLE_c / p_hat_c - 1|``.
    """
    if "p_hat" not in truth or "gate" in truth:
        raise ValueError("p_hat_oracle_error needs the truth of nbvcp or nbvcp_mix "
                         "(p_hat without a gate)")
    totals = np.asarray(counts.sum(axis=1), dtype=float).ravel()
    r = np.asarray(truth["r"], float)
    r_sum = r.sum(axis=-1)
    r_cells = r_sum[truth["assignment"]] if r.ndim == 2 else np.full(totals.shape, r_sum)
    mle = totals / (totals + r_cells)
    return float(np.median(np.abs(mle / np.asarray(truth["p_hat"]) - 1)))
