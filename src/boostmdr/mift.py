"""Stage 2, multilingual instruction fine-tuning (MIFT): LoRA-tune the generator LLM on instructions in every
language (paper Sec. 3.4; what the authors' code does is in REFERENCE.md 1.4).

Three steps, each a subcommand (the translation between them is :mod:`boostmdr.translate`):

1. ``select``: the English instructions of an Alpaca-format file (Stanford Alpaca's ``alpaca_data.json``, a
   JSON list, or JSON lines of ``{instruction, input, output}``). Mode ``summarization`` (the paper: "the
   summarization-related instructions of Alpaca") keeps the records whose *instruction* matches
   :data:`SUMMARIZATION_PATTERN`, case-insensitive: a word starting with ``summar`` (summarize, summarise,
   summary, summarization), ``sum up``/``sums up``/``summing up``, ``condense``, ``shorten``, ``key point(s)``,
   ``main point(s)``, ``main idea(s)``, ``gist``, ``tl;dr``/``tldr``, ``in one sentence``/``in a single sentence``/
   ``in two sentences``. The input and output are not read. Mode ``all`` keeps every record (what the
   authors' code translates). ``max_samples`` caps the training examples, as LLaMA-Factory's ``max_samples``
   (the authors: 1000) cuts the dataset: with L languages the first ``max_samples // L`` kept records (file
   order) are selected, so every language gets the same instructions and the total is at most
   ``max_samples``. The real Alpaca-52k is not available offline here, so the count the rule keeps on it is
   unmeasured; on Alpaca's 175 self-instruct seed tasks (``seed_tasks.jsonl`` of the Stanford repository) it
   keeps 3 (the three that ask for a summary), and on the demo's instruction set the counts in the README.
2. Translation into each language (:mod:`boostmdr.translate`: translated files, a translation model, or an LLM).
3. ``train``: LoRA with ``peft`` through transformers' ``Trainer`` with the authors' LLaMA-Factory settings:
   rank 8 on all linear layers (alpha 16 = 2 x rank and dropout 0, LLaMA-Factory's defaults), learning rate
   1e-3, 5 epochs, cosine schedule, warm-up 0.1 of the steps, cutoff 2048 tokens, 4 examples per device and 4
   accumulation steps, AdamW without weight decay, bf16 on GPU (ignored on CPU, with a log line). Each
   example is the user turn ``instruction`` (and ``input`` after a blank line) written by
   :class:`~boostmdr.llm.prompt.TurnFormat` (the model's chat template, or plain text and a newline), then
   the ``output`` and the end-of-sequence token; the loss is on the output tokens only (every prompt and
   padding position is labelled -100). An example longer than the cutoff keeps its prompt and loses the end
   of its output; one whose prompt alone reaches the cutoff is dropped and counted. The examples of every
   language are pooled and shuffled by the Trainer's seeded sampler.

   Resumable: the Trainer's checkpoints (adapter, optimizer, scheduler, RNG states) go to a state directory
   outside the declared output; a job killed and started again resumes from the last complete one (a
   checkpoint cut short by the kill, without ``trainer_state.json``, is removed first), and the state is
   removed after success. The adapter (``adapter_model.safetensors``, ``adapter_config.json``, the tokenizer,
   ``boostmdr_mift.json``) is written to a temporary sibling and renamed into place.
4. ``merge`` (a setting): the adapter merged into the base model's weights and saved as a full model (what
   the authors' ``llamafactory-cli export`` does), for backends that cannot apply an adapter (an HTTP
   server). Without it the generator applies the adapter itself (transformers: merged in memory; vLLM:
   ``LoRARequest``).

Memory plan for a 70B generator (config/miracl.yaml). Llama-3.1-70B in bf16 is 141 GB of weights; LoRA
rank 8 on every linear layer adds about 104M trainable parameters (80 layers x 8 x the in+out widths of
q/k/v/o and the three MLP projections), whose fp32 copies, gradients and Adam moments take about 1.7 GB.

* DeepSpeed ZeRO-3 (the authors' ``ds_z3_config``; ``deepspeed: config/deepspeed/zero3.json``): the bf16
  weights are sharded over the job's GPUs (4 x 80 GB: 35 GB each), activations at cutoff 2048 with
  gradient checkpointing stay under about 20 GB per GPU at 4 examples; the same numerics as the authors.
  Launched with ``torchrun`` over the job's GPUs; needs ``deepspeed`` (requirements/gpu.txt).
* 4-bit QLoRA (``quantization: 4bit``): the base is loaded in NF4 with double quantization through
  ``bitsandbytes`` (about 37 GB) and the LoRA weights train in bf16 on ONE 80 GB GPU with gradient
  checkpointing. Cheaper, but the base the adapter is tuned against is quantized, unlike the authors'.

Merging loads the base in bf16 (141 GB of host memory on CPU, the authors' ``export_device: cpu``).

CLI::

    python -m boostmdr.mift select --instructions alpaca_data.json --mode summarization --max-samples 1000 \\
        --languages 16 --out selected.jsonl --stats selected.json
    python -m boostmdr.mift train --model BASE --data sw.jsonl ru.jsonl ... --out ADAPTER_DIR --state-dir STATE
    python -m boostmdr.mift merge --model BASE --adapter ADAPTER_DIR --out MERGED_DIR
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .formats import Instruction, read_instructions, write_instructions, write_json
from .llm.base import local_model_fingerprint
from .llm.prompt import PROMPT_FORMATS, TurnFormat
from .utils import set_threads, setup_logging

log = logging.getLogger(__name__)

SELECTION_MODES = ("summarization", "all")
SUMMARIZATION_PATTERN = (
    r"\b(?:summar\w*|sum(?:s|ming)?\s+up|condens\w*|shorten\w*|key\s+points?|main\s+points?|main\s+ideas?|gist"
    r"|tl;?dr|in\s+(?:one|a\s+single|two)\s+sentences?)"
)
"""The rule that decides "summarization-related" (module docstring); matched against the instruction only."""
_SUMMARIZATION = re.compile(SUMMARIZATION_PATTERN, re.IGNORECASE)
PRECISIONS = ("bf16", "fp16", "no")
QUANTIZATIONS = ("none", "4bit")
MERGED_MARKER = "boostmdr_merged.json"
"""Written last into a merged model directory (whose weights may be sharded): the file rules track."""
ADAPTER_INFO = "boostmdr_mift.json"
IGNORE_INDEX = -100
DEFAULT_MAX_SAMPLES = 1000
"""The authors' ``max_samples`` (LLaMA-Factory): training examples at most."""


# ---------------------------------------------------------------------------------------- selection


def is_summarization(instruction: str) -> bool:
    return _SUMMARIZATION.search(instruction) is not None


def select_instructions(
    records: Sequence[Instruction], mode: str, max_samples: int | None, languages: int = 1
) -> tuple[list[Instruction], dict[str, Any]]:
    """The records to translate and train on, and the selection's statistics (module docstring, step 1)."""
    if mode not in SELECTION_MODES:
        raise ValueError(f"selection mode {mode!r}: choose one of {', '.join(SELECTION_MODES)}")
    if languages < 1:
        raise ValueError("languages must be >= 1")
    matched = [r for r in records if mode == "all" or is_summarization(r.instruction)]
    per_language = None if max_samples is None else max(1, max_samples // languages)
    kept = matched if per_language is None else matched[:per_language]
    stats = {
        "mode": mode,
        "pattern": SUMMARIZATION_PATTERN if mode == "summarization" else None,
        "records": len(records),
        "matched": len(matched),
        "max_samples": max_samples,
        "languages": languages,
        "per_language": per_language,
        "selected": len(kept),
    }
    return kept, stats


# ----------------------------------------------------------------------------------------- examples


def user_turn(record: Instruction) -> str:
    """The user's message of an instruction record: the instruction, then the input after a blank line."""
    return f"{record.instruction}\n\n{record.input}" if record.input.strip() else record.instruction


def tokenize_example(
    record: Instruction, tokenizer: Any, turn: TurnFormat, cutoff: int
) -> dict[str, list[int]] | None:
    """``{"input_ids", "labels"}`` of one example: the prompt's labels are -100, the output's are its tokens
    and the end-of-sequence token; cut to ``cutoff`` tokens (output first). ``None`` if the prompt alone
    reaches the cutoff. The prompt is tokenized as the generation backends tokenize a prompt (with the
    tokenizer's special tokens), so training and generation see the same tokens."""
    prompt = tokenizer(turn.wrap(user_turn(record)), add_special_tokens=True)["input_ids"]
    if len(prompt) >= cutoff:
        return None
    answer = tokenizer(record.output, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    answer = answer[: cutoff - len(prompt)]
    return {"input_ids": prompt + answer, "labels": [IGNORE_INDEX] * len(prompt) + answer}


class Collator:
    """Pads a batch on the right: input ids with the pad token, labels with -100, attention mask 0."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: Sequence[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(x["input_ids"]) for x in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, x in enumerate(batch):
            n = len(x["input_ids"])
            ids[i, :n] = torch.tensor(x["input_ids"])
            labels[i, :n] = torch.tensor(x["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


# ------------------------------------------------------------------------------------------ training


@dataclass(frozen=True)
class MiftSettings:
    """LoRA and training settings (defaults: the authors' LLaMA-Factory configuration)."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target: str = "all-linear"
    learning_rate: float = 1e-3
    epochs: float = 5.0
    scheduler: str = "cosine"
    warmup_ratio: float = 0.1
    cutoff: int = 2048
    batch_size: int = 4
    gradient_accumulation: int = 4
    save_steps: int = 500
    seed: int = 42
    precision: str = "bf16"
    gradient_checkpointing: bool = False
    quantization: str = "none"
    deepspeed: str | None = None
    prompt_format: str = "auto"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization {self.quantization!r}: choose one of {', '.join(QUANTIZATIONS)}")
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format {self.prompt_format!r}: choose one of {', '.join(PROMPT_FORMATS)}")
        if min(self.rank, self.alpha, self.cutoff, self.batch_size, self.gradient_accumulation, self.save_steps) < 1:
            raise ValueError("rank, alpha, cutoff, batch_size, gradient_accumulation and save_steps must be >= 1")
        if not 0 <= self.warmup_ratio < 1 or not 0 <= self.dropout < 1 or self.epochs <= 0 or self.learning_rate <= 0:
            raise ValueError("warmup_ratio and dropout must be in [0, 1), epochs and learning_rate > 0")


def last_complete_checkpoint(state_dir: Path) -> Path | None:
    """The newest ``checkpoint-N`` with its ``trainer_state.json`` (written last by the Trainer); newer ones
    without it were cut short by a kill and are removed."""
    if not state_dir.is_dir():
        return None
    found = sorted(
        (p for p in state_dir.iterdir() if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)),
        key=lambda p: int(p.name.split("-")[1]),
    )
    for p in reversed(found):
        if (p / "trainer_state.json").is_file():
            return p
        log.warning("removing %s: a checkpoint cut short (no trainer_state.json)", p)
        shutil.rmtree(p)
    return None


def _load_model(model: str, s: MiftSettings, cuda: bool) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {}
    if cuda and s.precision != "no":
        kwargs["dtype"] = torch.bfloat16 if s.precision == "bf16" else torch.float16
    if s.quantization == "4bit":
        if not cuda:
            raise ValueError("quantization 4bit (QLoRA) needs a CUDA GPU and bitsandbytes; use quantization none on CPU")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if s.precision == "bf16" else torch.float16,
        )
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    try:
        base = AutoModelForCausalLM.from_pretrained(model, **kwargs)
    except OSError as err:
        raise ValueError(f"--model {model!r} cannot be loaded offline ({err})") from err
    if s.quantization == "4bit":
        from peft import prepare_model_for_kbit_training

        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=s.gradient_checkpointing)
    return base


def train_adapter(
    model: str,
    data: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    state_dir: str | os.PathLike,
    s: MiftSettings = MiftSettings(),
    progress: bool = True,
) -> dict[str, Any]:
    """LoRA-tune ``model`` on the translated instruction files ``data``; write the adapter to ``out``
    (module docstring, step 3). Returns the training summary (also saved as ``boostmdr_mift.json``)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, Trainer, TrainingArguments, set_seed

    out, state_dir = Path(out), Path(state_dir)
    cuda = torch.cuda.is_available()
    if s.precision != "no" and not cuda:
        log.info("precision %s is for GPUs; training in float32 on CPU", s.precision)
    tokenizer = AutoTokenizer.from_pretrained(model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    turn = TurnFormat(s.prompt_format, tokenizer, model)
    examples: list[dict[str, list[int]]] = []
    per_language: Counter[str] = Counter()
    dropped = 0
    for path in data:
        for rec in read_instructions(path):
            ex = tokenize_example(rec, tokenizer, turn, s.cutoff)
            if ex is None:
                dropped += 1
                continue
            examples.append(ex)
            per_language[rec.lang or str(path)] += 1
    if not examples:
        raise ValueError(f"no training example in {list(map(str, data))} (all empty, or every prompt over the cutoff {s.cutoff})")
    log.info("%d examples (%s), %d dropped (prompt over the cutoff %d), turn format %s",
             len(examples), dict(per_language), dropped, s.cutoff, turn.kind)  # fmt: skip

    world = int(os.environ.get("WORLD_SIZE", 1))
    total_steps = math.ceil(len(examples) / (s.batch_size * s.gradient_accumulation * world)) * math.ceil(s.epochs)
    args = TrainingArguments(
        output_dir=str(state_dir),
        per_device_train_batch_size=s.batch_size,
        gradient_accumulation_steps=s.gradient_accumulation,
        learning_rate=s.learning_rate,
        num_train_epochs=s.epochs,
        lr_scheduler_type=s.scheduler,
        warmup_steps=s.warmup_ratio,
        weight_decay=0.0,
        optim="adamw_torch",
        save_strategy="steps",
        save_steps=s.save_steps,
        save_total_limit=2,
        logging_steps=max(1, total_steps // 50),
        report_to="none",
        use_cpu=not cuda,
        bf16=cuda and s.precision == "bf16",
        fp16=cuda and s.precision == "fp16",
        gradient_checkpointing=s.gradient_checkpointing,
        deepspeed=s.deepspeed,
        seed=s.seed,
        data_seed=s.seed,
        remove_unused_columns=False,
        disable_tqdm=not progress,
    )
    # After TrainingArguments: with a ZeRO-3 config they make from_pretrained shard the weights as it loads them,
    # instead of every process loading the whole model into host memory.
    base = _load_model(model, s, cuda)
    set_seed(s.seed)  # LoRA's A matrices are drawn from torch's RNG: the same adapter from the same seed
    peft_model = get_peft_model(
        base, LoraConfig(r=s.rank, lora_alpha=s.alpha, lora_dropout=s.dropout, target_modules=s.target, task_type="CAUSAL_LM")
    )
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    log.info("LoRA rank %d on %s: %d trainable parameters", s.rank, s.target, trainable)
    trainer = Trainer(model=peft_model, args=args, train_dataset=examples, data_collator=Collator(tokenizer.pad_token_id))
    resume = last_complete_checkpoint(state_dir)
    if resume is not None:
        log.info("resuming from %s", resume)
    t0 = time.monotonic()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    summary = {
        "base_model": str(model),
        "base_fingerprint": local_model_fingerprint(model),
        "settings": asdict(s),
        "turn_format": turn.kind,
        "examples": len(examples),
        "examples_per_language": dict(per_language),
        "dropped_over_cutoff": dropped,
        "trainable_parameters": trainable,
        "steps": trainer.state.global_step,
        "resumed_from_step": int(resume.name.split("-")[1]) if resume else None,
        "train_loss": result.training_loss,
        "first_logged_loss": losses[0] if losses else None,
        "last_logged_loss": losses[-1] if losses else None,
        "seconds": round(time.monotonic() - t0, 1),
        "data": [str(p) for p in data],
    }
    if trainer.is_world_process_zero():
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        trainer.save_model(str(tmp))
        tokenizer.save_pretrained(tmp)
        (tmp / ADAPTER_INFO).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
        shutil.rmtree(state_dir, ignore_errors=True)
        log.info("saved the adapter to %s: %d steps, training loss %.4f", out, summary["steps"], summary["train_loss"])
    return summary


def merge_adapter(model: str, adapter: str | os.PathLike, out: str | os.PathLike, dtype: str = "auto") -> None:
    """The adapter merged into the base model, saved as a full model with its tokenizer (module docstring)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out)
    torch_dtype: Any = "auto" if dtype == "auto" else getattr(torch, dtype)
    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype)
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(str(adapter)).save_pretrained(tmp)
    info = {"base_model": str(model), "adapter": str(adapter), "adapter_fingerprint": local_model_fingerprint(adapter)}
    (tmp / MERGED_MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    log.info("merged %s into %s: %s", adapter, model, out)


# --------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m boostmdr.mift", description="Stage 2: multilingual instruction fine-tuning.")
    sub = p.add_subparsers(dest="command", required=True)
    sel = sub.add_parser("select", help="select the English instructions to translate and train on")
    sel.add_argument("--instructions", required=True, help="Alpaca-format file (JSON list or JSON lines)")
    sel.add_argument("--mode", choices=SELECTION_MODES, default="summarization")
    sel.add_argument("--max-samples", type=int, default=DEFAULT_MAX_SAMPLES, help="training examples at most (all languages); 0: no cap")
    sel.add_argument("--languages", type=int, required=True, help="number of languages the records are translated into")
    sel.add_argument("--out", required=True)
    sel.add_argument("--stats", required=True)
    sel.add_argument("--log", default=None)

    d = MiftSettings()
    tr = sub.add_parser("train", help="LoRA-tune the generator on the translated instructions")
    tr.add_argument("--model", required=True, help="base model directory or hub id (offline)")
    tr.add_argument("--data", nargs="+", required=True, help="translated instruction files (one per language)")
    tr.add_argument("--out", required=True, help="adapter directory")
    tr.add_argument("--state-dir", required=True, help="resumable Trainer checkpoints (outside the declared output)")
    tr.add_argument("--rank", type=int, default=d.rank)
    tr.add_argument("--alpha", type=int, default=d.alpha)
    tr.add_argument("--dropout", type=float, default=d.dropout)
    tr.add_argument("--target", default=d.target, help="peft target_modules (all-linear: every linear layer but the output)")
    tr.add_argument("--lr", type=float, default=d.learning_rate)
    tr.add_argument("--epochs", type=float, default=d.epochs)
    tr.add_argument("--scheduler", default=d.scheduler)
    tr.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio)
    tr.add_argument("--cutoff", type=int, default=d.cutoff)
    tr.add_argument("--batch-size", type=int, default=d.batch_size)
    tr.add_argument("--gradient-accumulation", type=int, default=d.gradient_accumulation)
    tr.add_argument("--save-steps", type=int, default=d.save_steps)
    tr.add_argument("--seed", type=int, default=d.seed)
    tr.add_argument("--precision", choices=PRECISIONS, default=d.precision, help="GPU only; float32 on CPU")
    tr.add_argument("--gradient-checkpointing", action="store_true")
    tr.add_argument("--quantization", choices=QUANTIZATIONS, default=d.quantization, help="4bit: QLoRA (GPU, bitsandbytes)")
    tr.add_argument("--deepspeed", default=None, help="DeepSpeed config file (e.g. ZeRO-3), run under torchrun")
    tr.add_argument("--prompt-format", choices=PROMPT_FORMATS, default=d.prompt_format)
    tr.add_argument("--no-progress", action="store_true")
    tr.add_argument("--threads", type=int, default=None)
    tr.add_argument("--log", default=None)

    mg = sub.add_parser("merge", help="merge the adapter into the base model")
    mg.add_argument("--model", required=True)
    mg.add_argument("--adapter", required=True)
    mg.add_argument("--out", required=True)
    mg.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16")
    mg.add_argument("--threads", type=int, default=None)
    mg.add_argument("--log", default=None)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log)
    if args.command == "select":
        selected, stats = select_instructions(
            read_instructions(args.instructions), args.mode, args.max_samples or None, args.languages
        )
        stats["instructions"] = str(args.instructions)
        write_instructions(args.out, [Instruction(r.instruction, r.input, r.output, r.index, "en") for r in selected])
        write_json(args.stats, stats)
        log.info("%s: %d of %d records match (%s), %d selected", args.instructions, stats["matched"], stats["records"], args.mode, stats["selected"])
        return 0
    import torch  # noqa: F401  (so set_threads reaches torch)

    set_threads(args.threads)
    if args.command == "train":
        settings = MiftSettings(
            rank=args.rank, alpha=args.alpha, dropout=args.dropout, target=args.target, learning_rate=args.lr,
            epochs=args.epochs, scheduler=args.scheduler, warmup_ratio=args.warmup_ratio, cutoff=args.cutoff,
            batch_size=args.batch_size, gradient_accumulation=args.gradient_accumulation, save_steps=args.save_steps,
            seed=args.seed, precision=args.precision, gradient_checkpointing=args.gradient_checkpointing,
            quantization=args.quantization, deepspeed=args.deepspeed, prompt_format=args.prompt_format,
        )  # fmt: skip
        train_adapter(args.model, args.data, args.out, args.state_dir, settings, progress=not args.no_progress)
    else:
        merge_adapter(args.model, args.adapter, args.out, args.dtype)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
