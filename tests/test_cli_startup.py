"""Every step's command line answers ``--help`` (and refuses a bad option) without importing the heavy libraries.

The workflow starts a fresh ``python -m boostmdr...`` for every job; torch and transformers alone take about four
seconds to import on the 2-core machine, so a command's options are read from light modules and the libraries are
imported only once the arguments are parsed (issue 14). The commands are read from the rules and scripts, so a new
step is checked without being listed here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "faiss", "pyserini", "fasttext", "peft", "vllm")

PROBE = """
import contextlib, io, json, runpy, sys
sys.argv = sys.argv[1:]  # the module's name, then its arguments
out = io.StringIO()
code = 0
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
    try:
        runpy.run_module(sys.argv[0], run_name="__main__")
    except SystemExit as e:
        code = e.code
print(json.dumps([code, [m for m in {heavy!r} if m in sys.modules], out.getvalue()]))
"""


def _step_modules() -> list[str]:
    texts = [p.read_text(encoding="utf-8") for p in [*REPO.glob("rules/*.smk"), *REPO.glob("scripts/*.py")]]
    found = {m for text in texts for m in re.findall(r"-m (boostmdr(?:\.\w+)+)", text)}
    return sorted(found)


def _probe(module: str, *args: str) -> tuple[int, list[str], str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), module, *args],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    code, heavy, output = json.loads(proc.stdout.strip().splitlines()[-1])
    return int(code), heavy, output


def test_the_rules_name_the_steps():
    modules = _step_modules()
    assert {"boostmdr.train", "boostmdr.encode", "boostmdr.search", "boostmdr.judge", "boostmdr.bm25"} <= set(modules)
    assert "boostmdr.demo.tiny_models" in modules


@pytest.mark.parametrize("module", _step_modules())
def test_help_imports_no_heavy_library(module):
    code, heavy, output = _probe(module, "--help")
    assert code == 0 and "usage: python -m" in output, output
    assert heavy == [], f"python -m {module} --help imported {heavy}"


def test_a_bad_option_is_refused_before_the_trainer_loads_torch(tmp_path):
    required = ["--model", "m", "--negatives", "n.jsonl", "--corpus", "sw=c.jsonl", "--out", str(tmp_path / "o"),
                "--state-dir", str(tmp_path / "s")]  # fmt: skip
    code, heavy, output = _probe("boostmdr.train", *required, "--no-such-option")
    assert code == 2 and "unrecognized arguments: --no-such-option" in output, output
    assert heavy == []
    code, heavy, output = _probe("boostmdr.train", "--model", "m")
    assert code == 2 and "the following arguments are required: --negatives, --corpus, --out, --state-dir" in output
    assert heavy == []
