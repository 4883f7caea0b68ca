"""Snakemake ``script:`` shim: the judging tables (judge_labels, judge_cost, judge_estimate;
boostmdr.judge_eval.write_tables)."""

from boostmdr.judge_eval import write_tables

write_tables(snakemake)  # noqa: F821 (injected by Snakemake's script: directive)
