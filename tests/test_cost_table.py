"""boostmdr.cost: CPU and GPU hours per rule, stage and variant from Snakemake benchmark files, each file
attributed to its rule and wildcards by the rules' benchmark patterns."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from boostmdr import cost
from boostmdr.tables import to_markdown

ROOT = Path(__file__).resolve().parents[1]
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
PATTERNS = {
    "encode_corpus": "results/benchmarks/encode_corpus/{backbone}/{variant}/{lang}/shard-{shard}-of-{nshards}.tsv",
    "train": "results/benchmarks/train/{backbone}/{variant}.tsv",
    "tiny_encoder": "results/benchmarks/tiny_encoder/{tiny}.tsv",
    "judge": "results/benchmarks/judge/{ensemble}/{judge}/{reference}/{lang}/chunk-{chunk}-of-{nchunks}.tsv",
    "search_dense": "results/benchmarks/search_dense/{backbone}/{variant}/{lang}.tsv",
}


def write_bench(root, rel, *rows):
    """rows: (wall seconds, cpu seconds or 'NA')"""
    path = root / "results" / "benchmarks" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"{s}\t0:00:00\t10.0\t20.0\t5.0\t6.0\t0.1\t0.2\t50.0\t{cpu}\n" for s, cpu in rows)
    path.write_text(HEADER + body)
    return path


def test_a_file_is_attributed_to_its_rule_and_wildcards_by_the_patterns(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert cost.attribute("results/benchmarks/train/bge/full.tsv", PATTERNS) == (
        "train", {"backbone": "bge", "variant": "full"})
    rule, wc = cost.attribute("results/benchmarks/judge/me5_bge/llm/positive/sw/chunk-0-of-2.tsv", PATTERNS)
    assert rule == "judge" and "variant" not in wc and wc["chunk"] == "0"
    # a wildcard matches one path component, so the judge's path is not taken for a shorter pattern
    with pytest.raises(ValueError, match="matches no rule's benchmark pattern"):
        cost.attribute("results/benchmarks/train/bge/full/extra.tsv", PATTERNS)
    assert cost.pattern_regex("a/{x}/{y,[0-9]+}/{x}.tsv").fullmatch("a/p/7/p.tsv")
    assert not cost.pattern_regex("a/{x}/{y}/{x}.tsv").fullmatch("a/p/7/q.tsv")
    # a query set is `train` or a generated set's path: the workflow's constraint lets {queries} span components,
    # the unconstrained wildcards still match one
    fuse = {"fuse": "results/benchmarks/fuse/{ensemble}/{queries}/{lang}.tsv"}
    queries = {"queries": "train|pdbg/me5_bge/llm/positive/keep-0/n6/llm/mift-pdbg"}
    assert cost.attribute("results/benchmarks/fuse/me5_bge/pdbg/me5_bge/llm/positive/keep-0/n6/llm/mift-pdbg/sw.tsv",
                          fuse, queries) == ("fuse", {"ensemble": "me5_bge", "queries": "pdbg/me5_bge/llm/positive/keep-0/n6/llm/mift-pdbg",
                                             "lang": "sw"})  # fmt: skip
    assert cost.attribute("results/benchmarks/fuse/me5_bge/train/sw.tsv", fuse, queries)[1]["queries"] == "train"
    with pytest.raises(ValueError, match="matches no rule's benchmark pattern"):  # without the constraint: one component
        cost.attribute("results/benchmarks/fuse/me5_bge/pdbg/me5_bge/llm/positive/keep-0/n6/llm/mift-pdbg/sw.tsv", fuse)


def test_hours_per_rule_stage_and_variant_match_hand_computed_sums(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = [
        write_bench(tmp_path, "encode_corpus/bge/zeroshot/sw/shard-0-of-2.tsv", (1800, 1700)),
        write_bench(tmp_path, "encode_corpus/bge/zeroshot/sw/shard-1-of-2.tsv", (1800, 1500)),
        write_bench(tmp_path, "encode_corpus/bge/full/sw/shard-0-of-1.tsv", (3600, 3000)),
        # 4 GPUs for 1 h -> 4 GPU h; CPU 7200 s -> 2 CPU h
        write_bench(tmp_path, "train/bge/full.tsv", (3600, 7200)),
        write_bench(tmp_path, "tiny_encoder/tiny-bge.tsv", (360, 720)),
    ]
    files = [str(f.relative_to(tmp_path)) for f in files]
    stages = {"encode_corpus": "retrieval", "train": "train", "tiny_encoder": "demo"}
    gpus = {"encode_corpus": 1, "train": 4}
    rules, per_stage, per_pair, total = cost.aggregate(cost.job_costs(files, PATTERNS, stages, gpus), ["train", "retrieval"])

    assert list(per_stage) == ["train", "retrieval", "demo"]  # the given order, then the rest
    assert list(rules) == ["encode_corpus", "train", "tiny_encoder"]  # most wall time first
    assert per_stage["retrieval"].jobs == 3
    assert per_stage["retrieval"].gpu_s == 7200 and per_stage["retrieval"].cpu_s == 6200
    assert per_stage["train"].gpu_s == 4 * 3600 and per_stage["train"].cpu_s == 7200
    assert per_pair[("retrieval", "zeroshot")].gpu_s == 3600
    assert per_pair[("retrieval", "full")].cpu_s == 3000
    assert per_pair[("demo", cost.SHARED)].jobs == 1
    assert total.jobs == 5 and total.gpu_s == 7200 + 14400

    tables, _ = cost.cost_tables(files, PATTERNS, stages, gpus)
    md = "\n".join(to_markdown(t) for t in tables)
    assert "| encode_corpus | 3 | 7200 | 2400.0 | 1.7222 | 2.0000 |" in md
    assert "| train | 1 | 1.0000 | 2.0000 | 4.0000 |" in md
    assert "| retrieval | full | 1 | 1.0000 | 0.8333 | 1.0000 |\n|  | zeroshot | 2 | 1.0000 | 0.8889 | 1.0000 |" in md
    assert "| **Total** | 5 | 3.1000 | 3.9222 | 6.0000 |" in md


def test_repeated_benchmark_counts_once_with_mean_and_na_cpu_is_zero_and_reported(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    repeated = write_bench(tmp_path, "search_dense/bge/zeroshot/sw.tsv", (10, 8), (20, 12))
    unsampled = write_bench(tmp_path, "search_dense/bge/zeroshot/ru.tsv", (0.5, "NA"))
    files = [str(f.relative_to(tmp_path)) for f in (repeated, unsampled)]
    jobs = cost.job_costs(files, PATTERNS, gpu_rules={"search_dense": 1})
    assert (jobs[0].wall_s, jobs[0].cpu_s, jobs[0].gpu_s) == (15, 10, 15)
    assert jobs[1].cpu_s == 0 and jobs[1].cpu_missing
    _, notes = cost.cost_tables(files, PATTERNS, {}, {"search_dense": 1})
    assert "1 job(s) finished before Snakemake sampled their CPU time" in " ".join(notes)


def test_bad_inputs_fail_with_a_message_naming_the_problem(tmp_path):
    bad = tmp_path / "results" / "benchmarks" / "x" / "a.tsv"
    bad.parent.mkdir(parents=True)
    bad.write_text("foo\tbar\n1\t2\n")
    with pytest.raises(ValueError, match="needs a header with columns 's' and 'cpu_time'"):
        cost.read_benchmark(bad)
    with pytest.raises(ValueError, match=r"gpu_rules\['train'\] must be a GPU count"):
        cost.normalize_gpu_rules({"train": "4"})


@pytest.mark.slow
def test_script_runs_under_snakemake_and_writes_the_table(tmp_path):
    write_bench(tmp_path, "train/bge/full.tsv", (3600, 7200))
    (tmp_path / "Snakefile").write_text(
        textwrap.dedent(
            f"""
            rule cost:
                input: "results/benchmarks/train/bge/full.tsv"
                output: "results/tables/cost.md"
                params:
                    patterns={{"train": "results/benchmarks/train/{{backbone}}/{{variant}}.tsv"}},
                    stages={{"train": "training"}},
                    gpu_rules={{"train": 2}},
                    constraints={{"variant": "full|wo_stage1"}},
                log: "results/logs/cost.log"
                script: "{ROOT / 'scripts' / 'cost_table.py'}"
            """
        )
    )
    snakemake = Path(sys.executable).with_name("snakemake")
    proc = subprocess.run(
        ["timeout", "-k", "10", "120", str(snakemake), "--cores", "1", "--workflow-profile", "none"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (tmp_path / "results" / "tables" / "cost.md").read_text()
    assert "| training | full | 1 | 1.0000 | 2.0000 | 2.0000 |" in md
    assert "| train | 1 | 3600 | 3600.0 | 2.0000 | 2.0000 |" in md
