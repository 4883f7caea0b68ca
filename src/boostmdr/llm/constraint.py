"""Structured output: a constraint on what a sample may say, for the backends that can enforce one.

A :class:`Constraint` travels with a :class:`~boostmdr.llm.base.GenerationRequest` (and a runner
:class:`~boostmdr.llm.runner.Item`) and is part of the generation cache key, so a constrained sample
never answers for an unconstrained one. Three kinds, named as vLLM names them:

* ``choice``: the answer is exactly one of a list of strings;
* ``regex``: the answer matches a regular expression;
* ``json``: the answer is a JSON document valid under a JSON schema.

Which backend enforces which kind (each backend class lists its own in ``CONSTRAINTS``):

=================  ===================================================================================
``vllm``           every kind, through ``SamplingParams(structured_outputs=StructuredOutputsParams(...))``
``http``           ``json``, as the OpenAI-compatible ``response_format`` (``json_schema``); whether the
                   server honours it is the server's business (``transformers serve`` does not: it
                   refuses the field on ``/v1/completions`` and ignores it on ``/v1/chat/completions``)
``transformers``   ``choice``, by constrained decoding implemented here (:class:`ChoiceTrie`): at every
                   step only the tokens that continue one of the choices' token sequences may be
                   sampled (temperature and top-p act on what is left), and a row ends when it has
                   written a whole choice
=================  ===================================================================================

A caller picks the kind its backend supports with :func:`pick`; a backend asked for a kind it cannot
enforce raises :class:`~boostmdr.llm.base.BackendError` before generating anything.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

KINDS = ("choice", "regex", "json")


@dataclass(frozen=True)
class Constraint:
    """What a sample may say: ``kind`` (one of :data:`KINDS`) and its ``value`` (a tuple of strings for
    ``choice``, a pattern for ``regex``, a JSON schema, as a JSON string, for ``json``)."""

    kind: str
    value: Any

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"constraint kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "choice":
            choices = tuple(self.value)
            if not choices or not all(isinstance(c, str) and c for c in choices):
                raise ValueError("a choice constraint needs a non-empty list of non-empty strings")
            object.__setattr__(self, "value", choices)
        elif self.kind == "json":
            schema = self.value if isinstance(self.value, str) else json.dumps(self.value, sort_keys=True)
            json.loads(schema)  # a schema that is not JSON fails here, not at the server
            object.__setattr__(self, "value", schema)
        elif not isinstance(self.value, str) or not self.value:
            raise ValueError("a regex constraint needs a non-empty pattern")

    @classmethod
    def choice(cls, choices: Sequence[str]) -> Constraint:
        return cls("choice", tuple(choices))

    @classmethod
    def json_schema(cls, schema: dict[str, Any]) -> Constraint:
        return cls("json", json.dumps(schema, sort_keys=True))

    @classmethod
    def regex(cls, pattern: str) -> Constraint:
        return cls("regex", pattern)

    @property
    def schema(self) -> dict[str, Any]:
        if self.kind != "json":
            raise ValueError(f"a {self.kind} constraint has no JSON schema")
        return json.loads(self.value)

    def key(self) -> str:
        """A stable text of the constraint, for cache keys."""
        return json.dumps({"kind": self.kind, "value": list(self.value) if self.kind == "choice" else self.value})


def pick(options: dict[str, Constraint | None], supported: Sequence[str], setting: str, backend: str) -> Constraint:
    """The first of ``options`` (kind -> constraint, in order of preference; ``None``: not offered for this
    prompt) that the backend supports; otherwise a ValueError naming ``setting`` and what would work."""
    for kind, constraint in options.items():
        if constraint is not None and kind in supported:
            return constraint
    offered = [k for k, c in options.items() if c is not None]
    raise ValueError(
        f"{setting}: the {backend} backend cannot enforce this answer format (it supports {list(supported) or 'none'}, "
        f"the answer can be constrained as {offered}); turn {setting} off, or use a backend that supports one of them"
    )


class ChoiceTrie:
    """The token sequences of a choice list as a trie, for constrained decoding: :meth:`allowed` gives the
    tokens that may follow a prefix, :meth:`complete` whether a prefix is a whole choice.

    Each choice is tokenised on its own (no special tokens); a choice whose tokens are a prefix of
    another's cannot be told apart while decoding and is refused."""

    def __init__(self, sequences: Sequence[Sequence[int]]) -> None:
        if not sequences or any(not s for s in sequences):
            raise ValueError("a choice trie needs non-empty token sequences")
        self._children: list[dict[int, int]] = [{}]
        self._end: list[bool] = [False]
        self.longest = max(map(len, sequences))
        """Tokens of the longest choice (a sample's token limit must allow it)."""
        for seq in sequences:
            node = 0
            for tok in seq:
                nxt = self._children[node].get(tok)
                if nxt is None:
                    if self._end[node]:
                        raise ValueError("a choice is a prefix of another choice; constrained decoding cannot end it")
                    nxt = len(self._children)
                    self._children[node][tok] = nxt
                    self._children.append({})
                    self._end.append(False)
                node = nxt
            if self._children[node]:
                raise ValueError("a choice is a prefix of another choice; constrained decoding cannot end it")
            self._end[node] = True

    def step(self, node: int, token: int) -> int:
        """The node after ``token``; a KeyError if the token leaves the trie."""
        return self._children[node][token]

    def allowed(self, node: int) -> list[int]:
        return list(self._children[node])

    def complete(self, node: int) -> bool:
        return self._end[node]
