"""Text → image. ``RECONSTRUCTORS`` is the one table of reconstructor names."""

from semcomp.registry import Registry

RECONSTRUCTORS = Registry(
    "reconstructor",
    entry_point_group="semcomp.reconstructors",
    base="semcomp.reconstructors.base:Reconstructor",
)
RECONSTRUCTORS.register("diffusers", "semcomp.reconstructors.diffusers:DiffusersReconstructor")
RECONSTRUCTORS.register(
    "diffusers-controlnet", "semcomp.reconstructors.diffusers:ControlNetReconstructor"
)
RECONSTRUCTORS.register(
    "diffusers-img2img", "semcomp.reconstructors.diffusers:Img2ImgReconstructor"
)
RECONSTRUCTORS.register("image-api", "semcomp.reconstructors.image_api:ImageApiReconstructor")
RECONSTRUCTORS.register("solid-colour", "semcomp.reconstructors.solid:SolidColourReconstructor")

__all__ = ["RECONSTRUCTORS"]
