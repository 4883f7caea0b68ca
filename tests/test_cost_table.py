"""scripts/cost_table.py: CPU and GPU hours per stage and variant from Snakemake benchmark files."""

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("cost_table", ROOT / "scripts" / "cost_table.py")
cost_table = importlib.util.module_from_spec(_spec)
sys.modules["cost_table"] = cost_table  # dataclasses look their module up there
_spec.loader.exec_module(cost_table)

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def write_bench(root, rel, *rows):
    """rows: (wall seconds, cpu seconds or 'NA')"""
    path = root / "results" / "benchmarks" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"{s}\t0:00:00\t10.0\t20.0\t5.0\t6.0\t0.1\t0.2\t50.0\t{cpu}\n" for s, cpu in rows)
    path.write_text(HEADER + body)
    return path


def test_parse_benchmark_path_reads_rule_and_variant_and_marks_shallow_paths_shared():
    parse = cost_table.parse_benchmark_path
    assert parse("results/benchmarks/train/bge/full/all.tsv") == ("train", "full")
    assert parse("results/benchmarks/encode_corpus/bge/zeroshot/sw/shard-0-of-2.tsv") == ("encode_corpus", "zeroshot")
    assert parse("results/benchmarks/tiny_encoder/tiny-bge.tsv") == ("tiny_encoder", cost_table.SHARED)
    assert parse("results/benchmarks/judge/me5_bge/sw.tsv") == ("judge", cost_table.SHARED)
    # With the config's variant names, a third component that is not a variant is not taken for one.
    assert parse("results/benchmarks/judge/me5_bge/llm/sw/0.tsv", variants=["full"]) == ("judge", cost_table.SHARED)
    with pytest.raises(ValueError, match="not a benchmark file"):
        parse("results/runs/bge/full/sw.trec")


def test_cpu_and_gpu_hours_per_stage_and_variant_match_hand_computed_sums(tmp_path):
    files = [
        write_bench(tmp_path, "encode_corpus/bge/zeroshot/sw/shard-0-of-2.tsv", (1800, 1700)),
        write_bench(tmp_path, "encode_corpus/bge/zeroshot/sw/shard-1-of-2.tsv", (1800, 1500)),
        write_bench(tmp_path, "encode_corpus/bge/full/sw/shard-0-of-1.tsv", (3600, 3000)),
        # 4 GPUs for 1 h -> 4 GPU h; CPU 7200 s -> 2 CPU h
        write_bench(tmp_path, "train/bge/full/all.tsv", (3600, 7200)),
        write_bench(tmp_path, "tiny_encoder/tiny-bge.tsv", (360, 720)),
    ]
    stages = {"encode_corpus": "eval", "train": "train"}
    gpus = {"encode_corpus": 1, "train": 4}
    per_stage, per_pair, total = cost_table.aggregate(cost_table.job_costs(files, gpus), stages)

    assert list(per_stage) == ["eval", "train", "tiny_encoder"]  # config order, then unmapped rules
    assert per_stage["eval"].jobs == 3
    assert per_stage["eval"].gpu_s == 7200 and per_stage["eval"].cpu_s == 6200
    assert per_stage["train"].gpu_s == 4 * 3600 and per_stage["train"].cpu_s == 7200
    assert per_stage["tiny_encoder"].gpu_s == 0
    assert per_pair[("eval", "zeroshot")].gpu_s == 3600
    assert per_pair[("eval", "full")].cpu_s == 3000
    assert per_pair[("tiny_encoder", cost_table.SHARED)].jobs == 1
    assert total.jobs == 5 and total.gpu_s == 7200 + 14400

    md = cost_table.render_markdown(per_stage, per_pair, total)
    assert "| train | 1 | 1.0000 | 2.0000 | 4.0000 |" in md
    assert "| eval | zeroshot | 2 | 1.0000 | 0.8889 | 1.0000 |" in md
    assert "| **Total** | 5 | 3.1000 | 3.9222 | 6.0000 |" in md


def test_repeated_benchmark_counts_once_with_mean_and_na_cpu_is_zero_and_reported(tmp_path):
    repeated = write_bench(tmp_path, "search_dense/bge/zeroshot/sw.tsv", (10, 8), (20, 12))
    unsampled = write_bench(tmp_path, "search_dense/bge/zeroshot/ru.tsv", (0.5, "NA"))
    jobs = cost_table.job_costs([repeated, unsampled], ["search_dense"])  # a list means 1 GPU each
    assert (jobs[0].wall_s, jobs[0].cpu_s, jobs[0].gpu_s) == (15, 10, 15)
    assert jobs[1].cpu_s == 0 and jobs[1].cpu_missing
    md = cost_table.cost_table([repeated, unsampled], {"search_dense": "eval"}, ["search_dense"])
    assert "1 job(s) finished before Snakemake sampled their CPU time" in md


def test_bad_inputs_fail_with_a_message_naming_the_problem(tmp_path):
    bad = tmp_path / "results" / "benchmarks" / "x" / "a.tsv"
    bad.parent.mkdir(parents=True)
    bad.write_text("foo\tbar\n1\t2\n")
    with pytest.raises(ValueError, match="needs a header with columns 's' and 'cpu_time'"):
        cost_table.read_benchmark(bad)
    with pytest.raises(ValueError, match=r"gpu_rules\['train'\] must be a GPU count"):
        cost_table.normalize_gpu_rules({"train": "4"})


@pytest.mark.slow
def test_script_runs_under_snakemake_and_writes_the_table(tmp_path):
    write_bench(tmp_path, "train/bge/full/all.tsv", (3600, 7200))
    (tmp_path / "Snakefile").write_text(
        textwrap.dedent(
            f"""
            rule cost:
                input: "results/benchmarks/train/bge/full/all.tsv"
                output: "results/tables/cost.md"
                params:
                    stages={{"train": "training"}},
                    gpu_rules={{"train": 2}},
                    variants=["full"],
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
