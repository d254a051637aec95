"""The agreement table's CIs resample images: candidates of one original are not independent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from semcomp.analysis.agreement import ALL, agreement
from semcomp.analysis.stats import rank_correlation_cis

CLIP = "clip_(cos+1)/2[tiny]"
HUMAN = "human.A.median[similarity]"


def images_table(images: int, copies: int, seed: int = 0) -> pd.DataFrame:
    """One candidate per image and method, repeated ``copies`` times (identical candidates:
    e.g. diffusion replicates that came out the same)."""
    rng = np.random.default_rng(seed)
    rows = []
    for method in ("jpeg", "caption"):
        clip = rng.uniform(0.5, 1, images)
        rating = np.clip(np.round(clip * 12 - 2 + rng.normal(0, 1.5, images)), 1, 10)
        for image in range(images):
            for _ in range(copies):
                rows.append(
                    {
                        "original_id": f"o{image}",
                        "method": method,
                        CLIP: clip[image],
                        HUMAN: rating[image],
                    }
                )
    return pd.DataFrame(rows)


def test_copies_of_a_candidate_add_no_evidence():
    """ρ and τ-b do not change when every candidate is repeated; with the image as the unit
    neither do their CIs (resampling candidates made them narrower the more copies)."""
    once = agreement(images_table(30, 1), CLIP, HUMAN, seed=4).set_index("method")
    four = agreement(images_table(30, 4), CLIP, HUMAN, seed=4).set_index("method")
    assert (four["n"] == 4 * once["n"]).all() and (four["originals"] == once["originals"]).all()
    columns = [
        f"{name}{part}" for name in ("spearman", "kendall") for part in ("", "_ci_low", "_ci_high")
    ]
    assert np.allclose(four[columns], once[columns], rtol=0, atol=1e-12)
    assert (once["kendall_ci_low"] < once["kendall"]).all()


def test_each_row_resamples_its_own_images_with_one_draw_for_both_correlations():
    points = images_table(25, 3, seed=1)
    points.loc[points.index[::7], CLIP] += 0.01  # candidates of an image differ a little
    table = agreement(points, CLIP, HUMAN, seed=2).set_index("method")
    for method in (ALL, "jpeg"):
        rows = points if method == ALL else points[points["method"] == method]
        expected = rank_correlation_cis(
            rows[CLIP].to_numpy(), rows[HUMAN].to_numpy(), rows["original_id"].to_numpy(), seed=2
        )
        for name in ("spearman", "kendall"):
            assert (
                table.loc[method, f"{name}_ci_low"],
                table.loc[method, f"{name}_ci_high"],
            ) == pytest.approx(expected[name], abs=0)
    assert table.loc[ALL, "originals"] == 25 and table.loc[ALL, "n"] == 150


def test_a_metric_ordering_candidates_as_another_reuses_its_bootstrap(monkeypatch):
    """CLIP's cosine and (cos + 1) / 2 rank the candidates alike: their correlations with
    the ratings are the same numbers, so the image-resampled bootstrap runs once for both;
    a metric that orders them otherwise gets its own."""
    import semcomp.analysis.agreement as module

    points = images_table(40, 2, seed=3)
    points["cosine"] = points[CLIP] * 2 - 1
    points["shuffled"] = np.random.default_rng(0).permutation(points[CLIP].to_numpy())
    monkeypatch.setattr(module, "_COMPUTED", {})
    bootstraps = []
    counted = module.rank_correlation_cis
    monkeypatch.setattr(
        module, "rank_correlation_cis", lambda *a, **k: bootstraps.append(1) or counted(*a, **k)
    )
    scaled = agreement(points, CLIP, HUMAN, seed=5)
    assert len(bootstraps) == 3  # all methods, and each of the two
    cosine = agreement(points, "cosine", HUMAN, seed=5)
    assert len(bootstraps) == 3
    numbers = [c for c in scaled.columns if c not in ("model_metric",)]
    pd.testing.assert_frame_equal(cosine[numbers], scaled[numbers], check_exact=True)
    monkeypatch.setattr(module, "_COMPUTED", {})
    fresh = agreement(points, "cosine", HUMAN, seed=5)  # computed anew: the same numbers
    pd.testing.assert_frame_equal(fresh[numbers], scaled[numbers], check_exact=True)
    agreement(points, "shuffled", HUMAN, seed=5)
    agreement(points, CLIP, HUMAN, seed=6)  # another draw
    assert len(bootstraps) == 3 + 3 + 3 + 3
