"""``features extract`` on named datasets in torchvision's and Hugging Face's layouts."""

import json

import pytest
from safetensors import safe_open

import dataset_layouts as layouts
from semcomp.cli import main
from semcomp.codecs.pqvae.data import load_embeddings
from semcomp.config import EmbedderConfig
from semcomp.errors import ConfigError
from semcomp.features import extract_features


def metadata(path):
    with safe_open(str(path), framework="numpy") as handle:
        return handle.metadata()


def extract(root, out, tiny_clip, **options):
    options = {"batch_size": 4, "workers": 0, "progress": False} | options
    return extract_features(root, out, EmbedderConfig(model=tiny_clip), **options)


def test_pets_test_split_with_its_own_prompt(tmp_path, tiny_clip):
    layouts.oxford_pets(tmp_path / "pets")
    summary = extract(tmp_path / "pets", tmp_path / "out", tiny_clip, dataset="oxford-pets")
    assert (summary.images, summary.classes) == (6, 37)
    assert summary.source == "oxford-pets, split test, torchvision layout"
    shard = metadata(tmp_path / "out" / "images" / "shard-00000.safetensors")
    identity = json.loads(shard["dataset"])
    assert identity["dataset"] == "oxford-pets" and identity["split"] == "test"
    assert identity["layout"] == "torchvision" and len(identity["class_ids"]) == 37
    assert json.loads(shard["class_names"])[1] == "American Bulldog"
    text = metadata(tmp_path / "out" / "text.safetensors")
    assert json.loads(text["templates"]) == ["a photo of a {}, a type of pet."]
    assert load_embeddings(tmp_path / "out" / "text.safetensors").embeddings.shape == (37, 32)
    labels = load_embeddings(tmp_path / "out" / "images").labels
    assert sorted(set(labels.tolist())) == [0, 1, 36]  # the official breed numbers


def test_parquet_shards_are_embedded_row_by_row(tmp_path, tiny_clip):
    layouts.hf_parquet(tmp_path / "hf", ["cat", "dog"], {"test": [0, 1, 1, 0, 1]})
    # one undecodable cell is listed as a failure with its shard and row
    import pyarrow.parquet as pq

    shard = tmp_path / "hf" / "data" / "test-00001-of-00002.parquet"
    table = pq.read_table(shard)
    cells = table.column("image").to_pylist()
    cells[0] = {"bytes": b"not an image", "path": "x.png"}
    import pyarrow as pa

    table = table.set_column(0, "image", pa.array(cells, type=table.schema.field("image").type))
    pq.write_table(table.replace_schema_metadata(table.schema.metadata), shard)
    summary = extract(
        tmp_path / "hf", tmp_path / "out", tiny_clip, dataset="hf", templates="single"
    )
    assert (summary.images, summary.failures, summary.classes) == (5, 1, 2)
    failures = (tmp_path / "out" / "failures.csv").read_text()
    assert "test-00001-of-00002.parquet#0" in failures
    listed = (tmp_path / "out" / "images" / "shard-00000.paths.txt").read_text().split()
    assert len(listed) == 4 and listed[0].endswith("test-00000-of-00002.parquet#0")


def test_cli_extracts_cifar_and_refuses_dataset_templates_for_a_folder(tmp_path, tiny_clip):
    layouts.cifar(tmp_path / "cifar")
    out = tmp_path / "out"
    common = ["--model", tiny_clip, "--workers", "0", "--no-progress"]
    with pytest.raises(SystemExit) as done:
        main(
            [
                "features",
                "extract",
                str(tmp_path / "cifar"),
                str(out),
                "--dataset",
                "cifar-10",
                *common,
            ]
        )
    assert done.value.code == 0
    data = load_embeddings(out / "images")
    assert data.embeddings.shape == (4, 32) and data.class_names[0] == "airplane"
    assert json.loads(metadata(out / "text.safetensors")["templates"])[1] == (
        "a blurry photo of a {}."
    )
    layouts.jpeg(tmp_path / "folder" / "cat" / "a.jpg", 1)
    with pytest.raises(ConfigError, match="no templates of its own"):
        extract(tmp_path / "folder", tmp_path / "out2", tiny_clip, templates="dataset")
