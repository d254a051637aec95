"""study.toml validation: errors name the key and the file."""

from pathlib import Path

import pytest

from semcomp.config import load_config
from semcomp.errors import ConfigError

VALID = """
name = "t"
[images]
source = "images"
[[methods]]
name = "jpeg"
codec = "jpeg"
reduction = [0.8, 0.9]
"""


def study(tmp_path: Path, text: str) -> Path:
    (tmp_path / "study.toml").write_text(text)
    return tmp_path


def test_valid_config_resolves_paths_and_fills_defaults(tmp_path: Path):
    config = load_config(study(tmp_path, VALID))
    assert config.images.source == (tmp_path / "images").resolve()
    (method,) = config.methods
    assert [p.label for p in method.operating_points()] == ["reduction=0.8", "reduction=0.9"]
    assert method.params == {"subsampling": "4:2:0", "optimize": False, "progressive": False}
    assert config.similarity.models[0].label == "ViT-L-14-336/openai"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (VALID + "colour = 1\n", r"colour: unknown key"),
        (VALID.replace("reduction", "reducton"), r"methods\[0\]\.reducton: unknown key"),
        (VALID.replace("[0.8, 0.9]", "[1.5]"), r"methods\[0\]\.reduction: .*between 0 and 1"),
        (VALID.replace('codec = "jpeg"', 'codec = "jpg"'), r"methods\[0\]\.codec: .*'jpeg'"),
        (VALID + "params = { qualty = 3 }\n", r"params\.qualty: unknown key"),
        (VALID.replace("reduction = [0.8, 0.9]", ""), r"no operating point"),
        (VALID.replace("reduction = [0.8, 0.9]", "quality = [101]"), r"outside jpeg's range"),
        (VALID + VALID[VALID.index("[[methods]]") :], r"two methods are named 'jpeg'"),
        (VALID.replace('name = "t"', "seed = 'x'"), r"seed: .*integer"),
        ("[images", r"not valid TOML"),
    ],
)
def test_bad_configs_name_the_key_and_the_file(tmp_path: Path, text: str, message: str):
    with pytest.raises(ConfigError, match=message) as raised:
        load_config(study(tmp_path, text))
    assert str(tmp_path / "study.toml") in str(raised.value)


def test_same_codec_and_params_under_two_names_is_refused(tmp_path: Path):
    text = VALID + '[[methods]]\nname = "again"\ncodec = "jpeg"\nquality = [50]\n'
    with pytest.raises(ConfigError, match="same codec and params"):
        load_config(study(tmp_path, text))


def test_missing_study_file_says_how_to_make_one(tmp_path: Path):
    with pytest.raises(ConfigError, match="semcomp init"):
        load_config(tmp_path)


def test_method_id_is_computed_once_and_again_after_a_change(tmp_path: Path, monkeypatch):
    """Stages read ``method_id`` for every item: it hashes JSON once per method, and a
    changed or copied method gets its own id."""
    import semcomp.methods

    (method,) = load_config(study(tmp_path, VALID)).methods  # validation reads the id
    hashed = []
    real = semcomp.methods.content_key
    monkeypatch.setattr(semcomp.methods, "content_key", lambda *p: hashed.append(p) or real(*p))
    first = method.method_id
    assert [method.method_id for _ in range(100)] == [first] * 100
    assert hashed == []
    changed = method.model_copy(update={"params": method.params | {"progressive": True}})
    assert changed.method_id != first
    assert method.model_copy().method_id == first
    method.params = changed.params
    assert method.method_id == changed.method_id
    assert len(hashed) == 3  # the change, the copy, the assignment
