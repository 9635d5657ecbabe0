"""``python -m scribe.cli``: the ``scribe`` console script."""

from scribe.cli import entry_point

entry_point()
