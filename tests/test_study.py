"""The pipeline end to end on tiny models: stages, failures, incremental and no-op re-runs."""

import json
from pathlib import Path

import pytest

from helpers import photo, write_hostile_images, write_study
from semcomp.metrics import EMBEDDERS
from semcomp.report import write_report
from semcomp.study import Study


def run(root: Path):
    with Study.open(root) as study:
        return study.run(progress=False)


def test_full_run_scores_every_candidate(tmp_path, image_folder, tiny_clip):
    root = write_study(tmp_path / "s", image_folder, tiny_clip)
    summary = run(root)
    assert summary.status == "finished" and not summary.failures
    with Study.open(root) as study:
        store = study.store
        assert store.count("originals") == 4
        assert store.count("representations") == 4 * 2
        assert store.count("candidates") == 8
        assert store.count("scores") == 8 * 2  # raw cosine and scaled
        scores = store.frame("SELECT metric, value FROM scores")
        scaled = scores[scores.metric == "clip_(cos+1)/2[tiny]"].value
        assert scaled.between(0, 1).all()
        rates = store.frame(
            "SELECT r.rate_bits, a.bytes FROM representations r "
            "JOIN artifacts a ON a.hash = r.payload_hash"
        )
        assert (rates.rate_bits == 8 * rates.bytes).all()
        run_row = store.frame("SELECT * FROM runs").iloc[0]
        assert run_row.status == "finished"
        packages = json.loads(run_row.packages)
        assert {"torch", "open_clip_torch", "pillow", "libjpg"} <= set(packages)
        embedder = store.frame("SELECT * FROM embedders").iloc[0]
        assert json.loads(embedder.preprocess)["size"] in (32, [32, 32])


def test_rerun_of_a_finished_study_loads_no_model(tmp_path, image_folder, tiny_clip, monkeypatch):
    root = write_study(tmp_path / "s", image_folder, tiny_clip)
    run(root)

    def no_model(*args, **kwargs):
        raise AssertionError("a finished study must not load a model")

    monkeypatch.setattr(EMBEDDERS, "get", no_model)
    summary = run(root)
    assert summary.models_loaded == []
    assert all(stage.done == 0 for stage in summary.stages)
    with Study.open(root) as study:
        assert study.store.count("representations") == 8


def test_new_image_and_new_operating_point_are_the_only_new_work(tmp_path, image_folder, tiny_clip):
    root = write_study(tmp_path / "s", image_folder, tiny_clip)
    run(root)
    photo(160, 120, seed=9).save(image_folder / "landscape" / "new.png")
    summary = run(root)
    encode = next(s for s in summary.stages if s.stage == "encode")
    assert (encode.done, encode.skipped) == (2, 8)
    toml = (root / "study.toml").read_text().replace("quality = [30, 70]", "quality = [30, 70, 90]")
    (root / "study.toml").write_text(toml)
    summary = run(root)
    encode = next(s for s in summary.stages if s.stage == "encode")
    embed = next(s for s in summary.stages if s.stage == "embed")
    assert encode.done == 5 and embed.done == 5


def test_hostile_inputs_become_named_failures_and_the_run_goes_on(
    tmp_path, image_folder, tiny_clip
):
    (image_folder / "landscape" / "broken.jpg").write_bytes(b"not a jpeg at all")
    good = image_folder / "landscape" / "img1.png"
    (image_folder / "landscape" / "truncated.png").write_bytes(good.read_bytes()[:300])
    methods = '[[methods]]\nname = "jpeg"\ncodec = "jpeg"\nquality = [50]\nbytes = [40]\n'
    root = write_study(tmp_path / "s", image_folder, tiny_clip, methods=methods)
    summary = run(root)
    assert summary.status == "finished"
    stages = {(stage, item.rsplit("/", 1)[-1]) for stage, item, _ in summary.failures}
    assert ("ingest", "broken.jpg") in stages and ("ingest", "truncated.png") in stages
    unreachable = [f for f in summary.failures if f[0] == "encode"]
    assert len(unreachable) == 4 and all("bytes=40" in f[1] for f in unreachable)
    assert "smallest file" in unreachable[0][2]
    with Study.open(root) as study:
        assert study.store.count("originals") == 4 and study.store.count("scores") == 4 * 2
        status = {row.what: row for row in study.status()}
        assert status["ingest: originals"].failed == 2
        assert status["represent: jpeg"].failed == 4 and status["represent: jpeg"].pending == 0
    # settled failures are not retried
    again = run(root)
    assert not again.failures and all(s.failed == 0 for s in again.stages)


def test_categories_restrict_ingest(tmp_path, image_folder, tiny_clip):
    root = write_study(tmp_path / "s", image_folder, tiny_clip)
    text = (
        (root / "study.toml")
        .read_text()
        .replace("[images]\n", '[images]\ncategories = ["landscape"]\n')
    )
    (root / "study.toml").write_text(text)
    summary = run(root)
    assert sum(1 for f in summary.failures if "not one of" in f[2]) == 2


def test_same_file_twice_is_one_original(tmp_path, image_folder, tiny_clip):
    data = (image_folder / "landscape" / "img1.png").read_bytes()
    (image_folder / "single_object" / "copy.png").write_bytes(data)
    root = write_study(tmp_path / "s", image_folder, tiny_clip)
    run(root)
    with Study.open(root) as study:
        assert study.store.count("originals") == 4 and study.store.count("sources") == 5


def test_report_files(tmp_path, image_folder, tiny_clip):
    root = write_study(tmp_path / "s", image_folder, tiny_clip)
    run(root)
    with Study.open(root, read_only=True) as study:
        files = write_report(study)
    import pandas as pd

    rd = pd.read_csv(files.rd_csv)
    assert len(rd) == 8
    assert {"rate_bytes", "rate_bits", "bpp", "clip_cos[tiny]", "clip_(cos+1)/2[tiny]"} <= set(
        rd.columns
    )
    assert (rd.bpp == rd.rate_bits / rd.pixels).all()
    summary = pd.read_csv(files.summary_csv)
    assert list(summary.operating_point) == ["quality=30", "quality=70"]
    assert (
        summary["clip_(cos+1)/2[tiny] mean_ci_low"] <= summary["clip_(cos+1)/2[tiny] mean"]
    ).all()
    result = json.loads(files.method_json[0].read_text())
    assert result["name"] == "jpeg" and len(result["results"]["bpp"]) == 2
    assert "random weights" in result["description"]
    assert all(path.stat().st_size > 0 for path in files.figures)
    assert "random weights" in (files.folder / "README.txt").read_text()


@pytest.mark.parametrize("read_only", [True])
def test_empty_study_reports_without_error(tmp_path, tiny_clip, read_only):
    images = tmp_path / "images"
    images.mkdir()
    root = write_study(tmp_path / "s", images, tiny_clip)
    Study.open(root).close()  # an empty store (running a study without images is an error)
    with Study.open(root, read_only=read_only) as study:
        files = write_report(study)
    assert files.rows == 0 and files.figures[0].exists()


def test_every_hostile_file_ingests_or_fails_with_its_reason(tmp_path, tiny_clip):
    expected = write_hostile_images(tmp_path / "images" / "hostile")
    methods = '[[methods]]\nname = "jpeg"\ncodec = "jpeg"\nquality = [50]\n'
    root = write_study(tmp_path / "s", tmp_path / "images", tiny_clip, methods=methods)
    summary = run(root)
    failed = {Path(item).name: reason for stage, item, reason in summary.failures}
    assert set(failed) == {name for name, ok in expected.items() if not ok}
    assert "truncated" in failed["truncated.jpg"] or "corrupt" in failed["truncated.jpg"]
    assert "not an image" in failed["not_an_image.jpg"]
    assert "decompression bomb" in failed["bomb.png"]
    with Study.open(root) as study:
        originals = study.store.originals().set_index("name")
        assert len(originals) == sum(expected.values())
        assert study.store.count("scores") == 2 * len(originals)
    assert (originals.loc["rotated", ["width", "height"]] == [20, 60]).all()
    assert originals.loc["animated", "frames"] == 2
    assert originals.loc["cmyk", "source_mode"] == "CMYK"


def test_truncated_gif_is_a_failure_not_a_crash(tmp_path, image_folder, tiny_clip):
    import io

    from PIL import Image

    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    for cut in (40, 200, len(buffer.getvalue()) - 30):
        (image_folder / "landscape" / f"cut{cut}.gif").write_bytes(buffer.getvalue()[:cut])
    root = write_study(tmp_path / "s", image_folder, tiny_clip)
    summary = run(root)
    assert summary.status == "finished"


def test_raising_max_pixels_lets_a_refused_image_in(tmp_path, image_folder, tiny_clip):
    photo(300, 300).save(image_folder / "landscape" / "big.png")
    root = write_study(tmp_path / "s", image_folder, tiny_clip)
    toml = (root / "study.toml").read_text()
    (root / "study.toml").write_text(toml.replace("[images]\n", "[images]\nmax_pixels = 50000\n"))
    summary = run(root)
    assert any("decompression bomb guard" in reason for _, _, reason in summary.failures)
    (root / "study.toml").write_text(toml.replace("[images]\n", "[images]\nmax_pixels = 100000\n"))
    run(root)
    with Study.open(root) as study:
        assert study.store.count("originals") == 5


def test_removed_operating_points_leave_the_report(tmp_path, image_folder, tiny_clip):
    root = write_study(tmp_path / "s", image_folder, tiny_clip)
    run(root)
    toml = (root / "study.toml").read_text().replace("quality = [30, 70]", "quality = [70]")
    (root / "study.toml").write_text(toml)
    run(root)
    with Study.open(root, read_only=True) as study:
        files = write_report(study)
    import pandas as pd

    assert set(pd.read_csv(files.rd_csv).operating_point) == {"quality=70"}


def test_init_escapes_the_study_name(tmp_path, image_folder):
    from semcomp.config import load_config
    from semcomp.study import init_study

    with init_study(tmp_path / "s", image_folder, name='Bob\'s "study"') as study:
        assert study.config.name == 'Bob\'s "study"'
    assert load_config(tmp_path / "s").name == 'Bob\'s "study"'


def test_pqvae_method_in_a_study(tmp_path, image_folder, tiny_clip):
    """An embedding codec next to JPEG: exact stream bits as rate, cosine to the original."""
    import numpy as np

    from semcomp.codecs.pqvae.data import EmbeddingSet
    from semcomp.codecs.pqvae.model import PQVAEConfig
    from semcomp.codecs.pqvae.train import TrainConfig, Trainer

    rng = np.random.default_rng(0)
    training = EmbeddingSet(rng.normal(size=(256, 32)), rng.integers(0, 8, 256))
    config = PQVAEConfig(input_dim=32, hidden=(32, 16), residual_hidden=8, channels=8, d_sub=4)
    trainer = Trainer(
        config,
        TrainConfig(epochs=2, lr=1e-3, split="random"),
        training,
        None,
        tmp_path / "codec",
        clip={"model": tiny_clip, "pretrained": "openai"},
        progress=False,
        log=lambda _: None,
    )
    trainer.train()
    methods = (
        '[[methods]]\nname = "jpeg"\ncodec = "jpeg"\nquality = [50]\n\n'
        f'[[methods]]\nname = "pqvae"\ncheckpoint = "{tmp_path / "codec" / "best.safetensors"}"\n'
    )
    root = write_study(tmp_path / "s", image_folder, tiny_clip, methods=methods)
    assert run(root).status == "finished"
    with Study.open(root, read_only=True) as study:
        files = write_report(study)
    import pandas as pd

    rd = pd.read_csv(files.rd_csv)
    pq = rd[rd.method == "pqvae"]
    # the default range coder: whole bytes, never above the fixed-length code (13 bytes)
    assert len(pq) == 4 and (pq.rate_bits % 8 == 0).all() and (pq.rate_bits <= 104).all()
    assert pq["clip_(cos+1)/2[tiny]"].notna().all() and (pq.bpd == pq.rate_bits / 32).all()
    again = run(root)
    assert again.models_loaded == [] and all(s.done == 0 for s in again.stages)


def test_a_codec_for_another_clip_is_refused(tmp_path, image_folder, tiny_clip):
    import numpy as np

    from semcomp.codecs.pqvae.checkpoint import Checkpoint
    from semcomp.codecs.pqvae.model import EmbeddingCodecModel, PQVAEConfig
    from semcomp.errors import ConfigError

    config = PQVAEConfig(architecture="float16", input_dim=32)
    Checkpoint(
        config,
        EmbeddingCodecModel(config),
        np.ones(2),
        np.ones((1, 2)),
        {"model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"},
    ).save(tmp_path / "other.safetensors")
    methods = f'[[methods]]\nname = "pq"\ncheckpoint = "{tmp_path / "other.safetensors"}"\n'
    root = write_study(tmp_path / "s", image_folder, tiny_clip, methods=methods)
    with pytest.raises(ConfigError, match="ViT-B-32/laion2b_s34b_b79k, which is not one"):
        Study.open(root)
