"""boostmdr: the library behind the Snakemake workflow reproducing "Boosting Data Utilization for
Multilingual Dense Retrieval" (Huang et al., EMNLP 2025). Each concern is a module with a thin CLI
(``python -m boostmdr.<module>``) that the workflow's rules call."""

__version__ = "0.1.0"
