"""Snakemake ``script:`` shim: a statistics table per language, e.g. the stage-1 elimination rate
(boostmdr.tables.write_stats_table)."""

from boostmdr.tables import write_stats_table

write_stats_table(snakemake)  # noqa: F821 (injected by Snakemake's script: directive)
