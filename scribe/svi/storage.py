"""Where a results object keeps its data: one ArviZ ``InferenceData``, ``results.idata``.

Groups (every array with named dims, see :mod:`scribe.svi.layout`):

=========================  ==============================================================
group                      contents
=========================  ==============================================================
``posterior``              draws of sampled sites and canonical parameters
                           ``(chain=1, draw, ...)``                 ``posterior_samples``
``posterior_predictive``   ``counts`` ``(chain, draw, cell, gene)``, ``total_counts``
                           ``(chain, draw, cell)``                  ``predictive_samples``
``log_likelihood``         ``counts`` ``(chain, draw, cell)``: cells are the observations
``observed_data``          observed counts as COO (``counts_cell``, ``counts_gene``,
                           ``counts_value`` along ``nonzero``) and ``total_counts`` (cell)
``variational_parameters`` the guide's parameters, dims by scope   ``params``
``optimization``           ``loss`` ``(step,)``                     ``loss_history``
                           attributes ``n_steps_run``, ``converged`` (0/1; absent when
                           not recorded)            ``n_steps_run``, ``converged``
``obs`` / ``var``          cell / gene metadata; their ``cell`` / ``gene`` coordinates
                           name the cells and genes of every group  ``obs``, ``var``
``uns``                    unstructured metadata (only when given)  ``uns``
=========================  ==============================================================

Global attributes: ``scribe_model_config`` and ``scribe_prior_params`` (JSON, see
:mod:`scribe.svi.nested`), ``n_obs``, ``n_vars`` and provenance. ``n_cells`` and
``n_genes`` are the sizes of the ``cell`` and ``gene`` dims; ``model_type`` and
``n_components`` come from the configuration.

The seed's attributes are views: reading ``params``, ``posterior_samples``, ... builds a
dict of JAX arrays (leading sample axis, no chain axis) from the groups; assigning one
rewrites its group. ``obs``, ``var``, ``uns`` and ``prior_params`` are handed out as
ordinary mutable objects whose in-place edits are written back whenever ``results.idata``
is read or the results are saved (:mod:`scribe.svi.metadata`).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
from typing import Any

import jax.numpy as jnp
import numpy as np
import numpyro
import pandas as pd

from scribe import plugins
from scribe.config import ModelConfig
from scribe.parameterization import CELL, GENE
from scribe.svi import frames, idata, layout, nested
from scribe.svi.metadata import OBS, PRIORS, UNS, VAR, Metadata
from scribe.svi.model_view import ModelView
from scribe.svi.sampling import CompiledSamplers
from scribe.validation import check_optional_positive_int, check_positive_int

POSTERIOR, PREDICTIVE, LOG_LIKELIHOOD = "posterior", "posterior_predictive", "log_likelihood"
OBSERVED, PARAMS, OPTIMIZATION = "observed_data", "variational_parameters", "optimization"
CONFIG_ATTR = "scribe_model_config"
LAYOUT_ATTR, LAYOUT_VERSION = "scribe_layout_version", 1


def _scribe_version() -> str:
    """The installed scribe's version, recorded in every results file."""
    try:
        return importlib.metadata.version("scribe-sc")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class ResultsStore:
    """Storage and views of :class:`~scribe.svi.ScribeSVIResults` (see the module doc).

    Parameters
    ----------
    params : dict
        Constrained variational parameters, ``<site>_<arg>``.
    loss_history : array, shape (n_steps,)
    n_cells, n_genes : int
    model_type : str
    model_config : ModelConfig
    prior_params : dict
        Prior arguments per sampled site.
    obs, var : pandas.DataFrame, optional
        Cell and gene metadata (``n_cells`` / ``n_genes`` rows).
    uns : dict, optional
    n_obs, n_vars : int, optional
        Default ``n_cells`` / ``n_genes``.
    posterior_samples : dict, optional
        ``{name: (n_samples, ...)}``.
    predictive_samples : array, optional
        ``(n_samples, n_cells, n_genes)``.
    n_components : int, optional
        Must equal ``model_config.n_components``.
    converged : bool, optional
        Whether the fit met its stopping rule (None: not recorded).
    """

    def __init__(self, params: dict, loss_history, n_cells: int, n_genes: int,
                 model_type: str, model_config: ModelConfig, prior_params: dict[str, Any],
                 obs: pd.DataFrame | None = None, var: pd.DataFrame | None = None,
                 uns: dict | None = None, n_obs: int | None = None, n_vars: int | None = None,
                 posterior_samples: dict | None = None, predictive_samples=None,
                 n_components: int | None = None, *, converged: bool | None = None):
        if not isinstance(model_config, ModelConfig):
            raise TypeError(f"model_config must be a scribe.ModelConfig, got "
                            f"{type(model_config).__name__}")
        n_cells = check_positive_int("n_cells", n_cells)
        n_genes = check_positive_int("n_genes", n_genes)
        n_obs = check_optional_positive_int("n_obs", n_obs)
        n_vars = check_optional_positive_int("n_vars", n_vars)
        if model_type != model_config.model_type:
            raise ValueError(f"model_type '{model_type}' does not match the model "
                             f"configuration's '{model_config.model_type}'")
        if n_components is None:
            n_components = model_config.n_components
        if n_components != model_config.n_components:
            raise ValueError(f"n_components={n_components} does not match the model "
                             f"configuration's {model_config.n_components}")
        # Cells and genes numbered until the metadata (if any) names them.
        groups = {OBS: frames.to_dataset(None, CELL, int(n_cells)),
                  VAR: frames.to_dataset(None, GENE, int(n_genes))}
        attrs = {
            CONFIG_ATTR: nested.dumps(model_config.to_dict(), "model_config"),
            "n_obs": int(n_cells if n_obs is None else n_obs),
            "n_vars": int(n_genes if n_vars is None else n_vars),
            LAYOUT_ATTR: LAYOUT_VERSION,
            "created_at": datetime.datetime.now(datetime.UTC).isoformat(),
            "scribe_version": _scribe_version(),
            "inference_library": "numpyro",
            "inference_library_version": numpyro.__version__,
            "arviz_version": idata.arviz_version(),
        }
        self._attach(idata.make_container(groups, attrs), model_config, check=False)
        # The caller's objects are handed back as they are (as a dataclass field would).
        for name, value in ((OBS, obs), (VAR, var), (UNS, uns), (PRIORS, prior_params)):
            self._metadata.set(name, value)
        self.params = params
        self.loss_history = loss_history
        self.converged = converged
        self.posterior_samples = posterior_samples
        self.predictive_samples = predictive_samples
        self.__post_init__()

    def __post_init__(self) -> None:
        """Validate the configuration and parameters (the constructor calls it).

        Checks that the model type is provided by an installed plugin, that
        ``n_components`` agrees with the configuration, that the variational parameters
        are those of the model with shapes consistent with ``n_cells``, ``n_genes`` and
        ``n_components``, and that ``obs`` / ``var`` / draws have matching lengths.

        Raises
        ------
        ValueError
            The first inconsistency found, naming it.
        """
        spec = plugins.lookup_model_type(self.model_type)
        if spec.mixture != (self.n_components is not None):
            raise ValueError(f"model type '{self.model_type}' "
                             f"{'needs' if spec.mixture else 'takes no'} n_components, got "
                             f"{self.n_components!r}")
        self._check_params(self.params)
        for name, frame, size in ((OBS, self.obs, self.n_cells), (VAR, self.var, self.n_genes)):
            if frame is not None and len(frame) != size:
                raise ValueError(f"{name} has {len(frame)} rows, expected {size}")
        predictive = self._group(PREDICTIVE)
        posterior = self._group(POSTERIOR)
        if predictive is not None and posterior is not None \
                and predictive.sizes[layout.DRAW] != posterior.sizes[layout.DRAW]:
            raise ValueError(f"{predictive.sizes[layout.DRAW]} predictive draws, but "
                             f"{posterior.sizes[layout.DRAW]} posterior draws")

    def _attach(self, container, model_config: ModelConfig | None = None,
                check: bool = True) -> None:
        """Adopt ``container`` as this object's storage (checks its parameters' shapes)."""
        attrs = idata.container_attrs(container)
        if int(attrs.get(LAYOUT_ATTR, 0)) != LAYOUT_VERSION:
            raise ValueError(f"not a scribe results container (layout version "
                             f"{attrs.get(LAYOUT_ATTR)!r}, expected {LAYOUT_VERSION})")
        self._idata = container
        if model_config is None:
            model_config = ModelConfig.from_dict(nested.loads(attrs[CONFIG_ATTR]))
        self._config = model_config
        self._view = ModelView(model_config, self.n_cells, self.n_genes)
        self._samplers = CompiledSamplers(self._view)
        self._metadata = Metadata(container)
        if check:
            self._check_params(self.params)

    @classmethod
    def _from_container(cls, container):
        """Results whose storage is ``container`` (as built by this class)."""
        results = cls.__new__(cls)
        results._attach(container)
        return results

    # ---- the container ------------------------------------------------------------------
    @property
    def idata(self):
        """The ``arviz.InferenceData`` holding everything (metadata edits written back)."""
        self._metadata.flush()
        return self._idata

    def save(self, path: str | os.PathLike) -> None:
        """Write the results to a netCDF-4 file (``.zarr``: a zarr store); see ``scribe.load``.

        Raises
        ------
        scribe.svi.arrays.UnstorableError
            ``obs``, ``var`` or ``uns`` hold values that cannot be stored losslessly.
        """
        self._metadata.flush(strict=True)
        idata.save(self._idata, path)

    def _group(self, name: str):
        return idata.get_group(self._idata, name)

    def _set_group(self, name: str, dataset) -> None:
        idata.set_group(self._idata, name, dataset)

    def _axes(self) -> layout.Axes:
        return layout.Axes(self._group(OBS)[CELL].values, self._group(VAR)[GENE].values,
                           self.n_components, self._view.all_scopes())

    def __getstate__(self) -> dict:
        self._metadata.flush()
        return {"idata": self._idata}

    def __setstate__(self, state: dict) -> None:
        self._attach(state["idata"])

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model_type={self.model_type!r}, parameterization="
                f"{self._config.parameterization!r}, n_cells={self.n_cells}, "
                f"n_genes={self.n_genes}, groups={idata.group_names(self._idata)})")

    # ---- validation ------------------------------------------------------------------------
    def _check_params(self, params: dict) -> None:
        composition = self._view.composition
        if composition is None:
            return
        declared = composition.variational_params(self.n_cells, self.n_genes)
        missing = set(declared) - set(params)
        if missing:
            raise ValueError(f"params lack {', '.join(sorted(missing))} required by "
                             f"'{self.model_type}' ({self._config.parameterization}, "
                             f"guide family {self._config.guide_family})")
        for name, param in declared.items():
            if tuple(jnp.shape(params[name])) != param.shape:
                raise ValueError(f"param '{name}' has shape "
                                 f"{tuple(jnp.shape(params[name]))}, expected {param.shape}")

    # ---- sizes and configuration (read-only) -------------------------------------------------
    @property
    def n_cells(self) -> int:
        return int(self._group(OBS).sizes[CELL])

    @property
    def n_genes(self) -> int:
        return int(self._group(VAR).sizes[GENE])

    @property
    def n_obs(self) -> int:
        return int(idata.container_attrs(self._idata)["n_obs"])

    @property
    def n_vars(self) -> int:
        return int(idata.container_attrs(self._idata)["n_vars"])

    @property
    def model_config(self) -> ModelConfig:
        return self._config

    @property
    def model_type(self) -> str:
        return self._config.model_type

    @property
    def n_components(self) -> int | None:
        return self._config.n_components

    # ---- arrays -------------------------------------------------------------------------------
    @property
    def params(self) -> dict:
        """Variational parameters ``{name: array}``."""
        return layout.as_dict(self._group(PARAMS), draws=False)

    @params.setter
    def params(self, values: dict) -> None:
        values = dict(values)
        self._check_params(values)
        self._set_group(PARAMS, layout.values_dataset(values, self._axes()))

    @property
    def loss_history(self) -> jnp.ndarray:
        """Loss per SVI step, shape ``(n_steps,)``."""
        return jnp.asarray(self._group(OPTIMIZATION)["loss"].values)

    @loss_history.setter
    def loss_history(self, values) -> None:
        # A new trace: whether it converged is unknown until ``converged`` is set.
        self._set_group(OPTIMIZATION, layout.loss_dataset(values))

    @property
    def n_steps_run(self) -> int:
        """SVI steps the fit ran (the length of ``loss_history``)."""
        return int(self._group(OPTIMIZATION).sizes[layout.STEP])

    @property
    def converged(self) -> bool | None:
        """Whether the fit stopped because it converged (``scribe.fit``'s ``tol``: the loss
        flat, and with ``drift_tol`` the parameters no longer drifting).

        False when it ran to the ``n_steps`` cap (or stopping was disabled); None when not
        recorded: results built from a bare ``run_inference`` run, or files saved before
        scribe recorded it.
        """
        value = self._group(OPTIMIZATION).attrs.get(layout.CONVERGED_ATTR)
        return None if value is None else bool(int(value))

    @converged.setter
    def converged(self, value: bool | None) -> None:
        if value is not None and not isinstance(value, bool | np.bool_):
            raise TypeError(f"converged must be a bool or None, got {value!r}")
        group = self._group(OPTIMIZATION)
        kept = {k: v for k, v in group.attrs.items()
                if k not in (layout.CONVERGED_ATTR, layout.STEPS_RUN_ATTR)}
        self._set_group(OPTIMIZATION, layout.loss_dataset(group["loss"].values, value, kept))

    @property
    def posterior_samples(self) -> dict | None:
        """Posterior draws ``{name: (n_samples, ...)}`` or None."""
        return layout.as_dict(self._group(POSTERIOR), draws=True)

    @posterior_samples.setter
    def posterior_samples(self, samples: dict | None) -> None:
        self._set_group(POSTERIOR, None if samples is None
                        else layout.draws_dataset(dict(samples), self._axes()))

    @property
    def predictive_samples(self) -> jnp.ndarray | None:
        """Predictive counts ``(n_samples, n_cells, n_genes)`` or None."""
        group = self._group(PREDICTIVE)
        if group is None:
            return None
        return jnp.asarray(group["counts"].transpose(*layout.SAMPLE_DIMS, ...).values[0])

    @predictive_samples.setter
    def predictive_samples(self, counts) -> None:
        self._set_group(PREDICTIVE, None if counts is None
                        else layout.predictive_dataset(counts, self._axes()))

    def _store_log_likelihood(self, per_cell) -> None:
        """Store the per-cell log-likelihood of each posterior draw for ArviZ (``az.loo``).

        Parameters
        ----------
        per_cell : array, shape (n_samples, n_cells)
            ``log p(x_c | theta_s)``, summed over genes; with stored posterior draws,
            ``n_samples`` must match theirs.
        """
        posterior = self._group(POSTERIOR)
        n_samples = np.shape(per_cell)[0] if np.ndim(per_cell) else None
        if posterior is not None and n_samples != posterior.sizes[layout.DRAW]:
            raise ValueError(f"log-likelihood of {n_samples} draws, but "
                             f"{posterior.sizes[layout.DRAW]} posterior draws are stored")
        self._set_group(LOG_LIKELIHOOD, layout.log_likelihood_dataset(per_cell, self._axes()))

    def set_observed_counts(self, counts) -> None:
        """Store the observed counts in ``observed_data`` (sparse input stays sparse).

        Parameters
        ----------
        counts : numpy/JAX array or scipy sparse matrix, shape (n_cells, n_genes)
            None removes them.
        """
        self._set_group(OBSERVED, None if counts is None
                        else layout.observed_dataset(counts, self._axes()))

    @property
    def observed_counts(self):
        """Stored observed counts as a ``scipy.sparse.csr_array`` ``(C, G)``, or None."""
        group = self._group(OBSERVED)
        return None if group is None else layout.observed_matrix(
            group, (self.n_cells, self.n_genes))

    # ---- metadata (see scribe.svi.metadata) -----------------------------------------------
    @property
    def obs(self) -> pd.DataFrame | None:
        """Cell metadata (from ``adata.obs``) or None."""
        return self._metadata.get(OBS)

    @obs.setter
    def obs(self, frame: pd.DataFrame | None) -> None:
        self._metadata.set(OBS, frame)

    @property
    def var(self) -> pd.DataFrame | None:
        """Gene metadata (from ``adata.var``) or None."""
        return self._metadata.get(VAR)

    @var.setter
    def var(self, frame: pd.DataFrame | None) -> None:
        self._metadata.set(VAR, frame)

    @property
    def uns(self) -> dict | None:
        """Unstructured metadata (from ``adata.uns``) or None."""
        return self._metadata.get(UNS)

    @uns.setter
    def uns(self, value: dict | None) -> None:
        self._metadata.set(UNS, value)

    @property
    def prior_params(self) -> dict[str, Any]:
        """Prior arguments per sampled site."""
        return self._metadata.get(PRIORS)

    @prior_params.setter
    def prior_params(self, value: dict[str, Any]) -> None:
        self._metadata.set(PRIORS, value)
