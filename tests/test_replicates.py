"""The replicates table (boostmdr.replicates): means, spreads and paired differences over seeds, by hand."""

from __future__ import annotations

import pytest

from boostmdr.replicates import replicate_seed, replicate_table
from boostmdr.tables import TableError, to_csv, to_markdown

ROWS = [{"variant": "naive_topk", "label": "Naive Top-K"}, {"variant": "full", "label": "Full Model"}]


def scores(naive, full, recall=0.8):
    return {"naive_topk": {"ndcg_cut_10": naive, "recall_100": recall},
            "full": {"ndcg_cut_10": full, "recall_100": recall}}


def test_mean_spread_and_paired_difference_by_hand():
    s = {13: scores(0.40, 0.43), 14: scores(0.50, 0.49), 15: scores(0.45, 0.50)}
    t = replicate_table(ROWS, [13, 14, 15], s, "naive_topk", "T")
    naive, full = t.rows
    # naive: mean 45.0, sd of (40, 50, 45) = 5.0; full: mean 47.33, sd of (43, 49, 50) = sqrt(14.33) = 3.79
    assert naive.cells == ("45.0 ± 5.0", "80.0 ± 0.0", "", "")
    # differences (+3, -1, +5): mean +2.33, sd sqrt(((0.67)^2 + (3.33)^2 + (2.67)^2) / 2) = sqrt(9.33) = 3.06
    assert full.cells == ("47.3 ± 3.8", "80.0 ± 0.0", "+2.3 ± 3.1", "2 of 3")
    assert full.extra == ("43.00", "49.00", "50.00", "80.00", "80.00", "80.00")
    csv = to_csv(t)
    assert csv.splitlines()[0].startswith("system,Avg nDCG@10,Avg R@100,Δ nDCG@10 vs Naive Top-K,Wins,nDCG@10 seed 13")
    assert "2 of 3" in to_markdown(t) and "benchmark seeds 13, 14, 15" in to_markdown(t)


def test_a_worse_row_gets_a_negative_difference_and_one_seed_no_spread():
    t = replicate_table(ROWS, [13], {13: scores(0.5, 0.45)}, "naive_topk")
    assert t.rows[1].cells == ("45.0", "80.0", "-5.0", "0 of 1")


def test_replicate_seeds_follow_the_benchmark_seed():
    assert replicate_seed(13, 13, 42) == {"benchmark": 13, "training": 42}
    assert replicate_seed(15, 13, 42) == {"benchmark": 15, "training": 44}


def test_bad_input_is_named():
    with pytest.raises(TableError, match=r"replicates.baseline: 'bm25' is not one of the rows \(naive_topk, full\)"):
        replicate_table(ROWS, [13], {13: scores(0.5, 0.5)}, "bm25")
    with pytest.raises(TableError, match=r"replicate seed 14, row 'full': no ndcg_cut_10 score"):
        replicate_table(ROWS, [13, 14], {13: scores(0.5, 0.5), 14: {"naive_topk": scores(0.5, 0.5)["naive_topk"]}},
                        "naive_topk")
