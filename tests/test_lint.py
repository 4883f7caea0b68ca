"""The rules as a reader meets them: `snakemake --lint` finds nothing (default and paper config), every rule logs
and benchmarks to the paths its name gives, and every rule names its software environment."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from conftest import REPO, VENV_BIN, workflow_env

RULE_RE = re.compile(r"^\s*(?:rule (\w+):|use rule \w+ as (\w+) with:)", re.M)


def _lint(tmp_path, *configfiles):
    shutil.copytree(REPO / "config", tmp_path / "config")
    cmd = [str(VENV_BIN / "snakemake"), "--lint", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path)]
    if configfiles:
        cmd += ["--configfile", *map(str, configfiles)]
    return subprocess.run(cmd, env=workflow_env(), capture_output=True, text=True, timeout=300)


def test_lint_finds_nothing_in_the_default_workflow(tmp_path):
    proc = _lint(tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "Congratulations, your workflow is in a good condition" in proc.stdout + proc.stderr


def test_lint_finds_nothing_in_the_paper_workflow(tmp_path):
    raw = tmp_path / "raw.yaml"
    raw.write_text(yaml.safe_dump({"benchmark": {"name": "miracl", "raw_dir": str(tmp_path / "miracl")}}))
    proc = _lint(tmp_path, tmp_path / "config/miracl.yaml", raw)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def _rule_blocks():
    for path in sorted((REPO / "rules").glob("*.smk")):
        text = path.read_text()
        starts = list(RULE_RE.finditer(text))
        for i, m in enumerate(starts):
            end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
            yield path.name, m.group(1) or m.group(2), text[m.start():end]


@pytest.mark.parametrize(("smk", "rule", "block"), list(_rule_blocks()), ids=lambda v: v if isinstance(v, str) and "\n" not in v else "")
def test_a_rule_logs_and_benchmarks_under_its_own_name_with_mirrored_paths(smk, rule, block):
    logs = re.findall(r'log_file\("(\w+)", (f?"[^"]*")\)', block)
    benches = re.findall(r'benchmark_file\("(\w+)", (f?"[^"]*")\)', block)
    assert logs, f"{smk}: rule {rule} has no log_file(...) log"
    assert [r for r, _ in logs] == [rule], f"{smk}: rule {rule} logs under {logs}"
    if benches:
        assert benches == logs, f"{smk}: rule {rule}: benchmark {benches} does not mirror log {logs}"
    if block.lstrip().startswith("use rule"):
        return  # a derived rule inherits its parent's benchmark (overridden above if it runs) and environment
    assert benches or "localrule: True" in block, f"{smk}: rule {rule} runs a job but has no benchmark"
    assert "conda:" in block, f"{smk}: rule {rule} names no software environment"
