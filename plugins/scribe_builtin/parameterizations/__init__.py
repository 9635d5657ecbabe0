"""Built-in parameterizations: one module each."""

import scribe

from .linked import Linked
from .odds_ratio import OddsRatio
from .standard import Standard
from .unconstrained import Unconstrained


@scribe.hookimpl
def scribe_parameterizations():
    return [Standard(), Linked(), OddsRatio(), Unconstrained()]
