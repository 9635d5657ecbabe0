"""Stochastic variational inference: the engine, the results factory and the results."""

from scribe.svi.engine import SVIInferenceEngine
from scribe.svi.factory import SVIResultsFactory
from scribe.svi.io import load
from scribe.svi.results import ScribeSVIResults

__all__ = ["SVIInferenceEngine", "SVIResultsFactory", "ScribeSVIResults", "load"]
