"""``side = "hed"``: the HED network (ControlNet's annotator architecture) with random
weights saved here, its sketch as a side payload, and a clear error without weights."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import photo, write_study
from semcomp.codecs.hed import hed_edges, hed_network, load_hed, write_random_hed
from semcomp.codecs.side import HedParams, decode_side, encode_side, unpack
from semcomp.errors import ModelUnavailableError
from semcomp.methods import TextualMethod
from semcomp.study import Study


@pytest.fixture(scope="module")
def hed_weights(tmp_path_factory):
    return write_random_hed(tmp_path_factory.mktemp("hed") / "hed.safetensors")


def test_the_network_is_controlnets_hed_annotator():
    state = hed_network().state_dict()
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    assert shapes["norm"] == (1, 3, 1, 1)
    assert shapes["block1.convs.0.weight"] == (64, 3, 3, 3)
    assert shapes["block2.convs.1.weight"] == (128, 128, 3, 3)
    assert shapes["block3.convs.2.weight"] == (256, 256, 3, 3)
    assert shapes["block5.convs.2.weight"] == (512, 512, 3, 3)
    assert shapes["block5.projection.weight"] == (1, 512, 1, 1)
    assert "block3.convs.3.weight" not in shapes and "block6.projection.bias" not in shapes
    # VGG16's 13 convolutions (14,714,688), five 1×1 projections (1,477), the offset (3)
    assert sum(value.numel() for value in state.values()) == 14_714_688 + 1_477 + 3


def test_weights_load_from_safetensors_or_a_state_dict_and_give_one_sketch(hed_weights, tmp_path):
    network = load_hed(hed_weights)
    image = photo(80, 60, 1)
    edges = hed_edges(network, image)
    assert edges.mode == "L" and edges.size == (80, 60)
    assert np.asarray(edges).std() > 0  # the image's structure shows through
    # the same weights as a PyTorch state dict (read with weights_only: nothing unpickled)
    pth = tmp_path / "ControlNetHED.pth"
    torch.save(load_hed(hed_weights).state_dict(), pth)
    assert np.array_equal(np.asarray(hed_edges(load_hed(pth), image)), np.asarray(edges))


def test_missing_or_foreign_weights_are_one_clear_error(tmp_path):
    with pytest.raises(ModelUnavailableError, match=r"HED weights not found at .*Annotators"):
        load_hed(tmp_path / "nowhere.pth")
    foreign = tmp_path / "foreign.pth"
    torch.save({"conv.weight": torch.zeros(1)}, foreign)
    with pytest.raises(ModelUnavailableError, match="does not hold HED weights"):
        load_hed(foreign)


def test_an_hed_sketch_is_a_lossless_bilevel_payload(hed_weights):
    network = load_hed(hed_weights)
    params = HedParams(size=[64], weights=hed_weights, threshold=0.5)
    side = encode_side("hed", params, photo(160, 120, 3), 64, network)
    with Image.open(io.BytesIO(side.data)) as png:
        assert png.format == "PNG" and png.mode == "1" and png.size == (64, 48)
    assert 0 <= side.meta["edge_fraction"] <= 1 and len(side.meta["hed_weights_sha256"]) == 64
    soft = np.asarray(hed_edges(network, photo(160, 120, 3).resize((64, 48), Image.LANCZOS)))
    sketch = np.asarray(decode_side(side.data).convert("L"))
    assert set(np.unique(sketch)) <= {0, 255}
    assert (sketch == 255).mean() == pytest.approx((soft >= 128).mean(), abs=0.02)
    with pytest.raises(ValueError, match="needs its loaded network"):
        encode_side("hed", params, photo(40, 30), 32)


def test_weights_inside_the_study_enter_the_identity_relative_to_it(tmp_path, hed_weights):
    (tmp_path / "c.csv").write_text("image,caption\na,b\n")
    fields = {
        "name": "m",
        "captioner": "human",
        "captioner_params": {"csv": str(tmp_path / "c.csv")},
        "reconstructor": "diffusers-controlnet",
        "side": "hed",
        "side_params": {"size": [64], "weights": "models/hed.safetensors"},
    }
    ids = []
    for study_dir in (tmp_path / "a", tmp_path / "b"):
        method = TextualMethod.model_validate(fields, context={"study_dir": study_dir})
        assert method.side_params["weights"] == str(study_dir / "models/hed.safetensors")
        assert method.side_identity["params"]["weights"] == "models/hed.safetensors"
        ids.append(method.method_id)
    assert ids[0] == ids[1] and method.operating_point_labels() == ["hed=64"]


def test_a_study_with_hed_sketches_says_when_weights_are_missing_then_runs(
    tmp_path, image_folder, tiny_clip, tiny_sd, tiny_controlnet, hed_weights
):
    (tmp_path / "captions.csv").write_text(
        "image,caption\nimg1,a valley\nimg2,a green hill\nimg3,an apple\nimg4,a mug\n"
    )
    sd = f'model = "{tiny_sd}", steps = 2, width = 64, height = 64'
    methods = f"""
[[methods]]
name = "hed"
captioner = "human"
captioner_params = {{ csv = "{tmp_path / "captions.csv"}" }}
reconstructor = "diffusers-controlnet"
reconstructor_params = {{ {sd}, controlnet = "{tiny_controlnet}" }}
side = "hed"
side_params = {{ size = [48], weights = "hed.safetensors" }}
"""
    root = write_study(tmp_path / "study", image_folder, tiny_clip, methods=methods)
    stages = ["ingest", "encode", "caption", "decode", "reconstruct"]
    with (
        Study.open(root) as study,
        pytest.raises(ModelUnavailableError, match=r"HED weights not found at .*hed"),
    ):
        study.run(progress=False, stages=stages)
    (root / "hed.safetensors").write_bytes(hed_weights.read_bytes())
    with Study.open(root) as study:
        summary = study.run(progress=False, stages=stages)
        assert not summary.failures
        rows = study.store.conn.execute(
            "SELECT r.payload_hash, r.meta, c.artifact_hash FROM representations r "
            "JOIN candidates c ON c.representation_id = r.id"
        ).fetchall()
        assert len(rows) == 4
        for row in rows:
            meta = json.loads(row["meta"])
            parts = unpack(study.store.read_artifact(row["payload_hash"]))
            assert parts.side == study.store.read_artifact(meta["side_artifact"])
            assert meta["side"] == "hed" and meta["side_bytes"] == len(parts.side)
            assert decode_side(parts.side).size[0] == 48
