"""Encoder-side selection (best-of-N): the ``select`` table, the index's bits, the
candidates' seeds and which candidate wins."""

import dataclasses
import json
import math

import numpy as np
import pytest
from pydantic import ValidationError

from helpers import write_study
from semcomp.analysis.rd import rd_points
from semcomp.images import decode_image
from semcomp.methods import TextualMethod
from semcomp.metrics import METRICS
from semcomp.selection import (
    SelectConfig,
    best_index,
    candidate_replicate,
    index_bytes,
    operating_label,
    select_bits,
)
from semcomp.study import Study


@pytest.mark.parametrize(
    ("n", "bits", "whole_bytes"),
    [(1, 0, 0), (2, 1, 1), (3, 2, 1), (4, 2, 1), (5, 3, 1), (8, 3, 1), (9, 4, 1), (256, 8, 1)],
)
def test_the_index_costs_ceil_log2_n_bits_in_whole_bytes(n, bits, whole_bytes):
    assert select_bits(n) == bits == math.ceil(math.log2(n))
    assert index_bytes(n) == whole_bytes


def test_no_candidates_is_an_error():
    with pytest.raises(ValueError, match="positive"):
        select_bits(0)


def test_best_index_is_the_argmax_or_the_argmin():
    values = [0.2, 0.9, 0.5, 0.9]
    assert best_index(values, higher_is_better=True) == 1  # the first of a tie
    assert best_index(values, higher_is_better=False) == 0
    assert best_index([3.0, 1.0, 2.0], higher_is_better=False) == 1


def test_a_candidate_without_a_score_never_wins():
    assert best_index([float("nan"), 0.1, None], higher_is_better=True) == 1
    assert best_index([None, float("nan"), 5.0], higher_is_better=False) == 2
    with pytest.raises(ValueError, match="none of the 2 candidates"):
        best_index([None, float("nan")], higher_is_better=True)


def test_candidate_seeds_do_not_depend_on_n_and_candidate_zero_is_the_replicate():
    replicates = 2
    indices = {
        (r, k): candidate_replicate(r, k, replicates) for r in range(replicates) for k in range(8)
    }
    assert [indices[r, 0] for r in range(replicates)] == [0, 1]  # today's seeds
    assert len(set(indices.values())) == len(indices)  # every candidate its own seed
    # best-of-4's candidates are the first four of best-of-8's
    assert {indices[0, k] for k in range(4)} < {indices[0, k] for k in range(8)}
    with pytest.raises(ValueError, match="does not exist"):
        candidate_replicate(2, 0, replicates)


def test_operating_point_label():
    assert operating_label(4) == "best-of=4"


def test_select_config_fills_in_the_metric_params_and_its_deciding_score():
    select = SelectConfig.model_validate({"n": [1, 2, 4, 8], "by": "psnr"})
    assert select.params == {"resize": "bicubic", "max_db": 100.0}
    assert select.score_spec.key == "psnr"
    assert select.score_spec.higher_is_better
    lpips = SelectConfig.model_validate({"n": [4], "by": "lpips", "params": {"net": "vgg"}})
    assert lpips.score_spec.key == "lpips[vgg]"
    assert not lpips.score_spec.higher_is_better
    # the identity names the metric and its parameters, not the operating points
    assert select.identity() == SelectConfig.model_validate({"n": [2], "by": "psnr"}).identity()
    assert select.identity() != lpips.identity()


def test_an_embedding_metric_decides_by_its_cosine_without_naming_a_score():
    clip = SelectConfig.model_validate({"n": [2], "by": "clip"})
    specs = METRICS.get("clip").scores(clip.metric_params)
    assert len(specs) > 1
    assert clip.score_spec == specs[0]
    assert clip.score_spec.higher_is_better
    named = SelectConfig.model_validate({"n": [2], "by": "clip", "score": specs[1].key})
    assert named.score_spec == specs[1]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"n": [0], "by": "psnr"}, "n = 0 is outside 1..256"),
        ({"n": [4, 4], "by": "psnr"}, "n repeats"),
        ({"n": [], "by": "psnr"}, "at least 1"),
        ({"n": [2], "by": "nope"}, "unknown metric 'nope'"),
        ({"n": [2], "by": "fid"}, "'fid' is a set metric"),
        ({"n": [2], "by": "zero-shot"}, "is a task metric"),
        ({"n": [2], "by": "psnr", "params": {"bogus": 1}}, "params.bogus: unknown key"),
        ({"n": [2], "by": "psnr", "score": "lpips"}, "score 'lpips' is not a score of 'psnr'"),
        ({"n": [2], "by": "psnr", "extra": 1}, "extra"),
    ],
)
def test_select_config_errors_say_what_is_wrong(table, message):
    with pytest.raises(ValidationError, match=message):
        SelectConfig.model_validate(table)


# ---- the method ---------------------------------------------------------------------------


def test_a_method_without_select_keeps_its_id():
    """Pinned from before selection existed (the values test_side_info pins)."""
    fields = {"name": "b", "captioner": "blip"}
    blip = TextualMethod.model_validate(fields, context={})
    assert blip.method_id == "cd561c215310087a445d223e"
    assert blip.operating_point_labels() == ["caption"]
    assert "best of" not in blip.describe()
    chosen = TextualMethod.model_validate(
        fields | {"select": {"n": [1, 4], "by": "psnr"}}, context={}
    )
    assert chosen.method_id != blip.method_id
    assert chosen.operating_point_labels() == ["best-of=1", "best-of=4"]
    # the seeds are those without selection: candidate 0 of best-of-N is today's image
    assert {chosen.reconstruction_key(p) for p in chosen.caption_points()} == {
        blip.reconstruction_key(p) for p in blip.caption_points()
    }
    # N is an operating point, not part of the identity: a larger N keeps the rows
    more = TextualMethod.model_validate(
        fields | {"select": {"n": [1, 4, 8], "by": "psnr"}}, context={}
    )
    assert more.method_id == chosen.method_id
    by_lpips = TextualMethod.model_validate(
        fields | {"select": {"n": [1, 4], "by": "lpips"}}, context={}
    )
    assert by_lpips.method_id != chosen.method_id


def test_select_with_a_sweep_labels_every_pair():
    method = TextualMethod.model_validate(
        {
            "name": "b",
            "captioner": "blip",
            "sweep": {"max_new_tokens": [5, 10]},
            "select": {"n": [2], "by": "psnr"},
        },
        context={},
    )
    assert method.operating_point_labels() == [
        "max_new_tokens=5 best-of=2",
        "max_new_tokens=10 best-of=2",
    ]


def test_select_mistakes_are_placed_under_select():
    with pytest.raises(ValidationError, match=r"select\.by"):
        TextualMethod.model_validate(
            {"name": "b", "captioner": "blip", "select": {"n": [2], "by": "kid"}}, context={}
        )


# ---- a study ------------------------------------------------------------------------------

CAPTIONS = "image,caption\nimg1,a valley\nimg2,a green hill\nimg3,an apple\nimg4,a mug\n"
UP_TO_RECONSTRUCTION = ["ingest", "encode", "caption", "decode", "reconstruct"]


def selecting_study(tmp_path, image_folder, tiny_clip, tiny_sd, n):
    (tmp_path / "captions.csv").write_text(CAPTIONS)
    methods = f"""
[[methods]]
name = "best"
captioner = "human"
captioner_params = {{ csv = "{tmp_path / "captions.csv"}" }}
reconstructor_params = {{ model = "{tiny_sd}", steps = 2, width = 64, height = 64 }}
select = {{ n = {n}, by = "psnr" }}
"""
    return write_study(tmp_path / "study", image_folder, tiny_clip, methods=methods)


def fake_psnr(original, candidate):
    """A fixed value per candidate image (its mean pixel), whatever the original."""
    return float(np.asarray(candidate.convert("RGB"), dtype=np.float64).mean())


@pytest.fixture
def counted(monkeypatch):
    """PSNR replaced by :func:`fake_psnr`; the prompts each reconstructor call draws."""
    from semcomp.metrics.psnr import PsnrMetric
    from semcomp.stages.reconstruct import ReconstructPrompts

    def compare(self, originals, candidates):
        return [{"psnr": fake_psnr(o, c)} for o, c in zip(originals, candidates, strict=True)]

    drawn: list[int] = []
    infer = ReconstructPrompts.infer

    def counting(self, model, loaded, context):
        drawn.append(len(loaded))
        return infer(self, model, loaded, context)

    monkeypatch.setattr(PsnrMetric, "compare", compare)
    monkeypatch.setattr(ReconstructPrompts, "infer", counting)
    return drawn


def candidates_of(store):
    return store.frame(
        "SELECT r.operating_point, r.rate_bits, r.meta AS rmeta, c.artifact_hash, c.seed, "
        "c.meta FROM candidates c JOIN representations r ON r.id = c.representation_id"
    )


def test_selection_picks_the_best_charges_the_index_and_reuses_images(
    tmp_path, image_folder, tiny_clip, tiny_sd, counted, monkeypatch
):
    root = selecting_study(tmp_path, image_folder, tiny_clip, tiny_sd, "[1, 4]")
    with Study.open(root) as study:
        summary = study.run(progress=False, stages=UP_TO_RECONSTRUCTION)
        assert not summary.failures
        store = study.store
        rows = candidates_of(store)
        assert len(rows) == 8  # 4 originals × 2 points
        # best-of-1 and best-of-4 share candidate 0: 4 images per original
        assert sum(counted) == 16
        for row in rows.itertuples():
            meta, rmeta = json.loads(row.meta), json.loads(row.rmeta)
            n = rmeta["select_n"]
            images = [decode_image(store.read_artifact(h)).rgb for h in meta["select_candidates"]]
            values = [fake_psnr(None, image) for image in images]
            assert len(values) == n and meta["select_values"] == pytest.approx(values)
            assert meta["select_index"] == int(np.argmax(values))
            assert row.artifact_hash == meta["select_candidates"][meta["select_index"]]
            assert row.seed == meta["select_seeds"][meta["select_index"]]
            # exactly ⌈log2 N⌉ bits, in one whole byte after the caption's
            caption_bytes = len(rmeta["caption"].encode())
            assert rmeta["select_bits"] == math.ceil(math.log2(n))
            assert row.rate_bits == 8 * (caption_bytes + (1 if n > 1 else 0))
        one = rows[rows.operating_point == "best-of=1"]
        four = rows[rows.operating_point == "best-of=4"]
        assert set(one.seed) <= {s for m in four.meta for s in json.loads(m)["select_seeds"]}
        points = rd_points(store)
    assert set(points.select_bits) == {0, 2} and set(points.index_bytes) == {0, 1}

    # a larger N reuses the smaller N's images: best-of-8 draws only 4 more per original
    selecting_study(tmp_path, image_folder, tiny_clip, tiny_sd, "[1, 4, 8]")
    counted.clear()
    with Study.open(root) as study:
        summary = study.run(progress=False, stages=UP_TO_RECONSTRUCTION)
        assert not summary.failures
        assert sum(counted) == 16
        rows = candidates_of(study.store)
        eight = rows[rows.operating_point == "best-of=8"]
        assert len(rows) == 12 and len(eight) == 4
        for row in eight.itertuples():
            meta = json.loads(row.meta)
            assert meta["select_index"] == int(np.argmax(meta["select_values"]))
            assert json.loads(row.rmeta)["select_bits"] == 3


def test_a_lower_is_better_metric_picks_the_argmin(
    tmp_path, image_folder, tiny_clip, tiny_sd, counted, monkeypatch
):
    from semcomp.metrics.psnr import PsnrMetric

    lower = PsnrMetric.scores(PsnrMetric.Params())[0]
    monkeypatch.setattr(
        PsnrMetric,
        "scores",
        classmethod(lambda cls, params: [dataclasses.replace(lower, higher_is_better=False)]),
    )
    root = selecting_study(tmp_path, image_folder, tiny_clip, tiny_sd, "[4]")
    with Study.open(root) as study:
        summary = study.run(progress=False, stages=UP_TO_RECONSTRUCTION)
        assert not summary.failures
        rows = candidates_of(study.store)
    assert len(rows) == 4
    for meta in rows.meta.map(json.loads):
        assert meta["select_index"] == int(np.argmin(meta["select_values"]))
        assert len(set(meta["select_values"])) > 1  # the candidates differ


def test_the_readme_best_of_n_example_is_valid(tmp_path):
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
        if "select = {" in block
    ]
    assert "optimistic" in readme[readme.index(example) :][:3000]
    images = tmp_path / "images"
    images.mkdir()
    study = f'name = "x"\n[images]\nsource = "{images}"\n{example}'
    (method,) = parse_config(tomllib.loads(study), "README.md", tmp_path).methods
    assert method.operating_point_labels() == [f"best-of={n}" for n in (1, 2, 4, 8)]


# ---- the study's own metric ---------------------------------------------------------------


def study_config(tmp_path, image_folder, tiny_clip, select, extra_metrics=""):
    from semcomp.config import load_config

    methods = f"""
[[methods]]
name = "best"
captioner = "human"
captioner_params = {{ csv = "{tmp_path / "captions.csv"}" }}
reconstructor_params = {{ model = "tiny", steps = 2, width = 64, height = 64 }}
select = {select}
{extra_metrics}
"""
    (tmp_path / "captions.csv").write_text(CAPTIONS)
    root = write_study(tmp_path / "study", image_folder, tiny_clip, methods=methods)
    return load_config(root)


def test_select_by_clip_is_the_studys_clip_model_not_the_default(tmp_path, image_folder, tiny_clip):
    config = study_config(tmp_path, image_folder, tiny_clip, '{ n = [2], by = "clip" }')
    (method,) = config.methods
    metric = method.select.metric
    assert metric.validated.model == tiny_clip  # the study's [[similarity.models]] entry
    assert metric.embedder_id == config.clip_models[0].embedder_id
    assert method.select.score_spec.key == "clip_cos[tiny]"
    assert method.select.identity()["metric"]["model"] == tiny_clip
    # alone, without the study, the same table would name open_clip's default model
    alone = SelectConfig.model_validate({"n": [2], "by": "clip"})
    assert alone.metric_params.model == "ViT-L-14-336"
    assert alone.identity() != method.select.identity()


def test_select_by_a_pairwise_metric_uses_the_studys_entry_or_its_own_params(
    tmp_path, image_folder, tiny_clip
):
    entry = '[[metrics]]\nmetric = "psnr"\nname = "p50"\nmax_db = 50.0\n'
    (method,) = study_config(
        tmp_path, image_folder, tiny_clip, '{ n = [2], by = "psnr" }', entry
    ).methods
    assert method.select.metric.validated.max_db == 50.0
    assert method.select.score_spec.key == "psnr[p50]"
    # the entry's name relabels the score, not the identity's score
    assert method.select.identity()["score"] == "psnr"
    (own,) = study_config(
        tmp_path, image_folder, tiny_clip, '{ n = [2], by = "psnr", params = { max_db = 60.0 } }'
    ).methods
    assert own.select.metric.validated.max_db == 60.0
    assert (own.select.metric.device, own.select.metric.batch_size) == ("auto", 4)
    assert own.select.score_spec.key == "psnr"


def test_select_among_several_clip_models_names_its_score(tmp_path, image_folder, tiny_clip):
    from semcomp.errors import ConfigError

    second = f"[[metrics]]\nmetric = 'clip'\nmodel = '{tiny_clip}'\nname = 'other'\n"
    with pytest.raises(ConfigError, match=r"2 'clip' metrics \(tiny, other\).*score"):
        study_config(tmp_path, image_folder, tiny_clip, '{ n = [2], by = "clip" }', second)
    (method,) = study_config(
        tmp_path,
        image_folder,
        tiny_clip,
        '{ n = [2], by = "clip", score = "clip_cos[other]" }',
        second,
    ).methods
    assert method.select.metric.label == "other"
    with pytest.raises(ConfigError, match="'clip_cos\\[nope\\]' is not a score of 'clip'"):
        study_config(
            tmp_path, image_folder, tiny_clip, '{ n = [2], by = "clip", score = "clip_cos[nope]" }'
        )


def test_a_study_whose_clip_is_tiny_selects_with_it_loaded_once(
    tmp_path, image_folder, tiny_clip, tiny_sd
):
    """Two methods select by CLIP: the study's tiny CLIP is loaded once, after the
    reconstructor, its vectors cached for the embed stage; the values are their cosines."""
    from semcomp.metrics.clip import cosine

    (tmp_path / "captions.csv").write_text(CAPTIONS)
    method = """
[[methods]]
name = "{name}"
captioner = "human"
captioner_params = {{ csv = "{csv}" }}
text_codec = "{codec}"
reconstructor_params = {{ model = "{sd}", steps = 2, width = 64, height = 64 }}
select = {{ n = [3], by = "clip" }}
"""
    methods = "".join(
        method.format(name=codec, csv=tmp_path / "captions.csv", codec=codec, sd=tiny_sd)
        for codec in ("utf8", "zlib")
    )
    root = write_study(tmp_path / "study", image_folder, tiny_clip, methods=methods)
    with Study.open(root) as study:
        summary = study.run(progress=False, stages=UP_TO_RECONSTRUCTION)
        assert not summary.failures
        (reconstruct,) = [s for s in summary.stages if s.stage == "reconstruct"]
        assert reconstruct.models_loaded == ["diffusers", "tiny"]
        assert reconstruct.done == 8  # 4 originals × 2 methods, embeddings not counted
        embedder_id = study.config.clip_models[0].embedder_id
        (model,) = study.store.conn.execute(
            "SELECT model FROM embedders WHERE id = ?", (embedder_id,)
        ).fetchone()
        assert model == tiny_clip
        rows = study.store.frame(
            "SELECT c.meta, o.artifact_hash AS original FROM candidates c "
            "JOIN representations r ON r.id = c.representation_id "
            "JOIN originals o ON o.id = r.original_id"
        )
        assert len(rows) == 8
        for row in rows.itertuples():
            meta = json.loads(row.meta)
            assert meta["select_by"] == "clip_cos[tiny]"
            assert meta["select_metric"]["model"] == tiny_clip
            assert meta["select_metric"]["label"] == "tiny"
            vectors = study.store.embeddings(
                embedder_id, [row.original, *meta["select_candidates"]]
            )
            expected = [
                cosine(vectors[row.original], vectors[h]) for h in meta["select_candidates"]
            ]
            assert meta["select_values"] == pytest.approx(expected)
            assert meta["select_index"] == int(np.argmax(expected))
        # the embed stage finds the originals and the chosen candidates embedded
        summary = study.run(progress=False, stages=["embed"])
        (embed,) = summary.stages
        assert embed.done == 0 and embed.models_loaded == []


def test_the_demo_has_a_best_of_4_method_selected_by_its_clip(all_methods_study):
    from semcomp.demo import BEST_OF_METHOD

    with Study.open(all_methods_study, read_only=True) as study:
        (method,) = [m for m in study.config.methods if m.name == BEST_OF_METHOD]
        assert method.select.metric.label == study.config.clip_models[0].label
        points = rd_points(study.store)
        chosen = study.store.frame(
            "SELECT c.meta FROM candidates c JOIN representations r "
            "ON r.id = c.representation_id WHERE r.method_id = ?",
            (method.method_id,),
        )
    best = points[points.method == BEST_OF_METHOD]
    plain = points[points.method == "human-captions"]
    scenes = points.original_id.nunique()
    assert len(best) == len(chosen) == scenes and set(best.operating_point) == {"best-of=4"}
    assert set(best.select_bits) == {2} and set(best.index_bytes) == {1}
    # the same captions as human-captions, one byte more for the index
    assert sorted(best.rate_bytes) == sorted(plain.rate_bytes + 1)
    for meta in chosen.meta.map(json.loads):
        assert len(meta["select_candidates"]) == 4
        assert meta["select_index"] == int(np.argmax(meta["select_values"]))
    # scored by every metric: the one that selected and the one that did not
    assert best["psnr"].notna().all() and best[method.select.score_spec.key].notna().all()
