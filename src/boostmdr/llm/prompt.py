"""Prompt templates with named placeholders, for every LLM step (the judge, the generator, translation).

A template is a text file in which ``{name}`` marks where a value goes, for the placeholder names the
caller declares (the judge: ``question``, ``candidate``, ``reference``; the generator: ``passage``,
``query``, ``language``, ...). Every other brace is literal text (a template may show a JSON answer
format), so rendering is one pass over the declared placeholders, never ``str.format``: a value that
happens to contain ``{reference}`` is not expanded again. Each declared placeholder must occur exactly
once, which is checked when the template is built, so a template missing one fails at start with the
file's name instead of producing prompts without the value.

:class:`TurnFormat` wraps a rendered prompt as the user's turn the way the model expects it: through the
tokenizer's chat template (an instruction-tuned model such as Llama-3.1-Instruct) or as plain text ending
with a newline (a base model without one). Instruction tuning (:mod:`boostmdr.mift`) and generation
(:mod:`boostmdr.generate`) build their prompts with the same :class:`TurnFormat`, so the model is asked at
generation time in exactly the format it was tuned on.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


class TemplateError(ValueError):
    """A prompt template without one of its placeholders (or with one twice); the message names the file."""


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt text with the placeholders ``{name}`` for each name in ``placeholders``."""

    text: str
    placeholders: tuple[str, ...]
    source: str = "<string>"
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.placeholders:
            raise ValueError("a prompt template needs at least one placeholder name")
        bad = [p for p in self.placeholders if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p)]
        if bad:
            raise ValueError(f"placeholder names must be identifiers, got {bad}")
        object.__setattr__(self, "placeholders", tuple(self.placeholders))
        pattern = re.compile(r"\{(" + "|".join(map(re.escape, self.placeholders)) + r")\}")
        object.__setattr__(self, "pattern", pattern)
        found = Counter(m.group(1) for m in pattern.finditer(self.text))
        need = ", ".join("{" + p + "}" for p in self.placeholders)
        missing = [p for p in self.placeholders if not found[p]]
        if missing:
            raise TemplateError(
                f"{self.source}: prompt template lacks placeholder(s) "
                f"{', '.join('{' + p + '}' for p in missing)}; it needs each of {need}"
            )
        repeated = [p for p in self.placeholders if found[p] > 1]
        if repeated:
            raise TemplateError(
                f"{self.source}: placeholder(s) {', '.join('{' + p + '}' for p in repeated)} appear more than "
                "once; each must appear exactly once"
            )

    @classmethod
    def load(cls, path: str | os.PathLike, placeholders: Sequence[str]) -> PromptTemplate:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TemplateError(f"{path}: prompt template file not found") from None
        return cls(text, tuple(placeholders), str(path))

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def render(self, **values: str) -> str:
        """The prompt with every placeholder replaced by its value (all values required, no others)."""
        if set(values) != set(self.placeholders):
            raise ValueError(
                f"{self.source}: render needs exactly the values {sorted(self.placeholders)}, got {sorted(values)}"
            )
        return self.pattern.sub(lambda m: values[m.group(1)], self.text)


def truncate_words(text: str, max_words: int | None) -> str:
    """Whitespace normalised to single spaces, cut to the first ``max_words`` words (``None`` or 0: whole)."""
    text = " ".join(text.split())
    if not max_words:
        return text
    words = text.split(" ")
    return text if len(words) <= max_words else " ".join(words[:max_words])


PROMPT_FORMATS = ("auto", "chat", "plain")
"""How a user turn is written: ``chat`` through the tokenizer's chat template, ``plain`` as the text and a
newline, ``auto`` chat when the tokenizer has a chat template, else plain."""


class TurnFormat:
    """Writes one user turn (a rendered prompt) as the text a causal model continues with its answer.

    * ``plain``: the text, then a newline.
    * ``chat``: ``tokenizer.apply_chat_template`` with one user message and the generation prompt (the
      assistant header). Backends tokenize prompts with the tokenizer's special tokens (a BOS token), so a
      BOS string the template itself writes at the start is removed: the model sees one BOS, not two.
    """

    def __init__(self, kind: str, tokenizer: object | None = None, source: str = "") -> None:
        if kind not in PROMPT_FORMATS:
            raise ValueError(f"prompt format {kind!r}: choose one of {', '.join(PROMPT_FORMATS)}")
        has_template = tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))
        if kind == "auto":
            kind = "chat" if has_template else "plain"
        if kind == "chat" and not has_template:
            raise ValueError(
                f"prompt format 'chat': the tokenizer of {source or 'the model'} has no chat template; "
                "use prompt_format plain (or auto)"
            )
        self.kind = kind
        self.tokenizer = tokenizer
        self._bos = None
        if kind == "chat":
            bos = getattr(tokenizer, "bos_token", None)
            ids = tokenizer("x")["input_ids"]  # type: ignore[operator]
            if bos and ids and ids[0] == getattr(tokenizer, "bos_token_id", None):
                self._bos = bos

    @classmethod
    def for_model(cls, kind: str, model: str | os.PathLike) -> TurnFormat:
        """The format for ``model``'s tokenizer (loaded offline with ``AutoTokenizer``); ``plain`` loads nothing."""
        if kind == "plain":
            return cls("plain")
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(model))
        except OSError as err:
            raise ValueError(
                f"prompt format {kind!r} needs the tokenizer of {model!r}, which cannot be loaded ({err}); "
                "use prompt_format plain, or make the model loadable offline"
            ) from err
        return cls(kind, tokenizer, str(model))

    def wrap(self, text: str) -> str:
        if self.kind == "plain":
            return text + "\n"
        rendered = self.tokenizer.apply_chat_template(  # type: ignore[union-attr]
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        if self._bos and rendered.startswith(self._bos):
            rendered = rendered[len(self._bos) :]
        return rendered
