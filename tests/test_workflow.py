"""End to end: the workflow's default target machinery on a tiny overlay of the embedded default config.

Runs the real rules (synthetic benchmark, prepare, tiny models, BM25, dense zero-shot retrieval, miners, stage-1
fusion and LLM judge, stage-2 MIFT, generation and top-up, stage-3 topics and batch manifests, training, evaluation,
tables) in a scratch working directory, then checks the tables against the evaluation files and the evaluation files
against pytrec_eval and the trec_eval binary on the written runs and qrels, and the final pools against N. Besides the
five miners and stage 1 alone, two variants of the method train on BGE: the full method (stages 1-3) and Table 3's
"w/o stage 2" (the stage-1 pool with stage 3); the other backbones' and ablations' rows are left out of the overlay's
tables to keep it short. The last tests build the mined-share sweep (two of its shares), Table 12's kit, the cost
table and the configuration page on the same run, then `snakemake --report` and open the report in Chromium.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import pytrec_eval
import yaml

from conftest import ERROR_HOOK, REPO, VENV_BIN, console_errors, run_chromium, trec_eval_binary, workflow_env

OVERLAY = {
    # The default's planted false negatives (up to 21 per query in ru) need more passages than 400.
    "benchmark": {"synthetic": {"passages": 400, "train_queries": 36, "dev_queries": 15, "corpus_shards": 1,
                                "instructions": 70, "false_negative_rate": 0.3, "max_planted": {"default": 3, "ru": 3}}},
    "languages": ["sw", "ru"],
    "corpus_shards": {"default": 1, "sw": 2},  # one language in two shards: the shard merge is tested here
    "tiny_models": {
        "tokenizer": {"vocab_size": 1500},
        "encoders": {
            name: {"hidden": 32, "layers": 1, "heads": 2, "intermediate": 64, "warmup_steps": 15, "batch_size": 16}
            for name in ["tiny-mbert", "tiny-mdpr", "tiny-mcontriever", "tiny-me5", "tiny-bge"]
        }
        | {
            # The mining retriever needs a real warm-up: untrained, its cosines all sit in [0.90, 0.97] and the
            # score-threshold miners (appendix B.3: 0.6, pos - 0.15, 90% of pos) keep nothing.
            "tiny-bge": {"hidden": 32, "layers": 1, "heads": 2, "intermediate": 64, "warmup_steps": 200,
                         "batch_size": 32}
        },
        # The judge LM keeps its default training (it must emit parseable verdicts).
        "causal_lms": {
            "tiny-judge": {"train_steps": 300},
            "tiny-gen": {"hidden": 32, "layers": 1, "heads": 2, "intermediate": 64, "train_steps": 20, "batch_size": 8},
        },
    },
    "backbones": {b: {"epochs": 1} for b in ["mbert", "mdpr", "mcontriever", "me5", "bge"]},
    "judges": {"llm": {"chunks": 1, "retries": 1}},
    "ensembles": {name: {"depth": 6} for name in ["me5_bge", "bge", "me5"]},
    "training": {"batch_size": 8, "save_steps": 5},
    # Stage 2 in miniature: 70 instructions per language (40 summarization-related), one epoch of MIFT, short
    # generations, N = 6 of 6 fused candidates.
    "generators": {"llm": {
        "sampling": {"summary_max_new_tokens": 16, "query_max_new_tokens": 8},
        "mift": {"max_samples": 60, "train": {"epochs": 1, "save_steps": 5}},
    }},  # fmt: skip
    "variant_defaults": {"negatives": {"pool_size": 6}},
    # The judging tables for the pointwise judge on a small held-out sample, and the dry estimate of an API judge.
    "judge_eval": {"holdout_queries": 6, "judges": ["llm"], "estimate": ["llm", "gpt4o"]},
    # The mined-share sweep at two of its shares (and its standard, Naive Top-K): two extra trainings, not four.
    "miners": {"mixed_25": None, "mixed_75": None},
    "variants": {"mined_25": None, "mined_75": None},
    "tables": {
        name: {"rows": [{"backbone": "bm25", "variant": "zeroshot", "label": "BM25"}]
               + [{"backbone": b, "variant": "zeroshot"} for b in ["mbert", "mdpr", "mcontriever", "me5", "bge"]]
               + [{"backbone": "bge", "variant": "full", "label": "Ours (BGE)"}]}
        for name in ("table1", "table14")
    } | {
        "table3": {"rows": [{"backbone": "bge", "variant": "full", "label": "Full Model"},
                            {"backbone": "bge", "variant": "wo_stage2", "label": "w/o Stage 2"}]},
        "mined_share": {"rows": [
            {"backbone": "bge", "variant": "mined_0", "label": "0% mined", "x": 0},
            {"backbone": "bge", "variant": "mined_50", "label": "50% mined", "x": 50},
            {"backbone": "bge", "variant": "naive_topk", "label": "Naive Top-K", "x": 100},
        ]},
    },
    "annotation": {"per_language": 5},
}
TARGETS = ["results/tables/table1.md", "results/tables/table2.md", "results/tables/elimination.md",
           "results/tables/judge_quality.md", "results/tables/table3.md", "results/tables/table13.md",
           "results/tables/batches.md", "results/tables/table8.md", "results/tables/stage2.md",
           "results/tables/generation_false_negatives.md", "results/tables/judge_labels.md",
           "results/tables/judge_cost.md", "results/tables/judge_estimate.md"]


def snakemake(workdir, targets, flags=(), timeout=1800):
    cmd = [str(VENV_BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", *flags, "--configfile", str(workdir / "config/config.yaml"), str(workdir / "overlay.yaml"),
           "--", *targets]
    return subprocess.run(cmd, env=workflow_env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    shutil.copytree(REPO / "config", workdir / "config")
    (workdir / "overlay.yaml").write_text(yaml.safe_dump(OVERLAY))
    proc = snakemake(workdir, TARGETS)
    if proc.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in sorted((workdir / "results/logs").rglob("*.log"))[-5:])
        pytest.fail(f"workflow failed:\n{proc.stderr[-6000:]}\n{logs}")
    return workdir


def _grouped_rows(md: str) -> dict[str, list[str]]:
    """Rows of a table whose first column is a group: keyed by the second cell."""
    rows = {}
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 3 and not set(cells[1]) <= set("-: "):
            rows.setdefault(cells[1], cells[2:])
    return rows


def _plain(cell: str) -> str:
    """A Markdown cell without the paper's marks (bold best, underlined second best, dagger)."""
    return cell.replace("**", "").replace("<u>", "").replace("</u>", "").replace("\u2020", "")


def _table_rows(md: str) -> dict[str, list[str]]:
    rows = {}
    for line in md.splitlines():
        cells = [_plain(c.strip()) for c in line.strip().strip("|").split("|")]
        if len(cells) > 2 and not set(cells[0]) <= set("-: "):
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.slow
def test_eval_files_match_pytrec_eval_on_the_written_runs(workflow_run, tmp_path):
    trec_eval = trec_eval_binary(tmp_path)
    for lang in OVERLAY["languages"]:
        for backbone in ["bm25", "bge"]:
            ev = json.loads((workflow_run / f"results/eval/{backbone}/zeroshot/{lang}.json").read_text())
            qrels, run = {}, {}
            for line in (workflow_run / f"results/data/{lang}/dev.qrels.tsv").read_text().splitlines():
                q, _, d, r = line.split()
                qrels.setdefault(q, {})[d] = int(r)
            for line in (workflow_run / f"results/runs/{backbone}/zeroshot/{lang}.trec").read_text().splitlines():
                q, _, d, _, s, _ = line.split()
                run.setdefault(q, {})[d] = float(s)
            per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10", "recall_100"}).evaluate(run)
            for q in qrels:
                expected = per_query.get(q, {"ndcg_cut_10": 0.0, "recall_100": 0.0})
                assert ev["per_query"][q]["ndcg_cut_10"] == pytest.approx(expected["ndcg_cut_10"], abs=1e-9)
                assert ev["per_query"][q]["recall_100"] == pytest.approx(expected["recall_100"], abs=1e-9)
            mean = sum(ev["per_query"][q]["ndcg_cut_10"] for q in qrels) / len(qrels)
            assert ev["aggregate"]["ndcg_cut_10"] == pytest.approx(mean)
            # MRR@10 is trec_eval's recip_rank of the top 10 (-M 10), checked against the binary itself
            out = subprocess.run([str(trec_eval), "-c", "-q", "-M", "10", "-m", "recip_rank",
                                  str(workflow_run / f"results/data/{lang}/dev.qrels.tsv"),
                                  str(workflow_run / f"results/runs/{backbone}/zeroshot/{lang}.trec")],
                                 capture_output=True, text=True, check=True).stdout
            rr = {q: float(v) for _, q, v in (line.split() for line in out.splitlines())}
            assert ev["aggregate"]["mrr_cut_10"] == pytest.approx(rr.pop("all"), abs=5e-5)
            assert rr and all(ev["per_query"][q]["mrr_cut_10"] == pytest.approx(v, abs=5e-5) for q, v in rr.items())


@pytest.mark.slow
def test_table1_reports_every_baseline_with_the_eval_averages(workflow_run):
    rows = _table_rows((workflow_run / "results/tables/table1.md").read_text())
    for label in ["BM25", "mBERT", "mDPR", "mContriever", "BGE"]:
        assert label in rows, rows.keys()
    langs = OVERLAY["languages"]
    ev = [json.loads((workflow_run / f"results/eval/bm25/zeroshot/{l}.json").read_text()) for l in langs]
    per_lang = [100 * e["aggregate"]["ndcg_cut_10"] for e in ev]
    assert rows["BM25"][0] == f"{sum(per_lang) / len(per_lang):.1f}"
    assert rows["BM25"][1:3] == [f"{v:.1f}" for v in per_lang]
    # BM25 on the synthetic benchmark is far from random (queries share their positive's key words).
    assert float(rows["BM25"][0]) > 20.0
    assert all(c.replace(".", "", 1).isdigit() for c in rows["Ours (BGE)"]), rows["Ours (BGE)"]


@pytest.mark.slow
def test_table2_has_every_miner_stage1_alone_and_the_full_method(workflow_run):
    rows = _table_rows((workflow_run / "results/tables/table2.md").read_text())
    for label in ["Naive Top-K", "Top-K shifted by N", "TopK-Abs", "TopK-MarginPos", "TopK-PercPos",
                  "Ours, stage 1 only", "Ours"]:
        assert label in rows
        assert all(c.replace(".", "", 1).isdigit() for c in rows[label]), rows[label]


@pytest.mark.slow
def test_stage3_topics_batches_and_a_stage3_variant_end_to_end(workflow_run):
    # Table 13: every prepared training query has a topic; the demo classifiers beat the majority class.
    rows = _table_rows((workflow_run / "results/tables/table13.md").read_text())
    for lang in OVERLAY["languages"]:
        train = (workflow_run / f"results/data/{lang}/train.jsonl").read_text().splitlines()
        assert int(rows[lang][-1].replace(",", "")) == len(train)
    for name in ("yahoo_answers", "dbpedia"):
        report = json.loads((workflow_run / f"results/models/tiny/fasttext/{name}.json").read_text())
        assert report["accuracy"] > report["majority_class_accuracy"] + 0.2, report
    # Table 3: the stage-3 rows are measured.
    rows = _table_rows((workflow_run / "results/tables/table3.md").read_text())
    for label in ("Full Model", "w/o Stage 2"):
        assert all(c.replace(".", "", 1).isdigit() for c in rows[label]), rows[label]
    summary = json.loads((workflow_run / "results/models/bge/wo_stage2/training_summary.json").read_text())
    assert summary["sampler"] == "manifest" and summary["config"]["loss_weighting"] == "paper"
    # The batches table: the stage-3 manifest is monolingual, the stage-1-only one is the old shuffled batches.
    rows = _table_rows((workflow_run / "results/tables/batches.md").read_text())
    assert rows["w/o Stage 2"][0] == "100.0" and float(rows["Stage 1 only (shuffled)"][0]) < 100.0
    stats = json.loads((workflow_run / "results/batches/wo_stage2/epochs-1.stats.json").read_text())
    assert stats["mode"] == "both" and stats["steps_per_epoch"] == summary["steps_per_epoch"]


@pytest.mark.slow
def test_judging_tables_report_the_judge_on_held_out_labels_and_its_cost(workflow_run):
    langs = OVERLAY["languages"]
    evals = {lang: json.loads((workflow_run / f"results/judge_eval/eval/labels/llm/positive/{lang}.json").read_text())
             for lang in langs}
    held = {lang: (workflow_run / f"results/judge_eval/holdout/{lang}.tsv").read_text().splitlines() for lang in langs}
    assert all(len(h) == 6 for h in held.values())
    # the tiny judge was never fine-tuned on the held-out queries
    info = json.loads((workflow_run / "results/models/tiny/tiny-judge/boostmdr_tiny_lm.json").read_text())
    assert info["judge_finetuning"]["held_out_queries"] == [f"results/judge_eval/holdout/{lang}.tsv" for lang in langs]
    labels = _grouped_rows((workflow_run / "results/tables/judge_labels.md").read_text())
    assert labels["Pairs judged"][1:3] == [str(evals[lang]["pairs"]) for lang in langs]
    cost = _grouped_rows((workflow_run / "results/tables/judge_cost.md").read_text())
    calls = sum(evals[lang]["cost"]["calls"] for lang in langs)
    assert calls >= 4 * sum(evals[lang]["pairs"] for lang in langs)  # the authors' four samples, plus any retries
    assert cost[next(k for k in cost if k.startswith("llm"))][2] == f"{calls:,}"  # Queries, Pairs, Calls, ...
    estimate = _table_rows((workflow_run / "results/tables/judge_estimate.md").read_text())
    api = next(v for k, v in estimate.items() if k.startswith("gpt4o"))
    assert api[-2] != "n/a (no price)" and api[-1] == "4 characters per token"


def _planned(workdir, extra_overlay: dict) -> dict[str, int]:
    """Dry-run the same targets with one more overlay; returns planned jobs per rule."""
    (workdir / "edit.yaml").write_text(yaml.safe_dump(extra_overlay))
    return _planned_targets(workdir, TARGETS, ["edit.yaml"])


@pytest.mark.slow
def test_editing_one_variant_replans_only_that_variant(workflow_run):
    # The stage-1-only variant keeps verdicts 0 and 1 ("drop only 2"): a new pool from the same verdicts,
    # then that variant's training, encoding, search, evaluation and its table; nothing upstream, no other variant.
    planned = _planned(workflow_run, {"variants": {"stage1": {"negatives": {"keep_verdicts": [0, 1]}}}})
    n_langs = len(OVERLAY["languages"])
    shards = yaml.safe_load((REPO / "config/config.yaml").read_text())["corpus_shards"] | OVERLAY["corpus_shards"]
    per_lang = {lang: shards.get(lang, shards["default"]) for lang in OVERLAY["languages"]}
    sharded = {lang: n for lang, n in per_lang.items() if n > 1}
    assert sharded and len(sharded) < n_langs  # both paths: encode + search, and the one-job search of one shard
    # its batch manifest is rebuilt from the new pool, and the batches table shows it; the new model encodes a
    # sharded language shard by shard, then searches it, and its one-shard languages in one job (the default's
    # retrieval.unsharded_jobs: model)
    assert yaml.safe_load((REPO / "config/config.yaml").read_text())["retrieval"]["unsharded_jobs"] == "model"
    assert planned == {"pool": n_langs, "batches": 1, "train": 1, "encode_corpus": sum(sharded.values()),
                       "search_dense": len(sharded), "search_dense_unsharded": 1,
                       "evaluate": n_langs, "table": 2}, planned


@pytest.mark.slow
def test_editing_the_judge_model_replans_verdicts_not_candidates(workflow_run):
    default_lm = yaml.safe_load((REPO / "config/config.yaml").read_text())["tiny_models"]["causal_lms"]["tiny-judge"]
    other_lm = default_lm | OVERLAY["tiny_models"]["causal_lms"]["tiny-judge"] | {"seed": 11}
    planned = _planned(workflow_run, {"tiny_models": {"causal_lms": {"tiny-judge-b": other_lm}},
                                      "judges": {"llm": {"model": "results/models/tiny/tiny-judge-b"}}})
    n_langs = len(OVERLAY["languages"])
    assert planned["tiny_lm"] == 1
    assert planned["judge"] == n_langs  # one chunk per language in the overlay
    # the judged pool feeds the stage-1-only, "w/o stage 2" and full trainings, and the six manifests of the batches
    # table (full, w/o stage 2, its three batching ablations, stage 1 only)
    assert planned["pool"] == n_langs and planned["train"] == 3 and planned["batches"] == 6
    # new pools: new generated queries, whose candidates are retrieved and fused again (not the training queries')
    # (the sharded language's by candidates_dense, the one-shard language's by one job per retriever)
    assert planned["generate"] == planned["fuse"] == n_langs
    assert planned["candidates_dense"] == planned["candidates_dense_unsharded"] == 2, planned
    for upstream in ("synthetic_language", "prepare", "tiny_encoder", "mine", "bm25_index", "mift_train"):
        assert upstream not in planned, planned


@pytest.mark.slow
def test_replicates_table_runs_the_workflow_again_for_another_seed(workflow_run):
    # Seed 13 is the main run (read from results/); seed 14 is the whole workflow again in results/replicates/seed-14/,
    # with a new benchmark draw and training seed 43, by a nested Snakemake.
    rows = [{"variant": "naive_topk", "label": "Naive Top-K"}, {"variant": "full", "label": "Full Model"}]
    (workflow_run / "replicates.yaml").write_text(yaml.safe_dump({"replicates": {"seeds": [13, 14], "rows": rows}}))
    cmd = [str(VENV_BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workflow_run),
           "--cores", "2", "--configfile", str(workflow_run / "config/config.yaml"), str(workflow_run / "overlay.yaml"),
           str(workflow_run / "replicates.yaml"), "--", "results/tables/replicates.md"]
    proc = subprocess.run(cmd, env=workflow_env(), capture_output=True, text=True, timeout=1800)
    rep = workflow_run / "results/replicates/seed-14"
    assert proc.returncode == 0, proc.stderr[-4000:] + (workflow_run / "results/logs/replicate/seed-14.log").read_text()[-4000:]
    cfg = yaml.safe_load((rep / "replicate.yaml").read_text())
    assert cfg["benchmark"]["synthetic"]["seed"] == 14 and cfg["training"]["seed"] == 43
    assert cfg["benchmark"]["synthetic"]["passages"] == OVERLAY["benchmark"]["synthetic"]["passages"]
    # a new draw of the benchmark, not a copy of the main run's
    topics = "results/data/sw/train.topics.tsv"
    assert (rep / topics).read_text() != (workflow_run / topics).read_text()
    csv = (workflow_run / "results/tables/replicates.csv").read_text().splitlines()
    header, values = csv[0].split(","), {line.split(",")[0]: line.split(",") for line in csv[1:]}
    for variant, label in (("naive_topk", "Naive Top-K"), ("full", "Full Model")):
        for seed, root in ((13, workflow_run), (14, rep)):
            evals = [json.loads((root / f"results/eval/bge/{variant}/{lang}.json").read_text()) for lang in OVERLAY["languages"]]
            avg = 100 * sum(e["aggregate"]["ndcg_cut_10"] for e in evals) / len(evals)
            assert float(values[label][header.index(f"nDCG@10 seed {seed}")]) == pytest.approx(avg, abs=0.006)
    md = _table_rows((workflow_run / "results/tables/replicates.md").read_text())
    assert " ± " in md["Full Model"][0] and md["Full Model"][3].endswith(" of 2")
    # built again: nothing to do, inside the replicate too
    assert _planned_targets(workflow_run, ["results/tables/replicates.md"], ["replicates.yaml"]) == {}


def _planned_targets(workdir, targets, configs) -> dict[str, int]:
    """Dry-run ``targets`` with the overlay and more config files (names in ``workdir``); planned jobs per rule."""
    cmd = [str(VENV_BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", "-n", "--quiet", "rules", "--configfile", str(workdir / "config/config.yaml"),
           str(workdir / "overlay.yaml"), *[str(workdir / c) for c in configs], "--", *targets]
    proc = subprocess.run(cmd, env=workflow_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {p[0]: int(p[1]) for p in (line.split() for line in (proc.stdout + proc.stderr).splitlines())
            if len(p) == 2 and p[1].isdigit() and p[0] != "total"}


@pytest.mark.slow
def test_editing_nothing_plans_nothing(workflow_run):
    assert _planned(workflow_run, {}) == {}


@pytest.mark.slow
def test_settings_that_do_not_change_a_result_rerun_nothing(workflow_run):
    # how often training state is saved, and how the judge's model is run, change no output
    assert _planned(workflow_run, {"training": {"save_steps": 7}, "judges": {"llm": {"max_batch_rows": 8}}}) == {}


@pytest.mark.slow
def test_every_final_pool_holds_n_negatives_or_records_its_shortfall_with_provenance(workflow_run):
    from boostmdr.formats import read_negatives

    n = OVERLAY["variant_defaults"]["negatives"]["pool_size"]
    pools = sorted(workflow_run.glob("results/stage2/pool/me5_bge/llm/positive/keep-0/n6/llm/mift-pdbg/judged/*.jsonl"))
    assert [p.name for p in pools] == ["ru.jsonl", "sw.jsonl"]
    rows = _table_rows((workflow_run / "results/tables/table8.md").read_text())
    for path in pools:
        stats = json.loads(path.with_suffix("").with_suffix(".stats.json").read_text())["pool"]
        records = read_negatives(path)
        from_llm = 0
        for rec in records:
            assert len(rec.negatives) + rec.meta["shortfall"] == n and len(rec.negatives) <= n
            sources = [neg.source for neg in rec.negatives]
            assert sources == sorted(sources, key=lambda s: s.startswith("stage2:"))  # stage 1 first, then stage 2
            for neg in rec.negatives[rec.meta["from_stage1"]:]:
                assert neg.source == "stage2:me5_bge" and neg.extra["judged"] and neg.extra["verdict"] == 0
                assert neg.extra["gid"].startswith(f"{rec.qid}.g")
            from_llm += rec.meta["from_stage2"]
        total = sum(len(r.negatives) for r in records)
        assert stats["from_stage2"] == from_llm and stats["negatives"] == total
        lang = path.stem
        column = OVERLAY["languages"].index(lang) + 1
        assert rows["From LLM (%)"][column] == f"{100 * from_llm / total:.1f}"
    check = _table_rows((workflow_run / "results/tables/table3.md").read_text())
    assert all(c.replace(".", "", 1).isdigit() for c in check["Full Model"]), check


# ---------------------------------------------------------------- the sweep, Table 12's kit, the report

REPORT_TARGETS = ["results/tables/table14.md", "results/tables/mined_share.md", "results/figures/mined_share.png",
                  "results/tables/table12.md", "results/report/config.html"]


def _simulated_annotator(sheet, truth, noise, seed):
    """A filled sheet: 2 for a planted false negative (truly relevant), 0 otherwise, a random other grade with
    probability ``noise`` (seeded)."""
    import random

    from boostmdr.formats import AnnotationItem, read_annotation_sheet

    rng = random.Random(seed)
    graded = []
    for item in read_annotation_sheet(sheet):
        grade = 2 if truth.get(item.qid, {}).get(item.docid, 0) > 0 else 0
        if rng.random() < noise:
            grade = rng.choice([g for g in (0, 1, 2) if g != grade])
        graded.append(AnnotationItem(**{**item.__dict__, "grade": grade}))
    return graded


@pytest.fixture(scope="module")
def report_run(workflow_run):
    """On the same run: the mined-share sweep, Table 12's kit (two simulated annotators fill the sheets, then the
    table is rebuilt from them), the configuration page, the cost table, and the report as .html and .zip."""
    from boostmdr.formats import read_qrels, write_annotation_sheet

    def run(targets, flags=()):
        proc = snakemake(workflow_run, targets, flags)
        if proc.returncode != 0:
            logs = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in sorted((workflow_run / "results/logs").rglob("*.log"))[-5:])
            pytest.fail(f"snakemake {' '.join(flags)} {targets} failed:\n{proc.stderr[-6000:]}\n{logs}")
        return proc

    run(REPORT_TARGETS)
    pending = (workflow_run / "results/tables/table12.md").read_text()
    for lang in OVERLAY["languages"]:
        truth = read_qrels(workflow_run / f"results/raw/synthetic/synthetic-truth/{lang}.train.complete-qrels.tsv")
        sheet = workflow_run / f"results/annotation/{lang}.sheet.tsv"
        for n in range(2):
            write_annotation_sheet(workflow_run / f"annotations/filled/{lang}-annotator{n}.tsv",
                                   _simulated_annotator(sheet, truth, 0.3, f"{lang}{n}"))
    run(["results/tables/table12.md"])  # new filled sheets: the table's inputs changed, it is rebuilt
    run(["results/tables/cost.md"])  # last: the cost of every job so far
    targets = [*TARGETS, *REPORT_TARGETS, "results/tables/cost.md"]
    for name in ("report.html", "report.zip"):
        run(targets, ["--report", str(workflow_run / name)])
    return workflow_run, pending


@pytest.mark.slow
def test_mined_share_sweep_table_negatives_and_figure(report_run):
    workdir, _ = report_run
    from boostmdr.formats import read_negatives, read_train

    # the mixed miner's negatives: half of Naive Top-K's 30 (15 mined) and 15 random, never a positive
    for lang in OVERLAY["languages"]:
        train = read_train(workdir / f"results/data/{lang}/train.jsonl")
        naive = {r.qid: {n.docid for n in r.negatives}
                 for r in read_negatives(workdir / f"results/negatives/miners/bge/naive_topk/{lang}.jsonl")}
        for rec in read_negatives(workdir / f"results/negatives/miners/bge/mixed_50/{lang}.jsonl"):
            mined = [n.docid for n in rec.negatives if n.extra["origin"] == "mined"]
            drawn = [n.docid for n in rec.negatives if n.extra["origin"] == "random"]
            assert len(mined) == min(15, len(naive[rec.qid])) and set(mined) <= naive[rec.qid]
            assert len(drawn) == 15 and not set(drawn) & (naive[rec.qid] | set(train[rec.qid].positives))
    md = (workdir / "results/tables/mined_share.md").read_text()
    assert "| Measure | System | Avg | Avg low-resource | Avg other | sw | ru |" in md
    csv_rows = {(r[0], r[1]): r for r in (line.split(",") for line in
                                         (workdir / "results/tables/mined_share.csv").read_text().splitlines()[1:])}
    header = (workdir / "results/tables/mined_share.csv").read_text().splitlines()[0].split(",")
    for measure, name in (("MRR@10", "mrr_cut_10"), ("nDCG@10", "ndcg_cut_10")):
        ev = {lang: json.loads((workdir / f"results/eval/bge/mined_0/{lang}.json").read_text()) for lang in ("sw", "ru")}
        row = csv_rows[(measure, "0% mined")]
        # low-resource here is sw alone (te is not in the overlay's languages), the other average is ru
        assert row[header.index("Avg low-resource")] == f"{100 * ev['sw']['aggregate'][name]:.1f}"
        assert row[header.index("Avg other")] == f"{100 * ev['ru']['aggregate'][name]:.1f}"
        assert row[header.index("compared with")] == "bge/naive_topk"
        assert 0.0 <= float(row[header.index("p Avg")]) <= 1.0
        assert csv_rows[(measure, "Naive Top-K")][header.index("p Avg")] == ""  # the standard is not tested
    # a dagger in the Markdown is exactly a p < 0.05 in the CSV with a value above the standard's
    columns, measure = ["Avg", "Avg low-resource", "Avg other", "sw", "ru"], None
    for line in md.splitlines():
        if not line.startswith("| ") or line.startswith("| Measure"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        measure = cells[0] or measure
        row, standard = csv_rows[(measure, cells[1])], csv_rows[(measure, "Naive Top-K")]
        for col, cell in zip(columns, cells[2:]):
            p_value = row[header.index(f"p {col}")]
            value, base = float(row[header.index(col)]), float(standard[header.index(col)])
            if "\u2020" in cell:
                assert float(p_value) < 0.05 and value >= base, (measure, cells[1], col)
            elif p_value and float(p_value) < 0.05:
                assert value <= base, (measure, cells[1], col)
    png = (workdir / "results/figures/mined_share.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and (workdir / "results/figures/mined_share.pdf").read_bytes()[:5] == b"%PDF-"


@pytest.mark.slow
def test_table12_from_the_kit_and_simulated_annotators(report_run):
    workdir, pending = report_run
    from boostmdr.formats import read_annotation_key

    assert "not yet annotated" in pending
    for lang in OVERLAY["languages"]:
        keys = read_annotation_key(workdir / f"results/annotation/{lang}.key.tsv")
        assert 0 < len(keys) <= 5 and all(k.verdict in (1, 2) for k in keys)  # what the judge removed
        page = (workdir / f"results/annotation/{lang}.sheet.html").read_text()
        assert all(k.item_id in page for k in keys) and "https://" not in page
    rows = _table_rows((workdir / "results/tables/table12.md").read_text())
    for label in [*OVERLAY["languages"], "All"]:
        shares = [float(x) for x in rows[label][:3]]
        assert sum(shares) == pytest.approx(100.0, abs=0.15), rows[label]
        assert rows[label][-1] == "2"  # annotators


@pytest.mark.slow
def test_report_holds_every_table_and_the_figure_and_opens_in_chromium(report_run, chromium, tmp_path):
    import base64
    import re
    import zipfile

    workdir, _ = report_run
    report = (workdir / "report.html").read_text()
    results = json.loads(re.search(r"var results = (\{.*?\});\n", report, re.S).group(1))
    by_name = {Path(path).name: entry for path, entry in results.items()}
    # every table of the targets (Tables 15 and 16 would train every backbone: not built here)
    expected_tables = [f"{t}.html" for t in ("table1", "table2", "table14", "mined_share", "elimination",
                                              "judge_quality", "table12", "cost")]
    for name in expected_tables + ["config.html"]:
        assert name in by_name, sorted(by_name)
        entry = by_name[name]
        assert entry["mime_type"] == "text/html" and entry["caption"].strip(), name
        page = base64.b64decode(entry["data_uri"].split("base64,", 1)[1]).decode("utf-8")
        assert page == (workdir / next(p for p in results if Path(p).name == name)).read_text()
    assert by_name["mined_share.png"]["mime_type"] == "image/png"
    assert "Dagger" in by_name["table1.html"]["caption"]  # the caption says how the marks were made
    with zipfile.ZipFile(workdir / "report.zip") as zf:
        names = zf.namelist()
    assert any(n.endswith("/report.html") for n in names) and any(n.endswith("mined_share.png") for n in names)

    # In the browser: the report renders with no error; every HTML result renders as a page with its table (in a
    # same-origin frame, as the report's own frame shows it), the figure decodes as an image, and the report's
    # own navigation shows a table in its frame.
    harness = """<script>
    window.addEventListener("load", function () { setTimeout(async function () {
      var out = {errors: window.__errors, results: {}, nav: document.getElementById("app").innerText.slice(0, 3000)};
      for (const [path, entry] of Object.entries(results)) {
        const r = {mime: entry.mime_type};
        const bytes = Uint8Array.from(atob(entry.data_uri.split("base64,")[1]), c => c.charCodeAt(0));
        if (entry.mime_type === "text/html") {
          const frame = document.createElement("iframe");
          document.body.appendChild(frame);
          await new Promise(res => { frame.onload = res; frame.srcdoc = new TextDecoder().decode(bytes); });
          const doc = frame.contentDocument;
          r.rows = doc.querySelectorAll("table tr").length;
          r.text = doc.body.innerText.slice(0, 4000);
          frame.remove();
        } else {
          const img = new Image();
          await new Promise((res, rej) => { img.onload = res; img.onerror = rej; img.src = entry.data_uri; });
          r.width = img.naturalWidth;
        }
        out.results[path] = r;
      }
      const first = Object.keys(results).find(p => p.endsWith("table1.html"));
      app.setView({content: "html", contentPath: results[first].data_uri});
      setTimeout(function () {
        out.frames = Array.from(document.querySelectorAll("iframe")).map(f => f.src === results[first].data_uri);
        document.body.setAttribute("data-harness", JSON.stringify(out));
      }, 300);
    }, 300); });
    </script>"""
    test_copy = tmp_path / "report-under-test.html"
    head, _, tail = report.rpartition("</body>")  # the last one: the report's scripts hold the string too
    test_copy.write_text(head.replace("<head>", "<head>" + ERROR_HOOK, 1) + harness + "</body>" + tail)
    proc = run_chromium(chromium, test_copy.as_uri(), tmp_path, "--dump-dom", "--virtual-time-budget=60000")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert console_errors(proc.stderr) == []
    import html

    found = re.search(r'data-harness="(.*?)"', proc.stdout, re.S)
    assert found, proc.stdout[-3000:]
    out = json.loads(html.unescape(found.group(1)))
    assert out["errors"] == []
    assert "Results tables" in out["nav"] and "Figures" in out["nav"]
    assert out["frames"] == [True]
    pages = {Path(p).name: r for p, r in out["results"].items()}
    for name in expected_tables:
        assert pages[name]["rows"] >= 3, (name, pages[name])
    assert "Ours (BGE)" in pages["table1.html"]["text"] and "not yet built" not in pages["table1.html"]["text"]
    assert "0% mined" in pages["mined_share.html"]["text"] and "Avg low-resource" in pages["mined_share.html"]["text"]
    assert "Planted false negatives" in pages["judge_quality.html"]["text"]
    assert "languages:" in pages["config.html"]["text"]
    assert pages["mined_share.png"]["width"] > 300
    # a screenshot for the reader of the test log (not asserted): the report's landing page
    run_chromium(chromium, (workdir / "report.html").as_uri(), tmp_path, f"--screenshot={tmp_path / 'report.png'}",
                 "--window-size=1400,900", "--virtual-time-budget=10000")
