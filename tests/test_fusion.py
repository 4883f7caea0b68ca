"""Fusion of candidate runs against hand-computed scores."""

from __future__ import annotations

import json
import logging

import pytest

from boostmdr.formats import Hit, read_run
from boostmdr.fusion import (
    FusionMethod,
    FusionSettings,
    cut,
    fuse,
    main,
    min_max_normalize,
    normalized_score_fusion,
    reciprocal_rank_fusion,
    remove_positives,
)

# Query q1, positive p1.
#   run A: p1 .95 [1]  d1 .90 [2]  d2 .80 [3]  d3 .50 [4]
#   run B: d2 .70 [1]  d4 .60 [2]  d1 .40 [3]
RUN_A = {"q1": [Hit("d3", 0.50), Hit("p1", 0.95), Hit("d2", 0.80), Hit("d1", 0.90)]}
RUN_B = {"q1": [Hit("d1", 0.40), Hit("d2", 0.70), Hit("d4", 0.60)]}
POSITIVES = {"q1": ["p1"]}


def as_pairs(hits):
    return [(h.docid, h.score) for h in hits]


def test_rrf_scores_by_hand():
    fused = reciprocal_rank_fusion([RUN_A, RUN_B], k=60)["q1"]
    expected = {
        "d2": 1 / 63 + 1 / 61,  # 0.032266
        "d1": 1 / 62 + 1 / 63,  # 0.032002
        "p1": 1 / 61,  # 0.016393
        "d4": 1 / 62,  # 0.016129
        "d3": 1 / 64,  # 0.015625
    }
    assert [h.docid for h in fused] == ["d2", "d1", "p1", "d4", "d3"]
    assert {h.docid: h.score for h in fused} == pytest.approx(expected, abs=1e-12)


def test_min_max_normalisation_and_constant_lists():
    norm = min_max_normalize(RUN_A)["q1"]
    # A: min .50, max .95, span .45
    assert {h.docid: h.score for h in norm} == pytest.approx({"p1": 1.0, "d1": 0.4 / 0.45, "d2": 0.3 / 0.45, "d3": 0.0})
    assert as_pairs(min_max_normalize({"q": [Hit("x", 0.3), Hit("y", 0.3)]})["q"]) == [("x", 1.0), ("y", 1.0)]


def test_normalized_fusion_scores_by_hand_missing_counts_zero():
    fused = normalized_score_fusion([RUN_A, RUN_B])["q1"]
    # B: min .40, max .70, span .30 -> d2 1, d4 .2/.3, d1 0
    expected = {
        "d2": 0.3 / 0.45 + 1.0,  # 1.666667
        "p1": 1.0,  # absent from B
        "d1": 0.4 / 0.45 + 0.0,  # 0.888889
        "d4": 0.0 + 0.2 / 0.3,  # 0.666667 (absent from A)
        "d3": 0.0,
    }
    assert [h.docid for h in fused] == ["d2", "p1", "d1", "d4", "d3"]
    assert {h.docid: h.score for h in fused} == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "method, expected",
    [
        (FusionMethod.RRF, [("d2", 0.032266), ("d1", 0.032002), ("d4", 0.016129)]),
        (FusionMethod.NORMALIZED, [("d2", 1.666667), ("d1", 0.888889), ("d4", 0.666667)]),
    ],
)
def test_fuse_removes_positives_rounds_and_cuts_to_depth(method, expected):
    fused = fuse([RUN_A, RUN_B], FusionSettings(method=method, depth=3), POSITIVES)
    assert as_pairs(fused["q1"]) == expected


def test_ties_are_broken_by_docid():
    a = {"q": [Hit("y", 0.9), Hit("x", 0.8)]}
    b = {"q": [Hit("x", 0.9), Hit("y", 0.8)]}
    rrf = fuse([a, b], FusionSettings(method="rrf", depth=10))["q"]
    assert as_pairs(rrf) == [("x", round(1 / 61 + 1 / 62, 6)), ("y", round(1 / 61 + 1 / 62, 6))]
    norm = fuse([b, a], FusionSettings(method="normalized", depth=10))["q"]
    assert as_pairs(norm) == [("x", 1.0), ("y", 1.0)]


def test_single_member_is_the_run_cut_with_positives_removed():
    for method in FusionMethod:
        fused = fuse([RUN_A], FusionSettings(method=method, depth=2), POSITIVES)
        assert as_pairs(fused["q1"]) == [("d1", 0.90), ("d2", 0.80)]


def test_query_left_empty_is_dropped_and_helpers_are_pure():
    run = {"q1": [Hit("p1", 0.5)], "q2": [Hit("z", 0.1)]}
    assert fuse([run], FusionSettings(depth=5), POSITIVES) == {"q2": [Hit("z", 0.1)]}
    assert remove_positives(RUN_A, POSITIVES)["q1"] == [Hit("d3", 0.50), Hit("d2", 0.80), Hit("d1", 0.90)]
    assert cut(RUN_A, 1) == {"q1": [Hit("p1", 0.95)]}
    assert RUN_A["q1"][0] == Hit("d3", 0.50)  # inputs untouched


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"method": "sum"}, r"method='sum' is invalid: valid methods are rrf, normalized"),
        ({"depth": 0}, r"depth=0 is invalid: expected an integer >= 1"),
        ({"rrf_k": -1}, r"rrf_k=-1 is invalid: expected a finite number >= 0"),
    ],
)
def test_settings_validation(settings, message):
    with pytest.raises(ValueError, match=message):
        FusionSettings(**settings)


def write_train(tmp_path):
    train = tmp_path / "train.jsonl"
    rows = [{"qid": "q2", "query": "b", "positives": [], "negatives": []},
            {"qid": "q1", "query": "a", "positives": ["p1"], "negatives": []}]
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return train


def write_trec(path, run):
    lines = [f"{q} Q0 {h.docid} {i} {h.score} m" for q, hits in run.items() for i, h in enumerate(hits, 1)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_writes_fused_run_in_training_order(tmp_path):
    train = write_train(tmp_path)
    a = write_trec(tmp_path / "a.trec", {**RUN_A, "q2": [Hit("z", 0.2)]})
    b = write_trec(tmp_path / "b.trec", RUN_B)
    out = tmp_path / "fused.trec"
    log = tmp_path / "fuse.log"
    main(["--runs", str(a), str(b), "--method", "rrf", "--depth", "40", "--train", str(train),
          "--tag", "ens", "--out", str(out), "--log", str(log)])
    assert out.read_text().splitlines() == [
        "q2 Q0 z 1 0.016393 ens",
        "q1 Q0 d2 1 0.032266 ens",
        "q1 Q0 d1 2 0.032002 ens",
        "q1 Q0 d4 3 0.016129 ens",
        "q1 Q0 d3 4 0.015625 ens",
    ]
    assert [h.docid for h in read_run(out)["q1"]] == ["d2", "d1", "d4", "d3"]
    assert "2 runs by rrf (k=60)" in log.read_text()


def test_cli_rejects_duplicate_runs_and_foreign_queries(tmp_path):
    train = write_train(tmp_path)
    a = write_trec(tmp_path / "a.trec", RUN_A)
    stray = write_trec(tmp_path / "s.trec", {"q7": [Hit("z", 0.2)]})
    common = ["--train", str(train), "--tag", "t", "--out", str(tmp_path / "o.trec")]
    with pytest.raises(ValueError, match=r"given more than once: .*a\.trec"):
        main(["--runs", str(a), str(a), *common])
    with pytest.raises(ValueError, match=r"s\.trec: 1 query id\(s\) not in .*train\.jsonl \(e\.g\. 'q7'\)"):
        main(["--runs", str(a), str(stray), *common])
    assert not (tmp_path / "o.trec").exists()


@pytest.fixture(autouse=True)
def _reset_logging():
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        handler.close()
        root.removeHandler(handler)
