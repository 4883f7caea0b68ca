"""The demo's instruction set: Alpaca-format records written by the synthetic benchmark itself, an English
source file and one "translated" file per language, for stage 2's MIFT through the ``files`` translation kind
(no translation model is available offline).

Each language gets its own small synthetic corpus (its own articles, drawn with a seed of its own, in the
same words as the benchmark's language: the vocabulary is seeded by the benchmark's seed), so the
instructions never show the benchmark's passages. Record ``i`` has task ``i mod 7``:

==================================================================================  =====================  ==================================
English instruction                                                                  input                  output
==================================================================================  =====================  ==================================
Summarize the following passage in one sentence.                                    a passage              its main name and three fact words
Give a short summary of the key points of this text.                                a passage              the same
Condense the passage below into its main points.                                    a passage              the same
Write a concise search query that captures the key aspects of the following summary. such a summary          a question word, the name, two facts
What is the title of this passage?                                                  a passage              its title
Name the first word of the text.                                                    a passage              its first word
List the last three words of the passage.                                           a passage              its last three words
==================================================================================  =====================  ==================================

The first four match the summarization rule of :mod:`boostmdr.mift` (4 of every 7 records), the last three
do not. A summary is what a synthetic query asks about (the article's main name and the passage's fact
words), and a query is made from a summary the way the benchmark makes its queries (a question word, the
name, two of the facts in shuffled order), so an instruction-tuned generator learns the two PDBG steps.

"Translation": the files of all languages are parallel in task and instruction, not in content (each
language's records describe its own passages). An instruction is rendered in a language word by word, each
English word mapped to a common word of the language by a fixed hash, punctuation kept. The English source
file (``--lang en``) uses the synthetic benchmark's ``en`` script.

``python -m boostmdr.demo.instructions --lang sw --seed 13 --records 300 --out translated.sw.jsonl``
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
from collections.abc import Sequence

import numpy as np

from boostmdr.demo.synthetic import N_COMMON, N_QUESTION, Plan, make_plan, passage_records
from boostmdr.formats import Instruction, write_instructions
from boostmdr.utils import setup_logging

log = logging.getLogger(__name__)

TASKS: tuple[tuple[str, str], ...] = (
    ("Summarize the following passage in one sentence.", "summary"),
    ("Give a short summary of the key points of this text.", "summary"),
    ("Condense the passage below into its main points.", "summary"),
    ("Write a concise search query that captures the key aspects of the following summary.", "query"),
    ("What is the title of this passage?", "title"),
    ("Name the first word of the text.", "first_word"),
    ("List the last three words of the passage.", "last_words"),
)
"""(English instruction, task) by record index modulo 7."""
SEED_OFFSET = 7919
"""The instruction corpus's plan and text seed: the benchmark's seed plus this (its words use the benchmark's)."""


def render_instruction(english: str, plan: Plan) -> str:
    """``english`` in the plan's language: each word mapped to a common word by a fixed hash, punctuation kept."""
    if plan.lang == "en":
        return english

    def word(match: re.Match[str]) -> str:
        h = int.from_bytes(hashlib.sha256(f"{plan.lang}:{match.group(0).lower()}".encode()).digest()[:4], "big")
        return plan.vocab.words[plan.vocab.common + h % N_COMMON]

    return re.sub(r"[A-Za-z]+", word, english)


def instruction_records(lang: str, seed: int, n_records: int) -> list[Instruction]:
    """The ``n_records`` records of ``lang`` (module docstring)."""
    if n_records < 1:
        raise ValueError(f"--records must be >= 1, got {n_records}")
    own = seed + SEED_OFFSET
    plan = make_plan(lang, own, max(64, 2 * n_records), 0, 0, 0.0, vocabulary_seed=seed)
    passages = passage_records(plan, own)
    rng = np.random.default_rng([own, n_records])
    order = rng.permutation(len(passages))
    words = plan.vocab.words
    out: list[Instruction] = []
    for i in range(n_records):
        english, task = TASKS[i % len(TASKS)]
        p = int(order[i % len(order)])
        doc = passages[p]
        guest = int(plan.guest[p])
        main = words[int(plan.main_name(guest if guest >= 0 else plan.passage_article[p]))]
        facts = [words[int(f)] for f in plan.facts[p]]
        text = f"{doc['title']} {doc['text']}"
        summary = " ".join([main, *facts])
        if task == "summary":
            source, answer = text, summary
        elif task == "query":
            chosen = rng.choice(3, size=2, replace=False)
            body = [main] + [facts[j] for j in chosen]
            question = words[plan.vocab.question + int(rng.integers(N_QUESTION))]
            source, answer = summary, " ".join([question] + [body[j] for j in rng.permutation(3)])
        elif task == "title":
            source, answer = text, doc["title"]
        elif task == "first_word":
            source, answer = text, text.split()[0]
        else:
            source, answer = text, " ".join(text.split()[-3:])
        out.append(Instruction(render_instruction(english, plan), source, answer, i, lang))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m boostmdr.demo.instructions", description=__doc__.split("\n\n")[0])
    ap.add_argument("--lang", required=True, help="language code (en: the English source file)")
    ap.add_argument("--seed", type=int, required=True, help="the synthetic benchmark's seed")
    ap.add_argument("--records", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--log", default=None)
    args = ap.parse_args(argv)
    setup_logging(args.log)
    records = instruction_records(args.lang, args.seed, args.records)
    write_instructions(args.out, records)
    log.info("wrote %d %s instruction records to %s", len(records), args.lang, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
