"""Image → text. ``CAPTIONERS`` is the one table of captioner names."""

from semcomp.registry import Registry

CAPTIONERS = Registry(
    "captioner",
    entry_point_group="semcomp.captioners",
    base="semcomp.captioners.base:Captioner",
)
CAPTIONERS.register("blip", "semcomp.captioners.blip:BlipCaptioner")
CAPTIONERS.register("llm-api", "semcomp.captioners.llm_api:LlmApiCaptioner")
CAPTIONERS.register("human", "semcomp.captioners.human:HumanCaptioner")
CAPTIONERS.register("fixed", "semcomp.captioners.fixed:FixedCaptioner")

__all__ = ["CAPTIONERS"]
