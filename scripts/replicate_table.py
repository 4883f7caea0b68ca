"""Snakemake ``script:`` shim: the replicates table (boostmdr.replicates.write_replicate_table)."""

from boostmdr.replicates import write_replicate_table

write_replicate_table(snakemake)  # noqa: F821 (injected by Snakemake's script: directive)
