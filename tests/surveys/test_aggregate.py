"""The read API: summaries, Survey B dimensions, Survey C answers, Krippendorff's alpha."""

import krippendorff
import numpy as np
import pandas as pd
import pytest

from mturk_format import candidates
from semcomp.errors import ConfigError
from semcomp.store import Store
from semcomp.surveys import aggregate
from semcomp.surveys.definitions import load_survey
from semcomp.surveys.importer import import_ratings


def import_long(store, tmp_path, survey: str, rows: list[tuple], name: str = "long.csv"):
    """rows: (rater, candidate index, question, value)."""
    found = candidates(store)
    lines = ["rater,original,candidate,question,value"]
    for rater, index, question, value in rows:
        value = f'"{value}"' if "," in str(value) else value
        lines.append(
            f"{rater},{found[index]['original_id']},{found[index]['id']},{question},{value}"
        )
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return import_ratings(store, path, load_survey(survey), format="long"), found


def test_pair_and_method_summaries(store, tmp_path):
    ratings = {0: [3, 5, 9, 6], 1: [8, 8, 7], 2: [1, 2]}
    rows = [
        (f"r{i}", c, "similarity", v) for c, values in ratings.items() for i, v in enumerate(values)
    ]
    _, found = import_long(store, tmp_path, "A", rows)
    pairs = aggregate.pair_summary(store, "A").set_index("candidate_id")
    first = pairs.loc[found[0]["id"]]
    assert (first.n, first["median"], first["mean"]) == (4, 5.5, 5.75)
    assert first["std"] == pytest.approx(np.std([3, 5, 9, 6], ddof=1))
    assert first.iqr == pytest.approx(
        np.percentile([3, 5, 9, 6], 75) - np.percentile([3, 5, 9, 6], 25)
    )
    assert {"original", "category", "method", "operating_point"} <= set(pairs.columns)
    table = aggregate.method_summary(store, "A")
    expected = pairs.groupby(["method", "operating_point"])["median"].mean()
    for row in table.itertuples():
        assert row.median_mean == pytest.approx(expected[(row.method, row.operating_point)])
        assert row.median_ci_low <= row.median_mean <= row.median_ci_high or np.isnan(
            row.median_ci_low
        )
    assert table.ratings.sum() == 9


def test_dimension_summary_per_method_and_category(store, tmp_path):
    rows = []
    for rater in ("r1", "r2"):
        for index in range(4):
            for q, value in zip(["objects", "appearance", "position", "background", "color"],
                                [5, 4, 3, 2, 1], strict=True):  # fmt: skip
                rows.append((rater, index, q, value if rater == "r1" else value - (q != "color")))
    import_long(store, tmp_path, "B", rows)
    by_method = aggregate.dimension_summary(store, "B")
    assert list(by_method.columns[:4]) == [
        "method",
        "operating_point",
        "objects mean",
        "objects std",
    ]
    ratings = aggregate.kept_ratings(store, "B")
    objects = ratings[ratings.question == "objects"]
    expected = objects.groupby(["method", "operating_point"])["value"].agg(["mean", "std"])
    # JPEG's two qualities are two rows, as method_summary keeps them
    assert len(by_method) == 2 == ratings.operating_point.nunique()
    for row in by_method.itertuples(index=False, name=None):
        assert row[2:4] == pytest.approx(tuple(expected.loc[row[:2]]))
    by_category = aggregate.dimension_summary(store, "B", by=aggregate.BY_CATEGORY)
    assert list(by_category.columns[:3]) == ["method", "operating_point", "category"]
    assert set(by_category.category) == {c for c in ratings.category}
    pooled = aggregate.dimension_summary(store, "B", by="method")
    assert len(pooled) == 1 and pooled["objects mean"][0] == pytest.approx(objects.value.mean())
    with pytest.raises(ConfigError):
        aggregate.dimension_summary(store, "B", by="worker")


def test_dimension_summary_has_rows_only_for_rated_groups(store, tmp_path):
    found = candidates(store)
    ratings_of = aggregate.kept_ratings(store, include_excluded=True)  # empty: only categories
    assert ratings_of.empty
    categories = dict(
        store.conn.execute(
            "SELECT c.id, o.category FROM candidates c JOIN representations r "
            "ON r.id = c.representation_id JOIN originals o ON o.id = r.original_id"
        ).fetchall()
    )
    points = sorted({c["operating_point"] for c in found})
    # one candidate at the first quality in one category, one at the second in the other
    first = next(i for i, c in enumerate(found) if c["operating_point"] == points[0])
    other = categories[found[first]["id"]]
    second = next(
        i
        for i, c in enumerate(found)
        if c["operating_point"] == points[1] and categories[c["id"]] != other
    )
    rows = [(r, i, "objects", v) for i in (first, second) for r, v in (("r1", 4), ("r2", 2))]
    import_long(store, tmp_path, "B", rows)
    table = aggregate.dimension_summary(store, "B", by=aggregate.BY_CATEGORY)
    # two rated (method, quality, category) groups, not the 2 × 2 a pivot table would give
    assert len(table) == 2 and table["objects mean"].notna().all()
    assert table["assignments"].dtype.kind == "i" and list(table["assignments"]) == [2, 2]


def found_points(store) -> list[str]:
    return [c["operating_point"] for c in candidates(store)]


def test_survey_c_normalised_top_answers_and_overlap(store, tmp_path):
    rows = [
        ("r1", 0, "objects", "Dogs, a Tree,  SKY"),
        ("r2", 0, "objects", "dog, puppies, boxes"),
        ("r3", 0, "objects", "The dog, puppy"),
        ("r1", 1, "objects", "dog, grass"),
        ("r1", 0, "adjectives", "Busy, Eerie"),
        ("r2", 1, "adjectives", "eerie"),
    ]
    import_long(store, tmp_path, "C", rows)
    synonyms_file = tmp_path / "synonyms.toml"
    synonyms_file.write_text('dog = ["puppy", "hound"]\n')
    synonyms = aggregate.load_synonyms(synonyms_file)
    items = aggregate.answer_items(store, "C", synonyms)
    assert set(items[items.question == "objects"].answer) == {"dog", "tree", "sky", "box", "grass"}
    top = aggregate.top_answers(store, "C", synonyms=synonyms)
    point = candidates(store)[0]["operating_point"]
    first = top[(top.operating_point == point) & (top.question == "objects")]
    # candidates 0 and 1 (both at the first quality): dog ×4 (dogs, dog, the dog, dog) and
    # puppy ×2 (→ dog by synonym) of 10 items; box, grass, sky, tree once (ties alphabetical)
    assert found_points(store)[:2] == [point, point]
    assert list(first.answer) == ["dog", "box", "grass"]
    assert list(first["count"]) == [6, 1, 1] and list(first["rank"]) == [1, 2, 3]
    assert list(first.share) == pytest.approx([6 / 10, 1 / 10, 1 / 10])
    assert (first.method == "jpeg").all()
    other = top[(top.operating_point != point) & (top.question == "objects")]
    assert other.empty  # no answers at the other quality: not merged into this one
    assert aggregate.normalise_answer("  The  Boxes. ") == "box"
    assert aggregate.normalise_answer("glass") == "glass"
    assert aggregate.normalise_answer("running dogs") == "running dog"


def test_overlap_of_distinct_answers_between_groups(store, tmp_path):
    found = candidates(store)
    points = sorted({c["operating_point"] for c in found})
    first = next(i for i, c in enumerate(found) if c["operating_point"] == points[0])
    second = next(i for i, c in enumerate(found) if c["operating_point"] == points[1])
    rows = [
        ("r1", first, "objects", "dog, tree"),
        ("r2", first, "objects", "dogs"),
        ("r1", second, "objects", "dog, car, sky"),
        ("r2", second, "objects", "Dog"),
    ]
    import_long(store, tmp_path, "C", rows)
    overlap = aggregate.answer_overlap(store, "C")
    assert list(overlap.columns[1:5]) == [
        "method_a",
        "operating_point_a",
        "method_b",
        "operating_point_b",
    ]
    row = overlap.iloc[0]
    # {dog, tree} and {dog, car, sky}: one shared of four distinct answers
    assert (row.operating_point_a, row.operating_point_b) == tuple(points)
    assert (row.shared, row.distinct, row.overlap_percent) == (1, 4, 25.0)
    top_one = aggregate.answer_overlap(store, "C", top=1)
    assert top_one.iloc[0].overlap_percent == 100.0  # both groups' top answer is "dog"
    # one method when its operating points are pooled: nothing to compare
    assert aggregate.answer_overlap(store, "C", by="method").empty


def test_krippendorff_alpha_matches_the_library(store, tmp_path):
    values = {"r1": [1, 5, 9, 10], "r2": [2, 5, 8, 10], "r3": [1, 6, 9, 9]}
    rows = [(r, c, "similarity", v) for r, vs in values.items() for c, v in enumerate(vs)]
    import_long(store, tmp_path, "A", rows)
    table = aggregate.reliability(store, "A").iloc[0]
    direct = krippendorff.alpha(
        reliability_data=np.array(list(values.values()), dtype=float),
        level_of_measurement="ordinal",
        value_domain=list(range(1, 11)),
    )
    assert table.level == "ordinal" and table.alpha == pytest.approx(direct)
    assert (table.units, table.pairable_units, table.ratings) == (4, 4, 12)


def test_adjective_alpha_is_nominal_and_perfect_agreement_is_one(store, tmp_path):
    rows = [
        (r, c, "adjectives", adj)
        for r in ("r1", "r2")
        for c, adj in ((0, "Busy"), (1, "Calm, Eerie"))
    ]
    import_long(store, tmp_path, "C", rows)
    table = aggregate.reliability(store, "C").set_index("question")
    assert table.loc["adjectives", "level"] == "nominal"
    assert table.loc["adjectives", "alpha"] == pytest.approx(1.0)


def test_read_api_works_on_a_read_only_store(store, study, tmp_path):
    import_long(store, tmp_path, "A", [("r1", 0, "similarity", 4), ("r2", 0, "similarity", 6)])
    store.close()
    with Store(study, read_only=True) as readonly:
        for frame in (
            aggregate.kept_ratings(readonly),
            aggregate.pair_summary(readonly),
            aggregate.method_summary(readonly),
            aggregate.reliability(readonly),
            aggregate.imports(readonly),
            aggregate.unmatched_answers(readonly),
        ):
            assert isinstance(frame, pd.DataFrame)
        assert len(aggregate.kept_ratings(readonly, "A")) == 2
        assert set(aggregate.survey_definitions(readonly)) == {"A"}


def test_read_api_on_a_study_without_ratings(study):
    with Store(study, read_only=True) as readonly:
        for read in (
            aggregate.kept_ratings,
            aggregate.pair_summary,
            aggregate.method_summary,
            aggregate.dimension_summary,
            aggregate.answer_items,
            aggregate.top_answers,
            aggregate.answer_overlap,
            aggregate.reliability,
            aggregate.unmatched_answers,
            aggregate.imports,
        ):
            frame = read(readonly)
            assert frame.empty and len(frame.columns) >= 2, read.__name__


def test_method_summary_ci_is_scipys_percentile_bootstrap_of_pair_medians(store, tmp_path):
    from scipy.stats import bootstrap

    found = candidates(store)
    point = found[0]["operating_point"]
    group = [i for i, c in enumerate(found) if c["operating_point"] == point]
    assert len(group) == 4
    values = {group[0]: [3, 5, 9], group[1]: [8, 8, 7], group[2]: [1, 2, 2], group[3]: [6, 10]}
    rows = [(f"r{k}", c, "similarity", v) for c, vs in values.items() for k, v in enumerate(vs)]
    import_long(store, tmp_path, "A", rows)
    row = aggregate.method_summary(store, "A", seed=7).set_index("operating_point").loc[point]
    medians = np.array([5.0, 8.0, 2.0, 8.0])
    expected = bootstrap(
        (medians,),
        np.mean,
        n_resamples=2000,
        confidence_level=0.95,
        method="percentile",
        rng=np.random.default_rng(7),
    ).confidence_interval
    assert (row.pairs, row.ratings, row.median_mean) == (4, 11, pytest.approx(5.75))
    assert row.median_ci_low == pytest.approx(expected.low)
    assert row.median_ci_high == pytest.approx(expected.high)
    assert row.median_ci_low < 5.75 < row.median_ci_high


def test_words_with_no_singular_of_their_own_are_left_alone():
    for word in ("species", "series", "news", "glasses", "scissors", "clothes"):
        assert aggregate.normalise_answer(word) == word
    assert aggregate.normalise_answer("reading glasses") == "reading glasses"
    assert aggregate.normalise_answer("wine glass") == "wine glass"
    assert aggregate.normalise_answer("dresses") == "dress"


def test_alpha_of_identical_ratings_is_nan_without_a_warning(store, tmp_path, recwarn):
    rows = [(r, c, "similarity", 7) for r in ("r1", "r2") for c in (0, 1, 2)]
    import_long(store, tmp_path, "A", rows)
    table = aggregate.reliability(store, "A").iloc[0]
    assert np.isnan(table.alpha) and table.pairable_units == 3
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
