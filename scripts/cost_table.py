"""Snakemake ``script:`` shim: the compute-cost tables from the jobs' benchmark files (boostmdr.cost.write_cost_table)."""

from boostmdr.cost import write_cost_table

write_cost_table(snakemake)  # noqa: F821 (injected by Snakemake's script: directive)
