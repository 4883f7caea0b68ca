"""Snakemake ``script:`` shim: a table drawn as a figure (boostmdr.figures.write_table_figure)."""

from boostmdr.figures import write_table_figure

write_table_figure(snakemake)  # noqa: F821 (injected by Snakemake's script: directive)
