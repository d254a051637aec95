"""Encoder-side selection (best-of-N): the ``select`` table, the index's bits, the
candidates' seeds and which candidate wins."""

import math

import pytest
from pydantic import ValidationError

from semcomp.metrics import METRICS
from semcomp.selection import (
    SelectConfig,
    best_index,
    candidate_replicate,
    index_bytes,
    operating_label,
    select_bits,
)


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
