"""scribe's first-party plugins, registered through the ``scribe`` entry-point group."""
