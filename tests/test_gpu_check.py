"""The prepared GPU check (benchmarks/gpu): its CPU dry run end to end (about 45 s on two shared cores), so
the script cannot rot while no GPU runs it, and the pieces its numbers rest on (peak lookup, FLOP count,
the padding mirror of Encoder.encode, the diagnosis of what limits MFU, the process-tree kill, the
registry's failure handling)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import REPO

if str(REPO) not in sys.path:  # benchmarks/ is a package of the source tree, not an installed one
    sys.path.insert(0, str(REPO))

from benchmarks.gpu import fixtures
from benchmarks.gpu.check_encode import _limits, padded_tokens
from benchmarks.gpu.check_train import _kill, descendants
from benchmarks.gpu.core import MIN_TRAIN_STEPS, REAL, TINY, Check, CheckFailed, Outcome, all_checks, run_check
from benchmarks.gpu.hardware import FlopModel, device_peak

CHECK_NAMES = [
    "environment", "matmul", "encode-bert-base", "encode-xlmr-large", "train-bf16", "train-resume",
    "train-bf16-checkpointing", "llm-judge", "llm-generate", "mift-lora",
]  # fmt: skip


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), *filter(None, [env.get("PYTHONPATH")])])
    env |= {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return env


def test_cpu_dry_run_runs_every_check_and_reports_real_numbers(tmp_path):
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", "--device", "cpu", "--tiny", "--threads", "1", "--out", str(out)],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text())
    rows = {r["name"]: r for r in report["rows"]}
    assert list(rows) == CHECK_NAMES == report["checks"]
    assert report["counts"] == {"passed": len(CHECK_NAMES), "failed": 0, "skipped": 0}
    assert all(r["status"] == "passed" and r["error"] is None and r["seconds"] > 0 for r in rows.values())
    for name in CHECK_NAMES:  # the printed table has every row
        assert any(line.startswith(name + " ") and " passed " in line for line in proc.stdout.splitlines())

    assert rows["environment"]["metrics"]["device"]["type"] == "cpu"
    assert rows["environment"]["metrics"]["versions"]["torch"]
    mm = rows["matmul"]["metrics"]
    assert mm["tflops"] > 0 and mm["relative_error_vs_float64"] < 1e-4 and mm["fraction_of_peak"] is None

    for name, words_prefix in (("encode-bert-base", 0), ("encode-xlmr-large", 1)):
        m = rows[name]["metrics"]
        assert m["passages"] == 256 and m["attn_implementation"] == "sdpa"
        assert 4 < m["mean_tokens"] <= 48 and 0 < m["cut_at_p_max_len"] < 0.5  # lengths spread under the cut
        assert m["padded_tokens"] >= m["real_tokens"] and 0 <= m["padding_fraction"] < 0.5
        for mode in ("autocast", "bf16"):
            assert m[mode]["passages_per_s"] > 0 and m[mode]["mfu"] is None  # no MFU on CPU
            assert m[mode]["tokens_per_s"] == pytest.approx(m[mode]["passages_per_s"] * m["mean_tokens"])
        assert m["min_cosine_autocast_vs_bf16"] > 0.97 and m["min_cosine_batched_vs_alone"] > 0.999
        assert m["ceiling"]["32"]["tflops"] > 0 and m["tokenize_seconds"] > 0
        assert m["goal_mfu"] is None and m["limits"] == []  # the 40% goal applies to the real shape on a GPU
        assert m["flop_model"] == {"matmul_params": 2 * (4 * 32 * 32 + 2 * 32 * 64), "layers": 2, "hidden": 32}

    for name in ("train-bf16", "train-bf16-checkpointing"):
        m = rows[name]["metrics"]
        assert m["steps"] == 100 and m["world_size"] == 1 and m["processes"] == 1
        assert m["loss_last_window"] < 0.5 * m["loss_first_window"]  # the loss falls
        assert m["groups_per_second"] > 0 and m["model_flops_per_group"] > 0
        assert m["peak_gpu_memory_gib"] is None and m["mfu"] is None  # CPU
    # on CPU the trainer ignores --gradient-checkpointing: identical weights
    assert rows["train-bf16-checkpointing"]["metrics"]["weights_vs_no_checkpointing"]["relative"] == 0.0

    r = rows["train-resume"]["metrics"]
    assert r["killed_processes"] >= 2  # torchrun and its worker
    assert r["killed_with_states"] == [f"checkpoint-{r['resumed_from_step']}"] and r["resumed_from_step"] >= 10
    assert r["weights_vs_uninterrupted"]["relative"] <= 1e-5 and r["weights_vs_uninterrupted"]["moved_norm"] > 0
    assert r["final_loss"] == pytest.approx(r["final_loss_uninterrupted"], rel=1e-5)

    j = rows["llm-judge"]["metrics"]
    assert j["pairs"] == 6 and j["generated_samples"] == 24 == j["samples"]
    assert 0 < j["generated_tokens"] <= 24 * 4 and j["prefilled_tokens"] > 0 and j["generated_tokens_per_s"] > 0
    assert j["backend_stats"]["reused_prefix_tokens"] > 0  # the template prefix is computed once per batch
    g = rows["llm-generate"]["metrics"]
    assert g["requests_identical_on_repeat"] == g["requests"] == 3 == g["requests_identical_on_repeat_default_attention"]
    assert g["repeat_backend"]["attn_implementation"] == "eager" and g["backend"]["attn_implementation"] == "sdpa"
    assert 0 < g["generated_tokens"] <= 3 * 2 * 6 and g["generated_tokens_per_s"] > 0
    lora = rows["mift-lora"]["metrics"]
    assert lora["steps"] == 8 and lora["last_logged_loss"] < lora["first_logged_loss"]  # 64 examples / (8 x 2) x 2 epochs


def test_help_does_not_import_torch():
    code = (
        "import runpy, sys\nsys.argv = ['benchmarks.gpu', '--help']\n"
        "try:\n    runpy.run_module('benchmarks.gpu', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "--device {cuda,cpu}" in proc.stdout and proc.stdout.strip().endswith("NO-TORCH")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "cpu"], "--device cpu needs --tiny"),
        (["--device", "cpu", "--tiny", "--train-steps", "59"], "--train-steps must be >= 60"),
        (["--only", "lora"], "invalid choice: 'lora'"),
    ],
)
def test_usage_errors_are_refused_before_anything_runs(args, message, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", *args, "--out", str(tmp_path / "r.json")],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and message in proc.stderr and not (tmp_path / "r.json").exists()


def test_training_runs_are_longer_than_the_loss_window():
    from boostmdr.trainer import LOSS_WINDOW

    assert MIN_TRAIN_STEPS == LOSS_WINDOW + 10 and REAL.train_steps >= MIN_TRAIN_STEPS <= TINY.train_steps


def test_registry_runs_in_order_and_turns_errors_into_rows():
    assert list(all_checks()) == CHECK_NAMES

    def broken(ctx):
        raise RuntimeError("boom\nsecond line")

    def wrong(ctx):
        raise CheckFailed("loss went up", {"loss": 3.0})

    row = run_check(Check("broken", "t", broken, ()), ctx=None)
    assert (row.status, row.summary) == ("failed", "ERROR: RuntimeError: boom")
    assert row.error == "RuntimeError: boom\nsecond line"
    assert "raise RuntimeError" in row.traceback
    row = run_check(Check("wrong", "t", wrong, ()), ctx=None)
    assert (row.status, row.metrics, row.summary) == ("failed", {"loss": 3.0}, "FAILED: loss went up")
    row = run_check(Check("absent", "t", wrong, ("torch", "no_such_module_xyz")), ctx=None)
    assert row.status == "skipped" and row.summary == "skipped: needs no_such_module_xyz (not installed here)"
    row = run_check(Check("fine", "t", lambda ctx: Outcome("ok", {"x": 1}, ["n"]), ()), ctx=None)
    assert (row.status, row.summary, row.metrics, row.notes, row.error) == ("passed", "ok", {"x": 1}, ["n"], None)


@pytest.mark.parametrize(
    ("name", "product", "tflops"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM", 989.0),
        ("NVIDIA H100 PCIe", "H100 PCIe", 756.0),
        ("NVIDIA H100 NVL", "H100 NVL", 835.0),
        ("NVIDIA H200", "H200 SXM", 989.0),
        ("NVIDIA GH200 480GB", "GH200", 989.0),
        ("NVIDIA A100-SXM4-80GB", "A100", 312.0),
        ("NVIDIA A100 80GB PCIe", "A100", 312.0),
        ("NVIDIA L40S", "L40S", 362.0),
        ("NVIDIA L40", "L40", 181.0),
        ("NVIDIA L4", "L4", 121.0),
        ("NVIDIA A10", "A10", 125.0),
    ],
)
def test_peak_is_looked_up_from_the_device_name(name, product, tflops):
    peak = device_peak(name)
    assert (peak.product, peak.tflops, peak.reason) == (product, tflops, "")


@pytest.mark.parametrize("name", ["NVIDIA A10G", "Tesla V100-SXM2-16GB", "NVIDIA GeForce RTX 4090"])
def test_unknown_device_has_no_peak_and_says_why(name):
    peak = device_peak(name)
    assert peak.tflops is None and name in peak.reason and "PEAK_BF16_TFLOPS" in peak.reason


def test_flop_count_of_the_real_shapes_matches_their_models():
    import torch
    from transformers import BertConfig, BertModel

    # one layer of BERT-base, from the module tree: 4 d^2 + 2 d f weights in matmuls, the pooler left out
    with torch.device("meta"):
        model = BertModel(BertConfig(vocab_size=100, hidden_size=768, num_hidden_layers=1, intermediate_size=3072))
    assert FlopModel.of(model) == FlopModel.for_layers(1, 768, 3072) == FlopModel(7_077_888, 1, 768)
    assert FlopModel.for_layers(12, 768, 3072).matmul_params == 84_934_656  # BERT-base
    assert FlopModel.for_layers(24, 1024, 4096).matmul_params == 301_989_888  # XLM-R-large
    # F(n) = 2 P n + 4 L d n^2, summed over sequences
    assert FlopModel(100, 2, 4).forward_flops([3, 1]) == (2 * 100 * 3 + 4 * 2 * 4 * 9) + (2 * 100 + 4 * 2 * 4)


def test_padded_tokens_mirror_what_encoder_encode_computes(tmp_path, monkeypatch):
    import torch

    from boostmdr.encoder import Encoder, EncoderSettings

    torch.set_num_threads(1)
    shape = fixtures.TINY_SHAPES["xlmr-large"]
    model_dir = fixtures.build_encoder(shape, 50, tmp_path / "m", "cpu")
    settings = EncoderSettings("mean", True, "query: ", "passage: ", 16, 40)
    encoder = Encoder.from_pretrained(model_dir, settings, device="cpu")
    texts, raw = fixtures.passages(37, fixtures.words(50), 40, seed=3)
    lengths = [min(n + 1, 40) for n in raw]  # + the one-token prefix, cut at p_max_len
    computed = []
    encoder.model.register_forward_hook(lambda mod, args, kwargs, out: computed.append(kwargs["input_ids"].numel()),
                                        with_kwargs=True)  # fmt: skip
    monkeypatch.setattr(Encoder, "chunk_size", 16)  # several chunks: 16 texts each at batch size 4
    encoder.encode_passages(texts, batch_size=4, max_tokens=0)
    assert sum(computed) == padded_tokens(lengths, 4, 16) > sum(lengths)
    assert padded_tokens([5, 3, 4, 1], 2, 100) == 2 * 5 + 2 * 3
    assert padded_tokens([5, 3, 4, 1], 2, 2) == 2 * 5 + 2 * 4  # chunks [5, 3] and [4, 1] sorted separately


def test_limits_name_what_keeps_encoding_below_the_goal():
    measured = {
        "batch_size": 256, "p_max_len": 256, "padding_fraction": 0.12, "tokenize_fraction": 0.3,
        "tokenizers_parallelism": "false",
        "ceiling": {"64": {"mfu": 0.30}, "256": {"mfu": 0.36}, "512": {"mfu": 0.45}},
        "attention": {"share_of_forward": 0.4, "masked_seconds": 0.002, "unmasked_seconds": 0.001},
    }  # fmt: skip
    reasons = _limits(measured, goal=0.40, best=0.20)
    assert [r.split(":")[0] for r in reasons] == [
        "kernels", "batch size", "padding", "attention kernel", "host", "per-batch overhead"
    ]  # fmt: skip
    assert "reach only 36.0%" in reasons[0] and "batch 512 reaches 45.0%" in reasons[1]
    assert "2.00 ms per layer with the padding mask" in reasons[3] and "TOKENIZERS_PARALLELISM=false" in reasons[4]
    assert "leaves 32.1%" in reasons[5]  # 0.36 / 1.12
    assert _limits(measured, goal=0.40, best=0.41) == [] and _limits(measured, goal=None, best=0.1) == []
    clean = measured | {
        "padding_fraction": 0.01, "tokenize_fraction": 0.01, "ceiling": {"256": {"mfu": 0.45}},
        "attention": measured["attention"] | {"share_of_forward": 0.1},
    }  # fmt: skip
    assert _limits(clean, goal=0.40, best=0.39) == ["no single cause stands out in these measurements"]


def test_synthetic_tokenizer_gives_one_token_per_word_and_the_real_special_ids():
    bert = fixtures.build_tokenizer("bert", 100)
    xlmr = fixtures.build_tokenizer("xlm-roberta", 100)
    text = " ".join(fixtures.words(7))
    assert len(bert(text)["input_ids"]) == len(xlmr(text)["input_ids"]) == 9
    assert len(xlmr("passage: " + text)["input_ids"]) == 10
    assert (bert.pad_token_id, bert.cls_token_id) == (0, 2) and set(bert(text)) >= {"token_type_ids"}
    assert (xlmr.bos_token_id, xlmr.pad_token_id, xlmr.eos_token_id) == (0, 1, 2) and "token_type_ids" not in xlmr(text)
    assert len(set(fixtures.words(65536))) == 65536


def test_kill_reaches_workers_in_their_own_session(tmp_path):
    """torchrun starts its workers with start_new_session=True: a process-group kill would miss them."""
    code = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    deadline = time.monotonic() + 30
    while not descendants(parent.pid):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    (child,) = descendants(parent.pid)
    _kill(parent)
    assert parent.returncode == -9
    assert not os.path.exists(f"/proc/{child}") or _state(child) == "Z"


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as fh:
        text = fh.read()
    return text[text.rindex(")") + 2 :].split()[0]
