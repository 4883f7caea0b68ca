"""Snakemake ``script:`` shim: one results table (boostmdr.tables.write_results_table)."""

from boostmdr.tables import write_results_table

write_results_table(snakemake)  # noqa: F821 (injected by Snakemake's script: directive)
