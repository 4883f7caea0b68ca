"""Listwise judging: one prompt per query (or per window of its candidates) holding the question, the
reference positive and the numbered candidates, answered with the numbers of the relevant ones.

This is the protocol of RLHN (Thakur et al., 2025; castorini/rlhn): about one or two calls per query
instead of the pointwise protocol's candidates x samples. What this module does, and the choices made:

* **Prompt**: ``config/prompts/judge_listwise.txt`` with the placeholders ``{question}``, ``{reference}``
  and ``{candidates}``; the candidates are rendered one per line as ``[i] passage`` (i from 1, in fused
  rank order), each cut to ``max_passage_words`` like the pointwise prompt's passages.
* **Answer** (strict, :func:`parse_listwise`): exactly one ``<relevant>...</relevant>`` block holding the
  relevant candidates' numbers separated by commas (``<relevant>2, 5</relevant>``; square brackets
  around a number are allowed, since the prompt labels candidates ``[i]``), or an empty block (or
  ``none``) when none is relevant. With structured output over a JSON-only backend the answer is the
  JSON object ``{"relevant": [2, 5]}``. Anything else (no block, two blocks, a number out of range, a
  repeated number, words in the block) is unparsed: retried with a new seed like a pointwise sample,
  and never guessed.
* **Verdicts**: each sample votes per candidate: listed = 2 ("highly relevant", what the pointwise
  protocol's removal means), not listed = 0; an unparsed sample does not vote. A candidate's verdict
  is the majority vote over the parsed samples (:func:`boostmdr.judge.majority_vote`, ties to the first
  sample), ``null`` when no sample parsed. Verdict files keep their format: pools (keep verdict 0) and
  statistics work unchanged; a listwise verdict is never 1.
* **Long candidate lists** (``window``): a query's candidates are split, in rank order, into
  ``ceil(n / window)`` consecutive windows of near-equal size (sizes differ by at most one), one prompt
  each, numbered from 1 within the window. The window bounds the prompt: with passages cut to
  ``max_passage_words``, a window's prompt is at most the template plus the question, the reference and
  ``window`` passages. A prompt that still exceeds the model's context fails the job naming the limit
  (the transformers backend checks before generating; vLLM and servers refuse it): lower ``window`` or
  ``max_passage_words``.
* **Seeds and cache**: an item per window, keyed by the query and its window's docids in the seed
  namespace ``judge-listwise``, so listwise samples never share random numbers with pointwise ones;
  generations are cached like every other (:mod:`boostmdr.llm.cache`).
* **Token accounting**: a window's tokens are recorded on the record of its first candidate (position 1)
  and 0 on the others, so sums over a verdict file are the run's totals; every record says where it sat
  (``window``: index, size, position).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
from collections.abc import Sequence
from typing import Any

from .llm.constraint import Constraint
from .llm.prompt import PromptTemplate, truncate_words

log = logging.getLogger(__name__)

PLACEHOLDERS = ("question", "reference", "candidates")
"""The listwise template's placeholders: the query, the reference positive, the numbered candidates."""
SEED_NAMESPACE = "judge-listwise"
OPEN, CLOSE = "<relevant>", "</relevant>"
LISTED, NOT_LISTED = 2, 0
MAX_CHOICE_WINDOW = 10
"""Largest window whose answers are enumerated as a choice list for structured output (2^10 answers);
beyond it a regex (vLLM) or a JSON schema (HTTP) constrains the answer."""
ANSWER_REGEX = r"<relevant>(?:[1-9][0-9]*(?:, [1-9][0-9]*)*)?</relevant>"

_BLOCK_RE = re.compile(re.escape(OPEN) + r"(.*?)" + re.escape(CLOSE), re.DOTALL | re.IGNORECASE)
_LIST_RE = re.compile(r"\s*(?:\d+(?:\s*,\s*\d+)*)?\s*")


def load_listwise_template(path: str | os.PathLike) -> PromptTemplate:
    return PromptTemplate.load(path, PLACEHOLDERS)


def render_candidates(passages: Sequence[str], max_passage_words: int | None = None) -> str:
    """``[1] first passage`` ... one line per candidate, each cut to ``max_passage_words`` words."""
    return "\n".join(f"[{i}] {truncate_words(p, max_passage_words)}" for i, p in enumerate(passages, start=1))


def render_listwise_prompt(
    template: PromptTemplate,
    question: str,
    candidates: Sequence[str],
    reference: str,
    max_passage_words: int | None = None,
) -> str:
    """The prompt for one window: the question, the reference (cut like the candidates) and the numbered
    candidates. The tiny LM's listwise fine-tuning builds its prompts with this same function."""
    return template.render(
        question=" ".join(question.split()),
        reference=truncate_words(reference, max_passage_words),
        candidates=render_candidates(candidates, max_passage_words),
    )


def format_listwise_answer(numbers: Sequence[int]) -> str:
    """The canonical answer: ``<relevant>2, 5</relevant>`` (ascending), ``<relevant></relevant>`` for none."""
    return OPEN + ", ".join(str(n) for n in sorted(numbers)) + CLOSE


def parse_listwise(text: str, size: int) -> frozenset[int] | None:
    """The candidate numbers (1..``size``) an answer lists as relevant, or ``None`` when the answer is
    malformed (see the module doc; nothing is guessed)."""
    stripped = text.strip()
    if stripped.startswith("{"):
        return _parse_json_answer(stripped, size)
    blocks = _BLOCK_RE.findall(text)
    if len(blocks) != 1 or text.lower().count(OPEN) != 1 or text.lower().count(CLOSE) != 1:
        return None
    body = blocks[0].replace("[", "").replace("]", "")
    if body.strip().lower() == "none":
        return frozenset()
    if not _LIST_RE.fullmatch(body):
        return None
    numbers = [int(x) for x in re.findall(r"\d+", body)]
    return _checked(numbers, size)


def _parse_json_answer(text: str, size: int) -> frozenset[int] | None:
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if not isinstance(obj, dict) or set(obj) != {"relevant"} or not isinstance(obj["relevant"], list):
        return None
    numbers = obj["relevant"]
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
        return None
    return _checked(numbers, size)


def _checked(numbers: Sequence[int], size: int) -> frozenset[int] | None:
    if len(set(numbers)) != len(numbers) or any(not 1 <= n <= size for n in numbers):
        return None
    return frozenset(numbers)


def windows(n: int, size: int) -> list[tuple[int, int]]:
    """``ceil(n / size)`` consecutive ``(start, stop)`` ranges covering ``range(n)``, sizes differing by at
    most one (the longer ones first)."""
    if size < 1:
        raise ValueError(f"the listwise window must be >= 1, got {size}")
    if n == 0:
        return []
    count = -(-n // size)
    base, extra = divmod(n, count)
    out, start = [], 0
    for w in range(count):
        stop = start + base + (w < extra)
        out.append((start, stop))
        start = stop
    return out


def answer_schema(size: int) -> dict[str, Any]:
    """The JSON schema of an answer for a window of ``size`` candidates."""
    return {
        "type": "object",
        "properties": {
            "relevant": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": size}, "uniqueItems": True}
        },
        "required": ["relevant"],
        "additionalProperties": False,
    }


def constraint_options(size: int) -> dict[str, Constraint | None]:
    """The ways to constrain a window's answer, in order of preference: every answer as a choice list (up
    to :data:`MAX_CHOICE_WINDOW` candidates), the tag format as a regex, the JSON schema."""
    choices = None
    if size <= MAX_CHOICE_WINDOW:
        subsets = itertools.chain.from_iterable(itertools.combinations(range(1, size + 1), k) for k in range(size + 1))
        choices = Constraint.choice([format_listwise_answer(s) for s in subsets])
    return {"choice": choices, "regex": Constraint.regex(ANSWER_REGEX), "json": Constraint.json_schema(answer_schema(size))}
