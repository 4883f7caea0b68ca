"""MIFT: the summarization rule on a hand-written instruction list, the loss on response tokens only (against
the cross-entropy computed by hand), LoRA through transformers' Trainer resumed after a kill to the weights of
an uninterrupted run, and the merged model computing what base + adapter compute."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from boostmdr.formats import Instruction, write_instructions
from boostmdr.llm.prompt import TurnFormat
from boostmdr.mift import (
    IGNORE_INDEX,
    Collator,
    MiftSettings,
    last_complete_checkpoint,
    select_instructions,
    tokenize_example,
    train_adapter,
    user_turn,
)
from judge_fixtures import random_tiny_lm

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HAND_WRITTEN = [
    ("Summarize this article.", True),
    ("Write a poem about cats.", False),
    ("Give me the key points of the following text.", True),
    ("Sum up the meeting notes below", True),
    ("What is the capital of France?", False),
    ("Condense this paragraph into two lines.", True),
    ("Describe the plot in one sentence.", True),
    ("tl;dr this thread", True),
    ("Compute the summation of 2 and 3.", False),  # "summation" is arithmetic, not a summary
    ("Create a summary table of the results.", True),  # the rule reads words, not intent: kept
    ("Explain the main idea of the story.", True),
    ("Shorten the following sentence.", True),
    ("List three sums of money.", False),
]


def _records():
    return [Instruction(text, "", f"answer {i}", i) for i, (text, _) in enumerate(HAND_WRITTEN)]


def test_summarization_rule_keeps_exactly_the_hand_marked_instructions():
    kept, stats = select_instructions(_records(), "summarization", None)
    assert [r.instruction for r in kept] == [t for t, keep in HAND_WRITTEN if keep]
    assert (stats["records"], stats["matched"], stats["selected"]) == (13, 9, 9)


def test_max_samples_is_shared_by_the_languages_and_all_mode_keeps_everything():
    kept, stats = select_instructions(_records(), "summarization", 10, languages=3)
    assert stats["per_language"] == 3 and [r.index for r in kept] == [0, 2, 3]  # the first three matches, in order
    everything, stats = select_instructions(_records(), "all", 1000, languages=16)
    assert len(everything) == 13 and stats["per_language"] == 62
    with pytest.raises(ValueError, match="selection mode 'some'.*summarization, all"):
        select_instructions(_records(), "some", None)


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return random_tiny_lm(tmp_path_factory.mktemp("mift-lm"))


def test_the_loss_is_on_response_tokens_only(lm):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(lm)
    model = AutoModelForCausalLM.from_pretrained(lm).eval()
    turn = TurnFormat("plain")
    recs = [Instruction("Summarize the text.", "ka mi to su lo pe", "ka su", 0), Instruction("Name it.", "", "pe di ba", 1)]
    examples = [tokenize_example(r, tok, turn, cutoff=512) for r in recs]
    prompt0 = tok(turn.wrap(user_turn(recs[0])))["input_ids"]
    assert user_turn(recs[0]) == "Summarize the text.\n\nka mi to su lo pe" and turn.wrap("x") == "x\n"
    answer0 = tok("ka su", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert examples[0]["input_ids"] == prompt0 + answer0
    assert examples[0]["labels"] == [IGNORE_INDEX] * len(prompt0) + answer0
    batch = Collator(tok.pad_token_id)(examples)
    short = len(examples[1]["input_ids"])
    assert (batch["labels"][1, short:] == IGNORE_INDEX).all() and (batch["attention_mask"][1, short:] == 0).all()
    with torch.no_grad():
        out = model(**batch)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    # by hand: the mean cross-entropy of every answer token given everything before it, over both examples
    terms = []
    for i, ex in enumerate(examples):
        n_prompt = ex["labels"].count(IGNORE_INDEX)
        for pos in range(n_prompt, len(ex["input_ids"])):
            terms.append(-torch.log_softmax(logits[i, pos - 1], -1)[ex["input_ids"][pos]])
    assert len(terms) == len(answer0) + len(tok("pe di ba", add_special_tokens=False)["input_ids"]) + 1
    assert out.loss.item() == pytest.approx(torch.stack(terms).mean().item(), rel=1e-5)


def test_cutoff_cuts_the_answer_and_drops_a_prompt_that_reaches_it(lm):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(lm)
    rec = Instruction("Summarize.", "ka mi to", "su lo pe di ba zu fo", 0)
    full = tokenize_example(rec, tok, TurnFormat("plain"), cutoff=512)
    n_prompt = full["labels"].count(IGNORE_INDEX)
    cut = tokenize_example(rec, tok, TurnFormat("plain"), cutoff=n_prompt + 2)
    assert cut["input_ids"] == full["input_ids"][: n_prompt + 2] and cut["labels"][-2:] == full["labels"][n_prompt : n_prompt + 2]
    assert tokenize_example(rec, tok, TurnFormat("plain"), cutoff=n_prompt) is None


def test_a_checkpoint_cut_short_by_a_kill_is_removed_before_resuming(tmp_path):
    for step, complete in ((2, True), (4, True), (6, False)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-4"
    assert not (tmp_path / "checkpoint-6").exists()
    assert last_complete_checkpoint(tmp_path / "missing") is None


def _instruction_files(root: Path) -> list[Path]:
    words = ["ka", "mi", "to", "su", "lo", "pe", "di", "ba"]
    files = []
    for lang, shift in (("xx", 0), ("yy", 3)):
        recs = [
            Instruction(f"Summarize {lang}.", " ".join(words[(i + j + shift) % 8] for j in range(6)),
                        " ".join(words[(i + shift) % 8] for _ in range(2)), i, lang)
            for i in range(12)
        ]  # fmt: skip
        files.append(root / f"{lang}.jsonl")
        write_instructions(files[-1], recs)
    return files


def _train_cmd(lm: Path, data: list[Path], out: Path, state: Path) -> list[str]:
    return [
        sys.executable, "-m", "boostmdr.mift", "train", "--model", str(lm), "--data", *map(str, data), "--out", str(out),
        "--state-dir", str(state), "--epochs", "3", "--batch-size", "2", "--gradient-accumulation", "2",
        "--save-steps", "2", "--lr", "1e-3", "--prompt-format", "plain", "--threads", "1", "--no-progress",
        "--log", str(out) + ".log",
    ]  # fmt: skip


@pytest.mark.slow
def test_killed_lora_training_resumes_to_the_weights_of_an_uninterrupted_run(lm, tmp_path):
    from safetensors.torch import load_file

    data = _instruction_files(tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    run = {"env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}
    reference = subprocess.run(_train_cmd(lm, data, tmp_path / "ref", tmp_path / "ref-state"), timeout=300, **run)
    assert reference.returncode == 0, reference.stderr[-3000:]

    state = tmp_path / "state"
    victim = subprocess.Popen(_train_cmd(lm, data, tmp_path / "out", state), **run)
    deadline = time.monotonic() + 240
    while not list(state.glob("checkpoint-*/trainer_state.json")):  # looked at, never touched while it trains
        assert victim.poll() is None, f"training ended before its first save:\n{victim.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    assert not (tmp_path / "out").exists()
    saved = last_complete_checkpoint(state)
    again = subprocess.run(_train_cmd(lm, data, tmp_path / "out", state), timeout=300, **run)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming from {saved}" in (tmp_path / "out.log").read_text()

    import json

    info = json.loads((tmp_path / "out" / "boostmdr_mift.json").read_text())
    ref_info = json.loads((tmp_path / "ref" / "boostmdr_mift.json").read_text())
    assert info["resumed_from_step"] == int(saved.name.split("-")[1]) > 0 and ref_info["resumed_from_step"] is None
    assert info["steps"] == ref_info["steps"] == 18  # 24 examples / (2 x 2) = 6 steps x 3 epochs
    assert info["examples_per_language"] == {"xx": 12, "yy": 12}
    resumed, ref = load_file(tmp_path / "out" / "adapter_model.safetensors"), load_file(tmp_path / "ref" / "adapter_model.safetensors")
    assert resumed.keys() == ref.keys() and len(ref) == 2 * 7 * 2  # A and B of 7 linear layers in 2 blocks
    for name, t in ref.items():
        assert torch.allclose(resumed[name], t, atol=1e-6, rtol=0), name
    assert any(not torch.equal(t, torch.zeros_like(t)) for n, t in ref.items() if "lora_B" in n)  # B starts at 0
    assert not state.exists()


@pytest.fixture(scope="module")
def adapter(lm, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapter")
    settings = MiftSettings(epochs=2, batch_size=4, gradient_accumulation=1, save_steps=100, prompt_format="plain")
    summary = train_adapter(str(lm), _instruction_files(root), root / "adapter", root / "state", settings, progress=False)
    assert summary["steps"] == 12 and summary["last_logged_loss"] < summary["first_logged_loss"]
    return root / "adapter"


def test_merged_model_and_backend_adapter_compute_what_base_plus_adapter_computes(lm, adapter, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from boostmdr.llm import GenerationRequest, SamplingSettings, get_backend
    from boostmdr.mift import MERGED_MARKER, merge_adapter

    merge_adapter(str(lm), adapter, tmp_path / "merged")
    assert (tmp_path / "merged" / MERGED_MARKER).is_file()
    ids = torch.tensor([[1, 40, 41, 42, 43]])
    with torch.no_grad():
        peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(lm), str(adapter)).eval()(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()(ids).logits
        base = AutoModelForCausalLM.from_pretrained(lm).eval()(ids).logits
    assert torch.allclose(peft, merged, atol=1e-5) and not torch.allclose(peft, base, atol=1e-3)
    greedy = (SamplingSettings(0.0, 1.0, 6, 0),)
    with get_backend("transformers", model=str(lm), adapter=str(adapter), device="cpu") as b1:
        with get_backend("transformers", model=str(tmp_path / "merged"), device="cpu") as b2:
            assert b1.generate([GenerationRequest("ka mi to\n", greedy)])[0].texts == b2.generate([GenerationRequest("ka mi to\n", greedy)])[0].texts
            assert "+adapter:local-sha256:" in b1.fingerprint() and b1.describe()["adapter"] == str(adapter)
