"""The configuration as the workflow sees it: config/miracl.yaml merged over config/config.yaml exactly as
Snakemake merges a --configfile (snakemake.utils.update_config), with the overlay's removals applied and the
schema validated, holds the paper's matrix and nothing of the demo."""

from __future__ import annotations

import copy

import pytest
import yaml
from snakemake.utils import update_config, validate

from boostmdr.config import accepts_null, child_schema, drop_removed

from conftest import REPO

SCHEMA = yaml.safe_load((REPO / "config/schema.yaml").read_text())
DEFAULT = yaml.safe_load((REPO / "config/config.yaml").read_text())
PAPER = yaml.safe_load((REPO / "config/miracl.yaml").read_text())

# The paper's tables built by the workflow, and the variants (table rows and ablations) the paper defines.
PAPER_TABLES = {"table1", "table2", "table15", "table16"}
PAPER_VARIANTS = {
    "zeroshot", "naive_topk", "shifted_topk", "topk_abs", "topk_margin_pos", "topk_perc_pos", "stage1", "full",
    "wo_stage1", "wo_stage2", "wo_stage3", "wo_me5", "wo_bge", "wo_llm", "wo_ground_truth", "wo_mift", "wo_pdbg",
    "wo_topic_balance", "wo_same_language", "wo_both_batching", "weights_a55_b40", "weights_a45_b40",
    "weights_a55_b20", "weights_a45_b20", "pool_n10", "pool_n20", "pool_n40", "pool_n50",
}
DEMO_RULES = {"synthetic_language", "tiny_tokenizer", "tiny_encoder", "tiny_lm"}


def merged(*overlays: dict) -> dict:
    """The config a run with ``--configfile`` overlays gets: Snakemake's merge, our removals, validation."""
    config = copy.deepcopy(DEFAULT)
    for overlay in overlays:
        update_config(config, copy.deepcopy(overlay))
    drop_removed(config, SCHEMA)
    validate(config, str(REPO / "config/schema.yaml"))
    return config


def _keys(tree, prefix=""):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield f"{prefix}{k}"
            yield from _keys(v, f"{prefix}{k}.")


def test_the_paper_run_has_no_demo_only_key():
    cfg = merged(PAPER)
    assert "tiny_models" not in cfg
    assert "synthetic" not in cfg["benchmark"] and cfg["benchmark"]["name"] == "miracl"
    assert not DEMO_RULES & set(cfg["resources"]), sorted(cfg["resources"])
    models = [spec["model"] for spec in [*cfg["backbones"].values(), *cfg["judges"].values()]]
    assert not [m for m in models if m.startswith("results/models/tiny/")], models
    assert not [k for k in _keys(cfg) if "tiny" in k.split(".")[-1]], [k for k in _keys(cfg) if "tiny" in k]


def test_the_paper_run_has_exactly_the_papers_tables_and_variants():
    cfg = merged(PAPER)
    assert set(cfg["tables"]) == PAPER_TABLES
    assert set(cfg["variants"]) == PAPER_VARIANTS
    assert len(cfg["languages"]) == 16 and cfg["ensembles"]["me5_bge"]["depth"] == 40
    assert cfg["backbones"]["bge"] | {} == DEFAULT["backbones"]["bge"] | PAPER["backbones"]["bge"]
    assert cfg["judges"]["llm"]["max_passage_words"] is None  # a meaningful null stays


def test_the_paper_overlay_holds_only_what_differs_from_the_default():
    def same_leaves(overlay, base, where=""):
        for key, value in overlay.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                yield from same_leaves(value, base[key], f"{where}{key}.")
            elif key in base and base[key] == value:
                yield f"{where}{key}"

    assert list(same_leaves(PAPER, DEFAULT)) == []


def test_an_overlay_removes_a_variant_or_a_table_with_null_and_keeps_meaningful_nulls():
    cfg = merged(PAPER, {"variants": {"pool_n50": None}, "tables": {"table16": None}})
    assert "pool_n50" not in cfg["variants"] and "table16" not in cfg["tables"]
    assert cfg["variants"]["wo_llm"]["negatives"]["judge"] is None
    assert accepts_null(child_schema(SCHEMA["$defs"]["variant_override"]["properties"]["negatives"], "judge", SCHEMA))
    assert not accepts_null(child_schema(SCHEMA, "variants", SCHEMA))


def test_drop_removed_reports_what_it_removed():
    cfg = {"tiny_models": None, "benchmark": {"name": "miracl", "synthetic": None}, "judges": {"llm": {"base_url": None}}}
    assert sorted(drop_removed(cfg, SCHEMA)) == ["benchmark.synthetic", "tiny_models"]
    assert cfg == {"benchmark": {"name": "miracl"}, "judges": {"llm": {"base_url": None}}}


def test_without_removals_the_default_would_leak_into_the_paper_run():
    # What this module guards against: Snakemake's merge alone keeps the default's tiny models.
    config = copy.deepcopy(DEFAULT)
    update_config(config, copy.deepcopy(PAPER) | {"tiny_models": {"encoders": {}}})
    assert config["tiny_models"]["encoders"], "the merge keeps keys the overlay does not name"
    with pytest.raises(KeyError):
        merged(PAPER)["tiny_models"]
