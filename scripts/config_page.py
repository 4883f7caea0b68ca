"""Snakemake ``script:`` shim: the configuration page of the report (boostmdr.report.write_config_page)."""

from boostmdr.report import write_config_page

write_config_page(snakemake)  # noqa: F821 (injected by Snakemake's script: directive)
