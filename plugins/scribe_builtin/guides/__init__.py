"""Built-in guide families: ``mean_field`` and ``joint_gene``."""

import scribe

from .joint_gene import JointGene
from .mean_field import MeanField


@scribe.hookimpl
def scribe_guide_families():
    return [MeanField(), JointGene()]
