"""ClipCap from (compressed) CLIP features: train, resume, caption, score (issue #14).

A tiny random GPT-2 and 16-d features in the layout `semcomp features extract`
writes, joined to a COCO-style caption file.
"""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semcomp.cli import main
from semcomp.downstream import caption_eval
from semcomp.downstream.clipcap import (
    ClipCapConfig,
    TrainConfig,
    Trainer,
    load_captioned_features,
    read_coco_captions,
)
from semcomp.errors import ConfigError
from semcomp.features import write_shard

CAPTIONS = [
    ["a man riding a horse", "a person on a brown horse"],
    ["a red bus on the street", "a big red bus"],
    ["a cat on a bed", "a small cat lying on a bed"],
    ["two dogs playing in the snow", "dogs in the snow"],
    ["a plate of food on a table", "food on a white plate"],
    ["a plane flying over the city", "a plane in the sky"],
]
DIM = 16


def cli(*args: str) -> None:
    with pytest.raises(SystemExit) as raised:
        main([*args])
    assert raised.value.code == 0


def write_coco(root: Path, name: str, captions=CAPTIONS, seed: int = 0) -> tuple[Path, Path]:
    """A caption file and one feature shard (as `features extract` writes it) for its images."""
    images = [
        {"id": 100 + i, "file_name": f"COCO_{name}_{i:012d}.jpg"} for i in range(len(captions))
    ]
    annotations = [
        {"id": 1000 + 10 * i + j, "image_id": 100 + i, "caption": caption}
        for i, texts in enumerate(captions)
        for j, caption in enumerate(texts)
    ]
    path = root / f"captions_{name}.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    features = root / f"{name}-features"
    (features / "images").mkdir(parents=True)
    vectors = np.random.default_rng(seed).normal(size=(len(images), DIM)).astype(np.float32)
    folder = root / name / "all"
    folder.mkdir(parents=True)
    shard = []
    for image in images:  # the images themselves: a shard records each original's pixel count
        Image.new("RGB", (32, 24), (40, 90, 160)).save(folder / image["file_name"])
        shard.append((folder / image["file_name"], 0))
    metadata = {"class_names": json.dumps(["all"]), "clip": json.dumps({"model": "tiny"})}
    write_shard(features, 0, shard, {0: list(vectors)}, metadata, DIM)
    return path, features


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    from semcomp.tiny_models import write_tiny_gpt2

    root = tmp_path_factory.mktemp("coco")
    gpt = write_tiny_gpt2(root / "tiny-gpt2")
    train = write_coco(root, "train2014")
    return root, gpt, train


def small_pqvae(path: Path) -> Path:
    """A random (untrained) PQVAE-shared checkpoint for 16-d embeddings: 5·5·2 indices, K 4."""
    import torch

    from semcomp.codecs.pqvae.checkpoint import Checkpoint
    from semcomp.codecs.pqvae.model import EmbeddingCodecModel, PQVAEConfig

    torch.manual_seed(0)
    config = PQVAEConfig(
        input_dim=DIM, channels=16, d_sub=8, codebook_size=4, hidden=(32, 16),
        residual_hidden=8, residual_layers=1,
    )  # fmt: skip
    model = EmbeddingCodecModel(config).eval()
    return Checkpoint(config, model, np.ones(4), np.ones((config.symbols, 4)), {}).save(path)


def configs(gpt: Path, epochs: int, **train) -> tuple[ClipCapConfig, TrainConfig]:
    model = ClipCapConfig(gpt=str(gpt), clip_dim=DIM, prefix_length=4, max_tokens=16)
    options = {"epochs": epochs, "batch_size": 4, "lr": 1e-2, "warmup_steps": 2} | train
    return model, TrainConfig(**options)


def quiet(_: str) -> None:
    pass


def test_training_reduces_the_loss_on_a_tiny_overfit_set(coco, tmp_path):
    _root, gpt, (annotations, features) = coco
    data = load_captioned_features(annotations, features)
    assert data.image_ids == [100 + i for i in range(6)] and data.references[0] == CAPTIONS[0]
    model, train = configs(gpt, epochs=12)
    captioner = Trainer(model, train, data, tmp_path / "mlp", log=quiet, progress=False).train()
    losses = [row["train_loss"] for row in captioner.training["history"]]
    assert losses[-1] < 0.5 * losses[0]
    assert (tmp_path / "mlp" / "clipcap.safetensors").is_file()
    assert json.loads((tmp_path / "mlp" / "clipcap.json").read_text())["config"]["clip_dim"] == DIM
    # the transformer mapper (GPT-2 frozen, as ClipCap trains it) learns too
    transformer = model.model_copy(
        update={"mapping": "transformer", "mapper_layers": 1, "tune_gpt": False}
    )
    captioner = Trainer(
        transformer, train, data, tmp_path / "transformer", log=quiet, progress=False
    ).train()
    losses = [row["train_loss"] for row in captioner.training["history"]]
    assert losses[-1] < losses[0]


def test_resume_after_an_interruption_equals_an_uninterrupted_run(coco, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    _root, gpt, (annotations, features) = coco
    data = load_captioned_features(annotations, features)
    # a codec in the loop: the mapper trains on float16-decoded embeddings
    model, train = configs(gpt, epochs=3, codec="float16")
    Trainer(model, train, data, tmp_path / "whole", log=quiet, progress=False).train()

    steps_per_epoch = 3  # 12 captions, batches of 4
    interrupted = Trainer(model, train, data, tmp_path / "cut", log=quiet, progress=False)
    original_batch = interrupted._batch

    def interrupt(indices):
        if interrupted.step == 2 * steps_per_epoch + 1:  # inside epoch 3
            raise KeyboardInterrupt
        return original_batch(indices)

    monkeypatch.setattr(interrupted, "_batch", interrupt)
    with pytest.raises(KeyboardInterrupt):
        interrupted.train()
    state = json.loads((tmp_path / "cut" / "train_state.json").read_text())
    assert state["epoch"] == 2

    logged: list[str] = []
    resumed = Trainer(model, train, data, tmp_path / "cut", log=logged.append, progress=False)
    captioner = resumed.train()
    assert "resuming" in logged[0] and "after epoch 2" in logged[0]
    # `clipcap train --profile`: this process trained epoch 3 alone, on 12 captions
    timing = resumed.timing()
    assert timing.stage == "train" and timing.items == 12
    assert timing.seconds == pytest.approx(captioner.training["history"][-1]["seconds"])
    assert [r["epoch"] for r in captioner.training["history"]] == [1, 2, 3]
    assert captioner.training["codec"] == "float16"
    whole = load_file(str(tmp_path / "whole" / "clipcap.safetensors"))
    cut = load_file(str(tmp_path / "cut" / "clipcap.safetensors"))
    assert whole.keys() == cut.keys() and any(k.startswith("gpt.") for k in whole)
    for key in whole:
        assert (whole[key] == cut[key]).all(), key
    # another configuration in the same folder is refused, not mixed in
    _, other = configs(gpt, epochs=3, lr=5e-3)
    with pytest.raises(ConfigError, match="another configuration"):
        Trainer(model, other, data, tmp_path / "cut", log=quiet, progress=False).train()


def direct_scores(rows: list[dict], column: str) -> dict[str, float]:
    """pycocoevalcap called directly on the captions in captions.csv."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    gts = {r["image_id"]: [{"caption": c} for c in json.loads(r["references"])] for r in rows}
    res = {r["image_id"]: [{"caption": r[column]}] for r in rows}
    if caption_eval.java_available():
        tokenizer = PTBTokenizer()
        gts, res = tokenizer.tokenize(gts), tokenizer.tokenize(res)
    else:
        gts = {k: [caption_eval.simple_tokenize(c["caption"]) for c in v] for k, v in gts.items()}
        res = {k: [caption_eval.simple_tokenize(c["caption"]) for c in v] for k, v in res.items()}
    return {
        "BLEU-4": Bleu(4).compute_score(gts, res)[0][3],
        "ROUGE-L": Rouge().compute_score(gts, res)[0],
        "CIDEr-D": Cider().compute_score(gts, res)[0],
    }


@pytest.fixture(scope="module")
def trained(coco):
    """`semcomp clipcap train` on the training split (through the command line)."""
    root, gpt, (annotations, features) = coco
    run = root / "run"
    common = ["--gpt", str(gpt), "--prefix-length", "4", "--device", "cpu", "--no-progress"]
    cli("clipcap", "train", str(annotations), str(features), "--out", str(run), *common,
        "--epochs", "40", "--batch-size", "4", "--lr", "0.01", "--warmup-steps", "2",
        "--profile")  # fmt: skip
    return run


def test_eval_writes_captions_and_metrics_that_match_pycocoevalcap(
    coco, trained, tmp_path, tiny_clip, capsys
):
    """The full path after training: captions, metrics, CLIP-text, figures, profile."""
    _root, _gpt, (annotations, features) = coco
    pqvae = small_pqvae(tmp_path / "pq.safetensors")
    out = tmp_path / "eval"
    cli("clipcap", "eval", str(trained), str(annotations), str(features), "--out", str(out),
        "--codec", "float16", "--codec", str(pqvae), "--max-tokens", "12", "--no-meteor",
        "--clip-model", tiny_clip, "--examples", "3", "--profile", "--device", "cpu",
        "--no-progress")  # fmt: skip
    printed = capsys.readouterr().out
    with (out / "captions.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["image_id"]) for r in rows] == [100 + i for i in range(6)]
    assert json.loads(rows[2]["references"]) == CAPTIONS[2]
    pq_name = "pqvae-shared (d_sub=8, K=4) [pq]"
    columns = ["float32", "float16", pq_name]
    assert [c for c in rows[0] if c.startswith("caption: ")] == [f"caption: {c}" for c in columns]
    assert {r["bits: float32"] for r in rows} == {str(32 * DIM)}
    assert {r["bits: float16"] for r in rows} == {str(16 * DIM)}
    # the overfit captioner says its training captions from the original features
    assert any(r["caption: float32"] in json.loads(r["references"]) for r in rows)
    with (out / "metrics.csv").open(newline="", encoding="utf-8") as handle:
        metrics = {r["codec"]: r for r in csv.DictReader(handle)}
    assert list(metrics) == columns
    assert float(metrics["float32"]["bits_per_image"]) == 512.0
    assert float(metrics["float32"]["bpd"]) == 32.0
    assert 0 < float(metrics[pq_name]["bits_per_image"]) <= 5 * 5 * 2 * 2 + 8
    for codec in columns:
        expected = direct_scores(rows, f"caption: {codec}")
        for metric, value in expected.items():
            assert float(metrics[codec][metric]) == pytest.approx(value, abs=1e-12), metric
        assert metrics[codec]["METEOR"] == "" and metrics[codec]["SPICE"] == ""
    assert float(metrics["float32"]["CIDEr-D"]) > 0
    report = json.loads((out / "eval.json").read_text())
    assert report["skipped"]["METEOR"].startswith("not asked for")
    assert report["codecs"] == columns

    # CLIP-text: the tiny CLIP's text cosine of each codec's caption with the original's
    from semcomp.config import EmbedderConfig
    from semcomp.metrics.clip import OpenClipEmbedder

    embedder = OpenClipEmbedder(EmbedderConfig(model=tiny_clip), device="cpu")
    original = embedder.embed_texts([r["caption: float32"] for r in rows])
    for codec in columns:
        other = embedder.embed_texts([r[f"caption: {codec}"] for r in rows])
        expected = np.einsum("ij,ij->i", original, other)
        written = np.array([float(r[f"clip_text: {codec}"]) for r in rows])
        np.testing.assert_allclose(written, expected, atol=1e-5)
        assert float(metrics[codec]["CLIP-text"]) == pytest.approx(expected.mean(), abs=1e-5)
    assert {round(float(r["clip_text: float32"]), 4) for r in rows} == {1.0}
    assert report["clip_text"]["model"] == tiny_clip
    # figures: metrics against rate, and Fig. 7 (three images with their captions)
    for stem in ("caption_metrics", "examples"):
        for suffix in (".png", ".pdf"):
            assert (out / f"{stem}{suffix}").stat().st_size > 1000, stem + suffix
    with Image.open(out / "caption_metrics.png") as figure:
        assert figure.width > 500
    assert report["examples"] == [f"COCO_train2014_{i:012d}.jpg" for i in range(3)]
    assert "profile (local engine):" in printed
    caption_line = next(line for line in printed.splitlines() if line.strip().startswith("caption"))
    # each distinct decoded embedding captioned once (the random PQVAE maps some images alike)
    (cache,) = (out / "cache").glob("captions-*.jsonl")
    distinct = len(cache.read_text().splitlines())
    assert 6 * 2 < distinct <= 6 * 3 and caption_line.split()[1] == str(distinct)
    assert any(line.strip().startswith("clip-text") for line in printed.splitlines())
    assert f"CLIP-text {float(metrics['float32']['CLIP-text']):.4f}" in printed

    # run again: every caption comes from the cache, no model work, the same files
    before = (out / "captions.csv").read_text()
    cli("clipcap", "eval", str(trained), str(annotations), str(features), "--out", str(out),
        "--codec", "float16", "--codec", str(pqvae), "--max-tokens", "12", "--no-meteor",
        "--clip-model", tiny_clip, "--profile", "--device", "cpu", "--no-progress")  # fmt: skip
    printed = capsys.readouterr().out
    assert (out / "captions.csv").read_text() == before
    assert not any(line.strip().startswith("caption ") for line in printed.splitlines())


def test_eval_resumes_after_a_kill_without_captioning_again(coco, trained, tmp_path, monkeypatch):
    _root, _gpt, (annotations, features) = coco
    whole = caption_eval.evaluate_captioning(
        trained, annotations, features, tmp_path / "whole", codecs=["float16"],
        max_new_tokens=12, batch_size=4, meteor=False, clip_text=False, progress=False,
    )  # fmt: skip
    captioned: list[int] = []
    original = caption_eval.ClipCapCaptioner.caption

    def killed_in_the_second_batch(self, embeddings):
        if len(captioned) == 1:
            raise KeyboardInterrupt
        captioned.append(len(embeddings))
        return original(self, embeddings)

    monkeypatch.setattr(caption_eval.ClipCapCaptioner, "caption", killed_in_the_second_batch)
    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        caption_eval.evaluate_captioning(
            trained, annotations, features, out, codecs=["float16"], max_new_tokens=12,
            batch_size=4, meteor=False, clip_text=False, progress=False,
        )  # fmt: skip
    assert captioned == [4] and not (out / "captions.csv").exists()
    (cache,) = (out / "cache").glob("captions-*.jsonl")
    assert len(cache.read_text().splitlines()) == 4
    with cache.open("a") as handle:  # a line the kill cut short
        handle.write('{"embedding": "abc", "capt')

    def counted(self, embeddings):
        captioned.append(len(embeddings))
        return original(self, embeddings)

    monkeypatch.setattr(caption_eval.ClipCapCaptioner, "caption", counted)
    resumed = caption_eval.evaluate_captioning(
        trained, annotations, features, out, codecs=["float16"], max_new_tokens=12,
        batch_size=4, meteor=False, clip_text=False, progress=False,
    )  # fmt: skip
    assert captioned == [4, 4, 4]  # the 8 embeddings left, not the 4 done
    assert [r.captions for r in resumed.results] == [r.captions for r in whole.results]
    assert (out / "captions.csv").read_text() == (tmp_path / "whole" / "captions.csv").read_text()
    # another decoding setting is another cache, not a mix
    caption_eval.evaluate_captioning(
        trained, annotations, features, out, max_new_tokens=5, batch_size=4, meteor=False,
        clip_text=False, examples=0, progress=False,
    )  # fmt: skip
    assert len(list((out / "cache").glob("captions-*.jsonl"))) == 2


def test_missing_java_reports_meteor_skipped(coco, trained, tmp_path, monkeypatch, capsys):
    _root, _gpt, (annotations, features) = coco
    monkeypatch.setattr(caption_eval, "java_available", lambda: False)
    out = tmp_path / "eval"
    cli("clipcap", "eval", str(trained), str(annotations), str(features), "--out", str(out),
        "--max-tokens", "12", "--beams", "2", "--no-clip-text", "--device", "cpu",
        "--no-progress")  # fmt: skip
    printed = capsys.readouterr().out
    assert "METEOR skipped: no Java runtime" in printed
    report = json.loads((out / "eval.json").read_text())
    assert report["tokenizer"] == "simple" and "no Java" in report["skipped"]["METEOR"]
    with (out / "metrics.csv").open(newline="", encoding="utf-8") as handle:
        (row,) = csv.DictReader(handle)
    assert row["METEOR"] == "" and float(row["BLEU-4"]) >= 0
    with pytest.raises(ConfigError, match="METEOR needs Java"):
        caption_eval.score_captions({1: ["a cat"]}, {1: "a cat"}, meteor=True)


def test_simple_tokenizer_drops_the_ptb_punctuation():
    assert caption_eval.simple_tokenize("A Man, riding a horse.") == "a man riding a horse"
    assert caption_eval.simple_tokenize("The dog's ball -- red!") == "the dog's ball red"


@pytest.mark.slow
def test_meteor_matches_pycocoevalcap_where_java_is_present(monkeypatch):
    if not caption_eval.java_available():
        pytest.skip("no Java runtime")
    from pycocoevalcap.meteor import meteor
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    started: list[meteor.Meteor] = []

    class KeptMeteor(meteor.Meteor):  # pycocoevalcap's METEOR, kept for the reference below
        def __init__(self):
            super().__init__()
            started.append(self)

    monkeypatch.setattr(meteor, "Meteor", KeptMeteor)
    references = {1: ["a man riding a horse", "a person on a horse"], 2: ["a cat on a bed"]}
    candidates = {1: "a man on a horse.", 2: "a dog on a bed"}
    scores = caption_eval.score_captions(references, candidates)
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in v] for k, v in references.items()})
    res = tokenizer.tokenize({k: [{"caption": v}] for k, v in candidates.items()})
    # the reference: pycocoevalcap's scoring of its own tokens, on the METEOR process semcomp
    # started (a second one loads the paraphrase tables again: seconds)
    assert len(started) == 1
    assert scores.scores["METEOR"] == pytest.approx(started[0].compute_score(gts, res)[0])
    assert "METEOR" not in scores.skipped


@pytest.mark.parametrize(
    ("record", "match"),
    [
        ({"image_id": 100}, r"annotations\[2\] .* has no caption text"),
        ({"caption": "a cat"}, r"annotations\[2\] .* has no 'image_id'"),
        ({"image_id": 999, "caption": "a cat"}, r"annotations\[2\] .* names image 999"),
    ],
)
def test_a_malformed_annotation_names_the_file_and_the_record(tmp_path, record, match):
    path = tmp_path / "captions_bad.json"
    annotations = [{"image_id": 100, "caption": "a dog"}, {"image_id": 100, "caption": "a pup"}]
    images = [{"id": 100, "file_name": "a.jpg"}]
    path.write_text(json.dumps({"images": images, "annotations": [*annotations, record]}))
    with pytest.raises(ConfigError, match=match) as raised:
        read_coco_captions(path)
    assert str(path) in str(raised.value)


def test_a_malformed_annotation_stops_training_with_one_line(coco, tmp_path, capsys):
    _root, gpt, (annotations, features) = coco
    bad = json.loads(annotations.read_text())
    bad["annotations"][3]["caption"] = ""
    path = tmp_path / "captions_train2014.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(SystemExit) as raised:
        main(["clipcap", "train", str(path), str(features), "--out", str(tmp_path / "run"),
              "--gpt", str(gpt), "--no-progress"])  # fmt: skip
    assert raised.value.code != 0
    error = capsys.readouterr().err
    assert str(path) in error and "annotations[3]" in error and "no caption text" in error


def test_images_without_features_are_left_out_and_recorded(coco, tmp_path):
    _root, _gpt, (annotations, features) = coco
    data = json.loads(annotations.read_text())
    data["images"].append({"id": 999, "file_name": "not_extracted.jpg"})
    data["annotations"].append({"image_id": 999, "caption": "a tree"})
    path = tmp_path / "captions.json"
    path.write_text(json.dumps(data))
    joined = load_captioned_features(path, features)
    assert len(joined.image_ids) == 6 and joined.missing == ["not_extracted.jpg"]


def test_a_pqvae_codec_in_the_loop_changes_only_the_features(coco, tmp_path):
    from semcomp.codecs.pqvae.checkpoint import load_checkpoint
    from semcomp.codecs.pqvae.codec import CheckpointCodec

    _root, gpt, (annotations, features) = coco
    data = load_captioned_features(annotations, features)
    pqvae = small_pqvae(tmp_path / "pq.safetensors")
    model, train = configs(gpt, epochs=1, codec=str(pqvae))
    looped = Trainer(model, train, data, tmp_path / "looped", log=quiet, progress=False)
    plain = Trainer(model, configs(gpt, epochs=1)[1], data, tmp_path / "plain", log=quiet)
    decoded = CheckpointCodec(load_checkpoint(pqvae)).reconstruct(data.embeddings)
    assert np.array_equal(looped.features, decoded)
    assert not np.allclose(looped.features, plain.features)
    assert looped.tokens == plain.tokens and looped.samples == plain.samples
    assert looped.codec_name == "pqvae-shared (d_sub=8, K=4) [pq]"
    with pytest.raises(ConfigError, match="neither float32, float16 nor a PQVAE checkpoint"):
        Trainer(model, configs(gpt, 1, codec="nope")[1], data, tmp_path / "x", log=quiet)


def test_the_readme_clipcap_commands_exist(capsys):
    """The README block's commands run for real above (tiny data); here: names and options."""
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Downstream: captioning from compressed CLIP features")[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    lines = [line.split("#")[0].split() for line in block.strip().splitlines()]
    assert [words[:3] for words in lines][1:] == [
        ["semcomp", "clipcap", "train"],
        ["semcomp", "clipcap", "eval"],
    ]
    for words in lines:
        with pytest.raises(SystemExit) as raised:
            main([words[1], words[2], "--help"])
        assert raised.value.code == 0
        out = capsys.readouterr().out
        for option in (w for w in words if w.startswith("--")):
            assert option in out, (option, words)
