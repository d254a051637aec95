"""Survey generation and the round trip: survey make → simulated MTurk results → import."""

import pytest

from mturk_format import read_csv, simulate, write_batch_results
from semcomp.errors import ConfigError
from semcomp.surveys import aggregate
from semcomp.surveys.definitions import load_survey
from semcomp.surveys.importer import import_ratings
from semcomp.surveys.make import make_survey, render_template

BASE = "https://bucket.example.org/survey-a"


def stored(store, survey_id: str) -> set:
    ratings = aggregate.kept_ratings(store, survey_id)
    return {
        (
            r.worker_id,
            r.original_id,
            r.candidate_id,
            r.question,
            r.value if r.text is None else r.text,
        )
        for r in ratings.itertuples()
    }


@pytest.mark.parametrize("scale_form", ["value", "radio"])
@pytest.mark.parametrize("layout", ["json", "flat"])
def test_round_trip_survey_a(store, tmp_path, layout, scale_form):
    survey = load_survey("A")
    made = make_survey(store, survey, base_url=BASE, out=tmp_path / "out", items_per_hit=3, seed=4)
    assert (made.hits, made.items, made.checks, made.repeats) == (4, 12, 4, 0)
    hits = read_csv(made.hits_csv)
    assert list(hits[0]) == [
        f"item{k}_{c}" for k in (1, 2, 3) for c in ("id", "left_url", "right_url")
    ]
    images = sorted(p.name for p in made.images.iterdir())
    assert len(images) == 24 and hits[0]["item1_left_url"].startswith(BASE + "/i")
    # one format and extension for every image: neither tells which side is the JPEG
    assert {name.rsplit(".", 1)[1] for name in images} == {"png"}
    items = read_csv(tmp_path / "out" / "items.csv")
    sides = {row["left"] for row in items if row["check"] == "0"}
    assert sides == {"original", "candidate"}  # side order randomised (and recorded)
    assignments, expected = simulate(tmp_path / "out", survey, workers=3, scale_form=scale_form)
    results = write_batch_results(tmp_path / "results.csv", assignments, layout=layout)
    summary = import_ratings(store, results, survey)  # no mapping needed
    assert summary.failed == [] and summary.unmatched == [] and summary.excluded == {}
    assert stored(store, "A") == expected
    assert summary.kept == len(expected) == 8 * 3


def test_round_trip_with_a_worker_failing_the_attention_checks(store, tmp_path):
    survey = load_survey("A")
    make_survey(store, survey, base_url=BASE, out=tmp_path / "out", items_per_hit=3, seed=4)
    assignments, expected = simulate(
        tmp_path / "out", survey, workers=3, failing=frozenset({"A001WORKER"})
    )
    results = write_batch_results(tmp_path / "results.csv", assignments)
    summary = import_ratings(store, results, survey)
    # every answer of the failing worker is excluded; the others' are all kept
    assert summary.failed == [] and summary.excluded == {"attention_check": 8}
    assert stored(store, "A") == {e for e in expected if e[0] != "A001WORKER"}
    checks = store.frame("SELECT worker_id, check_passed FROM ratings WHERE is_check = 1")
    assert set(checks[checks.check_passed == 0].worker_id) == {"A001WORKER"}
    assert len(checks) == 4 * 3


def test_survey_images_are_lossless_png_with_the_pixels_of_the_study(store, tmp_path):
    import numpy as np
    from PIL import Image

    made = make_survey(store, load_survey("A"), base_url=BASE, out=tmp_path / "out")
    items = {row["item_id"]: row for row in read_csv(tmp_path / "out" / "items.csv")}
    paths = dict(
        store.conn.execute(
            "SELECT c.id, a.relpath FROM candidates c JOIN artifacts a ON a.hash = c.artifact_hash"
        ).fetchall()
    )
    compared = 0
    for item in items.values():
        if item["check"] == "1":
            continue
        side = "a" if item["left"] == "candidate" else "b"
        shown = made.images / f"{item['item_id']}_{side}.png"
        with (
            Image.open(shown) as png,
            Image.open(store.artifact_path(paths[item["candidate_id"]])) as source,
        ):
            assert png.format == "PNG"
            assert np.array_equal(np.asarray(png), np.asarray(source))
        compared += 1
    assert compared == 8


def test_the_last_hit_is_filled_even_with_fewer_items_than_repeats(store, tmp_path):
    # 8 candidates in one HIT of 20: 12 repeats, more than there are items
    made = make_survey(
        store, load_survey("C"), base_url=BASE, out=tmp_path / "out", items_per_hit=20
    )
    assert (made.hits, made.items, made.repeats) == (1, 20, 12)
    assert len(read_csv(made.hits_csv)[0]) == 40 and all(read_csv(made.hits_csv)[0].values())


def test_round_trip_survey_c_with_repeats(store, tmp_path):
    survey = load_survey("C")
    made = make_survey(store, survey, base_url=BASE, out=tmp_path / "out", items_per_hit=3)
    assert (made.hits, made.checks, made.repeats) == (3, 0, 1)
    assert list(read_csv(made.hits_csv)[0])[:2] == ["item1_id", "item1_image_url"]
    assignments, expected = simulate(tmp_path / "out", survey, workers=2)
    results = write_batch_results(tmp_path / "results.csv", assignments, layout="flat")
    summary = import_ratings(store, results, survey)
    assert summary.failed == []
    # the repeated item is rated twice by each worker: the first is kept, the repeat reported
    assert summary.excluded == {"duplicate": 2 * 3} and len(summary.duplicates) == 2
    kept = stored(store, "C")
    assert kept <= expected and len(kept) == 8 * 2 * 3


def test_make_is_reproducible_and_records_items(store, tmp_path):
    survey = load_survey("B")
    first = make_survey(store, survey, base_url=BASE, out=tmp_path / "one", items_per_hit=4, seed=7)
    second = make_survey(
        store, survey, base_url=BASE, out=tmp_path / "two", items_per_hit=4, seed=7
    )
    assert (tmp_path / "one" / "hits.csv").read_text() == (
        tmp_path / "two" / "hits.csv"
    ).read_text()
    assert first.batch == second.batch
    assert store.count("survey_items") == first.items
    other = make_survey(
        store, survey, base_url=BASE, out=tmp_path / "three", items_per_hit=4, seed=8
    )
    assert (tmp_path / "three" / "hits.csv").read_text() != (
        tmp_path / "one" / "hits.csv"
    ).read_text()
    assert store.count("survey_items") == first.items + other.items


def test_make_refuses_bad_settings(store, tmp_path):
    with pytest.raises(ConfigError, match="no attention check"):
        make_survey(store, load_survey("C"), base_url=BASE, out=tmp_path, checks=1)
    with pytest.raises(ConfigError, match="items-per-hit"):
        make_survey(store, load_survey("A"), base_url=BASE, out=tmp_path, items_per_hit=1)
    with pytest.raises(ConfigError, match="no candidates of method"):
        make_survey(store, load_survey("A"), base_url=BASE, out=tmp_path, methods=["dalle"])


def test_template_has_exact_wording_and_escapes_text(tmp_path):
    template = render_template(load_survey("A"), 2)
    assert "How similar is the feeling or meaning of these images?" in template
    assert "Pixel-wise similarity is not important." in template
    assert '<script src="https://assets.crowd.aws/crowd-html-elements.js">' in template
    assert 'name="item2__similarity" value="10"' in template and "${item2_right_url}" in template
    custom = tmp_path / "mine.toml"
    custom.write_text(
        'id = "mine"\nname = "Mine <b>"\nsubject = "pair"\n'
        'instructions = "Compare & <script>alert(1)</script>"\n'
        '[[questions]]\nid = "q"\nkind = "scale"\ntext = "Is \\"A\\" < B?"\nlow = 1\nhigh = 3\n'
    )
    html = render_template(load_survey(custom), 1)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert "Is &quot;A&quot; &lt; B?" in html and "Mine &lt;b&gt;" in html
    for adjective in ("Busy", "Cheerful", "Eerie", "Pleasing"):
        assert f">{adjective}</crowd-checkbox>" in render_template(load_survey("C"), 1)
    # MTurk fills ${name} from the HIT's columns: a $ in survey text is written as &#36;
    custom.write_text(custom.read_text().replace("Compare", "Worth ${price}?"))
    page = render_template(load_survey(custom), 1)
    assert "&#36;{price}" in page and "${price}" not in page and "${item1_left_url}" in page
    # the importer fails a choice with no option chosen, so the form asks for one at least
    assert "at least one option" in render_template(load_survey("C"), 1)


def test_make_covers_what_the_study_file_asks_for(study, store, tmp_path):
    from semcomp.study import Study

    with Study.open(study, read_only=True) as opened:
        scope = opened.scope()
    ((method_id, (points, replicates)),) = scope.items()
    narrowed = {method_id: (points[:1], replicates)}
    made = make_survey(
        store, load_survey("C"), base_url=BASE, out=tmp_path, items_per_hit=4, scope=narrowed
    )
    assert (made.items, made.repeats) == (4, 0)  # 4 photos at one of the two qualities
    assert made_items_of(store, made.batch) == 4


def made_items_of(store, batch: str) -> int:
    return store.conn.execute(
        "SELECT COUNT(DISTINCT candidate_id) FROM survey_items WHERE batch = ?", (batch,)
    ).fetchone()[0]
