"""features extract → pqvae train → eval → sweep, through the command line."""

import json

import pytest

from helpers import photo
from semcomp.cli import main
from semcomp.codecs.pqvae.data import load_embeddings


def cli(*args: str) -> None:
    with pytest.raises(SystemExit) as raised:
        main([*args])
    assert raised.value.code == 0


@pytest.fixture(scope="module")
def features(tmp_path_factory, tiny_clip):
    root = tmp_path_factory.mktemp("features")
    images = root / "images"
    for label, name in enumerate(["apple", "mug", "ball", "tree"]):
        (images / name).mkdir(parents=True)
        for i in range(12):
            photo(48, 40, seed=label * 100 + i).save(images / name / f"{i}.png")
    (images / "tree" / "broken.jpg").write_bytes(b"not a jpeg")
    out = root / "features"
    common = ["--model", tiny_clip, "--workers", "0", "--shard-size", "20", "--no-progress"]
    cli("features", "extract", str(images), str(out), *common)
    return images, out, common


def test_features_are_sharded_labelled_and_resumable(features, capsys):
    images, out, common = features
    data = load_embeddings(out / "images")
    assert data.embeddings.shape == (48, 32) and sorted(set(data.labels)) == [0, 1, 2, 3]
    assert data.class_names == ["apple", "ball", "mug", "tree"]
    assert "broken.jpg" in (out / "failures.csv").read_text()
    text = load_embeddings(out / "text.safetensors")
    assert text.embeddings.shape == (4, 32)
    capsys.readouterr()
    cli("features", "extract", str(images), str(out), *common)
    assert "0 shard(s) written, 3 already there" in capsys.readouterr().out


def test_train_eval_sweep(features, tmp_path, capsys):
    _, out, _ = features
    shards, text = str(out / "images"), str(out / "text.safetensors")
    run = tmp_path / "run"
    cli(
        "pqvae",
        "train",
        shards,
        "--out",
        str(run),
        "--text",
        text,
        "--epochs",
        "2",
        "--lr",
        "1e-3",
        "--split",
        "random",
        "--d-sub",
        "8",
        "--k",
        "4",
        "--no-progress",
    )
    assert "best checkpoint" in capsys.readouterr().out
    cli(
        "pqvae",
        "eval",
        str(run / "best.safetensors"),
        shards,
        "--text",
        text,
        "--coder",
        "huffman",
        "--stream-size",
        "5",
        "--out",
        str(tmp_path / "eval.json"),
    )
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["coder"] == "huffman" and result["raw_top1"] is not None
    assert result["bpd"] == pytest.approx(result["bits_mean"] / 32)
    assert result["stream_size"] == 5
    rates = {(r["name"], r["stream_size"]): r for r in result["rates"]}
    assert ("range-positional", 1) in rates and ("range", 5) in rates and ("ans", 1) in rates
    for rate in result["rates"]:
        assert {"coded_bits", "ideal_bits", "ratio", "encode_per_s", "decode_per_s"} <= set(rate)
    assert "ideal_bits" in capsys.readouterr().out  # the per-coder table is printed
    sweep = tmp_path / "sweep"
    cli(
        "pqvae",
        "sweep",
        shards,
        "--out",
        str(sweep),
        "--text",
        text,
        "--d-sub",
        "8",
        "--k",
        "2",
        "--k",
        "4",
        "--epochs",
        "1",
        "--lr",
        "1e-3",
        "--stream-size",
        "10",
        "--no-progress",
    )
    table = (sweep / "table1.csv").read_text()
    assert "pqvae-shared" in table and "float32" in table and "scalar" in table
    assert (sweep / "ablation.png").exists() and (sweep / "results.csv").exists()
    import pandas as pd

    results = pd.read_csv(sweep / "results.csv").set_index("method")
    # the float32 upper bound decodes to the embedding itself: its accuracy is the raw one
    assert results.loc["float32", "top1"] == results.loc["float32", "raw_top1"]
    assert results.loc["float32", "bpd"] == 32
    rates = pd.read_csv(sweep / "rates.csv")
    assert set(rates["stream_size"]) == {1, 10} and "rates" not in results.columns
    ranged = rates[rates["coder"] == "range"]
    assert len(ranged) and (ranged["coded_bits"] <= ranged["fixed_bits"] + 8).all()  # + header


def test_class_texts_build_the_tokenizer_once(tiny_clip, monkeypatch):
    """`features extract` embeds each class's prompts in a call of its own: the tokenizer
    (a vocabulary read, about 0.1 s) is built once per model, not once per class."""
    import open_clip

    from semcomp.config import EmbedderConfig
    from semcomp.metrics.clip import OpenClipEmbedder

    built = []
    get_tokenizer = open_clip.get_tokenizer

    def counting(*args, **kwargs):
        built.append(args)
        return get_tokenizer(*args, **kwargs)

    monkeypatch.setattr(open_clip, "get_tokenizer", counting)
    embedder = OpenClipEmbedder(EmbedderConfig(model=tiny_clip), device="cpu")
    rows = [embedder.embed_texts([f"a photo of a {name}."]) for name in ("cat", "dog", "cat")]
    assert len(built) == 1
    assert rows[0].shape == (1, 32) and (rows[0] == rows[2]).all() and (rows[0] != rows[1]).any()
