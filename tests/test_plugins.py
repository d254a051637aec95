"""Plugins from other distributions: the README's example installed through the entry-point
mechanism and run in a study; refusals of wrong classes and of clashing names."""

import json
import logging
import re
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import write_study
from semcomp.cli import main
from semcomp.codecs import CODECS
from semcomp.codecs.embedding import EMBEDDING_CODECS
from semcomp.errors import ConfigError
from semcomp.metrics import METRICS
from semcomp.surveys.definitions import SURVEYS, load_survey

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def readme_plugin() -> tuple[str, str, str]:
    """The README's plugin example: its module, its entry-point table and its method table."""
    section = README.split("## Writing a plugin", 1)[1].split("\n## ", 1)[0]
    (module,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    entry_points, method = re.findall(r"```toml\n(.*?)```", section, flags=re.S)
    return module, entry_points, method


def install(site: Path, distribution: str, version: str, modules: dict, entry_points: str):
    """What `pip install --target site` leaves: the modules and a dist-info whose
    entry_points.txt is the ``[project.entry-points."group"]`` tables of ``entry_points``."""
    for name, code in modules.items():
        (site / f"{name}.py").write_text(code)
    info = site / f"{distribution.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n"
    )
    groups = tomllib.loads(entry_points)["project"]["entry-points"]
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in points.items())
            for group, points in groups.items()
        )
    )


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on sys.path to install distributions into; registries read it afresh."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    for registry in (CODECS, METRICS, SURVEYS, EMBEDDING_CODECS):
        registry.rescan()
    yield folder
    monkeypatch.undo()  # off sys.path before the registry forgets what it read there
    for registry in (CODECS, METRICS, SURVEYS, EMBEDDING_CODECS):
        registry.rescan()


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as raised:
        main(argv)
    captured = capsys.readouterr()
    return raised.value.code, captured.out, captured.err


def test_the_readme_example_runs_in_a_study(site, tmp_path, image_folder, capsys):
    module, entry_points, method = readme_plugin()
    install(site, "semcomp-posterize", "0.1.0", {"semcomp_posterize": module}, entry_points)

    code, out, _ = cli(["plugins"], capsys)
    assert code == 0
    assert re.search(r"^  posterize +semcomp-posterize 0\.1\.0$", out, flags=re.M), out
    assert re.search(r"^  jpeg +built-in$", out, flags=re.M)

    root = write_study(tmp_path / "s", image_folder, "unused-clip-model", methods=method)
    stages = ["--stage", "ingest", "--stage", "encode", "--stage", "decode"]
    code, out, err = cli(["run", str(root), "--no-progress", *stages], capsys)
    assert code == 0, err
    assert "encode" in out and "0 failed" in out

    db = sqlite3.connect(root / "study.db")
    rates = db.execute(
        "SELECT r.rate_bits, a.bytes FROM representations r "
        "JOIN methods m ON m.id = r.method_id JOIN artifacts a ON a.hash = r.payload_hash "
        "WHERE m.name = 'posterize'"
    ).fetchall()
    assert len(rates) == 8 and all(bits == 8 * size for bits, size in rates)  # 4 images × 2
    (packages,) = db.execute("SELECT packages FROM runs").fetchone()
    packages = json.loads(packages)
    assert packages["semcomp-posterize"] == "0.1.0"
    assert {"transformers", "diffusers", "open_clip_torch", "openai", "constriction"} <= set(
        packages
    )
    assert "cuda" not in packages  # this run used no GPU


def readme_metric_plugin() -> tuple[str, str]:
    """The README's metric plugin example: its module and its entry-point table."""
    section = README.split("#### Writing a metric plugin", 1)[1].split("\n#", 1)[0]
    (module,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    group, point = re.search(
        r'`(\[project\.entry-points\."semcomp\.metrics"\])` with `(.*?)`', section, flags=re.S
    ).groups()
    return module, f"{group}\n{' '.join(point.split())}\n"


def test_the_readme_metric_example_scores_a_study(site, tmp_path, image_folder, capsys):
    module, entry_points = readme_metric_plugin()
    install(site, "semcomp-mae", "0.2.0", {"semcomp_mae": module}, entry_points)
    code, out, _ = cli(["plugins"], capsys)
    assert code == 0 and re.search(r"^  mae +semcomp-mae 0\.2\.0$", out, flags=re.M), out

    root = tmp_path / "s"
    root.mkdir()
    (root / "study.toml").write_text(
        f'[images]\nsource = "{image_folder.as_posix()}"\n\n'
        '[[methods]]\nname = "jpeg"\ncodec = "jpeg"\nquality = [10, 60]\n\n'
        '[[metrics]]\nmetric = "mae"\nscale = 1.0\n'
    )
    code, _, err = cli(["run", str(root), "--no-progress"], capsys)
    assert code == 0, err

    db = sqlite3.connect(root / "study.db")
    rows = db.execute(
        "SELECT s.value, ca.relpath, oa.relpath FROM scores s "
        "JOIN candidates c ON c.id = s.candidate_id "
        "JOIN representations r ON r.id = c.representation_id "
        "JOIN originals o ON o.id = r.original_id JOIN artifacts ca ON ca.hash = c.artifact_hash "
        "JOIN artifacts oa ON oa.hash = o.artifact_hash WHERE s.metric = 'mae'"
    ).fetchall()
    assert len(rows) == 8  # 4 images × 2 qualities, in grey levels (scale = 1)
    for value, candidate, original in rows:
        artifacts = root / "artifacts"
        with Image.open(artifacts / candidate) as c, Image.open(artifacts / original) as o:
            expected = np.abs(
                np.asarray(o.convert("RGB"), float) - np.asarray(c.convert("RGB"), float)
            ).mean()
        assert value == pytest.approx(expected) and value > 0
    assert db.execute(
        "SELECT display, higher_is_better FROM metrics WHERE name = 'mae'"
    ).fetchone() == ("Mean absolute error", 0)


def test_an_entry_point_that_is_not_a_codec_is_refused_in_one_line(
    site, tmp_path, image_folder, capsys
):
    install(
        site,
        "semcomp-wrong",
        "2.0",
        {"semcomp_wrong": "class NotACodec:\n    pass\n"},
        '[project.entry-points."semcomp.codecs"]\nwrong = "semcomp_wrong:NotACodec"\n',
    )
    with pytest.raises(ConfigError) as refused:
        CODECS.get("wrong")
    message = str(refused.value)
    assert "\n" not in message and "semcomp-wrong 2.0" in message
    assert "not a subclass of semcomp.codecs.base.ImageCodec" in message

    methods = '[[methods]]\nname = "w"\ncodec = "wrong"\nquality = [1]\n'
    root = write_study(tmp_path / "s", image_folder, "unused-clip-model", methods=methods)
    code, _, err = cli(["run", str(root), "--no-progress"], capsys)
    assert code == 2 and err.count("\n") == 1 and "semcomp-wrong 2.0" in err, err
    code, out, _ = cli(["plugins"], capsys)
    assert code == 0 and "refused wrong: codec 'wrong' from semcomp-wrong 2.0" in out


def test_a_name_clash_is_refused_with_a_warning_naming_both(site, caplog, capsys):
    twin = '[project.entry-points."semcomp.codecs"]\ntwin = "semcomp_posterize:PosterizeCodec"\n'
    module, _, _ = readme_plugin()
    install(
        site,
        "semcomp-clash",
        "1.0",
        {"semcomp_posterize": module},
        '[project.entry-points."semcomp.codecs"]\njpeg = "semcomp_posterize:PosterizeCodec"\n'
        + twin.split("\n", 1)[1],
    )
    install(site, "semcomp-other", "3.1", {}, twin)
    with caplog.at_level(logging.WARNING, logger="semcomp"):
        names = CODECS.names()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    (builtin,) = [w for w in warnings if "'jpeg'" in w]
    assert "semcomp-clash 1.0" in builtin and "semcomp.codecs.jpeg:JpegCodec" in builtin
    (plugins,) = [w for w in warnings if "'twin'" in w]
    assert "semcomp-clash 1.0" in plugins and "semcomp-other 3.1" in plugins
    # the built-in stays; neither twin is used
    assert "jpeg" in names and "twin" not in names
    assert CODECS.get("jpeg").__module__ == "semcomp.codecs.jpeg"
    with pytest.raises(ConfigError) as refused:
        CODECS.check("twin")
    assert "semcomp-clash 1.0" in str(refused.value) and "semcomp-other 3.1" in str(refused.value)

    CODECS.rescan()
    capsys.readouterr()
    code, out, err = cli(["plugins"], capsys)  # the CLI shows the warnings and the refusals
    assert code == 0 and err.count("warning: ") == 2
    assert "refused jpeg: codec 'jpeg' from semcomp-clash 1.0" in out
    assert "refused twin: codec 'twin' is provided by both" in out
    CODECS.rescan()
    code, _, err = cli(["-q", "plugins"], capsys)  # -q: errors only
    assert code == 0 and err == ""


def test_plugins_json_lists_every_family(capsys):
    code, out, _ = cli(["plugins", "--json"], capsys)
    assert code == 0
    families = {f["family"]: f for f in json.loads(out)["families"]}
    assert set(families) >= {
        "captioners",
        "reconstructors",
        "pixel codecs",
        "text codecs",
        "embedders",
    }
    codecs = families["pixel codecs"]
    assert codecs["entry_point_group"] == "semcomp.codecs"
    assert codecs["base"] == "semcomp.codecs.base.ImageCodec"
    assert {p["name"]: p["source"] for p in codecs["plugins"]}["jpeg"] == "built-in"


SURVEY_D = """\
id = "D"
name = "Recognisability"
subject = "candidate"

[[questions]]
id = "object"
kind = "text"
text = "Name the main object in this image."
"""

SURVEY_PLUGIN = """\
from importlib import resources

from semcomp.surveys.definitions import read_definition

D = read_definition(resources.files("semcomp_surveys") / "D.toml")
NOT_A_SURVEY = {"id": "E"}
"""


def test_a_survey_a_distribution_ships_is_found_by_its_id(site, capsys):
    package = site / "semcomp_surveys"
    package.mkdir()
    (package / "D.toml").write_text(SURVEY_D)
    (package / "__init__.py").write_text(SURVEY_PLUGIN)
    install(
        site,
        "semcomp-surveys",
        "0.2",
        {},
        '[project.entry-points."semcomp.surveys"]\nD = "semcomp_surveys:D"\n'
        'E = "semcomp_surveys:NOT_A_SURVEY"\nF = "semcomp_surveys:D"\n',
    )
    definition = load_survey("D")
    assert definition.name == "Recognisability" and definition.questions[0].id == "object"
    assert str(SURVEYS.source("D")) == "semcomp-surveys 0.2"
    code, out, _ = cli(["survey", "list"], capsys)
    assert code == 0 and "D: Recognisability (candidate, from semcomp-surveys 0.2)" in out
    assert out.index("A: ") < out.index("D: ")  # built-ins still listed
    with pytest.raises(
        ConfigError,
        match=r"^survey 'E' from semcomp-surveys 0\.2 .* refused: "
        r"it is not an instance of semcomp\.surveys\.definitions\.SurveyDefinition$",
    ):
        load_survey("E")
    with pytest.raises(ConfigError, match="its id is 'D'; the entry point must be named by it"):
        load_survey("F")  # the entry point's name is not the definition's id
    # a user's file may not take the plugin's id
    mine = site / "mine.toml"
    mine.write_text(SURVEY_D)
    with pytest.raises(ConfigError, match=r"the survey semcomp-surveys 0\.2 provides"):
        load_survey(mine)
    code, out, _ = cli(["plugins", "--json"], capsys)
    families = {f["family"]: f for f in json.loads(out)["families"]}
    surveys = families["survey definitions"]
    assert surveys["entry_point_group"] == "semcomp.surveys" and surveys["objects"] == "instances"
    assert families["metrics"]["objects"] == "subclasses"
    assert {p["name"] for p in surveys["plugins"]} == {"A", "B", "C", "D"}
    assert set(surveys["refused"]) == {"E", "F"}


SIGN_CODEC = """\
import numpy as np

from semcomp.codecs.embedding import EmbeddingCodec, EncodedEmbedding
from semcomp.params import PluginParams


class SignParams(PluginParams):
    scale: float = 1.0


class SignCodec(EmbeddingCodec):
    name = "sign"
    Params = SignParams

    def encode(self, embeddings):
        return [
            EncodedEmbedding(np.packbits(row > 0).tobytes(), {"dims": row.size})
            for row in embeddings
        ]

    def decode(self, payloads):
        bits = np.stack([np.unpackbits(np.frombuffer(p, np.uint8)) for p in payloads])
        rows = (2.0 * bits - 1.0) * self.params.scale
        return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
"""


def test_an_embedding_codec_from_a_distribution_runs_in_a_study(
    site, tmp_path, image_folder, tiny_clip, capsys
):
    install(
        site,
        "semcomp-sign",
        "0.3",
        {"semcomp_sign": SIGN_CODEC},
        '[project.entry-points."semcomp.embedding_codecs"]\nsign = "semcomp_sign:SignCodec"\n',
    )
    methods = '[[methods]]\nname = "signs"\nkind = "embedding"\ncodec = "sign"\n'
    root = write_study(tmp_path / "s", image_folder, tiny_clip, methods=methods)
    code, _, err = cli(["run", str(root), "--no-progress"], capsys)
    assert code == 0, err

    db = sqlite3.connect(root / "study.db")
    rows = db.execute(
        "SELECT r.rate_bits, r.operating_point, r.meta FROM representations r "
        "JOIN methods m ON m.id = r.method_id WHERE m.name = 'signs'"
    ).fetchall()
    dim = json.loads(rows[0][2])["dims"]
    # one bit per dimension, in whole bytes: the exact bytes sent
    assert len(rows) == 4 and {(bits, label) for bits, label, _ in rows} == {(dim, "sign")}
    scores = db.execute(
        "SELECT s.metric, COUNT(*), MIN(s.value), MAX(s.value) FROM scores s "
        "JOIN candidates c ON c.id = s.candidate_id "
        "JOIN representations r ON r.id = c.representation_id "
        "JOIN methods m ON m.id = r.method_id WHERE m.name = 'signs' GROUP BY s.metric"
    ).fetchall()
    # the decoded embeddings are scored against the originals' under the study's CLIP
    assert scores and all(n == 4 and -1 <= low <= high <= 1 for _, n, low, high in scores), scores
    (packages,) = db.execute("SELECT packages FROM runs").fetchone()
    assert json.loads(packages)["semcomp-sign"] == "0.3"

    # the pqvae codec's keys are refused for another codec, and unknown params by its Params
    bad = methods + 'checkpoint = "x.safetensors"\n'
    write_study(tmp_path / "b", image_folder, tiny_clip, methods=bad)
    code, _, err = cli(["status", str(tmp_path / "b")], capsys)
    assert code == 2 and "the pqvae codec's; give the sign codec's parameters in params" in err
    write_study(tmp_path / "c", image_folder, tiny_clip, methods=methods + "params = {bits = 2}\n")
    code, _, err = cli(["status", str(tmp_path / "c")], capsys)
    assert code == 2 and "params.bits" in err
