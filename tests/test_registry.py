import sys

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


def test_every_object_handed_out_is_a_subclass_of_the_family_base():
    registry = Registry("thing", base="semcomp.codecs.text:TextCodec")
    registry.register("utf8", "semcomp.codecs.text:Utf8Codec")
    registry.register("jpeg", "semcomp.codecs.jpeg:JpegCodec")
    assert registry.get("utf8").name == "utf8"
    with pytest.raises(ConfigError, match=r"not a subclass of semcomp\.codecs\.text\.TextCodec"):
        registry.get("jpeg")
    assert registry.source("utf8").builtin and str(registry.source("utf8")) == "built-in"


def test_every_family_has_a_base_class_its_built_ins_subclass():
    from semcomp.registry import PLUGIN_FAMILIES, import_target

    for location in PLUGIN_FAMILIES.values():
        registry = import_target(location)
        assert registry.base and registry.entry_point_group.startswith("semcomp.")
        base = import_target(registry.base)
        for entry in registry.entries():
            target = import_target(entry.target)  # not get(): CompressAI is an extra
            if registry.instances:  # a family of data: survey definitions
                assert isinstance(target, base), entry
            else:
                assert issubclass(target, base), entry


def test_a_run_records_cuda_and_cudnn_when_it_used_a_gpu(monkeypatch):
    from types import SimpleNamespace

    from semcomp.study import gpu_versions

    monkeypatch.setitem(sys.modules, "torch", None)
    assert gpu_versions() == {}  # torch not imported: nothing, and no import for it
    used = SimpleNamespace(
        cuda=SimpleNamespace(is_initialized=lambda: True, get_device_name=lambda: "H200"),
        version=SimpleNamespace(cuda="12.8"),
        backends=SimpleNamespace(
            cudnn=SimpleNamespace(is_available=lambda: True, version=lambda: 91002)
        ),
    )
    monkeypatch.setitem(sys.modules, "torch", used)
    assert gpu_versions() == {"cuda": "12.8", "gpu": "H200", "cudnn": "91002"}
    used.cuda.is_initialized = lambda: False  # imported, but no GPU used
    assert gpu_versions() == {}
