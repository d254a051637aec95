"""A study with every metric semcomp ships, offline on tiny random-weight models: it runs end
to end, resumes after a kill without computing anything twice, and reports every metric."""

from pathlib import Path

import pytest

from helpers import rows, write_study
from semcomp.metrics.lpips import Lpips
from semcomp.study import Study

ALL_METRICS = """
[[metrics]]
metric = "psnr"
[[metrics]]
metric = "ms-ssim"
win_size = 3
[[metrics]]
metric = "lpips"
weights = "random"
[[metrics]]
metric = "dists"
weights = "random"
[[metrics]]
metric = "dreamsim"
weights = "tiny"
[[metrics]]
metric = "fid"
weights = "tiny"
bootstrap = 5
[[metrics]]
metric = "kid"
weights = "tiny"
subset_size = 4
[[metrics]]
metric = "zero-shot"
model = "{tiny_clip}"
name = "tiny"
random_weights = true
"""


def all_metrics_study(root: Path, images: Path, tiny_clip: str) -> Path:
    write_study(root, images, tiny_clip)
    with (root / "study.toml").open("a") as handle:
        handle.write(ALL_METRICS.replace("{tiny_clip}", tiny_clip))
    return root


def test_every_metric_runs_resumes_after_a_kill_and_is_described(
    tmp_path, image_folder, tiny_clip, monkeypatch
):
    root = all_metrics_study(tmp_path / "s", image_folder, tiny_clip)
    compared: list[int] = []
    original_compare = Lpips.compare_prepared  # the model's part (the engine prepares pairs)

    def killed(self, prepared):
        raise KeyboardInterrupt  # the run is killed while LPIPS runs

    monkeypatch.setattr(Lpips, "compare_prepared", killed)
    with Study.open(root) as study, pytest.raises(KeyboardInterrupt):
        study.run(progress=False)
    before = dict(rows(root, "SELECT metric, COUNT(*) FROM scores GROUP BY metric"))
    assert before["psnr"] == 8 and "lpips[alex,random]" not in before

    def counted(self, prepared):
        compared.append(len(prepared.results))
        return original_compare(self, prepared)

    monkeypatch.setattr(Lpips, "compare_prepared", counted)
    with Study.open(root) as study:
        summary = study.run(progress=False)
    assert summary.status == "finished" and summary.failures == []
    assert sum(compared) == 8  # LPIPS ran once per pair, PSNR not again
    scored = dict(rows(root, "SELECT metric, COUNT(*) FROM scores GROUP BY metric"))
    per_candidate = {
        "clip_cos[tiny]",
        "clip_(cos+1)/2[tiny]",
        "psnr",
        "ms-ssim",
        "lpips[alex,random]",
        "dists[random]",
        "dreamsim[tiny]",
        "zero-shot top-1[tiny]",
    }
    assert {key: scored.get(key) for key in per_candidate} == dict.fromkeys(per_candidate, 8)
    sets = rows(root, "SELECT metric, operating_point, n FROM set_scores ORDER BY 1, 2")
    assert [(m.split("[")[0], n) for m, _, n in sets] == [("fid", 4)] * 2 + [("kid", 4)] * 2
    described = dict(rows(root, "SELECT name, higher_is_better FROM metrics"))
    assert described["psnr"] == 1 and described["lpips[alex,random]"] == 0
    assert all(described[key] is not None for key in per_candidate)

    with Study.open(root) as study:  # a finished study re-runs with no model work
        again = study.run(progress=False)
    assert all(not stage.models_loaded for stage in again.stages)

    from semcomp.app.data import load_study, signature
    from semcomp.report import write_report

    with Study.open(root, read_only=True) as study:  # the report covers every metric
        files = write_report(study)
    summary = (files.folder / "summary.csv").read_text()
    for key in [*per_candidate, "fid[tiny]", "kid[tiny]"]:
        assert key in summary, key
    assert (files.folder / "rd" / "psnr.png").exists()
    data = load_study(str(root), signature(root))  # and so does the app's data
    described = {info.key: info for info in data.scores}
    assert described["lpips[alex,random]"].higher_is_better is False
    assert {"fid[tiny]", "kid[tiny]"} <= set(data.set_scores["metric"])
