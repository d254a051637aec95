"""PQVAE-shared on synthetic CLIP-like embeddings: learning, rates, exact bitstreams."""

import math

import numpy as np
import pytest
import torch

from semcomp.codecs.pqvae.bitstream import (
    CODERS,
    RANGE_PRIORS,
    STREAM_CODERS,
    HuffmanCoder,
    decode_streams,
    encode_stream,
    encode_streams,
    make_coder,
    smoothed,
)
from semcomp.codecs.pqvae.checkpoint import load_checkpoint
from semcomp.codecs.pqvae.codec import CheckpointCodec
from semcomp.codecs.pqvae.data import EmbeddingSet, load_embeddings
from semcomp.codecs.pqvae.evaluate import evaluate
from semcomp.codecs.pqvae.model import PAPER_PRESET, EmbeddingCodecModel, PQVAEConfig
from semcomp.codecs.pqvae.train import TrainConfig, Trainer
from semcomp.errors import ConfigError
from semcomp.metrics.zeroshot import zero_shot

SMALL = PQVAEConfig(input_dim=64, hidden=(64, 32), residual_hidden=16, channels=16, d_sub=4)


def synthetic(classes=40, per=30, dim=64, rank=8, noise=0.3, seed=0):
    """Class means on a low-rank sphere plus noise; text prototypes near the means."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(dim, rank)))[0]
    means = rng.normal(size=(classes, rank))
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    labels = np.repeat(np.arange(classes), per)
    z = means[labels] + noise * rng.normal(size=(len(labels), rank)) / np.sqrt(rank)
    x = z @ basis.T + 0.05 * rng.normal(size=(len(labels), dim)) / np.sqrt(dim)
    text = (means + 0.1 * rng.normal(size=means.shape) / np.sqrt(rank)) @ basis.T
    return EmbeddingSet(x, labels, [f"class {i}" for i in range(classes)]), text


@pytest.fixture(scope="module")
def data():
    return synthetic()


def quiet_trainer(config, training, data, text, out):
    """A trainer that prints nothing (the tests read its history)."""
    return Trainer(config, training, data, text, out, progress=False, log=lambda _: None)


TRAIN = TrainConfig(epochs=12, lr=3e-3, validation=0.25, batch_size=64)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    embeddings, text = data
    out = tmp_path_factory.mktemp("pqvae")
    trainer = quiet_trainer(SMALL, TRAIN, embeddings, text, out)
    return trainer, trainer.train(), out


def test_paper_preset_is_400_bits():
    assert PAPER_PRESET.symbols == 200 and PAPER_PRESET.raw_bits == 400
    assert PAPER_PRESET.raw_bits / PAPER_PRESET.input_dim == pytest.approx(0.52, abs=0.01)
    assert PAPER_PRESET.model_copy(update={"codebook_size": 8}).raw_bits == 600
    latent = EmbeddingCodecModel(PAPER_PRESET).encoder(torch.randn(2, 768))
    assert latent.shape == (2, 128, 5, 5)
    assert torch.allclose(latent.norm(dim=1), torch.ones(2, 5, 5), atol=1e-5)


def test_training_beats_chance_by_far(trained):
    trainer, checkpoint, out = trained
    last = trainer.history[-1]
    chance = 1 / len(trainer.val_classes)
    assert last.val_top1 >= 0.8 > 5 * chance and last.val_cosine > 0.8
    assert (out / "history.csv").exists() and (out / "best.safetensors").exists()
    assert checkpoint.training["val_classes"] == [int(c) for c in trainer.val_classes]


@pytest.mark.parametrize("coder", CODERS)
def test_every_coder_round_trips_exactly(data, trained, coder):
    embeddings, _ = data
    _, checkpoint, _ = trained
    codec = CheckpointCodec(checkpoint, coder)
    streams = codec.encode(embeddings.embeddings[:100])
    assert all(isinstance(s, bytes) for s in streams)
    decoded = codec.decode(streams)
    assert np.array_equal(decoded, codec.reconstruct(embeddings.embeddings[:100]))


def test_rates_against_the_ideal_code_length(data, trained):
    embeddings, _ = data
    _, checkpoint, _ = trained
    rows = embeddings.embeddings[:200]
    fixed = CheckpointCodec(checkpoint, "fixed").encode_batch(rows)
    assert (fixed.bits == 8 * math.ceil(checkpoint.config.raw_bits / 8)).all()
    huffman = CheckpointCodec(checkpoint, "huffman")
    encoded = huffman.encode_batch(rows)
    code_length = huffman.coder.code_length(huffman.indices(rows))
    p, lengths = huffman.coder.probabilities, huffman.coder.lengths
    entropy = -(p * np.log2(p)).sum()
    assert entropy <= (p * lengths).sum() < entropy + 1  # Huffman: H <= L < H + 1 per symbol
    assert code_length.mean() >= 0.98 * encoded.ideal_bits.mean()
    assert (encoded.bits == 8 * np.ceil(code_length / 8)).all()
    for name in ("ans", "ans-positional"):
        ans = CheckpointCodec(checkpoint, name).encode_batch(rows)
        # rANS: within 1 % of the ideal length plus its fixed state flush (≤ 64 bits)
        assert (ans.bits <= 1.01 * ans.ideal_bits + 64).all()


def paper_like(rows=400, symbols=200, alphabet=4, seed=0, skew=1.0):
    """Indices with position-dependent statistics, and their counts (global, per symbol)."""
    rng = np.random.default_rng(seed)
    logits = skew * rng.normal(size=(symbols, alphabet))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    cdf = p.cumsum(1)
    draws = rng.random((rows, symbols))
    indices = (draws[..., None] > cdf[None]).sum(-1).clip(0, alphabet - 1)
    counts = np.bincount(indices.ravel(), minlength=alphabet).astype(float)
    positional = np.stack([np.bincount(c, minlength=alphabet) for c in indices.T]).astype(float)
    return indices, counts, positional


@pytest.mark.parametrize("name", list(RANGE_PRIORS))
@pytest.mark.parametrize("skew", [0.0, 1.0, 3.0])
def test_range_coders_are_near_the_ideal_and_never_above_fixed(name, skew):
    # the paper's shape: 200 indices of 4 symbols, 400 fixed bits; 8 subspaces per position
    indices, counts, positional = paper_like(skew=skew)
    coder = make_coder(name, 200, 4, counts, positional, subspaces=8)
    streams = coder.encode(indices)
    assert np.array_equal(coder.decode(streams), indices)
    bits = np.array([8 * len(s) for s in streams])
    ideal = coder.ideal_bits(indices)
    assert bits.max() <= 400  # the stream's length is the flag: no bit beyond the fixed code
    # within 1.03 × the ideal length under the stored prior (or the fixed code when shorter)
    assert bits.mean() <= max(min(1.03 * ideal.mean(), 400), ideal.mean() + 8)
    if skew:
        assert bits.mean() <= 1.03 * ideal.mean()


def test_range_coder_falls_back_to_the_fixed_code_when_it_is_shorter():
    counts = np.array([1000.0, 1, 1, 1])  # a prior that expects index 0 everywhere
    coder = make_coder("range", 200, 4, counts, np.tile(counts, (200, 1)))
    rng = np.random.default_rng(1)
    indices = np.vstack([np.zeros((3, 200), int), rng.integers(0, 4, size=(5, 200))])
    streams = coder.encode(indices)
    lengths = [len(s) for s in streams]
    assert lengths[:3] == [min(lengths)] * 3 and max(lengths[:3]) < 5  # near 0 ideal bits
    assert lengths[3:] == [50] * 5  # unlikely under the prior: the 400-bit code, no extra bit
    assert np.array_equal(coder.decode(streams), indices)


@pytest.mark.parametrize("alphabet", [2, 3, 16, 300])
def test_range_coder_round_trips_extreme_priors_and_carries(alphabet):
    rng = np.random.default_rng(alphabet)
    for concentration in (0.01, 1.0, 100.0):
        p = rng.dirichlet(np.full(alphabet, concentration))
        indices = rng.choice(alphabet, size=(300, 60), p=p)
        counts = np.bincount(indices.ravel(), minlength=alphabet) * 50.0
        coder = make_coder("range", 60, alphabet, counts, np.ones((60, alphabet)))
        streams = coder.range_code(indices)  # without the fixed fallback
        assert np.array_equal(coder.range_decode(streams), indices)
        assert np.array_equal(coder.decode(coder.encode(indices)), indices)


@pytest.mark.parametrize("name", STREAM_CODERS)
def test_batch_streams_round_trip_and_pay_the_termination_once(name):
    indices, counts, positional = paper_like(rows=1005, skew=1.0)
    coder = make_coder(name, 200, 4, counts, positional, subspaces=8)
    ideal = coder.ideal_bits(indices).mean()
    for size in (1, 10, 100):
        streams = encode_streams(coder, indices, size)
        assert len(streams) == -(-1005 // size)  # the last stream holds the remainder
        assert np.array_equal(decode_streams(coder, streams), indices)
        bits = sum(8 * len(s) for s in streams) / len(indices)
        if name in RANGE_PRIORS and size >= 10:
            assert bits <= 1.01 * ideal  # count header included
    single = encode_stream(coder, indices[:7])
    assert np.array_equal(decode_streams(coder, [single]), indices[:7])
    assert decode_streams(coder, [encode_stream(coder, indices[:0])]).shape == (0, 200)


def test_streams_of_the_older_coders_still_decode():
    """Streams written by the coders before the range coder (bytes recorded from that code)."""
    indices = np.array(
        [
            [1, 2, 2, 0, 0, 2, 0, 2, 2, 0, 0, 0],
            [0, 0, 1, 1, 3, 2, 1, 3, 0, 0, 1, 0],
            [0, 1, 0, 3, 1, 1, 0, 0, 0, 0, 1, 0],
        ]
    )
    counts = np.array([50.0, 25, 15, 10])
    positional = np.tile(counts, (12, 1))
    positional[:, 0] += np.arange(12)
    recorded = {
        "fixed": ["682280", "05e704", "135004"],
        "huffman": ["b63360", "2beb90", "4f4100"],
        "ans": ["a5278c63a9000000", "fae66b72f8040000", "efc8313c50000000"],
        "ans-positional": ["f1eabbd6c7000000", "4be85ba27d040000", "7d7b368e30000000"],
    }
    for name, hexes in recorded.items():
        coder = make_coder(name, 12, 4, counts, positional)
        assert [s.hex() for s in coder.encode(indices)] == hexes
        assert np.array_equal(coder.decode([bytes.fromhex(h) for h in hexes]), indices)


def test_evaluation_reports_every_coder_and_batch_streams(data, trained):
    embeddings, text = data
    _, checkpoint, _ = trained
    rows = embeddings.subset(np.arange(200))
    single = evaluate(checkpoint, rows, text)
    batched = evaluate(checkpoint, rows, text, "range-positional", stream_size=20)
    assert batched.stream_size == 20 and batched.top1 == single.top1  # lossless either way
    assert batched.bits_mean < single.bits_mean <= checkpoint.config.raw_bits
    rates = {(r.name, r.stream_size): r for r in batched.rates}
    assert set(rates) == {(c, 1) for c in CODERS} | {(c, 20) for c in STREAM_CODERS}
    for rate in batched.rates:
        assert rate.ratio == pytest.approx(rate.coded_bits / rate.ideal_bits)
        assert rate.encode_per_s > 0 and rate.decode_per_s > 0
    assert rates["range-positional", 1].coded_bits == pytest.approx(single.bits_mean)
    assert rates["range", 20].coded_bits <= 1.01 * rates["range", 20].ideal_bits
    assert rates["range-position", 1].prior == "position" and rates["huffman", 1].coder == "huffman"


def test_huffman_code_is_prefix_free_and_optimal_for_dyadic_sources():
    coder = HuffmanCoder(4, 4, np.array([0.5, 0.25, 0.125, 0.125]))
    assert list(coder.lengths) == [1, 2, 3, 3]
    indices = np.random.default_rng(0).integers(0, 4, size=(10, 4))
    assert np.array_equal(coder.decode(coder.encode(indices)), indices)
    assert smoothed(np.array([0, 0, 2])).min() > 0


def test_cosine_distortion_falls_as_bits_rise(data, tmp_path):
    embeddings, text = data
    distortions = []
    # 4 epochs: K=2 stays near 1.08 and K=16 is below 0.4 already (0.03 after 12)
    training = TRAIN.model_copy(update={"epochs": 4})
    for size in (2, 16):
        config = SMALL.model_copy(update={"codebook_size": size})
        trainer = quiet_trainer(config, training, embeddings, text, tmp_path / f"k{size}")
        trainer.train()
        distortions.append(1 - trainer.history[-1].val_cosine)
    assert distortions[1] < distortions[0]


def test_baselines_share_the_interface(data, tmp_path):
    embeddings, text = data
    rows = embeddings.embeddings[:20]
    for update in (
        {"architecture": "vqvae-kmeans"},
        {"architecture": "scalar", "scalar_bits": 2},
        {"architecture": "float16"},
        {"architecture": "float32"},
    ):
        config = SMALL.model_copy(update=update)
        training = TRAIN.model_copy(update={"epochs": 2})
        trainer = quiet_trainer(
            config, training, embeddings, text, tmp_path / update["architecture"]
        )
        codec = CheckpointCodec(trainer.train(), "huffman")
        decoded = codec.decode(codec.encode(rows))
        assert np.array_equal(decoded, codec.reconstruct(rows))
    assert len(codec.encode(rows)[0]) == 64 * 4  # float32 sends 32 bpd
    scalar = SMALL.model_copy(update={"architecture": "scalar", "scalar_bits": 2})
    assert scalar.raw_bits / scalar.input_dim == 2


def test_training_resumes_and_is_deterministic(data, tmp_path):
    embeddings, text = data
    short = TRAIN.model_copy(update={"epochs": 2})
    quiet_trainer(SMALL, short, embeddings, text, tmp_path / "a").train()
    resumed = quiet_trainer(
        SMALL, TRAIN.model_copy(update={"epochs": 4}), embeddings, text, tmp_path / "a"
    )
    resumed.train()
    straight = quiet_trainer(
        SMALL, TRAIN.model_copy(update={"epochs": 4}), embeddings, text, tmp_path / "b"
    )
    straight.train()
    assert [r.epoch for r in resumed.history] == [1, 2, 3, 4]
    assert resumed.history[-1].val_cosine == pytest.approx(
        straight.history[-1].val_cosine, abs=1e-6
    )


def test_dead_codewords_are_revived(data, tmp_path):
    embeddings, text = data
    config = SMALL.model_copy(update={"codebook_size": 16})
    trainer = quiet_trainer(
        config,
        TRAIN.model_copy(update={"epochs": 3, "kmeans_init": True, "reinit_dead": True}),
        embeddings,
        text,
        tmp_path,
    )
    trainer.train()
    assert trainer.history[-1].utilisation > 0.5


def test_checkpoints_load_without_unpickling(trained, tmp_path):
    _, _, out = trained
    loaded = load_checkpoint(out / "best.safetensors")
    assert loaded.config == SMALL and loaded.prior.shape == (SMALL.codebook_size,)
    bogus = tmp_path / "evil.pt"
    torch.save({"embeddings": torch.zeros(2, 4), "labels": torch.zeros(2), "x": object()}, bogus)
    with pytest.raises(ConfigError, match="weights_only"):
        load_embeddings(bogus)
    with pytest.raises(ConfigError, match=r"not a semcomp PQVAE checkpoint|not a readable"):
        load_checkpoint(bogus)


def test_embedding_file_formats(data, tmp_path):
    embeddings, _ = data
    np.savez(tmp_path / "e.npz", embeddings=embeddings.embeddings, labels=embeddings.labels)
    np.save(tmp_path / "e.npy", embeddings.embeddings)
    np.save(tmp_path / "l.npy", embeddings.labels)
    import pandas as pd

    pd.DataFrame({"embedding": list(embeddings.embeddings), "label": embeddings.labels}).to_parquet(
        tmp_path / "e.parquet"
    )
    torch.save(
        {
            "embeddings": torch.from_numpy(embeddings.embeddings),
            "labels": torch.from_numpy(embeddings.labels),
        },
        tmp_path / "e.pt",
    )
    for name, labels in (
        ("e.npz", None),
        ("e.npy", tmp_path / "l.npy"),
        ("e.parquet", None),
        ("e.pt", None),
    ):
        loaded = load_embeddings(tmp_path / name, labels)
        assert np.allclose(loaded.embeddings, embeddings.embeddings)
        assert np.array_equal(loaded.labels, embeddings.labels)


def test_zero_shot_counts_only_the_given_classes():
    images = np.eye(3)
    text = np.eye(3)
    assert zero_shot(images, np.array([0, 1, 2]), text).top1 == 1.0
    assert zero_shot(images[:2], np.array([0, 1]), text, np.array([0, 1])).classes == 2
