"""Reproducing the PQVAE paper: the reference schedule, Table 1's grid, bpd and bpp as the paper
reports them, evaluation on another dataset, published splits and Parquet embedding shards."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from semcomp.codecs.pqvae.data import EmbeddingSet, classes_from_file, load_embeddings
from semcomp.codecs.pqvae.evaluate import (
    TABLE1_D_SUB,
    TABLE1_K,
    evaluate,
    evaluation_classes,
    sweep_configs,
    write_table1,
)
from semcomp.codecs.pqvae.model import (
    PAPER_PRESET,
    REFERENCE_MODEL,
    EmbeddingCodecModel,
    PQVAEConfig,
    Residual,
)
from semcomp.codecs.pqvae.train import TrainConfig, Trainer
from semcomp.errors import ConfigError

SMALL = PQVAEConfig(input_dim=64, hidden=(64, 32), residual_hidden=16, channels=16, d_sub=4)


def synthetic(classes=12, per=20, dim=64, seed=0, names=None):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(classes, dim))
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    labels = np.repeat(np.arange(classes), per)
    x = means[labels] + 0.3 * rng.normal(size=(len(labels), dim)) / np.sqrt(dim)
    names = names or [f"class {i}" for i in range(classes)]
    return EmbeddingSet(x, labels, names), means


def train(config, training, data, text, out, logs=None):
    trainer = Trainer(config, training, data, text, out, progress=False, log=(logs or []).append)
    return trainer, trainer.train()


# ---- the reference schedule -------------------------------------------------------------------


def test_reference_schedule_defaults_and_model():
    reference = TrainConfig.for_schedule("reference")
    assert (reference.epochs, reference.lr, reference.weight_decay, reference.batch_size) == (
        100,
        1e-5,
        5e-4,
        64,
    )
    assert TrainConfig.for_schedule("semcomp").epochs == 60
    assert TrainConfig.for_schedule("reference", epochs=3, lr=None).epochs == 3
    with pytest.raises(ConfigError, match="unknown schedule"):
        TrainConfig.for_schedule("fast")
    torch.manual_seed(0)
    model = EmbeddingCodecModel(PAPER_PRESET.model_copy(update=REFERENCE_MODEL))
    assert not [name for name, _ in model.named_parameters() if name.endswith("bias")]
    residual = next(m for m in model.modules() if isinstance(m, Residual))
    assert all(isinstance(m, torch.nn.ConvTranspose2d) for m in residual.block[1::2])
    codebook = model.quantizer.codebook.detach()
    assert codebook.min() >= -1 and codebook.max() <= 1 and codebook.abs().mean() > 0.4
    default = EmbeddingCodecModel(PAPER_PRESET)
    assert any(name.endswith("bias") for name, _ in default.named_parameters())


def test_reference_rebuilds_adam_every_epoch_and_keeps_the_best_top1(tmp_path):
    data, text = synthetic()
    fast = {"epochs": 3, "lr": 1e-3, "lr_step": 2, "lr_gamma": 0.1, "batch_size": 32}
    semcomp, _ = train(SMALL, TrainConfig(**fast), data, text, tmp_path / "s")
    # the rate after each epoch's step: decayed after epoch 2
    assert [round(r.lr, 8) for r in semcomp.history] == [1e-3, 1e-4, 1e-4]
    batches = len(semcomp._batches(semcomp.train_rows, 1))
    steps = semcomp.optimizer.state_dict()["state"][0]["step"]
    assert int(steps) == 3 * batches  # one Adam all along
    reference, best = train(
        SMALL, TrainConfig.for_schedule("reference", patience=1, **fast), data, text, tmp_path / "r"
    )
    assert len(reference.history) == 3  # no early stopping
    assert [round(r.lr, 8) for r in reference.history] == [1e-3] * 3  # StepLR never fires
    steps = reference.optimizer.state_dict()["state"][0]["step"]
    assert int(steps) == batches  # Adam's state restarted this epoch
    assert best.training["selected_by"] == "val_top1"
    top1 = [r.val_top1 for r in reference.history]
    assert best.training["best_score"] == pytest.approx(max(top1))
    _, cosine = train(
        SMALL, TrainConfig.for_schedule("reference", **fast), data, None, tmp_path / "c"
    )
    assert cosine.training["selected_by"] == "val_cosine"  # no class texts: cosine


# ---- Table 1 and the rates the paper reports ----------------------------------------------------


def test_sweep_defaults_fill_table1():
    configs = sweep_configs(768, list(TABLE1_D_SUB), list(TABLE1_K), PAPER_PRESET)
    shared = [c for c in configs if c.architecture == "pqvae-shared"]
    assert [round(c.raw_bits / 768, 3) for c in shared] == [
        0.521,
        0.781,
        1.042,
        1.302,
        1.562,
        2.604,
    ]
    assert [c.raw_bits for c in shared] == [400, 600, 800, 1000, 1200, 2000]
    kmeans = [(c.d_sub, c.codebook_size) for c in configs if c.architecture == "vqvae-kmeans"]
    assert kmeans == [(c.d_sub, c.codebook_size) for c in shared]
    scalar = [c.raw_bits / 768 for c in configs if c.architecture == "scalar"]
    assert scalar == [1, 2, 3]  # Table 1's SQ columns
    assert {c.architecture for c in configs} >= {"float16", "float32"}
    # the VQ-VAE baseline at EVERY d_sub of an ablation
    ablation = sweep_configs(768, [8, 16], [4], PAPER_PRESET)
    assert [c.d_sub for c in ablation if c.architecture == "vqvae-kmeans"] == [8, 16]


def test_table1_puts_nominal_and_coded_bpd_side_by_side(tmp_path):
    results = pd.DataFrame(
        [
            {
                "method": "pqvae-shared (d_sub=16, K=4)",
                "d_sub": 16,
                "fixed_bpd": 400 / 768,
                "bpd": 0.45,
                "top1": 0.8,
                "cosine": 0.9,
            },
            {
                "method": "pqvae-shared (d_sub=16, K=8)",
                "d_sub": 16,
                "fixed_bpd": 600 / 768,
                "bpd": 0.7,
                "top1": 0.85,
                "cosine": 0.92,
            },
            {
                "method": "scalar (1 bit)",
                "d_sub": None,
                "fixed_bpd": 1.0,
                "bpd": 0.98,
                "top1": 0.7,
                "cosine": 0.8,
            },
            {
                "method": "float32",
                "d_sub": None,
                "fixed_bpd": 32.0,
                "bpd": 32.0,
                "top1": 0.9,
                "cosine": 1.0,
            },
        ]
    )
    table = write_table1(results, tmp_path / "table1.csv")
    assert list(table.index) == ["pqvae-shared (d_sub=16)", "scalar", "float32"]
    assert table.loc["pqvae-shared (d_sub=16)", "0.521 bpd: top1"] == 0.8
    assert table.loc["pqvae-shared (d_sub=16)", "0.521 bpd: coded bpd"] == 0.45
    assert table.loc["scalar", "1 bpd: coded bpd"] == 0.98
    assert pd.isna(table.loc["scalar", "0.521 bpd: top1"])
    assert "32 bpd: top1" in pd.read_csv(tmp_path / "table1.csv").columns


@pytest.fixture(scope="module")
def fixed_checkpoint(tmp_path_factory):
    data, text = synthetic()
    _, best = train(SMALL, TrainConfig(epochs=1, lr=1e-3), data, text, tmp_path_factory.mktemp("f"))
    return best, data, text


def test_bpd_and_bpp_as_the_paper_and_per_image(fixed_checkpoint):
    checkpoint, data, text = fixed_checkpoint
    pixels = np.where(np.arange(len(data.labels)) % 2, 100_000, 249_344)
    with_pixels = EmbeddingSet(data.embeddings, data.labels, data.class_names, pixels=pixels)
    result = evaluate(checkpoint, with_pixels, text, "range-positional", np.arange(12))
    fixed = SMALL.raw_bits
    assert result.fixed_bits == fixed and result.fixed_bpd == pytest.approx(fixed / 64)
    assert result.bpd == pytest.approx(result.bits_mean / 64)
    mean = pixels.mean()  # 174,672: the paper's 400 bits give 2.29e-3 bpp
    assert result.mean_pixels == pytest.approx(mean)
    assert result.fixed_bpp_of_mean_pixels == pytest.approx(fixed / mean)
    assert result.bpp_of_mean_pixels == pytest.approx(result.bits_mean / mean)
    assert 400 / mean == pytest.approx(2.29e-3, abs=0.005e-3)
    batch = evaluate(checkpoint, with_pixels, text, "range", None, stream_size=1)
    per_image = np.mean(
        [
            8 * len(s)
            for s in checkpoint.coder("range").encode(
                checkpoint.model.indices(torch.from_numpy(data.embeddings)).numpy()
            )
        ]
        / pixels
    )
    assert batch.bpp_per_image == pytest.approx(per_image)
    # a small image weighs more per pixel: the two definitions differ
    assert batch.bpp_per_image > batch.bpp_of_mean_pixels
    assert evaluate(checkpoint, data, text).mean_pixels is None  # no pixel counts, no bpp


# ---- evaluating on another dataset, published splits --------------------------------------------


def test_evaluating_another_dataset_uses_its_classes(fixed_checkpoint):
    checkpoint, data, _ = fixed_checkpoint
    held, classes = evaluation_classes(checkpoint, data)  # the training dataset: held out
    assert set(np.unique(held.labels)) == set(classes) == set(checkpoint.training["val_classes"])
    pets, pet_text = synthetic(classes=3, per=5, seed=3, names=["a", "b", "c"])
    other, competing = evaluation_classes(checkpoint, pets)
    assert competing is None and len(other.labels) == 15
    result = evaluate(checkpoint, other, pet_text, classes=competing)
    assert result.classes == 3 and result.class_set == "all"
    with pytest.raises(ConfigError, match="needs the dataset the checkpoint was trained on"):
        evaluation_classes(checkpoint, pets, "held-out")
    with pytest.raises(ConfigError, match="text embeddings have 3 rows"):
        evaluate(checkpoint, data, pet_text)
    everything, none = evaluation_classes(checkpoint, data, "all")
    assert none is None and len(everything.labels) == len(data.labels)


def test_a_published_split_file(tmp_path):
    data, text = synthetic()
    data.dataset = {"class_ids": [f"n{i:08d}" for i in range(12)]}
    listing = tmp_path / "val.txt"
    listing.write_text("# held-out classes\n3\nclass 5\nn00000007  # by id\n")
    assert classes_from_file(listing, data) == (3, 5, 7)
    trainer, best = train(
        SMALL, TrainConfig(epochs=1, val_classes=(3, 5, 7)), data, text, tmp_path / "run"
    )
    assert sorted(np.unique(data.labels[trainer.val_rows])) == [3, 5, 7]
    assert best.training["val_classes"] == [3, 5, 7]
    listing.write_text("3\nunicorn\n")
    with pytest.raises(ConfigError, match="first: unicorn"):
        classes_from_file(listing, data)


def test_parquet_embedding_shards_in_the_hugging_face_layout(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    features = {"label": {"_type": "ClassLabel", "names": ["cat", "dog"]}}
    metadata = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    (tmp_path / "data").mkdir()
    for number in range(2):
        table = pa.table(
            {
                "embedding": [[float(number), 1.0, 0.0]] * 3,
                "label": [0, 1, number],
                "pixels": [1000, 2000, 3000],
            }
        ).replace_schema_metadata(metadata)
        pq.write_table(table, tmp_path / "data" / f"train-0000{number}-of-00002.parquet")
    loaded = load_embeddings(tmp_path)
    assert loaded.embeddings.shape == (6, 3) and loaded.class_names == ["cat", "dog"]
    assert loaded.labels.tolist() == [0, 1, 0, 0, 1, 1]
    assert loaded.pixels.tolist() == [1000, 2000, 3000] * 2
