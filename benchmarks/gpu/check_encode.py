"""Checks ``encode-<shape>``: corpus encoding speed of the project's :class:`~boostmdr.encoder.Encoder`.

At paper scale corpus encoding is the largest bill (90.4M passages per model), so each encoder shape is
measured as the workflow runs it: ``Encoder.from_pretrained`` (PyTorch's scaled-dot-product attention,
``transformers``' default), ``encode_passages`` with the paper config's batch size (256), length-sorted
and dynamically padded batches, on synthetic passages of the paper's lengths
(:mod:`benchmarks.gpu.fixtures`). Two precisions:

* ``autocast``: float32 weights under bf16 autocast, what ``python -m boostmdr.encode`` does today
  (it loads the checkpoint without a dtype);
* ``bf16``: the weights loaded in bf16 (``from_pretrained(..., dtype=torch.bfloat16)``).

Reported per precision: passages/s, real tokens/s, and MFU (:mod:`benchmarks.gpu.hardware`; real tokens
only, so padding counts as lost utilisation). To say what limits MFU, the check also measures

* the padding the batching adds (extra tokens computed / real tokens);
* a ceiling: the same model on full batches of ``p_max_len`` tokens with no padding, at several batch
  sizes, i.e. what the kernels reach with no batching or host overhead at all;
* the attention kernel: one layer's SDPA with the padding mask (which rules out FlashAttention) and
  without, and attention's share of the forward time;
* host work: the time the tokenizer takes for the same passages (``Encoder.encode`` tokenises between
  GPU batches, so this time is not hidden behind GPU work).

Correctness on the device: the two precisions agree (cosine per passage), and passages encoded in the
sorted, padded batches agree with the same passages encoded one at a time.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from benchmarks.gpu import fixtures
from benchmarks.gpu.core import CheckFailed, Context, Outcome, fmt_pct, fmt_rate, register
from benchmarks.gpu.hardware import FlopModel, mfu, peak_of

MFU_GOALS = {"xlmr-large": 0.40}
"""Shape -> the MFU encoding should reach (issue 17); below it the row says what limits it."""
MIN_COSINE = 0.97
"""Precisions and batchings of one model must agree at least this well per passage (bf16 rounding only)."""


def padded_tokens(lengths: list[int], batch_size: int, chunk_size: int) -> int:
    """Tokens :meth:`Encoder.encode` computes for texts of these token lengths, padding included.

    It mirrors the encoder's batching (with no token cap, ``max_tokens=0``): each chunk of
    ``max(batch_size, chunk_size // batch_size * batch_size)`` texts is sorted longest first and cut into
    batches of ``batch_size``, each padded to its first (longest) text.
    """
    chunk = max(batch_size, (chunk_size // batch_size) * batch_size)
    total = 0
    for c0 in range(0, len(lengths), chunk):
        part = sorted(lengths[c0 : c0 + chunk], reverse=True)
        for b0 in range(0, len(part), batch_size):
            total += part[b0] * len(part[b0 : b0 + batch_size])
    return total


def encoder_dir(ctx: Context, shape: fixtures.Shape) -> Path:
    """The random-weight model directory of ``shape`` (built once per run, shared with training)."""
    return ctx.cached(
        f"encoder:{shape.key}",
        lambda: fixtures.build_encoder(
            shape, ctx.scale.words, ctx.workdir / "models" / shape.key, ctx.device, ctx.seed
        ),
    )


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _timed(device: str, fn, iters: int) -> float:
    """Mean seconds of ``fn()`` over ``iters`` calls after one untimed call."""
    fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / iters


def _ceiling(ctx: Context, encoder: Any, flop: FlopModel, batch_sizes: tuple[int, ...]) -> dict[str, Any]:
    """Forward passes over full ``p_max_len`` batches without padding: MFU the kernels reach."""
    import torch

    sc, peak = ctx.scale, peak_of(ctx.device_info)
    high = len(encoder.tokenizer)
    low = high - sc.words  # the words' ids: after the special and prefix tokens
    out: dict[str, Any] = {}
    with torch.inference_mode():
        for b in batch_sizes:
            ids = torch.randint(low, high, (b, sc.p_max_len), device=ctx.device)
            batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
            iters = 5 if ctx.device == "cuda" else 1
            seconds = _timed(ctx.device, lambda batch=batch: encoder.model(**batch), iters)
            rate = flop.forward_flops([sc.p_max_len] * b) / seconds
            out[str(b)] = {"seconds": seconds, "tflops": rate / 1e12, "mfu": mfu(rate, peak)}
    return out


def _attention(ctx: Context, shape: fixtures.Shape, batch: int, dtype: Any) -> dict[str, float]:
    """One layer's SDPA at the encoder's shape, with a padding mask as ``transformers`` builds it
    (boolean, ``[batch, 1, seq, seq]``) and without a mask."""
    import torch
    import torch.nn.functional as F

    sc = ctx.scale
    head_dim = shape.hidden // shape.heads
    gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
    q, k, v = (
        torch.randn(batch, shape.heads, sc.p_max_len, head_dim, device=ctx.device, dtype=dtype, generator=gen)
        for _ in range(3)
    )
    keep = torch.ones(batch, sc.p_max_len, dtype=torch.bool, device=ctx.device)
    keep[:, int(0.9 * sc.p_max_len) :] = False  # the last tenth is padding
    mask = keep[:, None, None, :].expand(batch, 1, sc.p_max_len, sc.p_max_len)
    iters = 10 if ctx.device == "cuda" else 1
    with torch.inference_mode():
        masked = _timed(ctx.device, lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask), iters)
        unmasked = _timed(ctx.device, lambda: F.scaled_dot_product_attention(q, k, v), iters)
    return {"masked_seconds": masked, "unmasked_seconds": unmasked}


def _limits(m: dict[str, Any], goal: float | None, best: float | None) -> list[str]:
    """What keeps encoding below ``goal`` (``best`` is its MFU), read off the diagnostic measurements."""
    if goal is None or best is None or best >= goal:
        return []
    bs, pad, att = m["batch_size"], m["padding_fraction"], m["attention"]
    sweep = {int(b): c["mfu"] for b, c in m["ceiling"].items() if c["mfu"] is not None}
    ceiling = sweep.get(bs)
    reasons = []
    if ceiling is not None and ceiling < goal:
        reasons.append(
            f"kernels: full {bs}x{m['p_max_len']} batches without padding reach only {fmt_pct(ceiling)} "
            "(matmul and attention efficiency at this shape; compare the matmul row)"
        )
    if ceiling is not None and max(sweep.values()) > 1.1 * ceiling:
        b = max(sweep, key=sweep.__getitem__)
        reasons.append(f"batch size: no padding, batch {b} reaches {fmt_pct(sweep[b])}, batch {bs} {fmt_pct(ceiling)}")
    if pad > 0.05:
        reasons.append(f"padding: the batches compute {fmt_pct(pad)} more tokens than the passages have")
    if att["share_of_forward"] > 0.25:
        reasons.append(
            f"attention kernel: {fmt_pct(att['share_of_forward'])} of the forward time; SDPA takes "
            f"{att['masked_seconds'] * 1e3:.2f} ms per layer with the padding mask (no FlashAttention), "
            f"{att['unmasked_seconds'] * 1e3:.2f} ms without"
        )
    if m["tokenize_fraction"] > 0.1:
        reasons.append(
            f"host: tokenisation takes {fmt_pct(m['tokenize_fraction'])} of the wall time, between GPU batches "
            f"(TOKENIZERS_PARALLELISM={m['tokenizers_parallelism']})"
        )
    if ceiling is not None and best < 0.8 * ceiling / (1 + pad):
        reasons.append(
            f"per-batch overhead: {fmt_pct(best)} where the ceiling less padding leaves {fmt_pct(ceiling / (1 + pad))} "
            "(host-side padding, copies, the sync at each batch's .cpu())"
        )
    return reasons or ["no single cause stands out in these measurements"]


def _timed_encode(ctx: Context, encoder: Any, texts: list[str], batch_size: int) -> tuple[Any, float]:
    """``encode_passages`` as the workflow calls it, after a warm-up (kernels, allocator): vectors, seconds."""
    encoder.encode_passages(texts[: 2 * batch_size], batch_size=batch_size, max_tokens=0)
    _sync(ctx.device)
    t0 = time.perf_counter()
    vectors = encoder.encode_passages(texts, batch_size=batch_size, max_tokens=0)  # returns host arrays: synced
    return vectors, time.perf_counter() - t0


def _diagnostics(
    ctx: Context, shape: fixtures.Shape, encoder: Any, flop: FlopModel, texts: list[str], vectors: Any, seconds: float
) -> dict[str, Any]:
    """The measurements :func:`_limits` reads, and the batched-versus-alone agreement."""
    import numpy as np
    import torch

    sc, bs = ctx.scale, ctx.scale.encode_batch_size
    d: dict[str, Any] = {"ceiling": _ceiling(ctx, encoder, flop, tuple(sorted({*sc.ceiling_batch_sizes, bs})))}
    att = _attention(ctx, shape, bs, torch.bfloat16 if ctx.device == "cuda" else torch.float32)
    att["share_of_forward"] = shape.layers * att["masked_seconds"] / d["ceiling"][str(bs)]["seconds"]
    d["attention"] = att
    t0 = time.perf_counter()
    encoder.tokenizer(encoder.with_prefix(texts, "passage"), truncation=True, max_length=sc.p_max_len)
    d["tokenize_seconds"] = time.perf_counter() - t0
    d["tokenize_fraction"] = d["tokenize_seconds"] / seconds
    d["tokenizers_parallelism"] = os.environ.get("TOKENIZERS_PARALLELISM", "unset")
    # a few passages one at a time (no padding, no sorting) against their rows of the batched run
    picks = np.linspace(0, len(texts) - 1, 8).astype(int)
    alone = np.stack([encoder.encode_passages([texts[i]])[0] for i in picks])
    d["min_cosine_batched_vs_alone"] = float(_cosines(vectors[picks], alone).min())
    return d


def _encode(ctx: Context, shape_key: str) -> Outcome:
    import numpy as np
    import torch

    from boostmdr.encoder import Encoder, EncoderSettings

    sc, shape = ctx.scale, fixtures.shape(shape_key, ctx.tiny)
    model_dir = encoder_dir(ctx, shape)
    settings = EncoderSettings(
        shape.pooling, shape.normalize, shape.query_prefix, shape.passage_prefix, sc.q_max_len, sc.p_max_len
    )
    texts, raw = fixtures.passages(sc.encode_passages, fixtures.words(sc.words), sc.p_max_len, ctx.seed + 11)
    prefix = len(shape.passage_prefix.split())
    lengths = [min(n + prefix, sc.p_max_len) for n in raw]
    bs = sc.encode_batch_size
    real = sum(lengths)
    padded = padded_tokens(lengths, bs, Encoder.chunk_size)
    peak = peak_of(ctx.device_info)
    goal = None if ctx.tiny else MFU_GOALS.get(shape_key)
    m: dict[str, Any] = {
        "shape": shape.key, "stands_for": shape.stands_for, "passages": len(texts), "real_tokens": real,
        "mean_tokens": real / len(texts), "cut_at_p_max_len": sum(n + prefix >= sc.p_max_len for n in raw) / len(raw),
        "padded_tokens": padded, "padding_fraction": padded / real - 1, "batch_size": bs, "p_max_len": sc.p_max_len,
        "peak_tflops": peak.tflops, "goal_mfu": goal,
    }  # fmt: skip
    vectors: dict[str, np.ndarray] = {}
    for mode, dtype in (("autocast", None), ("bf16", torch.bfloat16)):
        encoder = Encoder.from_pretrained(model_dir, settings, device=ctx.device, dtype=dtype)
        flop = FlopModel.of(encoder.model)
        m["attn_implementation"] = encoder.model.config._attn_implementation
        m["flop_model"] = flop.to_json()
        if mode == "autocast":  # the token lengths counted here are the ones the model sees
            ids = encoder.tokenizer(encoder.with_prefix(texts[:200], "passage"), truncation=True,
                                    max_length=sc.p_max_len)["input_ids"]  # fmt: skip
            if [len(x) for x in ids] != lengths[:200]:
                raise CheckFailed(f"token lengths differ from the counted ones: {[len(x) for x in ids[:5]]} vs "
                                  f"{lengths[:5]}", m)  # fmt: skip
        vectors[mode], seconds = _timed_encode(ctx, encoder, texts, bs)
        rate = flop.forward_flops(lengths) / seconds
        m[mode] = {
            "weights_dtype": str(next(encoder.model.parameters()).dtype).removeprefix("torch."),
            "seconds": seconds, "passages_per_s": len(texts) / seconds, "tokens_per_s": real / seconds,
            "tflops": rate / 1e12, "mfu": mfu(rate, peak),
        }  # fmt: skip
        if mode == "bf16":
            m |= _diagnostics(ctx, shape, encoder, flop, texts, vectors[mode], seconds)
        del encoder
        if ctx.device == "cuda":
            torch.cuda.empty_cache()
    m["min_cosine_autocast_vs_bf16"] = float(_cosines(vectors["autocast"], vectors["bf16"]).min())
    if not all(np.isfinite(v).all() for v in vectors.values()):
        raise CheckFailed("non-finite embeddings", m)
    for key in ("min_cosine_autocast_vs_bf16", "min_cosine_batched_vs_alone"):
        if not m[key] >= MIN_COSINE:
            raise CheckFailed(f"{key} = {m[key]:.4f} < {MIN_COSINE}: batching or precision changes the vectors", m)

    best_mode = max(("autocast", "bf16"), key=lambda k: m[k]["passages_per_s"])
    best = m[best_mode]
    m["best_precision"] = best_mode
    m["goal_met"] = None if goal is None or best["mfu"] is None else best["mfu"] >= goal
    m["limits"] = _limits(m, goal, best["mfu"])
    other = "autocast" if best_mode == "bf16" else "bf16"
    summary = (
        f"{best_mode}: {fmt_rate(best['passages_per_s'], 'passages/s')}, {fmt_rate(best['tokens_per_s'], 'tok/s')}, "
        f"{_utilisation(best)} ({other} {_utilisation(m[other])}); padding {fmt_pct(m['padding_fraction'])}, "
        f"no-padding ceiling {_utilisation(m['ceiling'][str(bs)])}"
    )
    notes = []
    if goal is not None and m["goal_met"] is False:
        summary += f"; below the {fmt_pct(goal)} goal"
        notes += [f"limited by {r}" for r in m["limits"]]
    if not ctx.tiny:
        hours = 90.4e6 / best["passages_per_s"] / 3600
        m["gpu_hours_for_90.4M_passages"] = hours
        notes.append(f"90.4M passages at this rate: {hours:.1f} GPU-hours per model (passage lengths assumed)")
    return Outcome(summary, m, notes)


def _utilisation(d: dict[str, Any]) -> str:
    """``MFU 41.2%``, or the achieved rate where no peak is known (CPU)."""
    return f"MFU {fmt_pct(d['mfu'])}" if d["mfu"] is not None else f"{d['tflops'] * 1e3:.1f} GFLOP/s"


def _cosines(a: Any, b: Any) -> Any:
    import numpy as np

    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(na * nb, 1e-12)


def _register(shape_key: str) -> None:
    shape = fixtures.SHAPES[shape_key]
    register(f"encode-{shape_key}", f"Encoder.encode_passages, {shape.stands_for} shape")(
        lambda ctx: _encode(ctx, shape_key)
    )


for _key in ("bert-base", "xlmr-large"):
    _register(_key)
