"""A guide family: mean-field factors whose starting widths are doubled.

It shows the plugin surface of guide families: subclass ``scribe.GuideFamily``, override
what changes (here only the starting values) and return it from
``scribe_guide_families``.
"""

import scribe


class WideStart(scribe.GuideFamily):
    name = "wide_start"
    description = "mean-field, starting factors twice as wide"

    def site_initial(self, site, value, concentration):
        return super().site_initial(site, value, concentration / 4)


@scribe.hookimpl
def scribe_guide_families():
    return [WideStart()]
