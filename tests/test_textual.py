"""Textual transforms through the whole pipeline: captions, payloads, reconstructions, scores."""

import json
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from fake_openai import FakeOpenAIServer
from helpers import photo, write_image_folder, write_study
from semcomp.analysis.rd import rd_points
from semcomp.cli import main
from semcomp.report import write_report
from semcomp.study import Study

KEY_ENV = "TEST_OPENAI_KEY"
LONG = "a red apple on a wooden table next to a window " * 220  # ~10,500 characters


def write_textual_study(tmp_path, image_folder, tiny_clip, tiny_blip, tiny_sd):
    (tmp_path / "captions.csv").write_text(
        "image,caption,author\n"
        "img1,a valley under a blue sky,ann\n"
        "img1.png,a green valley 🌄 with mountains,bob\n"  # a second caption for img1
        f"img2,{LONG},ann\n"
        "img3,一只红苹果,cho\n"
        ",caption without an image,x\n"  # malformed: line 6
        "img4,,ann\n"  # an empty caption is a caption (0 bytes)
    )
    external = tmp_path / "dalle"
    external.mkdir()
    photo(64, 64, 7).save(external / "img1_gr.png")
    photo(64, 64, 8).save(external / "img3_gr.png")
    (tmp_path / "gpt.csv").write_text("image,caption\nimg1,a wide valley\nimg3,an apple\n")
    sd = f'model = "{tiny_sd}", steps = 2, width = 64, height = 64'
    methods = f"""
[[methods]]
name = "blip"
captioner = "blip"
captioner_params = {{ model = "{tiny_blip}", max_new_tokens = 10 }}
reconstructor_params = {{ {sd} }}
replicates = 2

[[methods]]
name = "blip-zstd"
captioner = "blip"
captioner_params = {{ model = "{tiny_blip}", max_new_tokens = 10 }}
text_codec = "zstd"
reconstructor_params = {{ {sd} }}
replicates = 2

[[methods]]
name = "human"
captioner = "human"
captioner_params = {{ csv = "{tmp_path / "captions.csv"}" }}
reconstructor_params = {{ {sd} }}

[[methods]]
name = "dalle"
folder = "{external}"
pattern = "{{name}}_gr.png"
captions = "{tmp_path / "gpt.csv"}"

[[methods]]
name = "jpeg"
codec = "jpeg"
quality = [50]
"""
    return write_study(tmp_path / "study", image_folder, tiny_clip, methods=methods)


@pytest.fixture(scope="module")
def textual_run(tmp_path_factory, tiny_clip, tiny_blip, tiny_sd):
    """The textual study, run once for the module, and its run's summary; read-only for
    tests (one that runs it again works on a copy)."""
    base = tmp_path_factory.mktemp("textual")
    images = write_image_folder(base / "images")
    root = write_textual_study(base, images, tiny_clip, tiny_blip, tiny_sd)
    with Study.open(root) as study:
        summary = study.run(progress=False)
    return root, summary


def test_textual_methods_end_to_end(textual_run, tmp_path):
    textual_study, summary = textual_run
    with Study.open(textual_study, read_only=True) as study:
        store = study.store
        failures = {(stage, reason) for stage, _, reason in summary.failures}
        # BLIP captions every image once, although two methods use it
        blip_captions = store.frame("SELECT * FROM captions WHERE captioner = 'blip'")
        assert len(blip_captions) == 4
        shared = store.frame(
            "SELECT m.name, c.artifact_hash FROM candidates c "
            "JOIN representations r ON r.id = c.representation_id "
            "JOIN methods m ON m.id = r.method_id WHERE m.name LIKE 'blip%'"
        )
        by_method = shared.groupby("name")["artifact_hash"].apply(set)
        assert by_method["blip"] == by_method["blip-zstd"]  # same images, different rates
        files = write_report(study, tmp_path / "report")
    assert ("caption", "empty image reference") in failures
    assert any("captions.csv:6" in item for _, item, _ in summary.failures)
    assert sum("'{name}_gr.png' (img2_gr.png)" in reason for _, reason in failures) == 1
    rd = pd.read_csv(files.rd_csv, keep_default_na=False, na_values=[""])
    blip = rd[rd.method == "blip"]
    assert len(blip) == 8 and set(blip.replicate) == {0, 1}
    assert blip.seed.notna().all() and blip.seed.nunique() == 8
    human = rd[rd.method == "human"]
    assert sorted(human.variant) == [0, 0, 0, 0, 1]
    long = human[human.caption.str.len() > 10_000].iloc[0]
    assert long.truncated == True and long.consumed_utf8_bytes < long.rate_bytes  # noqa: E712
    empty = human[human.rate_bits == 0]
    assert len(empty) == 1
    emoji = human[human.caption.str.contains("🌄", na=False)].iloc[0]
    assert emoji.rate_bytes == len(emoji.caption.encode())
    dalle = rd[rd.method == "dalle"]
    assert len(dalle) == 2 and set(dalle.rate_bytes) == {len(b"a wide valley"), len(b"an apple")}
    zstd = rd[rd.method == "blip-zstd"]
    assert (zstd.text_codec == "zstd").all()
    summary_json = json.loads((files.folder / "methods" / "blip.json").read_text())
    assert summary_json["results"]["bpp"]


def test_rerun_does_no_model_or_api_work(textual_run, tmp_path):
    textual_study = Path(shutil.copytree(textual_run[0], tmp_path / "study"))  # run once
    with Study.open(textual_study) as study:
        again = study.run(progress=False)
    assert again.models_loaded == [] and all(s.done == 0 for s in again.stages)


def test_api_captions_are_never_requested_twice(tmp_path, image_folder, tiny_clip, monkeypatch):
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-test-key-000000")
    with FakeOpenAIServer() as server:
        methods = f"""
[[methods]]
name = "gpt"
captioner = "llm-api"
captioner_params = {{ base_url = "{server.base_url}", model = "m", api_key_env = "{KEY_ENV}" }}
sweep = {{ max_words = [5, 10] }}
reconstructor = "solid-colour"
"""
        root = write_study(tmp_path / "s", image_folder, tiny_clip, methods=methods)
        toml = (
            (root / "study.toml")
            .read_text()
            .replace(
                'api_key_env = "TEST_OPENAI_KEY" }',
                'api_key_env = "TEST_OPENAI_KEY", prompt = "max_words" }',
            )
        )
        (root / "study.toml").write_text(toml)
        with Study.open(root) as study:
            study.run(progress=False)
            assert len(server.requests) == 8  # 4 images x 2 operating points
            # changing only operational settings (concurrency) keeps the captions
            toml = (
                (root / "study.toml")
                .read_text()
                .replace('model = "m"', 'model = "m", concurrency = 2')
            )
            (root / "study.toml").write_text(toml)
        with Study.open(root) as study:
            study.run(progress=False)
            labels = set(
                study.store.frame("SELECT operating_point FROM representations").operating_point
            )
        assert len(server.requests) == 8
        assert labels == {"max_words=5", "max_words=10"}


def test_api_key_never_reaches_store_logs_or_reports(
    tmp_path, image_folder, tiny_clip, monkeypatch, capsys, caplog
):
    key = "sk-proj-SUPERSECRET0123456789abcdef"
    monkeypatch.setenv("TEST_OPENAI_KEY", key)
    with FakeOpenAIServer(api_key="sk-the-right-one-000") as server:
        methods = f"""
[[methods]]
name = "gpt"
captioner = "llm-api"
captioner_params = {{ base_url = "{server.base_url}", model = "m", api_key_env = "{KEY_ENV}" }}
reconstructor = "solid-colour"
"""
        root = write_study(tmp_path / "s", image_folder, tiny_clip, methods=methods)
        with pytest.raises(SystemExit) as raised:
            main(["run", str(root), "--no-progress"])
        assert raised.value.code == 3
        with pytest.raises(SystemExit):
            main(["report", str(root)])
    out = capsys.readouterr()
    assert "API rejected the key" in out.err and "TEST_OPENAI_KEY" in out.err
    assert len(server.requests) <= 8
    secret = key.encode()
    for path in root.rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes(), path
    conn = sqlite3.connect(root / "study.db")
    dump = "\n".join(conn.iterdump())
    assert key not in dump
    assert key not in out.out + out.err + caplog.text


def test_a_key_echoed_by_the_endpoint_reaches_no_file_of_the_study(
    tmp_path, image_folder, tiny_clip, monkeypatch, capsys
):
    """Captions, metadata, reconstructions (a PNG text chunk) and failure reasons that
    echo the key: no byte of any file in the study folder holds it, WAL included."""
    from fake_openai import Fault

    key = "sk-proj-ECHOED0123456789abcdefSECRET"
    monkeypatch.setenv("TEST_OPENAI_KEY", key)
    with FakeOpenAIServer(echo_key=True) as server:
        server.enqueue(Fault.server_error(400, endpoint="chat"))  # an error quoting the key
        methods = f"""
[[methods]]
name = "gpt"
captioner = "llm-api"
captioner_params = {{ base_url = "{server.base_url}", model = "m", api_key_env = "{KEY_ENV}" }}
reconstructor = "image-api"
reconstructor_params = {{ base_url = "{server.base_url}", api_key_env = "{KEY_ENV}" }}
"""
        root = write_study(tmp_path / "s", image_folder, tiny_clip, methods=methods)

        def files_holding_the_key() -> list[str]:
            return [
                str(path.relative_to(root))
                for path in root.rglob("*")
                if path.is_file() and key.encode() in path.read_bytes()
            ]

        with Study.open(root) as study:
            summary = study.run(progress=False)
            captions = list(study.store.frame("SELECT text FROM captions").text)
            reasons = [reason for _, _, reason in summary.failures]
            assert (root / "study.db-wal").exists()
            assert files_holding_the_key() == []
        with pytest.raises(SystemExit) as reported:
            main(["report", str(root)])
        assert reported.value.code == 0
    assert len(captions) == 3 and all("asked by [REDACTED]" in c for c in captions)
    assert len(reasons) == 1 and "[REDACTED]" in reasons[0]
    assert files_holding_the_key() == []
    assert key not in "".join(capsys.readouterr())


def test_external_reconstructions_without_captions_have_no_rate(tmp_path, image_folder, tiny_clip):
    external = tmp_path / "elsewhere"
    external.mkdir()
    photo(64, 64, 7).save(external / "img1.png")
    methods = f'[[methods]]\nname = "ext"\nfolder = "{external}"\n'
    root = write_study(tmp_path / "s", image_folder, tiny_clip, methods=methods)
    with Study.open(root) as study:
        study.run(progress=False)
    with Study.open(root, read_only=True) as study:
        files = write_report(study)
    rd = pd.read_csv(files.rd_csv)
    assert len(rd) == 1 and rd.rate_bits.isna().all()


def test_a_key_pasted_as_the_variable_name_is_refused(tmp_path, image_folder, tiny_clip):
    from semcomp.errors import ConfigError

    methods = """
[[methods]]
name = "gpt"
captioner = "llm-api"
captioner_params = { model = "m", api_key_env = "sk-proj-abcdefghijklmnop" }
reconstructor = "solid-colour"
"""
    root = write_study(tmp_path / "s", image_folder, tiny_clip, methods=methods)
    with pytest.raises(ConfigError, match="NAME of an environment variable") as raised:
        Study.open(root)
    assert "sk-proj-abcdefghijklmnop" not in str(raised.value)


def test_an_ambiguous_caption_reference_is_attached_to_no_image(tmp_path, tiny_clip):
    images = tmp_path / "images"
    for category, seed in (("landscape", 1), ("person", 2)):
        (images / category).mkdir(parents=True)
        photo(64, 48, seed).save(images / category / "1.png")
    from semcomp.images import sha256_hex

    person_id = sha256_hex((images / "person" / "1.png").read_bytes())
    (tmp_path / "captions.csv").write_text(
        f"image,caption\n1.png,a valley\n{person_id},a person waving\n"
    )
    methods = f"""
[[methods]]
name = "human"
captioner = "human"
captioner_params = {{ csv = "{tmp_path / "captions.csv"}" }}
reconstructor = "solid-colour"
"""
    root = write_study(tmp_path / "s", images, tiny_clip, methods=methods)
    with Study.open(root) as study:
        summary = study.run(progress=False)
        texts = set(study.store.frame("SELECT text FROM captions").text)
    assert texts == {"a person waving"}
    assert any("matches several originals" in reason for _, _, reason in summary.failures)


def test_edited_external_captions_give_new_rates(tmp_path, image_folder, tiny_clip):
    external = tmp_path / "elsewhere"
    external.mkdir()
    photo(64, 64, 7).save(external / "img1.png")
    captions = tmp_path / "captions.csv"
    captions.write_text("image,caption\nimg1,a\n")
    methods = f'[[methods]]\nname = "ext"\nfolder = "{external}"\ncaptions = "{captions}"\n'
    root = write_study(tmp_path / "s", image_folder, tiny_clip, methods=methods)
    rates = []
    for text in ("a", "a much longer caption"):
        captions.write_text(f"image,caption\nimg1,{text}\n")
        with Study.open(root) as study:
            study.run(progress=False)
        with Study.open(root, read_only=True) as study:  # the rows of the report's rd.csv
            rates.append(rd_points(study.store, study.scope()).rate_bytes.tolist())
    assert rates == [[1.0], [len("a much longer caption")]]
