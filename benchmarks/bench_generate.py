"""Stage-2 generation throughput: new tokens per second of the generation runner handing the backend many
prompts at once, against one-by-one generation with the same model, prompts and seeds.

Data: 48 PDBG summary prompts (the authors' template, ``config/prompts/pdbg_summary.txt``) over pseudo-word
passages of 60 words; one sample each at the authors' sampling (temperature 0.7, top-p 0.9), at most 48 new
tokens. The model is the tiny LM's default architecture (Llama, hidden 128, 2 layers, vocabulary 2,000) with
random weights: the cost does not depend on what the weights say, and random weights rarely stop early, so
both arms generate (nearly) every allowed token.

* batched: ``GenerationRunner`` with ``batch_size`` 48 over the transformers backend with ``max_batch_rows`` 48:
  one call, the prompts prefilled together (their common template prefix once) and decoded together.
* one by one: the same runner with ``batch_size`` 1 over the backend with ``max_batch_rows`` 1: one prompt
  per call, as a loop over ``model.generate`` would do it.

Every sample has its own seed, so both arms draw the same texts up to near-ties in the last float bits; the
token counts are printed for both. One torch thread, the arms take turns for two rounds, the median is kept.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

N_PROMPTS = 48
WORDS = 60
MAX_NEW_TOKENS = 48
ROUNDS = 2
SEED = 11
REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "config" / "prompts" / "pdbg_summary.txt"


def run() -> list[str]:
    import torch

    from boostmdr.demo.tiny_lm import TinyLMSettings, build_tiny_lm
    from boostmdr.generate import SUMMARY_PLACEHOLDERS, clean_summary
    from boostmdr.llm.prompt import PromptTemplate, TurnFormat
    from boostmdr.llm.runner import GenerationRunner, Item, RunnerSettings
    from boostmdr.llm.transformers_backend import TransformersBackend

    torch.set_num_threads(1)
    rng = random.Random(SEED)
    syl = [c + v for c in "bdfgkmnprstvz" for v in "aeiou"]
    passages = [" ".join("".join(rng.choice(syl) for _ in range(rng.randint(2, 3))) for _ in range(WORDS)) for _ in range(N_PROMPTS)]
    template = PromptTemplate.load(TEMPLATE, SUMMARY_PLACEHOLDERS)
    turn = TurnFormat("plain")
    prompts = [turn.wrap(template.render(language="Swahili", passage=p)) for p in passages]
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        text = Path(tmp) / "text.txt"
        text.write_text("\n".join(prompts), encoding="utf-8")
        model = Path(tmp) / "lm"
        build_tiny_lm([text], model, TinyLMSettings(vocab_size=2000))
        arms = {
            "batched (runner, 48 prompts per call)": (
                TransformersBackend(str(model), device="cpu", max_batch_rows=N_PROMPTS), N_PROMPTS),
            "one by one (1 prompt per call)": (TransformersBackend(str(model), device="cpu", max_batch_rows=1), 1),
        }  # fmt: skip
        names = list(arms)
        times: dict[str, list[float]] = {k: [] for k in names}
        tokens: dict[str, int] = {}
        texts: dict[str, list[str]] = {}
        for name in names:  # warm-up
            backend, batch = arms[name]
            runner = GenerationRunner(backend, RunnerSettings(4, retries=0, seed=SEED, namespace="bench", batch_size=batch), clean_summary)
            runner.run([Item.make(f"w{i}", p, [(0.9, 0.7)]) for i, p in enumerate(prompts[:4])], desc="warm-up")
        for r in range(ROUNDS):
            for name in names[r % 2 :] + names[: r % 2]:
                backend, batch = arms[name]
                backend.close()  # no prefix cache carried over from the other round
                items = [Item.make(f"p{i}", p, [(0.9, 0.7)]) for i, p in enumerate(prompts)]
                runner = GenerationRunner(
                    backend, RunnerSettings(MAX_NEW_TOKENS, retries=0, seed=SEED, namespace="bench", batch_size=batch), clean_summary
                )
                t0 = time.perf_counter()
                counts = runner.run(items, desc=name)
                times[name].append(time.perf_counter() - t0)
                tokens[name] = counts["generated_tokens"]
                texts[name] = [it.samples[0].attempts[0]["raw"] for it in items]
    lines = [
        f"{N_PROMPTS} PDBG summary prompts (~{WORDS}-word passages), 1 sample each, <= {MAX_NEW_TOKENS} new tokens, "
        f"temperature 0.7, top-p 0.9; tiny Llama (hidden 128, 2 layers), 1 thread, median of {ROUNDS} rounds",
        f"{'':40}{'new tokens':>12}{'seconds':>10}{'new tok/s':>12}",
    ]
    rate = {}
    for name in names:
        t = statistics.median(times[name])
        rate[name] = tokens[name] / t
        lines.append(f"{name:40}{tokens[name]:12d}{t:10.2f}{rate[name]:12.1f}")
    same = sum(a == b for a, b in zip(*(texts[n] for n in names)))
    lines.append(
        f"batched / one by one: {rate[names[0]] / rate[names[1]]:.2f}x the new tokens per second; "
        f"{same} of {N_PROMPTS} texts identical in both arms"
    )
    return lines
