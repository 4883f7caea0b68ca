"""The paper's whole matrix (config/miracl.yaml) builds its DAG against raw MIRACL-layout files for all 16
languages (tiny synthetic ones), and the default config's DAG builds too."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
import yaml

from conftest import REPO, VENV_BIN, workflow_env

MIRACL_LANGS = ["ar", "bn", "en", "es", "fa", "fi", "fr", "hi", "id", "ja", "ko", "ru", "sw", "te", "th", "zh"]
# Passages per language (the paper's Table 10).
MIRACL_PASSAGES = dict(ar=2061414, bn=297265, en=32893221, es=10373953, fa=2207172, fi=1883509, fr=14636953, hi=506264,
                       id=1446315, ja=6953614, ko=1486752, ru=9543918, sw=131924, te=518079, th=542166, zh=4934368)


def _dry_run(configfiles, workdir_args=(), target=()):
    cmd = [str(VENV_BIN / "snakemake"), "-n", "--quiet", "rules", "--cores", "4", "--configfile", *map(str, configfiles),
           *workdir_args, *target]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=workflow_env(), capture_output=True, text=True, timeout=900)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout + proc.stderr, elapsed


def _job_counts(output: str) -> dict[str, int]:
    counts = {}
    for line in output.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m:
            counts[m.group(1)] = int(m.group(2))
    return counts


@pytest.fixture(scope="module")
def miracl_raw(tmp_path_factory):
    raw = tmp_path_factory.mktemp("miracl-raw")
    for lang in MIRACL_LANGS:
        subprocess.run(
            [sys.executable, "-m", "boostmdr.demo.synthetic", "--lang", lang, "--out-dir", str(raw), "--seed", "1",
             "--passages", "80", "--train-queries", "4", "--dev-queries", "3", "--false-negative-rate", "0.3",
             "--corpus-shards", "1"],
            check=True, capture_output=True, env=workflow_env(), timeout=120,
        )
    return raw


@pytest.mark.slow
def test_paper_matrix_builds_its_dag(miracl_raw, tmp_path):
    overlay = tmp_path / "raw.yaml"
    alpaca = tmp_path / "alpaca_data.json"  # stage 2's instructions: Stanford Alpaca's file, on disk like MIRACL's
    alpaca.write_text('[{"instruction": "Summarize the text.", "input": "a text", "output": "a summary"}]')
    overlay.write_text(yaml.safe_dump({
        "benchmark": {"name": "miracl", "raw_dir": str(miracl_raw)},
        "generators": {"llm": {"mift": {"instructions": str(alpaca)}}},
    }))  # fmt: skip
    out, elapsed = _dry_run([REPO / "config/miracl.yaml", overlay])
    counts = _job_counts(out)
    total = counts.get("total")
    print(f"\npaper dry run: {total} jobs, DAG built in {elapsed:.1f} s")
    for rule, n in sorted(counts.items()):
        print(f"  {rule:24s} {n}")
    n_langs = len(MIRACL_LANGS)
    # Every language is prepared and evaluated with BM25; every dense backbone encodes every shard zero-shot.
    assert counts["prepare"] == n_langs
    assert counts["bm25_search"] == n_langs
    # About a million passages per encoding shard, from MIRACL's real passage counts.
    config_shards = yaml.safe_load((REPO / "config/miracl.yaml").read_text())["corpus_shards"]
    for lang, n in MIRACL_PASSAGES.items():
        assert config_shards[lang] == -(-n // 1_000_000), lang
    shards = sum(config_shards[lang] for lang in MIRACL_LANGS)
    # Five zero-shot backbones encode every shard; each fine-tuned model encodes every shard of a sharded language
    # again, and encodes and searches a one-shard language in one job.
    sharded = sum(n for lang, n in config_shards.items() if lang in MIRACL_LANGS and n > 1)
    unsharded = sum(1 for lang in MIRACL_LANGS if config_shards[lang] == 1)
    assert unsharded > 0 and sharded > 0
    assert counts["encode_corpus"] + counts["encode_corpus_kept"] == 5 * shards + counts["train"] * sharded
    assert counts["search_dense_unsharded"] == counts["train"] * unsharded
    assert counts["search_dense"] == 5 * n_langs + counts["train"] * (n_langs - unsharded)
    # the zero-shot indexes of the candidate retrievers (me5, bge) are kept for stage 2's late readers
    assert counts["encode_corpus_kept"] == 2 * shards
    # Tables 2, 15, 16 train one model per (backbone, miner) pair, 4 backbones x 5 miners, and stage 1 alone and the
    # full method on each of the 4 backbones; the ablations train on BGE: Table 3 (w/o stage 1, 2, 3), Tables 4 and
    # 5 (w/o mE5, w/o BGE; w/o LLM judgment, w/o ground truth), Table 6 (w/o MIFT, w/o PDBG), Table 7 (three
    # batching ablations) and Table 9 (four fixed weights); and the mined-share
    # sweep's BGE at 0, 25, 50 and 75% mined (its 100% row is Naive Top-K's model); Figure 3's pools of N = 10, 20,
    # 40 and 50 on the 4 backbones (N = 30 is the full method).
    assert counts["train"] == 4 * 5 + 4 + 4 + 3 + 4 + 2 + 3 + 4 + 4 + 4 * 4
    # Every training replays a batch manifest, one per variant and epoch count (16 for mBERT and mDPR, 20 for mE5
    # and BGE): 5 miners, stage 1 only, the full method and Figure 3's four pool sizes twice each, the 16 BGE
    # ablations and 4 sweep shares once.
    assert counts["batches"] == 11 * 2 + 16 + 4
    assert counts["topics"] == n_langs
    assert counts["mine"] == (5 + 4) * n_langs
    # Table 12's kit: a sheet for each of the paper's five annotated languages, then the table.
    assert counts["annotation_sheet"] == 5 and counts["annotation_table"] == 1
    # Stage 1: four judged pools (the method's; w/o ground truth's empty reference; w/o mE5's and w/o BGE's one-model
    # ensembles), 8 chunks each, and two unjudged ones (w/o stage 1 on BGE alone, w/o LLM judgment)
    assert counts["judge"] == 4 * 8 * n_langs and counts["pool"] == 6 * n_langs
    # Stage 2: one MIFT; twelve generated query sets per language (the full method's, w/o MIFT's, w/o PDBG's, one per
    # Figure 3 pool size, and one per other stage-1 pool: w/o stage 1, w/o mE5, w/o BGE, w/o LLM, w/o ground truth),
    # each retrieved by its ensemble's members, fused and topped up; the ten sets on judged pools are judged in 8
    # chunks.
    assert counts["mift_select"] == counts["mift_train"] == counts["mift_merge"] == 1
    assert counts["mift_translate"] == counts["roundtrip"] == n_langs
    assert counts["generate"] == counts["stage2_candidates"] == counts["topup"] == 12 * n_langs
    assert counts["judge_generated"] == 10 * 8 * n_langs
    # the training queries by me5 and bge; the generated ones by me5 and bge (nine sets) or one of them (three)
    assert counts["candidates_dense"] == 2 * n_langs + (9 * 2 + 3) * n_langs
    assert counts["fuse"] == 3 * n_langs + 12 * n_langs
    assert "synthetic_language" not in counts and "tiny_encoder" not in counts
    # The judging tables plan for MIRACL too: its human labels (no planted truth there) for the pointwise judge with
    # and without structured output, the listwise, small and cascade judges, and a dry estimate of each single judge
    # the estimate table names.
    assert counts["judge_holdout"] == counts["judge_sample"] == n_langs
    assert counts["judge_sample_verdicts"] == 4 * n_langs and counts["judge_sample_escalated"] == n_langs
    assert counts["judge_eval"] == 5 * n_langs
    assert counts["judge_estimate"] == 6 * n_langs  # llm, llm_listwise, llm_small, gpt4o, gpt4o_listwise, gpt4o_mini_listwise
    assert elapsed < 300


def _trained_rows(workdir):
    """The fine-tuned (backbone, variant) rows of the config's tables."""
    cfg = yaml.safe_load((workdir / "config/config.yaml").read_text())
    rows = []
    for table in cfg["tables"].values():
        rows += table.get("rows", [])
        rows += [r | {"backbone": g} for g in table.get("groups", []) for r in table.get("group_rows", [])]
    return [r for r in rows if cfg["variants"].get(r["variant"], {}).get("finetune", True) and r["backbone"] != "bm25"]


def test_default_config_builds_its_dag(tmp_path):
    # In an empty working directory, so results a developer already has do not shrink the plan.
    import shutil

    shutil.copytree(REPO / "config", tmp_path / "config")
    out, _ = _dry_run([tmp_path / "config/config.yaml"], ["--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path)])
    counts = _job_counts(out)
    assert counts["synthetic_language"] == 3 and counts["prepare"] == 3
    # the judge, its listwise sibling, the smaller judge, and stage 2's generator
    assert counts["tiny_encoder"] == 5 and counts["tiny_lm"] == 4
    assert counts["judge_sample"] == 2 * 3 and counts["judge_eval"] == 2 * 5 * 3  # labels and planted, 5 judges
    # stage 2: the demo's instruction set (English source, one file per language), one MIFT, and the generation
    # and top-up of twelve query sets (as in the paper's DAG), plus the unjudged top-up of the full method's pool for
    # the analysis of the false negatives generation brings in
    assert counts["synthetic_instructions"] == 3 and counts["synthetic_instructions_source"] == 1
    assert counts["mift_select"] == counts["mift_train"] == 1 and counts["mift_translate"] == 3
    assert counts["generate"] == 12 * 3 and counts["topup"] == 12 * 3 + 3
    assert counts["table_figure"] == 2  # Figure 3 and the mined-share sweep
    assert counts["topics"] == 3 and counts["train"] == len({(r["backbone"], r["variant"]) for r in _trained_rows(tmp_path)})
    # retrieval.unsharded_jobs: model: the three one-shard languages of every dense model, fine-tuned or zero-shot, are
    # encoded and searched by one job, and a query set's candidates by one job per candidate retriever (me5, bge): the
    # training queries and stage 2's generated sets; no index is written
    assert counts["search_dense_unsharded"] == counts["train"] + 5
    # (the training queries and 9 generated sets of the me5 + bge ensemble by both; the generated sets of w/o mE5,
    # w/o BGE and w/o stage 1 by their one retriever)
    assert counts["candidates_dense_unsharded"] == 2 + 9 * 2 + 3 and counts["generate"] == (9 + 3) * 3, counts
    for rule in ("search_dense", "encode_corpus", "encode_corpus_kept", "candidates_dense"):
        assert rule not in counts, rule
