"""Shared test fixtures and settings: offline hub, few threads (the machines have 2 shared cores)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def pytest_collection_modifyitems(session, config, items):
    """The cluster tests run last (in their own order): they install SLURM's client where it is missing, and with
    the client installed but its controller stopped, every later `snakemake` start waits about 9 s (the SLURM
    executor plugin asks `scontrol show config` when it is imported; README, "On a SLURM cluster")."""
    items.sort(key=lambda item: item.get_closest_marker("cluster") is not None)  # stable: the rest keep their order


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a test module (opt in with ``pytestmark``): tiny models gain nothing from
    threads, and on these shared 2-core machines extra threads only wait on each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def workflow_env() -> dict[str, str]:
    """Environment for a snakemake subprocess: the project's venv first on PATH (rules call `python -m`)."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    return env


# A real browser for the pages the project writes (the HTML report, the annotation sheet): Debian's Chromium,
# headless, with nothing that reaches the network.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage")


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary. Missing, the test is skipped locally and fails in CI (``CI`` set), where .ci/run
    installs it: a browser check must never pass silently there."""
    path = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser")) if p), None)
    if path is None:
        message = "Chromium is not installed (Debian: apt-get install chromium); the pages are checked in a real browser"
        if os.environ.get("CI"):
            pytest.fail(f"{message}. CI installs it in .ci/run; it must be there.")
        pytest.skip(message)
    return path


def run_chromium(binary: str, url: str, workdir: Path, *args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    """Run headless Chromium on ``url`` with a fresh, empty profile under ``workdir``; console messages go to
    stderr (``--enable-logging=stderr``), so a test can check the page logged no error."""
    profile = workdir / f"chromium-profile-{uuid.uuid4().hex[:8]}"
    profile.mkdir(parents=True)
    cmd = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def console_errors(stderr: str) -> list[str]:
    """The page's uncaught JavaScript errors among Chromium's stderr log lines (Chromium logs every console
    message at INFO level, so calls of console.error are caught by a page-side hook where a test needs them)."""
    return [line for line in stderr.splitlines() if "CONSOLE" in line and "Uncaught" in line]


ERROR_HOOK = """<script>window.__errors = [];
window.addEventListener("error", function (e) { window.__errors.push(String(e.message || e)); });
window.addEventListener("unhandledrejection", function (e) { window.__errors.push(String(e.reason)); });
(function () { var orig = console.error; console.error = function () {
  window.__errors.push(Array.prototype.map.call(arguments, String).join(" ")); return orig.apply(console, arguments); };
})();</script>"""
"""Inserted first in a test copy of a page: collects errors and console.error calls in ``window.__errors``."""


def trec_eval_binary(workdir: Path) -> Path:
    """The real trec_eval (C) binary that Pyserini's Anserini jar carries for linux-amd64, extracted into
    ``workdir`` (Pyserini's own ``pyserini.eval.trec_eval`` runs the same binary). Skips elsewhere."""
    import platform
    import zipfile
    from importlib import resources

    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip(f"the jar's trec_eval is built for linux-amd64, this is {platform.system()} {platform.machine()}")
    jar = next(j for j in resources.files("pyserini.resources.jars").iterdir() if str(j).endswith(".jar"))
    target = Path(workdir) / "trec_eval"
    if not target.exists():
        with zipfile.ZipFile(str(jar)) as zf:
            target.write_bytes(zf.read("trec_eval/trec_eval-linux-amd64"))
        target.chmod(0o755)
    return target


def write_eval_files(evals: dict, root: Path = Path(".")) -> list[str]:
    """Evaluation files at results/eval/{backbone}/{variant}/{lang}.json under ``root`` from ``{(backbone, variant):
    {lang: EvalResult or aggregate dict}}`` (an aggregate dict becomes one query with those values); returns
    their paths, relative to ``root``."""
    import json

    from boostmdr.formats import EvalResult

    paths = []
    for (backbone, variant), per_lang in evals.items():
        for lang, ev in per_lang.items():
            if not isinstance(ev, EvalResult):
                ev = EvalResult("run", "qrels", 1, dict(ev), {"1": dict(ev)})
            path = Path(f"results/eval/{backbone}/{variant}/{lang}.json")
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(json.dumps(ev.to_json()))
            paths.append(str(path))
    return paths
