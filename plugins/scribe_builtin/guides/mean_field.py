"""``mean_field``: one independent factor per sampled site, of the site's own family."""

from scribe.guide_family import GuideFamily


class MeanField(GuideFamily):
    name = "mean_field"
    description = "independent factors, each of its site's family (params <site>_<arg>)"
