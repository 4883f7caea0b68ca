"""A training run killed with SIGKILL after a state save, started again with the same command, ends with
the same weights as an uninterrupted run; both replay a stage-3 batch manifest with per-negative weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from train_fixtures import make_tiny_model, make_toy_data, make_toy_manifest


def _cmd(model: Path, data: dict, manifest: Path, out: Path, state: Path) -> list[str]:
    return [
        sys.executable, "-m", "boostmdr.train",
        "--model", str(model), "--pooling", "cls", "--normalize", "--p-max-len", "64",
        "--negatives", *data["negatives"], "--corpus", *data["corpus"],
        "--sampler", "manifest", "--sampler-arg", f"manifest={manifest}", "--loss-weighting", "softmax",
        "--out", str(out), "--state-dir", str(state),
        "--epochs", "10", "--batch-size", "4", "--group-size", "5", "--lr", "5e-4", "--warmup-ratio", "0.1",
        "--save-steps", "4", "--seed", "3", "--threads", "1", "--no-progress", "--log", str(out) + ".log",
    ]  # fmt: skip


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(tmp_path):
    model = make_tiny_model(tmp_path / "model", dropout=0.1)  # dropout: the RNG state must be restored too
    data = make_toy_data(tmp_path / "data", passage_words=50)
    manifest = make_toy_manifest(tmp_path / "data", data, batch_size=4, group_size=5, epochs=10, seed=3)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    run = {"env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}

    reference = subprocess.Popen(_cmd(model, data, manifest, tmp_path / "ref", tmp_path / "ref-state"), **run)
    state = tmp_path / "state"
    victim = subprocess.Popen(_cmd(model, data, manifest, tmp_path / "out", state), **run)
    deadline = time.monotonic() + 180
    while not any(p.name.startswith("checkpoint-") for p in state.glob("*")):
        assert victim.poll() is None, f"training ended before its first save:\n{victim.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "no training state saved within 180 s"
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    assert not (tmp_path / "out").exists()
    saved = [p.name for p in state.iterdir() if p.name.startswith("checkpoint-")]
    assert len(saved) == 1

    again = subprocess.run(_cmd(model, data, manifest, tmp_path / "out", state), timeout=240, **run)
    assert again.returncode == 0, again.stderr[-3000:]
    _, ref_err = reference.communicate(timeout=240)
    assert reference.returncode == 0, ref_err[-3000:]

    resumed = json.loads((tmp_path / "out" / "training_summary.json").read_text())
    uninterrupted = json.loads((tmp_path / "ref" / "training_summary.json").read_text())
    assert uninterrupted["resumed_from_step"] is None
    assert resumed["resumed_from_step"] == int(saved[0].split("-")[1]) > 0
    # 11 usable queries per language: 2 monolingual batches of 4 each -> 4 steps x 10 epochs
    assert resumed["steps"] == uninterrupted["steps"] == 40
    assert resumed["final_loss"] == uninterrupted["final_loss"]
    assert "resuming from" in (tmp_path / "out.log").read_text()

    w_resumed = load_file(tmp_path / "out" / "model.safetensors")
    w_ref = load_file(tmp_path / "ref" / "model.safetensors")
    base = load_file(model / "model.safetensors")
    assert w_resumed.keys() == w_ref.keys()
    for name, t in w_ref.items():
        assert torch.allclose(w_resumed[name], t, atol=1e-6, rtol=0), name
    assert sum(not torch.equal(w_ref[k], base[k]) for k in base) > 10
    assert not state.exists() and not (tmp_path / "ref-state").exists()  # state removed after success
