import pytest

from semcomp.codecs import CODECS
from semcomp.errors import ConfigError
from semcomp.registry import Registry


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ConfigError, match="did you mean 'jpeg'"):
        CODECS.check("jpg")


def test_duplicate_names_are_rejected():
    registry = Registry("thing")
    registry.register("a", "semcomp.codecs.jpeg:JpegCodec")
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a", "semcomp.codecs.webp:WebpCodec")


def test_entries_are_imported_lazily():
    registry = Registry("thing")
    registry.register("later", "semcomp.codecs.jpeg:JpegCodec")
    assert registry.names() == ["later"]
    assert registry.get("later").name == "jpeg"
