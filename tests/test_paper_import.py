"""Importing files made elsewhere (the textual-transform paper's JPEGs and DALL-E images)
with their real rate, patterns that match real folders, and the paper's JPEG preset."""

import io

import pandas as pd
import pytest
from PIL import Image

from helpers import photo, write_study
from paper_repo import JPEG_LEVELS, RECONSTRUCTIONS, build_paper_repo, write_manifest
from semcomp.analysis.rd import rd_points
from semcomp.config import parse_config
from semcomp.errors import ConfigError
from semcomp.methods import ExternalMethod, PixelMethod
from semcomp.report import write_report
from semcomp.store import content_key
from semcomp.study import Study

IMPORT_STAGES = ["ingest", "caption", "reconstruct"]


def paper_methods(root) -> str:
    """The paper's two JPEG levels (rate = "file") and its GPT-4 reconstructions (no rate)."""
    jpegs = "".join(
        f'[[methods]]\nname = "paper-jpeg-{label}"\nfolder = "{root / "compressed_images"}"\n'
        f'pattern = "{{name}}_{label}.*"\nrate = "file"\ncodec = "jpeg"\n'
        f'operating_point = "{label}"\n\n'
        for label in JPEG_LEVELS
    )
    return jpegs + (
        f'[[methods]]\nname = "dalle-gr"\nfolder = "{root / "reconstructed_images"}"\n'
        'pattern = "{name}_gr.png"\nrate = "none"\ncodec = "dall-e-2"\n'
    )


@pytest.fixture
def paper_study(tmp_path):
    repo = build_paper_repo(tmp_path / "repo", per_category=2, size=(48, 40))
    manifest = write_manifest(repo, repo.root / "originals.csv")
    root = write_study(tmp_path / "study", manifest, "unused", methods=paper_methods(repo.root))
    return repo, root


def test_file_rates_are_the_files_bytes_and_candidates_are_the_files(paper_study):
    repo, root = paper_study
    case_changed = repo.compressed[("landscape_1", "q1")]
    upper = case_changed.with_name(case_changed.name.upper())  # LANDSCAPE_1_Q1.JPG
    case_changed.rename(upper)
    repo.compressed[("landscape_1", "q1")] = upper
    with Study.open(root) as study:
        summary = study.run(progress=False, stages=IMPORT_STAGES)
        points = rd_points(study.store, study.scope())
        candidates = study.store.frame(
            "SELECT c.artifact_hash, r.payload_hash, r.meta FROM candidates c "
            "JOIN representations r ON r.id = c.representation_id "
            "JOIN methods m ON m.id = r.method_id WHERE m.name LIKE 'paper-jpeg-%'"
        )
    originals = sorted(repo.originals)
    for label in JPEG_LEVELS:
        rows = points[points.method == f"paper-jpeg-{label}"].set_index("original")
        assert sorted(rows.index) == originals
        expected = {name: repo.compressed[(name, label)].stat().st_size for name in originals}
        assert rows.rate_bytes.to_dict() == expected  # exact bytes of each imported file
        assert set(rows.operating_point) == {label} and set(rows.codec) == {"jpeg"}
    # the candidate is the imported file itself, decoded when scored, like semcomp's JPEG
    assert (candidates.artifact_hash == candidates.payload_hash).all()
    assert any(str(upper) in meta for meta in candidates.meta)  # found case-insensitively
    dalle = points[points.method == "dalle-gr"]
    assert sorted(dalle.original) == originals and dalle.rate_bits.isna().all()
    assert set(dalle.codec) == {"dall-e-2"}
    # the missing original's files are listed for every method, not silently ignored
    stray = [f for f in summary.failures if repo.missing in f[1]]
    assert len(stray) == 3 and all("matches no original" in reason for _, _, reason in stray)


def test_an_original_without_a_file_is_a_failure_naming_the_pattern(paper_study):
    repo, root = paper_study
    repo.compressed[("person_1", "q11")].unlink()
    extra = repo.compressed[("object_1", "q1")]
    # two files for one original under ".*": ambiguous
    (extra.parent / "object_1_q1.png").write_bytes(extra.read_bytes())
    with Study.open(root) as study:
        summary = study.run(progress=False, stages=IMPORT_STAGES)
        first = rd_points(study.store, study.scope())
    reasons = [reason for _, label, reason in summary.failures if "person_1" in label]
    assert reasons == ["no file matching pattern '{name}_q11.*' (person_1_q11.*) in " +
                       str(repo.root / "compressed_images")]  # fmt: skip
    ambiguous = [reason for _, label, reason in summary.failures if "object_1" in label]
    assert len(ambiguous) == 1 and "2 files match pattern '{name}_q1.*'" in ambiguous[0]
    assert "person_1" not in set(first[first.method == "paper-jpeg-q11"].original)
    # putting the file back imports it on the next run; the failure is gone
    photo(48, 40, 3).save(repo.root / "compressed_images" / "person_1_q11.jpg", quality=11)
    with Study.open(root) as study:
        again = study.run(progress=False, stages=IMPORT_STAGES)
        second = rd_points(study.store, study.scope())
    assert not [f for f in again.failures if "person_1" in f[1]]
    assert "person_1" in set(second[second.method == "paper-jpeg-q11"].original)


def test_patterns_use_name_id_and_any_extension(tmp_path, tiny_clip):
    images = tmp_path / "images"
    images.mkdir()
    for seed, name in enumerate(("Object_1", "group_1")):
        photo(40, 30, seed).save(images / f"{name}.png")
    (images / "originals.csv").write_text(
        "path,category,id\nObject_1.png,object,Object 1\ngroup_1.png,group,\n"
    )
    files = tmp_path / "files"
    files.mkdir()
    photo(40, 30, 5).save(files / "object_1_q1.jpeg")
    photo(40, 30, 6).save(files / "GROUP_1_Q1.JPG")
    (files / "object_1_q1.txt").write_text("not an image: no match for '.*'")
    photo(40, 30, 7).save(files / "Object 1-gr.png")
    photo(40, 30, 8).save(files / "group_1-gr.png")
    methods = (
        f'[[methods]]\nname = "by-name"\nfolder = "{files}"\npattern = "{{name}}_q1.*"\n'
        f'rate = "file"\n\n[[methods]]\nname = "by-id"\nfolder = "{files}"\n'
        'pattern = "{id}-gr.png"\n'
    )
    root = write_study(tmp_path / "s", images / "originals.csv", tiny_clip, methods=methods)
    with Study.open(root) as study:
        summary = study.run(progress=False, stages=IMPORT_STAGES)
        points = rd_points(study.store, study.scope())
    assert not summary.failures
    files_by_method = points.groupby("method")["original"].apply(sorted).to_dict()
    assert files_by_method == {"by-id": ["Object 1", "group_1"], "by-name": ["Object 1", "group_1"]}


def external(tmp_path, identity_root=None, **keys):
    folder = tmp_path / "files"
    folder.mkdir(exist_ok=True)
    data = {"name": "ext", "folder": str(folder), "pattern": "{name}_gr.png"} | keys
    config = parse_config(
        {"name": "s", "images": {"source": str(tmp_path)}, "methods": [data]},
        "t.toml",
        tmp_path,
        identity_root,
    )
    return config.methods[0]


def test_rate_defaults_and_method_ids_of_older_study_files(tmp_path):
    captions = tmp_path / "gpt4.csv"
    captions.write_text("image,caption\nobject_1,a red apple\n")
    # an older study: its identities were made with absolute paths (see test_portable.py)
    with_captions = external(tmp_path, str(tmp_path), captions=str(captions))
    assert isinstance(with_captions, ExternalMethod)
    assert with_captions.rate == "captions" and external(tmp_path).rate == "none"
    # an older study's external method keeps its id (and so its rows)
    from semcomp.params import file_sha256

    older = content_key(
        "method",
        "external",
        str(tmp_path / "files"),
        "{name}_gr.png",
        file_sha256(captions, "captions CSV"),
        "utf8",
        with_captions._text_codec_identity,
    )
    assert with_captions.method_id == older
    older_study = {"identity_root": str(tmp_path), "captions": str(captions)}
    assert external(tmp_path, rate="captions", **older_study).method_id == older
    assert external(tmp_path, rate="none", **older_study).method_id != older
    assert with_captions.operating_point_labels() == ["caption"]
    as_file = external(tmp_path, rate="file", codec="jpeg", operating_point="q1")
    assert as_file.operating_point_labels() == ["q1"] and as_file.payload_codec == "jpeg"
    assert external(tmp_path, rate="file").operating_point_labels() == ["file"]
    with pytest.raises(ConfigError, match="needs a captions CSV"):
        external(tmp_path, rate="captions")
    with pytest.raises(ConfigError, match="no use here"):
        external(tmp_path, rate="file", captions=str(captions))
    with pytest.raises(ConfigError, match="rate"):
        external(tmp_path, rate="bytes")
    with pytest.raises(ConfigError, match="only as a trailing"):
        external(tmp_path, pattern="{name}*.png")
    with pytest.raises(ConfigError, match="nothing else"):
        external(tmp_path, pattern="{category}.png")


def test_paper_jpeg_preset_is_quality_1_and_11_progressive_422(tmp_path):
    from PIL import JpegImagePlugin

    from semcomp.stages.encode import codec_for

    def method(**keys):
        data = {"name": "s", "images": {"source": str(tmp_path)}, "methods": [keys]}
        return parse_config(data, "t.toml", tmp_path).methods[0]

    paper = method(name="paper", preset="paper-jpeg")
    explicit = method(
        name="explicit",
        codec="jpeg",
        quality=[1, 11],
        params={"subsampling": "4:2:2", "progressive": True},
    )
    own = method(name="own-targets", preset="paper-jpeg", quality=[], reduction=[0.9])
    assert isinstance(paper, PixelMethod) and paper.codec == "jpeg"
    assert paper.operating_point_labels() == ["quality=1", "quality=11"]
    assert paper.method_id == explicit.method_id  # the preset is data, not a new codec
    assert own.operating_point_labels() == ["reduction=0.9"] and own.params == paper.params
    image = photo(64, 48)
    for quality in (1, 11):
        data = codec_for(paper).encode_at_quality(image, quality)
        decoded = Image.open(io.BytesIO(data))
        assert decoded.info.get("progressive") == 1
        assert JpegImagePlugin.get_sampling(decoded) == 1  # 4:2:2
    with pytest.raises(ConfigError, match="unknown preset 'paper'"):
        method(name="x", preset="paper")


def test_reduction_of_lossless_originals_is_named_in_rd_csv_and_the_report(tmp_path, tiny_clip):
    images = tmp_path / "images" / "misc"
    images.mkdir(parents=True)
    photo(64, 48, 1).convert("RGBA").save(images / "a.png")
    photo(64, 48, 2).save(images / "b.webp", lossless=True)
    photo(64, 48, 3).save(images / "c.webp", quality=80)
    photo(64, 48, 4).save(images / "d.jpg", quality=95)
    methods = '[[methods]]\nname = "jpeg"\ncodec = "jpeg"\nreduction = [0.5]\n'
    root = write_study(tmp_path / "s", images.parent, tiny_clip, methods=methods)
    with Study.open(root) as study:
        study.run(progress=False, stages=["ingest", "encode", "decode"])
    with Study.open(root, read_only=True) as study:
        files = write_report(study)
    rd = pd.read_csv(files.rd_csv).set_index("original")
    expected = {"a": "PNG", "b": "WEBP-lossless", "c": "WEBP-lossy", "d": "JPEG"}
    formats = rd.original_format.to_dict()  # a target no quality meets has no row
    assert {"a", "b", "d"} <= set(formats) and formats.items() <= expected.items()
    from helpers import encoded
    from semcomp.images import file_format

    rgba = photo(16, 16).convert("RGBA")
    assert file_format("WEBP", encoded(rgba, "WEBP", quality=50)) == "WEBP-lossy"
    assert file_format("WEBP", encoded(rgba, "WEBP", lossless=True)) == "WEBP-lossless"
    readme = (files.folder / "README.txt").read_text()
    assert "lossless original(s) (PNG, WEBP-lossless)" in readme
    assert "2 lossless" in readme


def test_reconstruction_labels_cover_the_repository(tmp_path):
    repo = build_paper_repo(tmp_path, per_category=1, categories=("object", "group"), missing=None)
    assert sorted(repo.originals) == ["group_1", "object_1"]
    for name in repo.originals:
        for label in RECONSTRUCTIONS:
            with Image.open(repo.reconstructed[(name, label)]) as image:
                assert image.mode == "RGB" and image.size == (64, 64)
    with Image.open(repo.originals["group_1"]) as png:
        assert png.mode == "RGBA" and png.getextrema()[3] == (255, 255)
    assert (tmp_path / "original_images" / "contents").is_file()


def test_figures_name_an_imported_method_with_its_codec_label():
    from semcomp.analysis.figures import rd_chart
    from semcomp.analysis.rd import summarise

    metric = "clip_(cos+1)/2[tiny]"
    rows = [
        ("dalle", "external", "dall-e-2", "caption", 40.0, 0.8),
        ("paper-jpeg-low", "external", "jpeg", "q1", 900.0, 0.9),
        ("jpeg", "pixel", "jpeg", "quality=1", 1000.0, 0.92),
        ("blip", "textual", "utf8", "caption", 30.0, 0.7),
    ]
    points = pd.DataFrame(
        [
            {
                "original_id": image,
                "original": image,
                "category": "object",
                "method": method,
                "kind": kind,
                "codec": codec,
                "operating_point": point,
                "variant": 0,
                "replicate": 0,
                "rate_bytes": rate + offset,
                "rate_bits": 8 * (rate + offset),
                "bpp": (rate + offset) / 1000,
                metric: score,
            }
            for method, kind, codec, point, rate, score in rows
            for offset, image in ((0.0, "a"), (4.0, "b"))
        ]
    )
    figure = rd_chart(points, summarise(points), metric, rate="bytes")
    labels = figure.axes[0].get_legend_handles_labels()[1]
    assert {"dalle (dall-e-2)", "paper-jpeg-low", "jpeg", "blip"} <= set(labels)
