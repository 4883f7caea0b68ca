"""What a workflow job pays before it does any work: starting Python and importing the libraries (issue 14).

Every job is a fresh ``python -m boostmdr.<step>``. Measured side by side, each command several times (median):
the bare interpreter; ``--help`` of the steps (their options come from light modules, so it imports none of
torch, transformers or faiss); the trainer's ``--help`` the way it was before its command line was split from the
trainer (the trainer module, hence torch, imported first); and the imports a job that encodes text cannot avoid
(torch, transformers' BERT, faiss), which is the floor of every encode, search and train job.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

REPEATS = 5
REPO = Path(__file__).resolve().parents[1]

COMMANDS: list[tuple[str, list[str]]] = [
    ("python -c pass (the interpreter)", ["-c", "pass"]),
    ("boostmdr.encode --help", ["-m", "boostmdr.encode", "--help"]),
    ("boostmdr.search --help", ["-m", "boostmdr.search", "--help"]),
    ("boostmdr.judge --help", ["-m", "boostmdr.judge", "--help"]),
    ("boostmdr.train --help", ["-m", "boostmdr.train", "--help"]),
    (
        "boostmdr.train --help, trainer imported first (before)",
        ["-c", "import boostmdr.trainer, sys; from boostmdr.train import main; sys.exit(main(['--help']))"],
    ),
    (
        "import torch, transformers' BERT, faiss (every encoding job)",
        ["-c", "import torch, faiss; from transformers import BertModel"],
    ),
]


def _median_seconds(args: list[str]) -> float:
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=REPO, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run() -> list[str]:
    results = [(label, _median_seconds(args)) for label, args in COMMANDS]
    by_label = dict(results)
    lines = [f"{'command (median of ' + str(REPEATS) + ' runs)':<62} {'seconds':>8}"]
    lines += [f"{label:<62} {seconds:>8.2f}" for label, seconds in results]
    before = by_label["boostmdr.train --help, trainer imported first (before)"]
    after = by_label["boostmdr.train --help"]
    lines.append(f"{'trainer --help, before / after':<62} {before / after:>7.1f}x")
    return lines
