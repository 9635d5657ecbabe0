"""Built-in guide families: ``mean_field``, ``joint_gene``, ``skew_gene`` and ``joint_capture``."""

import scribe

from .joint_capture import JointCapture
from .joint_gene import JointGene
from .mean_field import MeanField
from .skew_gene import SkewGene


@scribe.hookimpl
def scribe_guide_families():
    return [MeanField(), JointGene(), SkewGene(), JointCapture()]
