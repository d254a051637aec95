"""Textual methods with side information: the container, the side payloads, identities,
the ControlNet and img2img reconstructors (tiny random weights), and a whole study."""

import io

import pandas as pd
import pytest
from PIL import Image
from pydantic import ValidationError

from helpers import photo, write_study
from semcomp.codecs.side import (
    CONTAINER_VERSION,
    EdgesParams,
    ThumbnailParams,
    decode_side,
    encode_side,
    pack,
    unpack,
)
from semcomp.codecs.varint import read_varint, varint
from semcomp.errors import TargetUnreachableError
from semcomp.methods import TextualMethod
from semcomp.report import write_report
from semcomp.store import content_key
from semcomp.study import Study

# ---- the container ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size"), [(0, 1), (1, 1), (127, 1), (128, 2), (16_383, 2), (16_384, 3)]
)
def test_varint_round_trips_at_its_byte_boundaries(value, size):
    encoded = varint(value)
    assert len(encoded) == size
    assert read_varint(b"x" + encoded + b"rest", 1) == (value, 1 + size)


@pytest.mark.parametrize("caption_length", [0, 5, 127, 128, 300])
def test_container_accounts_for_every_byte(caption_length):
    caption = bytes(range(256))[:caption_length] if caption_length <= 256 else b"c" * caption_length
    side = b"\x89PNG side bytes"
    payload = pack(caption, side)
    parts = unpack(payload)
    assert (parts.caption, parts.side) == (caption, side)
    assert payload[0] == CONTAINER_VERSION
    assert parts.header_bytes == 1 + len(varint(caption_length))
    assert parts.header_bytes + len(parts.caption) + len(parts.side) == len(payload)
    assert parts.total_bytes == len(payload)
    assert pack(parts.caption, parts.side) == payload


def test_malformed_containers_are_named():
    with pytest.raises(ValueError, match="empty"):
        unpack(b"")
    with pytest.raises(ValueError, match="version 2"):
        unpack(b"\x02\x00")
    with pytest.raises(ValueError, match="inside a length"):
        unpack(b"\x01\x80")
    with pytest.raises(ValueError, match="runs past"):
        unpack(b"\x01\x05abc")


# ---- side payloads ------------------------------------------------------------------------


def test_edges_are_a_lossless_one_bit_png_at_the_size_asked():
    image = photo(160, 120, 3)
    side = encode_side("edges", EdgesParams(size=[64]), image, 64)
    with Image.open(io.BytesIO(side.data)) as png:
        assert png.format == "PNG" and png.mode == "1" and png.size == (64, 48)
    assert side.meta["side_width"] == 64 and 0 < side.meta["edge_fraction"] < 1
    decoded = decode_side(side.data)
    assert decoded.mode == "RGB" and set(
        decoded.getcolors() and [c for _, c in decoded.getcolors()]
    ) <= {(0, 0, 0), (255, 255, 255)}
    webp = encode_side("edges", EdgesParams(size=[64], format="webp"), image, 64)
    assert decode_side(webp.data).tobytes() == decoded.tobytes()  # lossless: same pixels


def test_an_image_smaller_than_the_size_is_not_enlarged():
    side = encode_side("edges", EdgesParams(size=[512]), photo(40, 30, 1), 512)
    assert (side.meta["side_width"], side.meta["side_height"]) == (40, 30)


def test_thumbnail_at_a_quality_and_within_a_byte_budget():
    image = photo(160, 120, 2)
    fixed = encode_side("thumbnail", ThumbnailParams(size=[48], quality=40), image, 48)
    assert fixed.meta["side_quality"] == 40 and fixed.suffix == ".webp"
    with Image.open(io.BytesIO(fixed.data)) as webp:
        assert webp.format == "WEBP" and webp.size == (48, 36)
    budget = encode_side(
        "thumbnail", ThumbnailParams(size=[48], codec="jpeg", bytes=900), image, 48
    )
    assert len(budget.data) <= 900 and budget.data.startswith(b"\xff\xd8")
    # the pixel codecs' search: the next quality up would not fit
    from semcomp.codecs.side import pixel_codec, scaled

    codec = pixel_codec("jpeg", {})
    above = codec.encode_at_quality(scaled(image, 48), budget.meta["side_quality"] + 1)
    assert len(above) > 900
    with pytest.raises(TargetUnreachableError):
        encode_side("thumbnail", ThumbnailParams(size=[48], codec="jpeg", bytes=20), image, 48)


def test_side_parameters_are_checked():
    with pytest.raises(ValidationError, match="one of quality or bytes"):
        ThumbnailParams(size=[32])
    with pytest.raises(ValidationError, match="outside webp"):
        ThumbnailParams(size=[32], quality=101)
    with pytest.raises(ValidationError, match="below 8"):
        EdgesParams(size=[4])
    with pytest.raises(ValidationError, match="above high"):
        EdgesParams(size=[32], low=200, high=100)


# ---- identities and operating points -----------------------------------------------------

BASE = {"name": "m", "captioner": "human", "captioner_params": {"csv": "c.csv"}}


def method(**fields) -> TextualMethod:
    return TextualMethod.model_validate(BASE | fields, context={})


def test_methods_without_side_information_keep_their_ids(tmp_path):
    (tmp_path / "c.csv").write_text("image,caption\na,b\n")
    plain = TextualMethod.model_validate(
        BASE | {"captioner_params": {"csv": str(tmp_path / "c.csv")}}, context={}
    )
    (point,) = plain.caption_points()
    # the identity as it was computed before side information existed
    before = content_key(
        "method",
        "textual",
        [point.captioner_key],
        plain.text_codec,
        plain._text_codec_identity,
        plain.reconstructor_key,
    )
    assert plain.method_id == before
    assert plain.reconstruction_key(point) == content_key(
        point.captioner_key, plain.reconstructor_key
    )
    assert point.side_size is None and plain.operating_point_labels() == ["caption"]


@pytest.mark.parametrize(
    ("fields", "method_id", "reconstruction_keys"),
    [
        ({}, "cd561c215310087a445d223e", ["f7a12846a162c95b46548394"]),
        (
            {
                "sweep": {"max_new_tokens": [5, 10]},
                "text_codec": "zstd",
                "reconstructor_params": {"steps": 4},
            },
            "b7e160a8db2696546473cf01",
            ["cc9a5147d19de72523a091c6", "fe4c4c3da5f75854c75119d9"],
        ),
    ],
)
def test_ids_and_seeds_are_those_computed_before_side_information(
    fields, method_id, reconstruction_keys
):
    """Pinned from the commit before side information existed (04e6561)."""
    blip = TextualMethod.model_validate({"name": "b", "captioner": "blip"} | fields, context={})
    assert blip.method_id == method_id
    assert [blip.reconstruction_key(p) for p in blip.caption_points()] == reconstruction_keys


def test_side_sizes_are_operating_points_and_enter_the_identity(tmp_path):
    csv = str(tmp_path / "c.csv")
    (tmp_path / "c.csv").write_text("image,caption\na,b\n")
    common = {"captioner_params": {"csv": csv}, "reconstructor": "diffusers-controlnet"}
    edges = method(**common, side="edges", side_params={"size": [32, 64]})
    assert edges.operating_point_labels() == ["edges=32", "edges=64"]
    assert [p.side_size for p in edges.caption_points()] == [32, 64]
    keys = {edges.reconstruction_key(p) for p in edges.caption_points()}
    assert len(keys) == 2  # each size its own seeds
    finer = method(**common, side="edges", side_params={"size": [32, 64], "low": 50})
    assert finer.method_id != edges.method_id
    blip = TextualMethod.model_validate(
        {
            "name": "b",
            "captioner": "blip",
            "sweep": {"max_new_tokens": [5, 10]},
            "reconstructor": "diffusers-img2img",
            "side": "thumbnail",
            "side_params": {"size": [16, 32], "quality": 20},
        },
        context={},
    )
    assert blip.operating_point_labels() == [
        "max_new_tokens=5 thumbnail=16",
        "max_new_tokens=5 thumbnail=32",
        "max_new_tokens=10 thumbnail=16",
        "max_new_tokens=10 thumbnail=32",
    ]
    assert "thumbnail" in blip.describe()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"side": "edges", "side_params": {"size": [32]}}, "does not use side = 'edges'"),
        ({"reconstructor": "diffusers-controlnet"}, "set side = 'edges'"),
        ({"side_params": {"size": [32]}}, "side_params needs side"),
        (
            {"reconstructor": "diffusers-img2img", "side": "thumbnail", "side_params": {}},
            "side_params.size",
        ),
        (
            {"reconstructor": "diffusers-img2img", "side": "edges", "side_params": {"size": [8]}},
            "diffusers-controlnet",
        ),
    ],
)
def test_side_information_mistakes_are_one_clear_message(tmp_path, fields, message):
    (tmp_path / "c.csv").write_text("image,caption\na,b\n")
    with pytest.raises(ValidationError, match=message):
        method(captioner_params={"csv": str(tmp_path / "c.csv")}, **fields)


# ---- the reconstructors through the production loading code -------------------------------


def test_controlnet_is_conditioned_on_the_sketch(tiny_sd, tiny_controlnet):
    from semcomp.reconstructors.diffusers import ControlNetParams, ControlNetReconstructor

    params = ControlNetParams(
        model=str(tiny_sd), controlnet=str(tiny_controlnet), steps=2, width=64, height=64
    )
    reconstructor = ControlNetReconstructor(params, device="cpu", batch_size=4)
    try:
        blank = Image.new("RGB", (32, 24))
        lines = blank.copy()
        lines.paste((255, 255, 255), (0, 10, 32, 12))
        first = reconstructor.reconstruct_with_side(["a cat", "a cat"], [1, 1], [blank, lines])
        again = reconstructor.reconstruct_with_side(["a cat", "a cat"], [1, 1], [blank, lines])
        identity = reconstructor.identity()
    finally:
        reconstructor.close()
    assert [r.png for r in first] == [r.png for r in again]  # same inputs: same images
    assert first[0].png != first[1].png  # the sketch changes the image
    assert identity["pipeline"] == "StableDiffusionControlNetPipeline"
    assert identity["controlnet"] == str(tiny_controlnet)
    assert Image.open(io.BytesIO(first[0].png)).size == (64, 64)


def test_img2img_starts_from_the_thumbnail_with_its_strength(tiny_sd):
    from semcomp.reconstructors.diffusers import Img2ImgParams, Img2ImgReconstructor

    def run(strength, thumbnail):
        params = Img2ImgParams(model=str(tiny_sd), steps=2, width=64, height=64, strength=strength)
        reconstructor = Img2ImgReconstructor(params, device="cpu")
        try:
            (result,) = reconstructor.reconstruct_with_side(["a red car"], [3], [thumbnail])
            return result.png, reconstructor.identity()
        finally:
            reconstructor.close()

    red = Image.new("RGB", (16, 12), (220, 20, 20))
    blue = Image.new("RGB", (16, 12), (20, 20, 220))
    half, identity = run(0.5, red)
    assert identity["pipeline"] == "StableDiffusionImg2ImgPipeline"
    assert half != run(0.5, blue)[0]  # the thumbnail matters
    assert half != run(1.0, red)[0]  # and so does the strength
    pixels = Image.open(io.BytesIO(half)).convert("RGB")
    assert pixels.size == (64, 64)


# ---- a whole study ------------------------------------------------------------------------


def test_study_with_edges_and_thumbnails_splits_the_rate(
    tmp_path, image_folder, tiny_clip, tiny_sd, tiny_controlnet
):
    (tmp_path / "captions.csv").write_text(
        "image,caption\nimg1,a valley\nimg2,a green hill\nimg3,an apple\nimg4,a mug\n"
    )
    sd = f'model = "{tiny_sd}", steps = 2, width = 64, height = 64'
    methods = f"""
[[methods]]
name = "edges"
captioner = "human"
captioner_params = {{ csv = "{tmp_path / "captions.csv"}" }}
reconstructor = "diffusers-controlnet"
reconstructor_params = {{ {sd}, controlnet = "{tiny_controlnet}" }}
side = "edges"
side_params = {{ size = [32, 64] }}

[[methods]]
name = "thumb"
captioner = "human"
captioner_params = {{ csv = "{tmp_path / "captions.csv"}" }}
reconstructor = "diffusers-img2img"
reconstructor_params = {{ {sd}, strength = 0.5 }}
side = "thumbnail"
side_params = {{ size = [24], codec = "jpeg", bytes = 800 }}
"""
    root = write_study(tmp_path / "study", image_folder, tiny_clip, methods=methods)
    with Study.open(root) as study:
        summary = study.run(progress=False)
        store = study.store
        # every container unpacks to its caption and the side artifact that was recorded
        import json

        for row in store.conn.execute("SELECT payload_hash, meta FROM representations"):
            meta = json.loads(row["meta"])
            parts = unpack(store.read_artifact(row["payload_hash"]))
            assert parts.caption == meta["caption"].encode()
            assert parts.side == store.read_artifact(meta["side_artifact"])
        with Study.open(root, read_only=True) as readonly:
            files = write_report(readonly)
    assert summary.status == "finished" and not summary.failures
    rd = pd.read_csv(files.rd_csv)
    assert len(rd[rd.method == "edges"]) == 8 and len(rd[rd.method == "thumb"]) == 4
    assert (rd.caption_bytes + rd.side_bytes + rd.header_bytes == rd.rate_bytes).all()
    assert (rd.header_bytes == 2).all()
    assert (rd.caption_bytes == rd.caption.str.len()).all()
    assert (rd[rd.method == "thumb"].side_bytes <= 800).all()
    assert set(rd.side) == {"edges", "thumbnail"}
    assert set(rd[rd.method == "edges"].operating_point) == {"edges=32", "edges=64"}
    table = pd.read_csv(files.folder / "table1.csv")  # the report shows the split
    assert len(table) == 3
    assert table.size_split.str.fullmatch(r"caption [\d.]+ \+ side [\d,.]+ \+ header 2\.0 B").all()


def test_an_unmet_side_budget_is_a_recorded_failure(tmp_path, image_folder, tiny_clip, tiny_sd):
    (tmp_path / "captions.csv").write_text("image,caption\nimg1,a valley\n")
    methods = f"""
[[methods]]
name = "thumb"
captioner = "human"
captioner_params = {{ csv = "{tmp_path / "captions.csv"}" }}
reconstructor = "diffusers-img2img"
reconstructor_params = {{ model = "{tiny_sd}", steps = 2, width = 64, height = 64 }}
side = "thumbnail"
side_params = {{ size = [64], codec = "jpeg", bytes = 30 }}

[[methods]]
name = "jpeg"
codec = "jpeg"
quality = [50]
"""
    root = write_study(tmp_path / "study", image_folder, tiny_clip, methods=methods)
    with Study.open(root) as study:
        summary = study.run(progress=False, stages=["ingest", "encode", "caption"])
        reasons = [reason for _, _, reason in summary.failures]
    assert any("side information (thumbnail)" in r and "30 bytes" in r for r in reasons)


# ---- documentation, the app and the demo ----------------------------------------------------


def test_the_readme_side_information_example_is_valid(tmp_path):
    import re
    import sys
    from pathlib import Path

    from semcomp.config import parse_config

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (example,) = [
        block
        for block in re.findall(r"```toml\n(.*?)```", readme, flags=re.S)
        if 'side = "edges"' in block
    ]
    images = tmp_path / "images"
    images.mkdir()
    study = f'name = "x"\n[images]\nsource = "{images}"\n{example}'
    config = parse_config(tomllib.loads(study), "README.md", tmp_path)
    edges, thumbnail = config.methods
    assert edges.operating_point_labels() == ["edges=64", "edges=128", "edges=256"]
    assert thumbnail.operating_point_labels() == ["thumbnail=32", "thumbnail=64"]


def test_the_explorer_shows_the_rate_split_beside_a_reconstruction():
    from semcomp.app.widgets import _describe

    row = {"method": "m", "operating_point": "edges=96", "rate_bits": 8 * 314, "bpp": 0.01}
    side = pd.Series(
        row
        | {
            "caption": "a valley",
            "side": "edges",
            "side_size": 96.0,
            "caption_bytes": 8.0,
            "side_bytes": 304.0,
            "header_bytes": 2.0,
        }
    )
    assert "8 B caption + 304 B edges (96 px) + 2 B header" in _describe(side, [])
    assert "header" not in _describe(pd.Series(row | {"side": None}), [])


def test_the_demo_has_a_caption_plus_edges_method(all_methods_study):
    from semcomp.analysis.rd import rd_points

    with Study.open(all_methods_study, read_only=True) as study:
        points = rd_points(study.store)
        candidates = study.store.frame(
            "SELECT c.id FROM candidates c JOIN representations r ON r.id = c.representation_id "
            "JOIN methods m ON m.id = r.method_id WHERE m.name = 'human-captions+edges'"
        )
    edges = points[points.method == "human-captions+edges"]
    scenes = points.original_id.nunique()
    assert len(edges) == len(candidates) == scenes  # one reconstruction per scene
    assert (edges.caption_bytes + edges.side_bytes + edges.header_bytes == edges.rate_bytes).all()
    assert set(edges.operating_point) == {"edges=96"}


def test_status_counts_a_missing_caption_at_every_side_size(
    tmp_path, image_folder, tiny_clip, tiny_sd, tiny_controlnet
):
    (tmp_path / "captions.csv").write_text("image,caption\nimg1,a valley\n")
    methods = f"""
[[methods]]
name = "edges"
captioner = "human"
captioner_params = {{ csv = "{tmp_path / "captions.csv"}" }}
reconstructor = "diffusers-controlnet"
reconstructor_params = {{ model = "{tiny_sd}", controlnet = "{tiny_controlnet}" }}
side = "edges"
side_params = {{ size = [32, 64] }}
"""
    root = write_study(tmp_path / "study", image_folder, tiny_clip, methods=methods)
    with Study.open(root) as study:
        study.run(progress=False, stages=["ingest", "caption"])
        row = next(r for r in study.status() if r.what == "represent: edges")
    assert (row.done, row.pending, row.failed) == (2, 0, 6)  # 3 uncaptioned images × 2 sizes
