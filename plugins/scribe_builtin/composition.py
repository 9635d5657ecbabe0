"""Model, guide and posterior of every model type composed from a likelihood."""

from __future__ import annotations

import scribe
from scribe import plugins
from scribe.compose import Composition


def _composition(model_config) -> Composition | None:
    spec = plugins.lookup_model_type(model_config.model_type)
    return Composition(model_config) if spec.likelihood is not None else None


@scribe.hookimpl
def scribe_model(model_config):
    composition = _composition(model_config)
    return composition.model if composition else None


@scribe.hookimpl
def scribe_guide(model_config):
    composition = _composition(model_config)
    return composition.guide if composition else None


@scribe.hookimpl
def scribe_posterior_distributions(model_config, params):
    composition = _composition(model_config)
    return composition.posterior_distributions(params) if composition else None
