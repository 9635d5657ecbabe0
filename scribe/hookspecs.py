"""Hook specifications of scribe's plugin system (pluggy project name ``scribe``).

A plugin is a module of ``@scribe.hookimpl`` functions named in the ``scribe``
entry-point group. Built-in model types, parameterizations and guide families use the same path.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("scribe")


@hookspec
def scribe_model_types():
    """Return the :class:`scribe.ModelType` objects this plugin provides."""


@hookspec
def scribe_parameterizations():
    """Return the :class:`scribe.Parameterization` objects this plugin provides."""


@hookspec
def scribe_guide_families():
    """Return the :class:`scribe.GuideFamily` objects this plugin provides.

    A guide family shapes the variational posterior of every model type composed from a
    likelihood (any likelihood, any parameterization); users select it by name with
    ``guide_family=``.
    """


@hookspec(firstresult=True)
def scribe_model(model_config):
    """Return the NumPyro model for ``model_config``, or None if not this plugin's.

    The model is called as ``model(n_cells, n_genes, counts=None, batch_size=None)``,
    uses a plate named ``cells`` and observes counts at a site named ``counts``.
    """


@hookspec(firstresult=True)
def scribe_guide(model_config):
    """Return the guide for ``model_config`` (same signature as the model), or None."""


@hookspec(firstresult=True)
def scribe_posterior_distributions(model_config, params):
    """Return ``{sampled site: numpyro Distribution}`` from variational ``params``, or None."""
