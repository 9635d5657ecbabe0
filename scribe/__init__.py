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

# Loaded on first use: plotting and reports import matplotlib, which `import scribe`
# need not pay for.
_LAZY = {
    "pl": ("scribe.pl", None),
    "report": ("scribe.fit_report", "report"),
    "info": ("scribe.fit_info", "info"),
    "read_counts": ("scribe.readers", "read_counts"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module_name, attribute = _LAZY[name]
        module = importlib.import_module(module_name)
        value = module if attribute is None else getattr(module, attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'scribe' has no attribute {name!r}")


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
    "info",
    "load",
    "pl",
    "read_counts",
    "reload_plugins",
    "report",
    "svi",
    "tl",
    "to_anndata",
]
