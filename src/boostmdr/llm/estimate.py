"""A dry estimate of what an LLM step will cost, before any call: tokens counted from the prompts, times
the prices the user puts in the config. Nothing here calls a model or an API.

* **Tokens**: with a local tokenizer (a model directory, loaded offline with ``AutoTokenizer``) when one is
  given, counted exactly as that model would see each prompt (special tokens included); otherwise
  ``ceil(characters / chars_per_token)``. The ratio is a rule of thumb: about 4 characters per token is
  OpenAI's figure for English text with its tokenizers; scripts with fewer characters per word piece
  (Telugu, Thai, Chinese, ...) take more tokens per character, so for them the ratio underestimates, often
  by a factor of two or more. Give a tokenizer for numbers to rely on.
* **Output tokens**: the upper bound, every call writing ``max_new_tokens`` (as RLHN's estimate does); a
  model that stops at the end of its answer writes fewer.
* **Price**: ``prompt tokens / 1e6 x input price + output tokens / 1e6 x output price`` (prices in a
  currency per million tokens, e.g. USD); ``None`` where a price is not given.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

DEFAULT_CHARS_PER_TOKEN = 4.0


@dataclass(frozen=True)
class TokenCounter:
    """Counts the tokens of a prompt; ``source`` says how (a tokenizer path, or the ratio)."""

    count: Callable[[str], int]
    source: str


def token_counter(tokenizer: str | os.PathLike | None = None, chars_per_token: float = DEFAULT_CHARS_PER_TOKEN) -> TokenCounter:
    """A :class:`TokenCounter` from a local tokenizer directory, or from ``chars_per_token`` when none is given."""
    if tokenizer is not None:
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(str(tokenizer))
        except OSError as err:
            raise ValueError(
                f"tokenizer {str(tokenizer)!r} cannot be loaded offline ({err}); give a local model directory, or "
                "leave the tokenizer unset to count with chars_per_token"
            ) from err
        return TokenCounter(lambda text: len(tok(text, add_special_tokens=True)["input_ids"]), f"tokenizer {tokenizer}")
    if chars_per_token <= 0:
        raise ValueError(f"chars_per_token must be > 0, got {chars_per_token}")
    return TokenCounter(lambda text: math.ceil(len(text) / chars_per_token), f"{chars_per_token:g} characters per token")


def price(
    prompt_tokens: int, output_tokens: int, input_per_1m: float | None, output_per_1m: float | None
) -> float | None:
    """The cost of ``prompt_tokens`` in and ``output_tokens`` out at per-million-token prices (``None``
    when either price is missing)."""
    if input_per_1m is None or output_per_1m is None:
        return None
    return prompt_tokens / 1e6 * input_per_1m + output_tokens / 1e6 * output_per_1m
