"""The set-metric step: cached Inception features per artifact, one FID / KID per method ×
operating point with its n, resumable, recomputed when the originals change."""

import shutil
from types import SimpleNamespace

import pytest

from semcomp import __version__
from semcomp.metrics.fid import Fid, FidParams
from semcomp.metrics.kid import KidParams
from semcomp.stages import StageContext, StageReport
from semcomp.stages.set_scores import run_set_metric
from semcomp.study import Study

EMBEDDING = "application/x-semcomp-embedding-f32"


@pytest.fixture
def study(jpeg_study, tmp_path):
    root = tmp_path / "study"
    shutil.copytree(jpeg_study, root)
    with Study.open(root) as opened:
        yield opened


def step(study: Study, metric: str, params) -> StageReport:
    run_id = study.store.start_run(
        command="test", semcomp_version=__version__, packages={}, config={}, seed=0
    )
    report = StageReport("score")
    ctx = StageContext(study.store, study.config, run_id, False, report)
    config = SimpleNamespace(metric=metric, validated=params, device="cpu", batch_size=4)
    run_set_metric(ctx, config)
    return report


def set_rows(study: Study, metric: str) -> dict[str, tuple]:
    rows = study.store.conn.execute(
        "SELECT operating_point, n, value, ci_low, ci_high, originals_key FROM set_scores "
        "WHERE metric = ? ORDER BY operating_point",
        (metric,),
    )
    return {r[0]: tuple(r[1:]) for r in rows}


def test_fid_per_operating_point_then_resumes_without_a_model(study):
    store = study.store
    # a decoded-embedding candidate has no pixels: it is neither embedded nor a failure
    representation = store.conn.execute("SELECT id FROM representations LIMIT 1").fetchone()[0]
    vector = store.put_artifact(b"\0" * 16, suffix=".f32", media_type=EMBEDDING)
    with store.transaction():
        store.conn.execute(
            "INSERT INTO candidates (id, representation_id, replicate, artifact_hash, meta, "
            "created_at) VALUES ('embedding-candidate', ?, 7, ?, '{}', 'now')",
            (representation, vector),
        )
    params = FidParams(weights="tiny", bootstrap=10)
    report = step(study, "fid", params)
    # done: 12 images' features (4 originals + 2 × 4 JPEG candidates), then 2 values
    assert report.failed == 0 and report.done == 14 and report.models_loaded
    features_id = Fid.features_id(params)
    assert store.count("embeddings") == 12
    assert not store.conn.execute(
        "SELECT 1 FROM embeddings WHERE artifact_hash = ?", (vector,)
    ).fetchone()
    extractor = store.conn.execute(
        "SELECT * FROM embedders WHERE id = ?", (features_id,)
    ).fetchone()
    assert extractor["kind"] == "inception-v3" and extractor["random_weights"] == 1
    metric = store.conn.execute("SELECT * FROM metrics WHERE name = 'fid[tiny]'").fetchone()
    assert (metric["kind"], metric["higher_is_better"], metric["embedder_id"]) == (
        "set",
        0,
        features_id,
    )
    assert metric["display"] == "FID (Inception-v3), tiny random"
    rows = set_rows(study, "fid[tiny]")
    assert len(rows) == 2
    for n, value, low, high, _ in rows.values():
        assert n == 4 and value > 0 and low is not None and high is not None

    again = step(study, "fid", params)
    assert (again.done, again.skipped, again.models_loaded) == (0, 2, [])
    assert set_rows(study, "fid[tiny]") == rows

    # KID on the same Inception reuses its features: no model is loaded
    kid = step(study, "kid", KidParams(weights="tiny", subsets=5, subset_size=3))
    assert (kid.done, kid.models_loaded) == (2, [])
    assert all(
        n == 4 and low is not None for n, _, low, _, _ in set_rows(study, "kid[tiny]").values()
    )


def test_values_follow_the_set_of_originals(study):
    params = FidParams(weights="tiny", bootstrap=0)
    step(study, "fid", params)
    before = set_rows(study, "fid[tiny]")
    first = study.store.conn.execute("SELECT MIN(original_id) FROM sources").fetchone()[0]
    with study.store.transaction():
        study.store.conn.execute("DELETE FROM sources WHERE original_id = ?", (first,))
    report = step(study, "fid", params)
    assert (report.done, report.models_loaded) == (2, [])
    after = set_rows(study, "fid[tiny]")
    for point, (n, value, low, high, key) in after.items():
        assert n == 3 and key != before[point][4] and value != before[point][1]
        assert low is None and high is None  # bootstrap = 0: no interval

    # other parameters, another identity: recomputed from the cache
    report = step(study, "fid", FidParams(weights="tiny", bootstrap=5))
    assert (report.done, report.skipped, report.models_loaded) == (2, 0, [])
    assert all(low is not None for _, _, low, _, _ in set_rows(study, "fid[tiny]").values())

    # one original left: no FID; the stale value goes and the failure names why
    with study.store.transaction():
        study.store.conn.execute(
            "DELETE FROM sources WHERE original_id != (SELECT MIN(original_id) FROM sources)"
        )
    report = step(study, "fid", params)
    assert report.failed == 2 and set_rows(study, "fid[tiny]") == {}
    reasons = [r[0] for r in study.store.conn.execute("SELECT reason FROM failures")]
    assert all("1 original(s) with features; it needs at least 2" in r for r in reasons)


def test_an_unreadable_candidate_is_a_recorded_failure_and_the_rest_is_scored(study):
    store = study.store
    row = store.conn.execute(
        "SELECT c.artifact_hash, a.relpath, r.operating_point FROM candidates c "
        "JOIN artifacts a ON a.hash = c.artifact_hash "
        "JOIN representations r ON r.id = c.representation_id LIMIT 1"
    ).fetchone()
    store.artifact_path(row["relpath"]).write_bytes(b"not an image")
    params = FidParams(weights="tiny", bootstrap=0)
    report = step(study, "fid", params)
    item = f"{row['artifact_hash']}|{Fid.features_id(params)}"
    failure = store.conn.execute("SELECT * FROM failures WHERE item = ?", (item,)).fetchone()
    assert failure is not None and failure["retryable"] == 0 and failure["stage"] == "score"
    assert report.failed == 1 and report.done == 11 + 2
    rows = set_rows(study, "fid[tiny]")
    assert rows[row["operating_point"]][0] == 3  # that original is left out at that point
    assert sorted(n for n, *_ in rows.values()) == [3, 4]
    again = step(study, "fid", params)  # a settled failure is not retried
    assert (again.failed, again.models_loaded) == (0, [])
