"""Prompt templates with named placeholders, for every LLM step (the judge, the generator, translation).

A template is a text file in which ``{name}`` marks where a value goes, for the placeholder names the
caller declares (the judge: ``question``, ``candidate``, ``reference``; the generator: ``passage``,
``query``, ``language``, ...). Every other brace is literal text (a template may show a JSON answer
format), so rendering is one pass over the declared placeholders, never ``str.format``: a value that
happens to contain ``{reference}`` is not expanded again. Each declared placeholder must occur exactly
once, which is checked when the template is built, so a template missing one fails at start with the
file's name instead of producing prompts without the value.
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
