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

# The paper's tables built by the workflow (plus the statistics of stage 3's batches and issue 13's mined-share sweep),
# and the variants (table rows and ablations) the paper defines (plus the sweep's).
PAPER_TABLES = {"table1", "table2", "table3", "table4", "table5", "table6", "table7", "table9", "table13", "table14", "table15", "table16",
                "batches", "mined_share", "figure3"}
PAPER_VARIANTS = {
    "zeroshot", "naive_topk", "shifted_topk", "topk_abs", "topk_margin_pos", "topk_perc_pos", "stage1", "full",
    "wo_stage1", "wo_stage2", "wo_stage3", "wo_me5", "wo_bge", "wo_llm", "wo_ground_truth", "wo_mift", "wo_pdbg",
    "wo_topic_balance", "wo_same_language", "wo_both_batching", "weights_a55_b40", "weights_a45_b40",
    "weights_a55_b20", "weights_a45_b20", "pool_n10", "pool_n20", "pool_n40", "pool_n50",
    "mined_0", "mined_25", "mined_50", "mined_75",
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
    models = [spec["model"] for spec in [*cfg["backbones"].values(), *cfg["judges"].values(),
                                         *cfg["generators"].values(), *cfg["topics"]["classifiers"].values()]]
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


# --------------------------------------------------------------------------- one source for each default


def _library_defaults() -> dict:
    """The default of every setting, as the library (dataclasses and module constants, which the command
    lines use too) defines it, under the schema's dotted key."""
    from boostmdr import (annotate, batching, bm25, encode, fusion, generate, judge, judge_eval, mift, miners, search,
                          tables, topics, topup, train, translate)
    from boostmdr.demo import tiny_models
    from boostmdr.demo.tiny_lm import TASKS, JudgeTrainSettings, TinyLMSettings
    from boostmdr.demo.topic_classifiers import ClassifierSettings
    from boostmdr.encoder import EncoderSettings
    from boostmdr.llm.estimate import DEFAULT_CHARS_PER_TOKEN
    from boostmdr.llm.options import BACKEND_DEFAULTS
    from boostmdr.llm.runner import parse_samples_spec

    t, e, j, f = train.TrainConfig(), EncoderSettings(), judge.JudgeSettings(), fusion.FusionSettings()
    lm, lt = TinyLMSettings(), JudgeTrainSettings()
    b, ts, fc = batching.BatchingSettings(), topics.TopicSettings(), ClassifierSettings()
    out = {
        "training.batch_size": t.batch_size,
        "training.group_size": t.group_size,
        "training.temperature": train.COS_TEMPERATURE,
        "training.dot_temperature": train.DOT_TEMPERATURE,
        "training.warmup_ratio": t.warmup_ratio,
        "training.seed": t.seed,
        "training.save_steps": t.save_steps,
        "training.gradient_checkpointing": t.gradient_checkpointing,
        "training.mixed_precision": "no" if not (t.fp16 or t.bf16) else None,
        "backbones.*.pooling": e.pooling,
        "backbones.*.normalize": e.normalize,
        "backbones.*.query_prefix": e.query_prefix,
        "backbones.*.passage_prefix": e.passage_prefix,
        "backbones.*.q_max_len": e.q_max_len,
        "backbones.*.p_max_len": e.p_max_len,
        "backbones.*.learning_rate": t.lr,
        "backbones.*.epochs": t.epochs,
        "bm25.k1": bm25.BM25Settings().k1,
        "bm25.b": bm25.BM25Settings().b,
        "retrieval.depth": search.DEFAULT_DEPTH,
        "retrieval.batch_size": encode.DEFAULT_BATCH_SIZE,
        "candidates.depth": search.DEFAULT_DEPTH,
        "mining.num_negatives": miners.DEFAULT_NUM_NEGATIVES,
        "miners.*.shift": miners.ShiftedTopK.shift,
        "miners.*.max_score": miners.TopKAbs.max_score,
        "miners.*.margin": miners.TopKMarginPos.margin,
        "miners.*.percentage": miners.TopKPercPos.percentage,
        "miners.*.mined_share": miners.MixedShare.mined_share,
        "miners.*.seed": miners.MixedShare.seed,
        "tables.*.highlight": tables.DEFAULT_HIGHLIGHT,
        "tables.*.significance.alpha": tables.DEFAULT_ALPHA,
        "annotation.per_language": annotate.DEFAULT_PER_LANGUAGE,
        "annotation.seed": annotate.DEFAULT_SEED,
        "annotation.sample": annotate.DEFAULT_SAMPLE,
        "ensembles.*.fusion": f.method.value,
        "ensembles.*.rrf_k": f.rrf_k,
        "ensembles.*.depth": f.depth,
        "judges.*.samples": [list(s) for s in parse_samples_spec(judge.AUTHORS_SAMPLES)],
        "judges.*.max_new_tokens": j.max_new_tokens,
        "judges.*.max_passage_words": j.max_passage_words,
        "judges.*.retries": j.retries,
        "judges.*.seed": j.seed,
        "tiny_models.encoders.*.dropout": tiny_models.DROPOUT,
        "tiny_models.causal_lms.*.hidden": lm.hidden,
        "tiny_models.causal_lms.*.layers": lm.layers,
        "tiny_models.causal_lms.*.heads": lm.heads,
        "tiny_models.causal_lms.*.intermediate": lm.intermediate,
        "tiny_models.causal_lms.*.seed": lm.seed,
        "tiny_models.causal_lms.*.init": lm.init,
        "tiny_models.causal_lms.*.train_steps": lt.max_steps,
        "tiny_models.causal_lms.*.batch_size": lt.batch_size,
        "tiny_models.causal_lms.*.lr": lt.lr,
        "tiny_models.causal_lms.*.verdict_weight": lt.verdict_weight,
        "variant_defaults.batching.same_language": b.same_language,
        "variant_defaults.batching.topic_balance": b.topic_balance,
        "variant_defaults.batching.weights": b.weights,
        "variant_defaults.batching.alpha": b.alpha,
        "variant_defaults.batching.beta": b.beta,
        "variant_defaults.batching.loss_weighting": t.loss_weighting,
        "topics.text": ts.text,
        "topics.preprocessing": ts.preprocessing,
        "tables.*.layout": tables.LAYOUTS[0],
        **{f"tiny_models.topic_classifiers.*.{k}": getattr(fc, k)
           for k in ("dim", "epoch", "lr", "word_ngrams", "bucket", "holdout", "seed")},
        "tiny_models.causal_lms.*.listwise_steps": lt.listwise_steps,
        "judges.*.mode": j.mode,
        "judges.*.window": j.window,
        "judges.*.structured_output": j.structured_output,
        "judges.*.escalation_share": judge_eval.DEFAULT_ESCALATION_SHARE,
        "judges.*.chars_per_token": DEFAULT_CHARS_PER_TOKEN,
        "judge_eval.holdout_queries": judge_eval.DEFAULT_HOLDOUT_QUERIES,
        "judge_eval.single_positive": judge_eval.DEFAULT_SINGLE_POSITIVE,
        "judge_eval.keep_verdicts": [0],
    }
    out.update({f"judges.*.{k}": v for k, v in BACKEND_DEFAULTS.items()})
    # stage 2
    g, m = generate.GenerationSettings(), mift.MiftSettings()
    s2s, lt = translate.Seq2SeqSettings(), translate.LLMTranslationSettings()
    out.update({
        "tiny_models.causal_lms.*.task": TASKS[0],
        "variant_defaults.negatives.pool_size": topup.DEFAULT_POOL_SIZE,
        "generators.*.sampling.temperature": g.temperature,
        "generators.*.sampling.top_p": g.top_p,
        "generators.*.sampling.summary_max_new_tokens": g.summary_max_new_tokens,
        "generators.*.sampling.query_max_new_tokens": g.query_max_new_tokens,
        "generators.*.queries_per_query": g.queries_per_query,
        "generators.*.max_passage_words": g.max_passage_words,
        "generators.*.retries": g.retries,
        "generators.*.seed": g.seed,
        "generators.*.roundtrip_k": topup.DEFAULT_ROUNDTRIP_K,
        "generators.*.prompt_format": m.prompt_format,
        "generators.*.mift.selection": mift.SELECTION_MODES[0],
        "generators.*.mift.max_samples": mift.DEFAULT_MAX_SAMPLES,
        "generators.*.mift.lora.rank": m.rank,
        "generators.*.mift.lora.alpha": m.alpha,
        "generators.*.mift.lora.dropout": m.dropout,
        "generators.*.mift.lora.target": m.target,
        "generators.*.mift.translation.code_scheme": s2s.code_scheme,
        "generators.*.mift.translation.batch_size": s2s.batch_size,
        "generators.*.mift.translation.num_beams": s2s.num_beams,
        "generators.*.mift.translation.max_new_tokens": s2s.max_new_tokens,
        "generators.*.mift.translation.max_input_tokens": s2s.max_input_tokens,
        "generators.*.mift.translation.retries": lt.retries,
        "generators.*.mift.translation.seed": lt.seed,
    })  # fmt: skip
    assert lt.max_new_tokens == s2s.max_new_tokens  # one config key for both translation kinds
    for key in ("learning_rate", "epochs", "scheduler", "warmup_ratio", "cutoff", "batch_size", "gradient_accumulation",
                "save_steps", "seed", "precision", "gradient_checkpointing", "quantization", "deepspeed"):  # fmt: skip
        out[f"generators.*.mift.train.{key}"] = getattr(m, key)
    out.update({f"generators.*.{k}": v for k, v in BACKEND_DEFAULTS.items()})
    out.update({f"generators.*.mift.translation.{k}": v for k, v in BACKEND_DEFAULTS.items()})
    return out


def test_the_schema_defaults_equal_the_library_defaults():
    from boostmdr.config import schema_defaults

    schema = dict(schema_defaults(SCHEMA))
    library = _library_defaults()
    assert {k: schema.get(k, "<no default in the schema>") for k in library} == library


def _dry_run_output(tmp_path, overlay: dict):
    """A dry run of the default config with ``overlay``; (exit code, what Snakemake printed)."""
    import shutil
    import subprocess

    from conftest import VENV_BIN, workflow_env

    shutil.copytree(REPO / "config", tmp_path / "config")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(overlay))
    proc = subprocess.run(
        [str(VENV_BIN / "snakemake"), "-n", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
         "--cores", "1", "--configfile", str(tmp_path / "config/config.yaml"), str(path)],
        env=workflow_env(), capture_output=True, text=True, timeout=300,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_a_table_that_fine_tunes_a_zero_shot_only_backbone_is_refused_naming_the_key(tmp_path):
    # backbones.*.finetune is read: mContriever is evaluated zero-shot only in the paper.
    rc, out = _dry_run_output(tmp_path, {"tables": {"table1": {"rows": [{"backbone": "mcontriever", "variant": "full"}]}}})
    assert rc != 0
    assert "backbones.mcontriever.finetune is false" in out


def test_a_replicates_row_that_is_not_fine_tuned_is_refused_naming_the_key(tmp_path):
    rc, out = _dry_run_output(tmp_path, {"replicates": {"rows": [{"variant": "zeroshot", "label": "Zero-shot"}]}})
    assert rc != 0
    assert "replicates.rows[0].variant: 'zeroshot' is not a fine-tuned variant" in out
