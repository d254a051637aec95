"""The score stage: every configured metric on a tiny study, resumable, with the metrics table."""

import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from helpers import photo, train_pqvae, write_study
from semcomp.config import EmbedderConfig
from semcomp.images import decode_image
from semcomp.metrics.clip import OpenClipEmbedder
from semcomp.metrics.psnr import PsnrMetric, psnr
from semcomp.store import MIGRATIONS
from semcomp.study import Study


def metrics_toml(tiny_clip: str, psnr_extra: str = "") -> str:
    return (
        f'\n[[metrics]]\nmetric = "psnr"\n{psnr_extra}\n'
        '[[metrics]]\nmetric = "ms-ssim"\nwin_size = 3\n\n'
        f'[[metrics]]\nmetric = "zero-shot"\nmodel = "{tiny_clip}"\n'
        'templates = ["a photo of a {}.", "art of the {}."]\n'
    )


def make_study(root: Path, images: Path, tiny_clip: str, metrics: str, **kwargs) -> Path:
    write_study(root, images, tiny_clip, **kwargs)
    with (root / "study.toml").open("a") as handle:
        handle.write(metrics)
    return root


def run(root: Path, **kwargs):
    with Study.open(root) as study:
        return study.run(progress=False, **kwargs)


def score_report(summary):
    return next(s for s in summary.stages if s.stage == "score")


def table(root: Path, sql: str, params=()) -> list[sqlite3.Row]:
    conn = sqlite3.connect(root / "study.db")
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def pairs(root: Path) -> list[tuple[str, np.ndarray, np.ndarray, str]]:
    """(candidate id, original pixels, candidate pixels, original category) of image pairs."""
    rows = table(
        root,
        "SELECT c.id, ca.relpath AS candidate, oa.relpath AS original, o.category "
        "FROM candidates c JOIN representations r ON r.id = c.representation_id "
        "JOIN originals o ON o.id = r.original_id JOIN artifacts ca ON ca.hash = c.artifact_hash "
        "JOIN artifacts oa ON oa.hash = o.artifact_hash WHERE ca.media_type LIKE 'image/%' "
        "ORDER BY c.id",
    )

    def pixels(relpath: str) -> np.ndarray:
        return np.asarray(decode_image((root / "artifacts" / relpath).read_bytes()).rgb)

    return [(r["id"], pixels(r["original"]), pixels(r["candidate"]), r["category"]) for r in rows]


def scores(root: Path, metric: str) -> dict[str, float]:
    rows = table(root, "SELECT candidate_id, value FROM scores WHERE metric = ?", (metric,))
    return {r["candidate_id"]: r["value"] for r in rows}


def test_every_metric_scores_every_candidate_with_its_metrics_row(
    tmp_path, image_folder, tiny_clip
):
    root = make_study(tmp_path / "s", image_folder, tiny_clip, metrics_toml(tiny_clip))
    summary = run(root)
    assert summary.status == "finished" and summary.failures == []
    assert score_report(summary).models_loaded == ["psnr", "ms-ssim", "zero-shot"]
    rows = {r["name"]: r for r in table(root, "SELECT * FROM metrics")}
    assert set(rows) == {
        "clip_cos[tiny]",
        "clip_(cos+1)/2[tiny]",
        "psnr",
        "ms-ssim",
        "zero-shot top-1[tiny-clip]",
    }
    psnr_row = rows["psnr"]
    assert (psnr_row["kind"], psnr_row["display"], psnr_row["higher_is_better"]) == (
        "pairwise",
        "PSNR",
        1,
    )
    assert (psnr_row["low"], psnr_row["high"]) == (0.0, 100.0)
    assert "bicubic" in json.loads(psnr_row["identity"])["preprocess"]
    scaled = rows["clip_(cos+1)/2[tiny]"]
    assert (scaled["kind"], scaled["display"], scaled["low"], scaled["formula"]) == (
        "embedding",
        "CLIP tiny cosine, scaled",
        0.0,
        "(cos+1)/2",
    )
    zero_shot = rows["zero-shot top-1[tiny-clip]"]
    identity = json.loads(zero_shot["identity"])
    assert zero_shot["kind"] == "task"
    assert identity["classes"] == ["landscape", "single_object"]
    assert identity["templates"] == ["a photo of a {}.", "art of the {}."]

    image_pairs = pairs(root)
    assert len(image_pairs) == 8
    expected = {cid: psnr(a, b, 100.0) for cid, a, b, _ in image_pairs}
    assert scores(root, "psnr") == pytest.approx(expected, abs=1e-9)
    assert len(scores(root, "ms-ssim")) == 8
    assert all(0 < v <= 1 for v in scores(root, "ms-ssim").values())
    assert len(scores(root, "clip_cos[tiny]")) == 8

    # zero-shot, computed independently from the same tiny CLIP
    embedder = OpenClipEmbedder(EmbedderConfig(model=tiny_clip), device="cpu")
    try:
        from PIL import Image

        images = [Image.fromarray(b) for _, _, b, _ in image_pairs]
        vectors = embedder.embed(images)
        classes = ["landscape", "single_object"]
        prompts = [t.format(c.replace("_", " ")) for c in classes for t in identity["templates"]]
        text = embedder.embed_texts(prompts).reshape(2, 2, -1).mean(axis=1)
    finally:
        embedder.close()
    predicted = np.argmax(vectors @ text.T, axis=1)
    truth = [classes.index(category) for *_, category in image_pairs]
    hits = {
        cid: float(p == t) for (cid, *_), p, t in zip(image_pairs, predicted, truth, strict=True)
    }
    assert scores(root, "zero-shot top-1[tiny-clip]") == hits

    again = run(root)
    assert again.models_loaded == [] and score_report(again).done == 0

    # another parameter is another identity: its old values are stale and computed again
    text = (
        (root / "study.toml")
        .read_text()
        .replace('metric = "psnr"\n', 'metric = "psnr"\nresize = "nearest"\n')
    )
    (root / "study.toml").write_text(text)
    changed = run(root)
    assert score_report(changed).models_loaded == ["psnr"] and score_report(changed).done == 8
    assert (
        '"resize":"nearest"'
        in table(root, "SELECT identity FROM metrics WHERE name = 'psnr'")[0][0]
    )


def test_an_interrupted_score_stage_resumes_without_computing_a_score_twice(
    tmp_path, image_folder, tiny_clip, monkeypatch
):
    root = make_study(
        tmp_path / "s", image_folder, tiny_clip, '\n[[metrics]]\nmetric = "psnr"\nbatch_size = 2\n'
    )
    compared: list[int] = []
    original_compare = PsnrMetric.compare

    def interrupted(self, originals, candidates):
        if len(compared) == 2:
            raise KeyboardInterrupt
        compared.append(len(originals))
        return original_compare(self, originals, candidates)

    monkeypatch.setattr(PsnrMetric, "compare", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(root)
    assert len(scores(root, "psnr")) == 4
    assert table(root, "SELECT status FROM runs ORDER BY id DESC")[0][0] == "interrupted"

    def counted(self, originals, candidates):
        compared.append(len(originals))
        return original_compare(self, originals, candidates)

    monkeypatch.setattr(PsnrMetric, "compare", counted)
    summary = run(root)
    assert summary.status == "finished" and score_report(summary).done == 4
    assert sum(compared) == 8  # every pair once across the two runs
    assert len(scores(root, "psnr")) == 8
    with Study.open(root) as study:
        row = next(r for r in study.status() if r.what == "score: psnr")
    assert (row.done, row.pending, row.failed) == (8, 0, 0)


def test_images_too_small_for_ms_ssim_are_settled_failures_with_the_reason(
    tmp_path, image_folder, tiny_clip
):
    root = make_study(
        tmp_path / "s", image_folder, tiny_clip, '\n[[metrics]]\nmetric = "ms-ssim"\n'
    )
    summary = run(root)
    assert summary.status == "finished"
    failures = [f for f in summary.failures if f[0] == "score"]
    assert len(failures) == 8
    assert all("at least 161 px at win_size 11" in reason for _, _, reason in failures)
    assert "img1 / jpeg quality=30 (ms-ssim)" in {label for _, label, _ in failures}
    assert scores(root, "ms-ssim") == {}
    with Study.open(root) as study:
        row = next(r for r in study.status() if r.what == "score: ms-ssim")
    assert (row.done, row.pending, row.failed) == (0, 0, 8)
    again = run(root)
    assert again.models_loaded == [] and score_report(again).skipped == 8


def downgrade_to_schema_2(root: Path) -> None:
    """Make ``root``'s store what semcomp wrote before metrics were a plugin family."""
    # migration 5 (narrow answers) undone on a store without ratings: the version-2
    # assignments and ratings tables, as migration 2 made them
    wide = re.findall(r"CREATE TABLE (?:assignments|ratings) \(.*?\n    \);", MIGRATIONS[1], re.S)
    assert len(wide) == 2
    conn = sqlite3.connect(root / "study.db")
    try:
        conn.executescript(
            # migration 6 (indexes for status), then migration 5
            "DROP INDEX scores_by_metric; DROP INDEX artifacts_not_images;"
            "DROP VIEW ratings; DROP TABLE answers; DROP TABLE rating_subjects;"
            "DROP TABLE rating_names; DROP TABLE assignments;"
            + "".join(wide)
            + "CREATE INDEX ratings_by_worker ON ratings(survey, worker_id, original_id);"
            # migration 4 (each candidate's method), then migration 3 (metrics)
            "DROP TRIGGER candidates_method; DROP INDEX candidates_by_method;"
            "ALTER TABLE candidates DROP COLUMN method_id;"
            "DROP TABLE set_scores;"
            + "".join(
                f"ALTER TABLE metrics DROP COLUMN {c};"
                for c in ("kind", "display", "higher_is_better", "low", "high", "identity", "unit")
            )
            + "PRAGMA user_version = 2;"
        )
    finally:
        conn.close()


def test_a_store_from_before_metrics_keeps_its_scores_and_gains_their_description(
    tmp_path, image_folder, tiny_clip
):
    root = write_study(tmp_path / "s", image_folder, tiny_clip)
    assert run(root).status == "finished"
    before = table(root, "SELECT candidate_id, metric, value, run_id FROM scores ORDER BY 1, 2")
    downgrade_to_schema_2(root)
    with Study.open(root) as study:  # migration 3
        migrated = {r["name"]: r for r in study.store.conn.execute("SELECT * FROM metrics")}
        assert migrated["clip_cos[tiny]"]["display"] is None  # named by the reader
        assert (migrated["clip_cos[tiny]"]["low"], migrated["clip_cos[tiny]"]["high"]) == (-1, 1)
        assert migrated["clip_cos[tiny]"]["identity"] is None
        summary = study.run(progress=False)
    assert summary.models_loaded == [] and score_report(summary).done == 0
    after = table(root, "SELECT candidate_id, metric, value, run_id FROM scores ORDER BY 1, 2")
    assert [tuple(r) for r in after] == [tuple(r) for r in before]
    rows = {r["name"]: r for r in table(root, "SELECT * FROM metrics")}
    assert rows["clip_cos[tiny]"]["display"] == "CLIP tiny cosine"
    assert rows["clip_(cos+1)/2[tiny]"]["display"] == "CLIP tiny cosine, scaled"
    assert all(r["higher_is_better"] == 1 and r["kind"] == "embedding" for r in rows.values())
    assert (rows["clip_cos[tiny]"]["low"], rows["clip_(cos+1)/2[tiny]"]["low"]) == (-1.0, 0.0)
    assert json.loads(rows["clip_cos[tiny]"]["identity"])["model"] == tiny_clip


def test_clip_as_a_metrics_entry_is_the_similarity_model_it_repeats(
    tmp_path, image_folder, tiny_clip
):
    root = make_study(
        tmp_path / "s",
        image_folder,
        tiny_clip,
        f"\n[[metrics]]\nmetric = 'clip'\nmodel = '{tiny_clip}'\nname = 'tiny'\n"
        "random_weights = true\n",
    )
    summary = run(root)
    embed = next(s for s in summary.stages if s.stage == "embed")
    assert embed.models_loaded == ["tiny"] and summary.failures == []
    assert len(scores(root, "clip_(cos+1)/2[tiny]")) == 8


def test_zero_shot_with_manifest_labels_top5_embeddings_and_an_original_without_class(
    tmp_path, tiny_clip
):
    images = tmp_path / "images"
    images.mkdir()
    lines = ["path,category,label"]
    for seed, label in enumerate(["cat", "dog", "red_car", "tree", "boat", ""]):
        photo(96, 64, seed).save(images / f"p{seed}.png")
        lines.append(f"p{seed}.png,,{label}")
    (images / "manifest.csv").write_text("\n".join(lines) + "\n")
    checkpoint = train_pqvae(tmp_path / "codec", tiny_clip)
    methods = (
        '[[methods]]\nname = "jpeg"\ncodec = "jpeg"\nquality = [50]\n\n'
        f'[[methods]]\nname = "pq"\ncheckpoint = "{checkpoint}"\n'
    )
    metrics = (
        f'\n[[metrics]]\nmetric = "zero-shot"\nmodel = "{tiny_clip}"\nname = "zs"\n'
        'templates = ["a photo of a {}."]\n\n[[metrics]]\nmetric = "psnr"\n'
    )
    root = make_study(tmp_path / "s", images / "manifest.csv", tiny_clip, metrics, methods=methods)
    summary = run(root)
    assert summary.status == "finished"
    failures = [f for f in summary.failures if f[0] == "score"]
    assert len(failures) == 1  # one line for the original without a class, not silence
    assert failures[0][1] == "zs: no class"
    assert "2 candidate(s) of 1 original(s) not scored" in failures[0][2] and "p5" in failures[0][2]

    identity = json.loads(
        table(root, "SELECT identity FROM metrics WHERE name = 'zero-shot top-1[zs]'")[0][0]
    )
    assert identity["classes"] == ["boat", "cat", "dog", "red_car", "tree"]
    top1, top5 = scores(root, "zero-shot top-1[zs]"), scores(root, "zero-shot top-5[zs]")
    assert len(top1) == len(top5) == 10  # 5 labelled originals × (jpeg, pq)
    assert set(top5.values()) == {1.0}  # five classes: always among the top five
    assert set(top1.values()) <= {0.0, 1.0}

    # the decoded embeddings are classified directly, against the same class prompts
    rows = table(
        root,
        "SELECT c.id, a.relpath, o.name FROM candidates c JOIN artifacts a ON a.hash = "
        "c.artifact_hash JOIN representations r ON r.id = c.representation_id "
        "JOIN originals o ON o.id = r.original_id WHERE a.media_type NOT LIKE 'image/%'",
    )
    assert len(rows) == 6
    embedder = OpenClipEmbedder(EmbedderConfig(model=tiny_clip), device="cpu")
    try:
        classes = identity["classes"]
        text = embedder.embed_texts([f"a photo of a {c.replace('_', ' ')}." for c in classes])
    finally:
        embedder.close()
    labels = {f"p{i}": label for i, label in enumerate(["cat", "dog", "red_car", "tree", "boat"])}
    for row in rows:
        if row["name"] not in labels:
            assert row["id"] not in top1
            continue
        vector = np.frombuffer((root / "artifacts" / row["relpath"]).read_bytes(), np.float32)
        predicted = classes[int(np.argmax(text @ vector))]
        assert top1[row["id"]] == float(predicted == labels[row["name"]])

    # psnr leaves the decoded embeddings out without a failure
    assert len(scores(root, "psnr")) == 6
    again = run(root)
    assert score_report(again).models_loaded == [] and [f[1] for f in again.failures] == [
        "zs: no class"
    ]


def test_metrics_alone_run_without_a_similarity_model_and_build_a_tiny_clip(tmp_path, image_folder):
    root = tmp_path / "s"
    root.mkdir()
    (root / "study.toml").write_text(
        f'[images]\nsource = "{image_folder.as_posix()}"\n\n'
        '[[methods]]\nname = "jpeg"\ncodec = "jpeg"\nquality = [40]\n\n'
        '[similarity]\ndevice = "cpu"\n\n'
        '[[metrics]]\nmetric = "zero-shot"\nmodel = "tiny"\n\n[[metrics]]\nmetric = "psnr"\n'
    )
    summary = run(root)
    assert summary.status == "finished" and summary.failures == []
    assert [s.models_loaded for s in summary.stages if s.models_loaded] == [["zero-shot", "psnr"]]
    assert (root / "models" / "tiny-clip" / "open_clip_config.json").is_file()
    assert len(scores(root, "zero-shot top-1[tiny-clip-random]")) == 4
    assert table(root, "SELECT COUNT(*) FROM embeddings")[0][0] == 0
    with Study.open(root, read_only=True) as study:
        assert study.random_weights


def test_model_metrics_prepare_in_the_prefetch_thread_and_give_the_same_scores(
    tmp_path, image_folder, tiny_clip, monkeypatch
):
    """LPIPS's tensors and zero-shot's CLIP transform are made while the batch loads (in
    the local engine's prefetch thread); scores and FID are those of loading in turn."""
    import threading

    from semcomp.engines import LocalEngine
    from semcomp.metrics.learned import LearnedPairwiseMetric
    from semcomp.stages import score

    metrics = (
        '\n[[metrics]]\nmetric = "lpips"\nweights = "random"\nbatch_size = 2\n'
        f'\n[[metrics]]\nmetric = "zero-shot"\nmodel = "{tiny_clip}"\nbatch_size = 2\n'
        '\n[[metrics]]\nmetric = "fid"\nweights = "tiny"\nbootstrap = 5\nbatch_size = 2\n'
    )
    where: dict[str, set[str]] = {"pairs": set(), "zero-shot": set()}
    prepare, guarded = LearnedPairwiseMetric.prepare_pairs, score.GuardedPreprocess.__call__

    def pairs_made(self, originals, candidates):
        where["pairs"].add(threading.current_thread().name)
        return prepare(self, originals, candidates)

    def transformed(self, image):
        where["zero-shot"].add(threading.current_thread().name)
        return guarded(self, image)

    monkeypatch.setattr(LearnedPairwiseMetric, "prepare_pairs", pairs_made)
    monkeypatch.setattr(score.GuardedPreprocess, "__call__", transformed)
    found = []
    for name, engine in (("in-turn", LocalEngine(prefetch=0)), ("ahead", LocalEngine())):
        root = make_study(tmp_path / name, image_folder, tiny_clip, metrics)
        for seen in where.values():
            seen.clear()
        summary = run(root, engine=engine)
        assert score_report(summary).failed == 0
        expected = {"MainThread"} if name == "in-turn" else {"semcomp-prefetch"}
        assert where == {"pairs": expected, "zero-shot": expected}
        found.append(
            (
                table(root, "SELECT candidate_id, metric, value FROM scores ORDER BY 1, 2"),
                table(root, "SELECT metric, method_id, operating_point, n, value FROM set_scores"),
            )
        )
    (scores_a, sets_a), (scores_b, sets_b) = found
    assert [tuple(r) for r in scores_a] == [tuple(r) for r in scores_b]
    assert [tuple(r) for r in sets_a] == [tuple(r) for r in sets_b] and len(sets_a) == 2
    keys = {r["metric"] for r in scores_a}
    assert {"lpips[alex,random]", "zero-shot top-1[tiny-clip]"} <= keys


def test_zero_shot_refuses_a_panorama_its_clip_resize_would_blow_up(tmp_path, tiny_clip):
    """The embed stage's size guard applies to zero-shot too: directly (``predict``) and in
    the score stage's task when the batch was loaded without the model's transform (Ray's
    tasks); the panorama is that candidate's failure, its neighbours are classified."""
    from PIL import Image

    from semcomp.errors import ImageError
    from semcomp.metrics.zeroshot import ZeroShotMetric, ZeroShotParams
    from semcomp.stages.score import ClassifyCandidates

    params = ZeroShotParams(model=tiny_clip, classes=("cat", "dog"))
    metric = ZeroShotMetric(params, device="cpu", batch_size=4)
    try:
        # the tiny CLIP resizes the short side to 32 px: 70000×1 → 2,240,000×32 (71.7 MP)
        line, wide = Image.new("RGB", (70000, 1), (10, 20, 30)), Image.new("RGB", (5000, 1))
        photos = [photo(48, 40, seed) for seed in (1, 2)]
        results = metric.predict([photos[0], line, photos[1]], ["cat", "dog", "dog"])
        assert isinstance(results[1], ImageError)
        assert "2,240,000×32" in str(results[1]) and "images.max_pixels (64,000,000)" in str(
            results[1]
        )
        expected = metric.predict_preprocessed(
            [metric.preprocess(image) for image in photos], ["cat", "dog"]
        )
        assert [results[0], results[2]] == expected

        files = []
        for name, image in (("a.png", photos[0]), ("wide.png", wide), ("b.png", photos[1])):
            image.save(tmp_path / name)
            files.append((tmp_path / name, "cat", False))
        # 5000×1 → 160,000×32 = 5,120,000 pixels: over a study's max_pixels of one million
        task = ClassifyCandidates(max_pixels=1_000_000)
        loaded = task.load(files, None)  # as a Ray task loads it: no model at hand
        assert not loaded.preprocessed
        results = task.infer(metric, loaded, task.context(metric))
        assert isinstance(results[1], ImageError) and "160,000×32" in str(results[1])
        assert "images.max_pixels (1,000,000)" in str(results[1])
        assert [results[0], results[2]] == metric.predict(photos, ["cat", "cat"])
    finally:
        metric.close()
