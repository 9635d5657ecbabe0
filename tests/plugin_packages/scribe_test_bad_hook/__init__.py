"""Implements a hook that scribe does not define (a plugin bug scribe must report)."""

import scribe


@scribe.hookimpl
def scribe_not_a_hook():
    return []
