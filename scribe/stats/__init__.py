"""Numerical building blocks of the analyses: Dirichlet fits, assignments, divergences.

Pure, jittable array functions with no knowledge of models or results objects.
"""

from scribe.stats.assignment import assignment_entropy, assignment_probabilities
from scribe.stats.dirichlet import fit_dirichlet_minka, inverse_digamma
from scribe.stats.divergences import (
    hellinger_distance,
    jensen_shannon_divergence,
    kl_divergence,
    pairwise_component_divergences,
)
from scribe.stats.normalize import dirichlet_normalize

__all__ = [
    "assignment_entropy",
    "assignment_probabilities",
    "dirichlet_normalize",
    "fit_dirichlet_minka",
    "hellinger_distance",
    "inverse_digamma",
    "jensen_shannon_divergence",
    "kl_divergence",
    "pairwise_component_divergences",
]
