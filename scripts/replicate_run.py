"""Snakemake ``script:`` shim: one replicate, the workflow run again in its own directory
(boostmdr.replicates.run_replicate)."""

from boostmdr.replicates import run_replicate

run_replicate(snakemake)  # noqa: F821 (injected by Snakemake's script: directive)
