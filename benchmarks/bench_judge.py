"""Judge cost per verdict on the transformers backend: prompt tokens prefilled and wall time.

Data: 8 queries x 5 candidates (40 verdicts), pseudo-word passages of 40 words, the shipped Table 17
prompt; the model is the tiny LM's default architecture (Llama, hidden 128, 2 layers, vocabulary 2,000,
random weights: the cost does not depend on what the weights say). Every verdict takes the authors'
four samples, (top_p, temperature) = (0.7, 0.4), (0.8, 0.6), (0.9, 0.8), (0.8, 0.4), 24 new tokens each
(the length of the JSON answer).

* ours: one request per candidate with its four samples, one prompt at a time: one prefill, the
  samples decoded together from it; the template header and question are reused from the previous
  candidate of the query.
* ours, batched across prompts: the same requests, decoded in micro-batches of 64 rows (16 prompts x 4
  samples): each micro-batch prefills its prompts' common prefix once (the template header; reused from
  the previous micro-batch's), then all suffixes in one left-padded pass, and decodes all 64 rows
  together. Its prefilled tokens are the prompt tokens computed; the padding slots computed besides are
  printed on their own line.
* ours, no prefix reuse: one prompt at a time without keeping the previous prompt's cache.
* naive: four independent full calls per candidate (one request per sample, no reuse, one at a time),
  the way a judge calls a model once per sample.
* batched, concatenating cache: the batched arm with transformers' own cache, which concatenates every
  layer's whole cache at each decoding step, instead of the backend's cache with spare capacity.
* batched, no drafts: the batched arm decoding token by token (``draft_tokens=0``). Every other arm takes
  drafts from finished samples (the backend's default); a random-weight model's samples diverge at once,
  so here drafts are nearly all rejected and the two arms measure what drafting costs when it cannot help.

Then, where the demo has built its judge (results/models/tiny/tiny-judge: a judge that writes the answer's
JSON, so samples nearly agree), the same prompts on it with drafts and without, the texts compared: what
drafting saves on a real judge. The arithmetic ceiling is printed beside it: twice the multiply-adds of
the layers' weights per token times the tokens the forward passes computed (a lower bound: attention and
the output layer are left out), against the FLOP/s of one large float32 matrix product on this core.

All use the same decoding loop and the same model in one process, one torch thread; they take turns
round by round (the order rotates, so each arm runs once in each slot), and the median round of each is
reported.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

N_QUERIES = 8
N_CANDIDATES = 5
WORDS = 40
MAX_NEW_TOKENS = 24
BATCH_ROWS = 64
BATCHED = "ours, batched across prompts"
CONCATENATING = "batched, concatenating cache"
NO_DRAFTS = "batched, no drafts"
DEMO_JUDGE = "results/models/tiny/tiny-judge"
ROUNDS = 5  # one per arm: the rotation puts every arm once in every slot
SEED = 7
SAMPLES = [(0.7, 0.4), (0.8, 0.6), (0.9, 0.8), (0.8, 0.4)]
REPO = Path(__file__).resolve().parents[1]


def _prompts(rng: random.Random) -> list[str]:
    from boostmdr.judge import load_judge_template, render_judge_prompt

    template = load_judge_template(REPO / "config" / "prompts" / "judge.txt")
    syl = [c + v for c in "bdfgkmnprstvz" for v in "aeiou"]
    word = lambda: "".join(rng.choice(syl) for _ in range(rng.randint(2, 3)))  # noqa: E731
    out = []
    for _ in range(N_QUERIES):
        query = " ".join(word() for _ in range(5))
        reference = " ".join(word() for _ in range(WORDS))
        for _ in range(N_CANDIDATES):
            out.append(render_judge_prompt(template, query, " ".join(word() for _ in range(WORDS)), reference))
    return out


def run() -> list[str]:
    import torch

    from boostmdr.llm import GenerationRequest, SamplingSettings
    from boostmdr.llm.transformers_backend import TransformersBackend
    from boostmdr.demo.tiny_lm import TinyLMSettings, build_tiny_lm

    torch.set_num_threads(1)
    rng = random.Random(SEED)
    prompts = _prompts(rng)
    with tempfile.TemporaryDirectory(prefix="bench-judge-") as tmp:
        text = Path(tmp) / "text.txt"
        text.write_text("\n".join(prompts), encoding="utf-8")
        model = Path(tmp) / "lm"
        build_tiny_lm([text], model, TinyLMSettings(vocab_size=2000), prompt=REPO / "config" / "prompts" / "judge.txt")

        samples = lambda i: tuple(  # noqa: E731
            SamplingSettings(temperature=t, top_p=p, max_tokens=MAX_NEW_TOKENS, seed=1000 * i + j)
            for j, (p, t) in enumerate(SAMPLES)
        )
        # max_batch_rows at most the samples of a request: one prompt at a time
        one_at_a_time = len(SAMPLES)
        ours = TransformersBackend(str(model), device="cpu", share_prefix=True, max_batch_rows=one_at_a_time)
        batched = TransformersBackend(str(model), device="cpu", share_prefix=True, max_batch_rows=BATCH_ROWS)
        once = TransformersBackend(str(model), device="cpu", share_prefix=False, max_batch_rows=one_at_a_time)
        naive = TransformersBackend(str(model), device="cpu", share_prefix=False, max_batch_rows=1)
        concatenating = TransformersBackend(str(model), device="cpu", share_prefix=True, max_batch_rows=BATCH_ROWS)
        concatenating._new_cache = lambda: None  # the model builds its own DynamicCache (torch.cat per step)
        no_drafts = TransformersBackend(str(model), device="cpu", max_batch_rows=BATCH_ROWS, draft_tokens=0)
        arms = {
            "ours": (ours, [GenerationRequest(p, samples(i)) for i, p in enumerate(prompts)]),
            BATCHED: (batched, [GenerationRequest(p, samples(i)) for i, p in enumerate(prompts)]),
            "ours, no prefix reuse": (once, [GenerationRequest(p, samples(i)) for i, p in enumerate(prompts)]),
            "naive (4 full calls)": (naive, [GenerationRequest(p, (s,)) for i, p in enumerate(prompts) for s in samples(i)]),
            CONCATENATING: (concatenating, [GenerationRequest(p, samples(i)) for i, p in enumerate(prompts)]),
            NO_DRAFTS: (no_drafts, [GenerationRequest(p, samples(i)) for i, p in enumerate(prompts)]),
        }
        for name in ("ours", BATCHED, CONCATENATING, NO_DRAFTS):  # warm-up (allocations, first-call overheads)
            arms[name][0].generate(arms[name][1][:20])
        times: dict[str, list[float]] = {k: [] for k in arms}
        tokens: dict[str, int] = {}
        padding: dict[str, int] = {}
        names = list(arms)
        for r in range(ROUNDS):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                backend, reqs = arms[name]
                backend._prefix = None
                before = backend.stats.copy()
                t0 = time.perf_counter()
                backend.generate(reqs)
                times[name].append(time.perf_counter() - t0)
                tokens[name] = backend.stats["prefilled_tokens"] - before["prefilled_tokens"]
                padding[name] = backend.stats["padding_tokens"] - before["padding_tokens"]
        prompt_tokens = sum(len(ours.encode(p)) for p in prompts)

    n = len(prompts)
    base_tok, base_t = tokens["naive (4 full calls)"], statistics.median(times["naive (4 full calls)"])
    lines = [
        f"{n} verdicts x 4 samples x {MAX_NEW_TOKENS} new tokens; mean prompt {prompt_tokens / n:.0f} tokens; "
        f"tiny Llama (hidden 128, 2 layers), 1 thread, median of {ROUNDS} rounds",
        f"{'':30}{'prefilled tok/verdict':>22}{'ms/verdict':>12}{'tokens vs naive':>17}{'time vs naive':>15}",
    ]
    for name in names:
        t = statistics.median(times[name])
        lines.append(
            f"{name:30}{tokens[name] / n:22.0f}{1000 * t / n:12.1f}{tokens[name] / base_tok:17.3f}{t / base_t:15.3f}"
        )
    for name in ("ours", BATCHED):
        lines.append(
            f"{name} prefills {tokens[name] / base_tok:.1%} of the naive tokens "
            f"({'meets' if tokens[name] <= base_tok / 3 else 'MISSES'} the target of at most a third)"
        )
    ratio = statistics.median(times[BATCHED]) / statistics.median(times["ours"])
    lines.append(
        f"{BATCHED} ({BATCH_ROWS} rows per micro-batch): {ratio:.3f} of ours' wall time ({1 / ratio:.1f}x faster); "
        f"it also computed {padding[BATCHED] / n:.0f} padding slots/verdict "
        f"({padding[BATCHED] / (tokens[BATCHED] + padding[BATCHED]):.0%} of its prefill slots)"
    )
    cat = statistics.median(times[CONCATENATING]) / statistics.median(times[BATCHED])
    lines.append(f"{CONCATENATING}: {cat:.2f}x the batched arm's wall time (the cache with spare capacity: {cat:.2f}x faster)")
    nd = statistics.median(times[NO_DRAFTS]) / statistics.median(times[BATCHED])
    lines.append(f"{NO_DRAFTS}: {nd:.2f}x the batched arm's wall time (drafts on a model whose samples diverge)")
    return lines + _demo_judge(prompts, samples)


def _demo_judge(prompts: list[str], samples) -> list[str]:
    """Drafts against token-by-token decoding on the demo's judge (module docstring), with the ceiling."""
    import torch

    from boostmdr.llm import GenerationRequest
    from boostmdr.llm.transformers_backend import TransformersBackend

    model = REPO / DEMO_JUDGE
    if not (model / "config.json").is_file():
        return [f"(the demo's judge is not built: `make demo` builds {DEMO_JUDGE}; its drafting arm is skipped)"]
    reqs = [GenerationRequest(p, samples(i)) for i, p in enumerate(prompts)]
    arms = {
        "demo judge, drafts": TransformersBackend(str(model), device="cpu", max_batch_rows=BATCH_ROWS),
        "demo judge, no drafts": TransformersBackend(str(model), device="cpu", max_batch_rows=BATCH_ROWS, draft_tokens=0),
    }
    for b in arms.values():
        b.generate(reqs[:20])
    times: dict[str, list[float]] = {k: [] for k in arms}
    texts: dict[str, list] = {}
    stats: dict[str, dict] = {}
    names = list(arms)
    for r in range(4):
        for name in names[r % 2 :] + names[: r % 2]:
            b = arms[name]
            b.close()  # no kept prefix, no drafts from the previous round
            before = b.stats.copy()
            t0 = time.perf_counter()
            texts[name] = [x.texts for x in b.generate(reqs)]
            times[name].append(time.perf_counter() - t0)
            stats[name] = {k: b.stats[k] - before[k] for k in b.stats}
    cfg = arms[names[0]].model.config
    ceiling = _matmul_flops(torch)
    n = len(prompts)
    d = stats[names[0]]
    lines = [
        f"the demo's judge ({cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, vocabulary {cfg.vocab_size}) on "
        f"the same {n} prompts; drafts accepted {d['accepted_draft_tokens']} of {d['drafted_tokens']} drafted tokens; "
        f"same texts: {texts[names[0]] == texts[names[1]]}",
        f"{'':26}{'forward passes':>15}{'ms/verdict':>12}{'GFLOP/s':>9}{'of ceiling':>12}",
    ]
    for name in names:
        t = statistics.median(times[name])
        s = stats[name]
        flops = _forward_flops(cfg, s)
        lines.append(
            f"{name:26}{s['prefill_calls'] + s['decode_calls']:15d}{1000 * t / n:12.1f}{flops / t / 1e9:9.1f}"
            f"{flops / t / ceiling:12.0%}"
        )
    ratio = statistics.median(times[names[1]]) / statistics.median(times[names[0]])
    lines.append(f"drafts: {ratio:.2f}x faster; ceiling: one {CEILING_N}x{CEILING_N} float32 matmul at {ceiling / 1e9:.0f} GFLOP/s")
    return lines


CEILING_N = 1024


def _matmul_flops(torch) -> float:
    a = torch.randn(CEILING_N, CEILING_N)
    a @ a
    t0 = time.perf_counter()
    for _ in range(10):
        a @ a
    return 10 * 2 * CEILING_N**3 / (time.perf_counter() - t0)


def _forward_flops(cfg, stats: dict) -> float:
    """2 x multiply-adds of the layers' weights per token position computed: prompt tokens and padding slots
    of the prefills, and every decoding pass's rows x width (drafted and padded positions included)."""
    h, i, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    kv = h * cfg.num_key_value_heads // cfg.num_attention_heads
    per_token = layers * (2 * h * h + 2 * h * kv + 3 * h * i)
    tokens = stats["prefilled_tokens"] + stats["padding_tokens"] + stats["decode_slots"]
    return 2 * per_token * tokens
