"""``features extract``: shards, resumption, read errors versus undecodable images."""

import csv
import pathlib

import numpy as np
import pytest

from helpers import photo
from semcomp import features
from semcomp.codecs.pqvae.data import load_embeddings
from semcomp.config import EmbedderConfig
from semcomp.engines import LocalEngine, PluginFactory
from semcomp.errors import SemcompError
from semcomp.features import extract_features


@pytest.fixture
def class_folder(tmp_path):
    """Two classes of 4 photos each, and one corrupt file in the second class."""
    root = tmp_path / "images"
    for label, name in enumerate(["cat", "dog"]):
        (root / name).mkdir(parents=True)
        for i in range(4):
            photo(40, 32, seed=10 * label + i).save(root / name / f"{i}.png")
    (root / "dog" / "corrupt.jpg").write_bytes(b"\xff\xd8 not really")
    return root


def extract(root, out, tiny_clip, **options):
    options = {"batch_size": 2, "shard_size": 3, "workers": 0, "progress": False} | options
    return extract_features(root, out, EmbedderConfig(model=tiny_clip), **options)


def failure_rows(path):
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_relative_folders_give_absolute_paths_and_one_model_load(
    tmp_path, class_folder, tiny_clip, monkeypatch
):
    built = []
    build = PluginFactory.__call__
    monkeypatch.setattr(PluginFactory, "__call__", lambda self: built.append(1) or build(self))
    monkeypatch.chdir(tmp_path)
    summary = extract(pathlib.Path("images"), pathlib.Path("out"), tiny_clip)
    assert len(built) == 1  # images and class texts share one CLIP
    assert summary.out == tmp_path / "out" and summary.shards_written == 3
    listed = (tmp_path / "out" / "images" / "shard-00000.paths.txt").read_text().split()
    assert listed and all(
        pathlib.Path(p).is_absolute() and pathlib.Path(p).is_file() for p in listed
    )
    assert (tmp_path / "out" / "text.safetensors").exists()


def test_a_read_error_leaves_its_shard_for_the_next_run(
    tmp_path, class_folder, tiny_clip, monkeypatch
):
    """A file that cannot be read is not a bad image: its shard waits, nothing is lost."""
    read_bytes = pathlib.Path.read_bytes

    def flaky(self):
        if self.name == "1.png" and self.parent.name == "dog":
            raise OSError(5, "Input/output error", str(self))
        return read_bytes(self)

    monkeypatch.setattr(pathlib.Path, "read_bytes", flaky)
    out = tmp_path / "out"
    with pytest.raises(SemcompError, match=r"1 image file\(s\) could not be read, so 1 shard"):
        extract(class_folder, out, tiny_clip)
    shards = sorted(p.name for p in (out / "images").glob("*.safetensors"))
    # files: cat/0-3, dog/0-3, dog/corrupt.jpg in shards of 3: shard 1 holds dog/1.png
    assert shards == ["shard-00000.safetensors", "shard-00002.safetensors"]
    assert all("1.png" not in row[0] for row in failure_rows(out / "failures.csv"))
    monkeypatch.setattr(pathlib.Path, "read_bytes", read_bytes)
    summary = extract(class_folder, out, tiny_clip)
    assert summary.shards_written == 1 and summary.shards_skipped == 2
    assert load_embeddings(out / "images").embeddings.shape == (8, 32)
    assert [row[0].endswith("corrupt.jpg") for row in failure_rows(out / "failures.csv")] == [True]


def test_undecodable_images_are_listed_per_shard_before_a_kill(
    tmp_path, class_folder, tiny_clip, monkeypatch
):
    """The shard holding the corrupt file is written, then the run is killed: its failure
    row is on disk beside it and the resumed run's failures.csv names it."""
    (class_folder / "cat" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    write_shard = features.write_shard
    calls = []

    def killed_after_first_shard(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return write_shard(*args, **kwargs)

    monkeypatch.setattr(features, "write_shard", killed_after_first_shard)
    with pytest.raises(KeyboardInterrupt):
        extract(class_folder, out, tiny_clip)
    listed = failure_rows(out / "images" / "shard-00000.failures.csv")
    assert [row[0] for row in listed] == [str(class_folder / "cat" / "0.png")]
    monkeypatch.setattr(features, "write_shard", write_shard)
    summary = extract(class_folder, out, tiny_clip)
    assert summary.shards_skipped == 1 and summary.failures == 2  # cat/0.png, dog/corrupt.jpg
    names = sorted(pathlib.Path(row[0]).name for row in failure_rows(out / "failures.csv"))
    assert names == ["0.png", "corrupt.jpg"]
    assert load_embeddings(out / "images").embeddings.shape == (7, 32)


def test_text_embeddings_are_written_atomically(tmp_path, class_folder, tiny_clip, monkeypatch):
    import safetensors.numpy

    save_file = safetensors.numpy.save_file

    def dies_midway(tensors, filename, metadata=None):
        if "templates" in (metadata or {}):
            pathlib.Path(filename).write_bytes(b"half a file")
            raise KeyboardInterrupt
        return save_file(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.numpy, "save_file", dies_midway)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        extract(class_folder, out, tiny_clip)
    assert not (out / "text.safetensors").exists()
    monkeypatch.setattr(safetensors.numpy, "save_file", save_file)
    extract(class_folder, out, tiny_clip)
    assert load_embeddings(out / "text.safetensors").embeddings.shape == (2, 32)


class RepeatingEngine(LocalEngine):
    """Gives the first outcome twice (a retried batch), as a cluster might."""

    def run(self, factory, task, batches, *, ordered=False):
        outcomes = super().run(factory, task, batches, ordered=ordered)
        first = next(outcomes)
        yield first
        yield first
        yield from outcomes


def test_a_repeated_outcome_does_not_write_a_shard_early(tmp_path, class_folder, tiny_clip):
    out = tmp_path / "out"
    summary = extract(class_folder, out, tiny_clip, engine=RepeatingEngine())
    assert summary.shards_written == 3
    reference = extract(class_folder, tmp_path / "reference", tiny_clip)
    assert reference.shards_written == 3
    np.testing.assert_array_equal(
        load_embeddings(out / "images").embeddings,
        load_embeddings(tmp_path / "reference" / "images").embeddings,
    )


def test_class_texts_embed_every_prompt_of_a_batch_in_one_call():
    """Each class's text embedding is the normalised mean of its templates' embeddings,
    and a batch's prompts go to the embedder together (it batches the forwards)."""
    rng = np.random.default_rng(0)
    table = {}

    class Embedder:
        calls = 0

        def embed_texts(self, texts):
            Embedder.calls += 1
            rows = [table.setdefault(t, rng.normal(size=4)) for t in texts]
            return np.asarray(rows, dtype=np.float32)

    task = features.ClassTexts(("a {}.", "a photo of a {}.", "{}"))
    rows = task.infer(Embedder(), ["golden_retriever", "cat"], None)
    assert Embedder.calls == 1 and len(rows) == 2
    for name, row in zip(["golden retriever", "cat"], rows, strict=True):
        mean = np.mean([np.float32(table[t.format(name)]) for t in task.templates], axis=0)
        np.testing.assert_allclose(row, mean / np.linalg.norm(mean), rtol=1e-6)
    assert task.infer(Embedder(), [], None) == []
