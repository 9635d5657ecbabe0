"""scribe: Bayesian models of single-cell RNA-seq counts, fitted by SVI with NumPyro.

Model types, parameterizations and guide families are plugins of the ``scribe``
entry-point group; the built-in ones register through the same path as third-party
packages.
"""

from scribe import distributions as _distributions  # noqa: F401  (registers KL divergences)
from scribe import svi, tl
from scribe.compare import compare
from scribe.config import ModelConfig
from scribe.fitting import fit
from scribe.guide_family import GuideFamily
from scribe.likelihood import Latent, Likelihood
from scribe.model_type import ModelType
from scribe.parameterization import Block, Parameterization, Site
from scribe.plugins import (
    available_guide_families,
    available_model_types,
    available_parameterizations,
    hookimpl,
    reload_plugins,
)
from scribe.svi.io import load
from scribe.svi.writeback import to_anndata

__version__ = "0.1.0"


__all__ = [
    "Block",
    "GuideFamily",
    "Latent",
    "Likelihood",
    "ModelConfig",
    "ModelType",
    "Parameterization",
    "Site",
    "available_guide_families",
    "available_model_types",
    "available_parameterizations",
    "compare",
    "fit",
    "hookimpl",
    "load",
    "reload_plugins",
    "svi",
    "tl",
    "to_anndata",
]
