"""A study's captions scored against its human reference captions (issue #14)."""

import pandas as pd
import pytest

from helpers import write_study
from semcomp.caption_scores import study_caption_scores
from semcomp.cli import main
from semcomp.downstream.caption_eval import score_captions
from semcomp.report import write_report
from semcomp.study import Study


@pytest.fixture
def captioned_study(tmp_path, image_folder, tiny_clip, tiny_blip, tiny_sd):
    (tmp_path / "captions.csv").write_text(
        "image,caption\n"
        "img1,a valley under a blue sky\n"
        "img1,green hills and a sky\n"  # two references for img1
        "img2,a red apple on a table\n"
        "img3,a dog in the snow\n"  # img4 has no reference: left out of the scores
    )
    sd = f'model = "{tiny_sd}", steps = 2, width = 64, height = 64'
    methods = f"""
[[methods]]
name = "blip"
captioner = "blip"
captioner_params = {{ model = "{tiny_blip}", max_new_tokens = 8 }}
text_codec = "zstd"
reconstructor_params = {{ {sd} }}

[[methods]]
name = "human"
captioner = "human"
captioner_params = {{ csv = "{tmp_path / "captions.csv"}" }}
reconstructor_params = {{ {sd} }}
"""
    root = write_study(tmp_path / "study", image_folder, tiny_clip, methods=methods)
    with Study.open(root) as study:
        study.run(progress=False, stages=["ingest", "caption"])
    return root


def test_captions_are_scored_against_the_human_references(captioned_study, capsys):
    with pytest.raises(SystemExit) as raised:
        main(["captions", "score", str(captioned_study), "--no-meteor"])
    assert raised.value.code == 0
    assert "written:" in capsys.readouterr().out
    table = pd.read_csv(captioned_study / "caption_scores.csv")
    (row,) = table.itertuples()  # the human captions are the references, not scored
    assert row.method == "blip" and row.originals == 3 and row.captions == 3
    with Study.open(captioned_study, read_only=True) as study:
        blip = study.store.frame(
            "SELECT o.name, c.text, r.rate_bits FROM captions c "
            "JOIN originals o ON o.id = c.original_id "
            "JOIN representations r ON json_extract(r.meta, '$.caption_id') = c.id "
            "WHERE c.captioner = 'blip'"
        )
        blip = blip[blip["name"].str.startswith(("img1", "img2", "img3"))]
        references = {
            "img1": ["a valley under a blue sky", "green hills and a sky"],
            "img2": ["a red apple on a table"],
            "img3": ["a dog in the snow"],
        }
        expected = score_captions(
            {n: references[n.split(".")[0]] for n in blip["name"]},
            dict(zip(blip["name"], blip["text"], strict=True)),
            meteor=False,
        )
        for metric in ("BLEU-4", "ROUGE-L", "CIDEr-D"):
            assert table.loc[0, metric] == pytest.approx(expected.scores[metric], abs=1e-12)
        assert table.loc[0, "mean_bytes"] == pytest.approx(blip["rate_bits"].mean() / 8)
        # the report includes it (without METEOR: Java's start-up is left to the command)
        files = write_report(study, captioned_study / "report")
    written = pd.read_csv(files.folder / "caption_scores.csv")
    assert written.loc[0, "CIDEr-D"] == pytest.approx(table.loc[0, "CIDEr-D"])
    assert "caption_scores.csv: each method's captions" in (files.folder / "README.txt").read_text()


def test_a_study_without_human_captions_has_nothing_to_score(
    tmp_path, image_folder, tiny_clip, capsys
):
    root = write_study(tmp_path / "study", image_folder, tiny_clip)
    with Study.open(root) as study:
        study.run(progress=False, stages=["ingest"])
        assert study_caption_scores(study.store).empty
    with pytest.raises(SystemExit) as raised:
        main(["captions", "score", str(root)])
    assert raised.value.code == 2
    assert "no human reference captions" in capsys.readouterr().err


def test_caption_sets_over_subsets_of_the_references_score_as_each_subset_alone(monkeypatch):
    """The report scores every method and operating point in one call (one Java start-up
    for the tokenizer): each set, over the originals it covers, gets the scores that set
    alone against its own references gets (CIDEr-D's document frequencies included)."""
    from semcomp.downstream import caption_eval

    references = {
        "a": ["a red apple on a wooden table", "an apple on a table"],
        "b": ["a dog running in the snow"],
        "c": ["green hills under a blue sky", "a valley and a sky"],
    }
    sets = {
        ("blip", "caption"): {"a": "an apple on a table", "b": "a dog in snow"},
        ("human", "best-of-4"): {"b": "a dog running", "c": "hills under a sky"},
    }
    alone = {
        name: score_captions({k: references[k] for k in captions}, captions, meteor=False)
        for name, captions in sets.items()
    }
    calls = []
    tokenized = caption_eval.tokenized
    monkeypatch.setattr(caption_eval, "tokenized", lambda *a: calls.append(1) or tokenized(*a))
    together = caption_eval.score_caption_sets(references, sets, meteor=False, subsets=True)
    assert len(calls) == 1  # references and both sets tokenised together
    for name in sets:
        assert together[name].scores == pytest.approx(alone[name].scores, abs=1e-12)
    assert together["blip", "caption"].scores != together["human", "best-of-4"].scores
    with pytest.raises(caption_eval.ConfigError, match="cover different images"):
        caption_eval.score_caption_sets(references, sets, meteor=False)  # all, unless subsets
    with pytest.raises(caption_eval.ConfigError, match="cover different images"):
        caption_eval.score_caption_sets(references, {"x": {"z": "?"}}, subsets=True)
