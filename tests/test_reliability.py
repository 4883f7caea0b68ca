"""Bad input, logs, secrets and the shell: every fault ends as a clear error at its place (the file and line, or
the config key), in the rule's log, before anything is deleted; a secret pasted where a variable's name belongs
is shown nowhere; config strings cannot reach a shell unquoted."""

from __future__ import annotations

import json
import logging
import re
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from boostmdr.formats import FormatError, read_qrels, read_topics

from conftest import REPO, VENV_BIN, workflow_env

SECRET = "sk-proj-4f9c2b7e1a0d8c3b5e6f7a8b9c0d1e2f"
TINY = {
    "benchmark": {"synthetic": {"passages": 120, "train_queries": 8, "dev_queries": 4, "corpus_shards": 1,
                                "false_negative_rate": 0.3, "max_planted": {"default": 3}}},
    "languages": ["sw"],
    "corpus_shards": {"default": 1},
    "tiny_models": {
        "tokenizer": {"vocab_size": 400},
        "encoders": {
            name: {"hidden": 16, "layers": 1, "heads": 2, "intermediate": 32, "warmup_steps": 2, "batch_size": 8}
            for name in ["tiny-mbert", "tiny-mdpr", "tiny-mcontriever", "tiny-me5", "tiny-bge"]
        },
    },
}


def _workdir(tmp_path: Path, *overlays: dict) -> tuple[Path, list[Path]]:
    shutil.copytree(REPO / "config", tmp_path / "config")
    files = [tmp_path / "config/config.yaml"]
    for i, overlay in enumerate(overlays):
        files.append(tmp_path / f"overlay{i}.yaml")
        files[-1].write_text(yaml.safe_dump(overlay))
    return tmp_path, files


def _snakemake(workdir: Path, configfiles: list[Path], *args: str, env: dict | None = None, timeout: int = 300):
    cmd = [str(VENV_BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", "1", "--configfile", *map(str, configfiles), *args]
    return subprocess.run(cmd, env=env or workflow_env(), capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(("value", "why"), [(SECRET, "looks like a key itself"), ("my key", "write the name")])
def test_a_key_where_its_variables_name_belongs_stops_the_run_and_is_shown_nowhere(tmp_path, value, why):
    workdir, files = _workdir(tmp_path, {"judges": {"llm": {"backend": "http", "base_url": "http://127.0.0.1:9/v1",
                                                             "api_key_env": value}}})
    existing = workdir / "results/tables/table1.md"
    existing.parent.mkdir(parents=True)
    existing.write_text("an earlier result")
    proc = _snakemake(workdir, files, "--", "results/tables/table1.md")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "judges.llm.api_key_env: not an environment variable name" in out and why in out
    assert value not in out
    assert not (workdir / ".snakemake/metadata").exists() or value not in "".join(
        p.read_text(errors="replace") for p in (workdir / ".snakemake/metadata").rglob("*") if p.is_file())
    assert existing.read_text() == "an earlier result"  # refused at start: nothing deleted


def test_the_http_backend_refuses_a_key_as_variable_name_without_showing_it():
    from boostmdr.llm.http_backend import HTTPBackend

    with pytest.raises(ValueError, match="must be the NAME of the environment variable") as err:
        HTTPBackend(model="m", base_url="http://127.0.0.1:9/v1", api_key_env=SECRET)
    assert SECRET not in str(err.value)


# ------------------------------------------------------------------------------------- config checks


CONFIG_FAULTS = [
    ({"resources": {"trian": {"threads": 4}}}, "resources: 'trian' is not a rule of this workflow"),
    ({"corpus_shards": {"sv": 8}}, "corpus_shards: 'sv' is not a language of this run"),
    ({"bm25": {"analyzer": {"sv": "sv"}}}, "bm25.analyzer: 'sv' is not a language of this run"),
    ({"benchmark": {"eval_split": "deev"}}, "config key benchmark.eval_split: 'deev' is not one of"),
    ({"judges": {"llm": {"backend": "http"}}}, "judges.llm.base_url: the http backend needs the server's URL"),
    ({"judges": {"llm": {"samples": [[1.5, 0.4]]}}}, "judges.llm.samples[0]: [1.5, 0.4] is not [top_p, temperature]"),
    ({"judges": {"llm": {"prompt": "config/prompts/nope.txt"}}}, "judges.llm.prompt: 'config/prompts/nope.txt' is not a file"),
    ({"backbones": {"bge": {"model": "./models/bge-m3"}}}, "backbones.bge.model: './models/bge-m3' looks like a local path but does not exist"),
    ({"trainng": {"seed": 1}}, "config key (top level): Additional properties are not allowed ('trainng' was unexpected)"),
    ({"training": {"sed": 1}}, "config key training: Additional properties are not allowed ('sed' was unexpected)"),
]


@pytest.mark.parametrize(("overlay", "message"), CONFIG_FAULTS, ids=[m.split(":")[0] for _, m in CONFIG_FAULTS])
def test_a_config_fault_stops_the_run_at_start_naming_the_key(tmp_path, overlay, message):
    workdir, files = _workdir(tmp_path, overlay)
    proc = _snakemake(workdir, files, "-n")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert message in out, out[-3000:]
    assert len(out.splitlines()) < 40, "the error is one message, not a dump of the schema and the config"


def test_a_prompt_template_without_a_placeholder_the_judge_needs_is_refused_naming_the_key(tmp_path):
    workdir, files = _workdir(tmp_path)
    (workdir / "config/prompts/short.txt").write_text("Question: {question}\nCandidate: {candidate}\n")
    files.append(workdir / "bad.yaml")
    files[-1].write_text(yaml.safe_dump({"judges": {"llm": {"prompt": "config/prompts/short.txt"}}}))
    proc = _snakemake(workdir, files, "-n")
    assert proc.returncode != 0
    assert "judges.llm.prompt: config/prompts/short.txt: prompt template lacks placeholder(s) {reference}" in proc.stdout + proc.stderr


# --------------------------------------------------------------------------------------- rule logs


def test_a_known_input_error_is_logged_at_error_with_its_file_and_line(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text('{"qid": "1", "query": "q", "positives": ["a"]}\n')
    run = tmp_path / "bad.trec"
    run.write_text("1 Q0 x 1 2.0 t\n1 Q0 y 2 high t\n")
    log = tmp_path / "fuse.log"
    proc = subprocess.run(
        [sys.executable, "-m", "boostmdr.fusion", "--runs", str(run), "--train", str(train), "--tag", "t",
         "--out", str(tmp_path / "out.trec"), "--log", str(log)],
        capture_output=True, text=True, env=workflow_env(), timeout=120,
    )
    assert proc.returncode == 1
    lines = [line for line in log.read_text().splitlines() if " ERROR " in line]
    assert lines and f"{run}:2: score 'high' is not a number" in lines[-1]
    assert "Traceback" not in log.read_text()
    assert not (tmp_path / "out.trec").exists()


def test_an_unexpected_error_is_logged_with_its_traceback_and_exits_non_zero(tmp_path):
    from boostmdr.cli import run

    def broken(argv):
        return {}["missing"]

    log = tmp_path / "step.log"
    with pytest.raises(SystemExit) as exc:
        run(broken, ["--log", str(log)])
    assert exc.value.code == 1
    text = log.read_text()
    assert "ERROR" in text and "Traceback" in text and "KeyError: 'missing'" in text
    logging.getLogger().handlers.clear()


def test_faiss_loading_leaves_no_failure_looking_lines_in_a_log(tmp_path):
    code = (
        "from boostmdr.utils import setup_logging; import sys; setup_logging(sys.argv[1]);"
        "import faiss; import logging; logging.getLogger('x').info('done')"
    )
    log = tmp_path / "f.log"
    subprocess.run([sys.executable, "-c", code, str(log)], check=True, env=workflow_env(), timeout=120)
    text = log.read_text()
    assert "done" in text and "ModuleNotFoundError" not in text and "Could not load" not in text


# ---------------------------------------------------------------------------------------- encodings


def test_a_non_utf8_byte_names_the_file_line_and_column(tmp_path):
    topics = tmp_path / "topics.tsv"
    topics.write_bytes(b"1\tfirst query\n2\tsecond \xff query\n")
    with pytest.raises(FormatError, match=r"topics.tsv:2: not valid UTF-8: byte 0xff at column 10"):
        read_topics(topics)
    qrels = tmp_path / "qrels.tsv"
    qrels.write_bytes(b"1 Q0 a 1\n1 Q0 b\xfe 0\n")
    with pytest.raises(FormatError, match=r"qrels.tsv:2: not valid UTF-8: byte 0xfe"):
        read_qrels(qrels)


def test_a_byte_order_mark_at_the_start_is_accepted_and_dropped(tmp_path):
    topics = tmp_path / "topics.tsv"
    topics.write_bytes("\ufeff1\tfirst query\n2\tsecond\n".encode())
    assert list(read_topics(topics)) == ["1", "2"]


@pytest.mark.parametrize(("line", "what"), [("1 Q0 a\x07b 1\n", "docid 'a\\x07b'"), ("1\x01 Q0 a 1\n", "query id '1\\x01'")])
def test_ids_with_control_characters_are_refused_at_their_line(tmp_path, line, what):
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("1 Q0 ok 1\n" + line)
    with pytest.raises(FormatError, match=rf"qrels.tsv:2: {re.escape(what)} contains whitespace or a control character"):
        read_qrels(qrels)


def test_a_query_id_with_a_space_is_refused(tmp_path):
    topics = tmp_path / "topics.tsv"
    topics.write_text("1\tok\nq 2\tquery\n")
    with pytest.raises(FormatError, match=r"topics.tsv:2: query id 'q 2' contains whitespace"):
        read_topics(topics)


# ----------------------------------------------------------------------------------- model identity


def test_a_models_fingerprint_covers_weights_config_and_tokenizer_only(tmp_path):
    from boostmdr.llm.base import local_model_fingerprint

    model = tmp_path / "m"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "config.json").write_text('{"hidden": 8}')
    (model / "tokenizer.json").write_text("{}")
    (model / "boostmdr_tiny_lm.json").write_text('{"seconds": 12.5}')
    first = local_model_fingerprint(model)
    (model / "boostmdr_tiny_lm.json").write_text('{"seconds": 13.1}')  # rebuilt: another timing, same model
    (model / "training_summary.json").write_text("{}")
    assert local_model_fingerprint(model) == first
    (model / "tokenizer.json").write_text('{"added": 1}')
    assert local_model_fingerprint(model) != first


def test_model_directories_get_the_permissions_of_the_umask_and_replace_the_old_one_whole(tmp_path):
    from boostmdr.formats import atomic_directory

    old = os.umask(0o022)
    try:
        out = tmp_path / "model"
        out.mkdir()
        (out / "training_summary.json").write_text("old")
        with atomic_directory(out) as tmp:
            (tmp / "model.safetensors").write_bytes(b"w")
        assert sorted(p.name for p in out.iterdir()) == ["model.safetensors"]
        assert (out.stat().st_mode & 0o777) == 0o755
    finally:
        os.umask(old)


def test_the_trainer_removes_an_earlier_output_before_it_starts(tmp_path):
    from boostmdr.trainer import remove_stale_output

    out = tmp_path / "results/models/bge/full"
    out.mkdir(parents=True)
    (out / "training_summary.json").write_text("{}")
    remove_stale_output(out)
    assert not out.exists()


# --------------------------------------------------------------------------- the workflow, end to end


@pytest.mark.slow
def test_a_prefix_with_quotes_command_substitution_and_a_backtick_reaches_the_model_literally(tmp_path):
    prefix = "it's $(touch PWNED) `touch PWNED2` "
    workdir, files = _workdir(tmp_path, TINY, {"backbones": {"me5": {"query_prefix": prefix}}})
    proc = _snakemake(workdir, files, "--", "results/models/tiny/tiny-me5/model.safetensors", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not list(workdir.rglob("PWNED*")) and not list(Path.cwd().glob("PWNED*"))
    saved = json.loads((workdir / "results/models/tiny/tiny-me5/boostmdr_encoder.json").read_text())
    assert saved["query_prefix"] == prefix


@pytest.mark.slow
def test_jobs_run_offline_however_the_workflow_is_started(tmp_path):
    # A mistyped hub id fails at once, offline, even when the caller's environment does not say offline.
    workdir, files = _workdir(tmp_path, TINY, {"backbones": {"bge": {"model": "no-such-org/no-such-model"}}})
    env = {k: v for k, v in workflow_env().items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    t0 = time.monotonic()
    proc = _snakemake(workdir, files, "--", "results/candidates/bge/train/sw.trec", env=env, timeout=900)
    assert proc.returncode != 0
    # (the default's retrieval.unsharded_jobs: model: one job ranks the training queries of every one-shard language)
    log_path = workdir / "results/logs/candidates_dense_unsharded/bge/train.log"
    log = log_path.read_text()
    assert " ERROR " in log and "no-such-org/no-such-model" in log and "Traceback" not in log
    assert "offline" in log.lower() or "HF_HUB_OFFLINE" in log
    assert time.monotonic() - t0 < 600
