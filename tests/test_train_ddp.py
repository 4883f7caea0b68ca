"""Two processes under torchrun (gloo, CPU) train exactly like one process on the same global batch: both replay
the same stage-3 batch manifest (monolingual global batches, each process encoding its slice) with per-negative
weights in the paper's loss."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from train_fixtures import make_tiny_model, make_toy_data, make_toy_manifest

VENV_BIN = Path(sys.executable).parent


def _cmd(model: Path, data: dict, manifest: Path, out: Path, state: Path) -> list[str]:
    return [
        "--model", str(model), "--pooling", "mean", "--no-normalize",
        "--negatives", *data["negatives"], "--corpus", *data["corpus"],
        "--sampler", "manifest", "--sampler-arg", f"manifest={manifest}", "--loss-weighting", "paper",
        "--out", str(out), "--state-dir", str(state),
        "--epochs", "1", "--max-steps", "3", "--batch-size", "4", "--group-size", "3",
        "--lr", "1e-4", "--warmup-ratio", "0.34",  # no normalisation: dot product / temperature 1 by default
        "--threads", "1", "--no-progress", "--log-file", str(out) + ".log",
    ]  # fmt: skip


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
    model = make_tiny_model(tmp_path / "model", dropout=0.0)
    data = make_toy_data(tmp_path / "data")
    manifest = make_toy_manifest(tmp_path / "data", data, batch_size=4, group_size=3, epochs=1, seed=42)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    one = subprocess.Popen(
        [sys.executable, "-m", "boostmdr.train", *_cmd(model, data, manifest, tmp_path / "one", tmp_path / "s1")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    two = subprocess.run(
        [str(VENV_BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "boostmdr.train",
         *_cmd(model, data, manifest, tmp_path / "two", tmp_path / "s2")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=240,
    )  # fmt: skip
    out_one, _ = one.communicate(timeout=240)
    assert one.returncode == 0, out_one[-3000:]
    assert two.returncode == 0, two.stdout[-3000:]

    s1 = json.loads((tmp_path / "one" / "training_summary.json").read_text())
    s2 = json.loads((tmp_path / "two" / "training_summary.json").read_text())
    assert (s1["world_size"], s2["world_size"]) == (1, 2)
    assert (s2["config"]["similarity"], s2["config"]["temperature"]) == ("dot", 1.0)
    assert s1["steps"] == s2["steps"] == 3
    assert s1["sampler"] == "manifest" and s2["config"]["loss_weighting"] == "paper"
    assert s2["final_loss"] == pytest.approx(s1["final_loss"], abs=1e-5)
    assert s2["mean_loss_last_50_steps"] == pytest.approx(s1["mean_loss_last_50_steps"], abs=1e-5)

    base = load_file(model / "model.safetensors")
    w1, w2 = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    assert w1.keys() == w2.keys()
    moved = 0
    for name, t1 in w1.items():
        assert torch.allclose(t1, w2[name], atol=1e-6, rtol=0), name
        moved += int(not torch.equal(t1, base[name]))
    assert moved > 10  # training really changed the weights, and both runs changed them alike
    assert (tmp_path / "two.log").is_file() and (tmp_path / "two.log.rank1").is_file()
