"""Checks ``llm-judge`` and ``llm-generate``: the ``transformers`` LLM backend
(:class:`boostmdr.llm.transformers_backend.TransformersBackend`) on the device, in bf16 on a GPU, with
its batching (several prompts per forward pass, every prompt's samples decoded together, the shared
template prefix computed once).

The model is a tiny Llama with random weights (:func:`benchmarks.gpu.fixtures.build_tiny_lm`, the
project's own tiny-LM builder), so these rows check the code paths on CUDA (cache handling, left
padding and masks, per-row sampling with seeded generators) and report their throughput; the tokens/s
of a tiny model measure the backend's per-step overhead, not the speed of a 70B judge. Its outputs are
noise, so no verdict parses: the judge row counts them, it does not expect them.

* ``llm-judge``: stage 1's :func:`boostmdr.judge.judge_pairs` on synthetic queries and candidates with
  the paper's prompt (``config/prompts/judge.txt``) and the authors' four samples per pair.
* ``llm-generate``: free generation, several sampled continuations per prompt, timed with the model's
  default attention (SDPA); the same call made twice must give the same texts with eager attention
  (every sample has its own seeded generator; the backend is built without its cross-call prefix cache,
  so both calls compute the same shapes). How many repeat with SDPA is reported: on an H200 3 or 4 of 16,
  its decoding kernels being nondeterministic on CUDA.

* ``mift-lora``: stage 2's MIFT (:func:`boostmdr.mift.train_adapter`): LoRA rank 8 on every linear layer
  of the tiny Llama through transformers' ``Trainer``, bf16 on a GPU, on synthetic instruction records with
  the loss on the answer tokens only; the adapter must be written and the loss finite and falling.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from benchmarks.gpu import fixtures
from benchmarks.gpu.core import REPO, CheckFailed, Context, Outcome, fmt_rate, register

TEMPLATE = REPO / "config" / "prompts" / "judge.txt"


def _model(ctx: Context) -> Path:
    sc = ctx.scale

    def build() -> Path:
        return fixtures.build_tiny_lm(
            ctx.workdir / "models" / "tiny-llama", TEMPLATE.read_text(encoding="utf-8"),
            sc.lm_hidden, sc.lm_layers, sc.lm_heads, sc.lm_vocab, ctx.seed,
        )  # fmt: skip

    return ctx.cached("llm:model", build)


def _backend(ctx: Context, model: Path, **settings: Any) -> Any:
    from boostmdr.llm.transformers_backend import TransformersBackend

    dtype = "bfloat16" if ctx.device == "cuda" else "float32"
    return TransformersBackend(str(model), device=ctx.device, dtype=dtype, **settings)


def _sync(ctx: Context) -> None:
    if ctx.device == "cuda":
        import torch

        torch.cuda.synchronize()


def _warm_up(backend: Any) -> None:
    """One short generation (kernels, allocator), then forget its prefix cache."""
    from boostmdr.llm import GenerationRequest, SamplingSettings

    backend.generate([GenerationRequest("warm up the kernels", (SamplingSettings(max_tokens=2),))])
    backend.close()


@register("llm-judge", "stage-1 judge_pairs on the transformers backend")
def llm_judge(ctx: Context) -> Outcome:
    from boostmdr.formats import Hit
    from boostmdr.formats import LabelledQuery
    from boostmdr.judge import JudgeSettings, build_pairs, judge_pairs, load_judge_template

    sc = ctx.scale
    model = _model(ctx)
    template = load_judge_template(TEMPLATE)
    vocabulary = fixtures.words(3000)
    rng = random.Random(ctx.seed + 3)
    texts: dict[str, str] = {}
    train: dict[str, LabelledQuery] = {}
    run: dict[str, list[Hit]] = {}
    for q in range(sc.judge_queries):
        qid, positive = f"q{q}", f"p{q}"
        texts[positive] = fixtures.text_of(sc.passage_words_llm, vocabulary, rng)
        train[qid] = LabelledQuery(qid, fixtures.text_of(8, vocabulary, rng) + "?", (positive,))
        run[qid] = []
        for c in range(sc.judge_candidates):
            texts[f"c{q}.{c}"] = fixtures.text_of(sc.passage_words_llm, vocabulary, rng)
            run[qid].append(Hit(f"c{q}.{c}", 1.0 - c / 100))
    settings = JudgeSettings(max_new_tokens=sc.judge_new_tokens, retries=0, seed=ctx.seed, batch_size=64)
    pairs = build_pairs(template, settings, train, run, list(train), texts)
    backend = _backend(ctx, model)
    _warm_up(backend)
    _sync(ctx)
    t0 = time.perf_counter()
    counts = judge_pairs(pairs, backend, settings, cache=None)
    _sync(ctx)
    seconds = time.perf_counter() - t0
    samples = len(pairs) * len(settings.samples)
    m = {
        "pairs": len(pairs), "samples": samples, "generated_samples": counts["generated"],
        "unparsed_samples": counts["unparsed_samples"], "prefilled_tokens": counts["prefilled_tokens"],
        "generated_tokens": counts["generated_tokens"], "seconds": seconds, "pairs_per_s": len(pairs) / seconds,
        "generated_tokens_per_s": counts["generated_tokens"] / seconds,
        "prefilled_plus_generated_tokens_per_s": (counts["prefilled_tokens"] + counts["generated_tokens"]) / seconds,
        "mean_prompt_tokens": sum(p.item.prompt_tokens for p in pairs) / len(pairs),
        "backend": backend.describe(), "backend_stats": dict(backend.stats),
    }  # fmt: skip
    if counts["generated"] != samples or counts["generated_tokens"] <= 0:
        generated = f"{counts['generated']} of {samples} samples, {counts['generated_tokens']} tokens"
        raise CheckFailed(f"generated {generated}", m)
    if any(len(s.attempts) != 1 for p in pairs for s in p.item.samples):
        raise CheckFailed("a sample was generated more or less than once", m)
    summary = (
        f"{len(pairs)} pairs x {len(settings.samples)} samples: {m['pairs_per_s']:.1f} pairs/s, "
        f"{fmt_rate(m['generated_tokens_per_s'], 'generated tok/s')}, "
        f"{fmt_rate(m['prefilled_plus_generated_tokens_per_s'], 'tok/s')} with prefill"
    )
    return Outcome(summary, m, ["random weights: outputs are noise, none parses (expected)"])


@register("llm-generate", "batched sampling on the transformers backend, reproducible")
def llm_generate(ctx: Context) -> Outcome:
    from boostmdr.llm import GenerationRequest, SamplingSettings

    sc = ctx.scale
    model = _model(ctx)
    vocabulary = fixtures.words(3000)
    rng = random.Random(ctx.seed + 5)
    requests = [
        GenerationRequest(
            "Write a question that the passage answers.\nPassage: "
            f"{fixtures.text_of(sc.passage_words_llm, vocabulary, rng)}\nQuestion:",
            tuple(
                SamplingSettings(temperature=0.8, top_p=0.95, max_tokens=sc.generate_new_tokens, seed=1000 * i + s)
                for s in range(sc.generate_samples)
            ),
        )
        for i in range(sc.generate_requests)
    ]
    backend = _backend(ctx, model, share_prefix=False)
    _warm_up(backend)
    _sync(ctx)
    t0 = time.perf_counter()
    first = backend.generate(requests)
    _sync(ctx)
    seconds = time.perf_counter() - t0
    same_sdpa = _identical(first, backend.generate(requests))
    # the repeat that must hold: eager attention (SDPA's decoding kernels are not deterministic on CUDA)
    eager = _backend(ctx, model, share_prefix=False, attn_implementation="eager")
    _warm_up(eager)
    same = _identical(eager.generate(requests), eager.generate(requests))
    generated = sum(r.generated_tokens for r in first)
    m = {
        "requests": len(requests), "samples_per_request": sc.generate_samples,
        "max_new_tokens": sc.generate_new_tokens, "prompt_tokens": sum(r.prompt_tokens for r in first),
        "prefilled_tokens": sum(r.prefilled_tokens for r in first), "generated_tokens": generated,
        "seconds": seconds, "generated_tokens_per_s": generated / seconds,
        "requests_identical_on_repeat": same, "requests_identical_on_repeat_default_attention": same_sdpa,
        "backend": backend.describe(), "repeat_backend": eager.describe(),
    }  # fmt: skip
    wanted = sc.generate_samples
    if any(len(r.texts) != wanted for r in first) or generated <= 0:
        raise CheckFailed("a request did not get its samples, or nothing was generated", m)
    if any(r.generated_tokens > wanted * sc.generate_new_tokens for r in first):
        raise CheckFailed("a request generated more tokens than its samples allow", m)
    if same != len(requests):
        asked = f"only {same} of {len(requests)} requests gave the same texts when asked again (eager attention)"
        raise CheckFailed(asked, m)
    summary = (
        f"{len(requests)} prompts x {wanted} samples x <= {sc.generate_new_tokens} tokens: "
        f"{fmt_rate(m['generated_tokens_per_s'], 'generated tok/s')}; repeat identical with eager attention"
    )
    notes = []
    if same_sdpa != len(requests):
        notes.append(f"{backend.describe()['attn_implementation']} attention: {same_sdpa} of {len(requests)} requests "
                     "repeat (its decoding kernels are not deterministic on this device)")  # fmt: skip
    return Outcome(summary, m, notes)


def _identical(a: list[Any], b: list[Any]) -> int:
    """How many requests got the same texts in two answers to the same requests."""
    return sum(x.texts == y.texts for x, y in zip(a, b, strict=True))


@register("mift-lora", "stage-2 LoRA instruction tuning through transformers' Trainer")
def mift_lora(ctx: Context) -> Outcome:
    import math

    import torch

    from boostmdr.formats import Instruction, write_instructions
    from boostmdr.mift import MiftSettings, train_adapter

    model = _model(ctx)
    vocabulary = fixtures.words(3000)
    rng = random.Random(ctx.seed + 7)
    records = [
        Instruction("Summarize the following passage.", fixtures.text_of(ctx.scale.passage_words_llm, vocabulary, rng),
                    fixtures.text_of(8, vocabulary, rng), i, "xx")
        for i in range(64)
    ]  # fmt: skip
    data = ctx.workdir / "mift" / "xx.jsonl"
    write_instructions(data, records)
    settings = MiftSettings(epochs=2, batch_size=8, gradient_accumulation=2, save_steps=1000, prompt_format="plain")
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    out = ctx.workdir / "mift" / "adapter"
    summary = train_adapter(str(model), [data], out, ctx.workdir / "mift" / "state", settings, progress=False)
    m = {
        **{k: summary[k] for k in ("steps", "train_loss", "first_logged_loss", "last_logged_loss", "seconds", "trainable_parameters")},
        "precision": settings.precision if torch.cuda.is_available() else "float32 (CPU)",
        "steps_per_s": summary["steps"] / max(summary["seconds"], 1e-9),
        "peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else None,
    }  # fmt: skip
    if not (out / "adapter_model.safetensors").is_file():
        raise CheckFailed("no adapter_model.safetensors written", m)
    if not math.isfinite(summary["train_loss"]) or not summary["last_logged_loss"] < summary["first_logged_loss"]:
        raise CheckFailed("the training loss is not finite or did not fall", m)
    return Outcome(
        f"{summary['steps']} LoRA steps at {m['steps_per_s']:.1f} steps/s, loss {m['first_logged_loss']:.3f} -> {m['last_logged_loss']:.3f}", m
    )
