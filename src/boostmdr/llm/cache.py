"""The generation cache: every LLM output kept under a key that hashes everything that determines it.

:func:`cache_key` hashes the backend, the model's identity (a content fingerprint for a local model
directory, see :func:`boostmdr.llm.base.local_model_fingerprint`), the rendered prompt (template text and
every value in it, after any truncation), temperature, top-p, the maximum number of new tokens, the
seed and, for a structured-output request, its constraint (absent from the payload otherwise, so the keys
of unconstrained generations are those of earlier releases). A rerun (another candidate depth, another fusion, another chunking) therefore generates only what it
has not seen, and any change that could change an output misses the cache. :class:`GenerationCache` stores
them, one file per job (see there).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

CACHE_KEY_VERSION = 1


class GenerationCache:
    """Generations kept as JSON lines, one file per job: a job appends to its own file only and reads the
    files of every job beside it, so it reuses what any of them generated while no file ever has two writers.

    Why one writer per file: a SLURM cluster's results directory is a network file system, on which SQLite's
    locking cannot be trusted and two processes appending to one file can interleave. Here each judge (or
    generator) job owns ``path``; its siblings (every ``*.jsonl`` in the same directory) are only read.

    Each line is ``{"key", "text", "prompt_tokens", "generated_tokens", "backend", "model", "created"}``.
    :meth:`put_many` appends and flushes to disk (``fsync``), so a job killed at any moment loses nothing
    that finished; a line cut short by the kill, or a sibling's line still being written when it was read,
    is not valid JSON and is skipped (the generation is simply made again). Reading needs no lock.

    The files of one directory are read once, when the cache is opened: generations that a job running at
    the same time adds later are not seen by this one (at worst, both make the same generation).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._rows: dict[str, tuple[str, int, int]] = {}
        self.skipped_lines = 0
        self.files_read = 0
        for sibling in sorted(self.path.parent.glob("*.jsonl")):
            self._read(sibling)
        self._fh = open(self.path, "a+b")
        self._fh.seek(0, os.SEEK_END)
        if self._fh.tell():  # a line cut short by a kill: start a new line so the next record stands alone
            self._fh.seek(-1, os.SEEK_END)
            if self._fh.read(1) != b"\n":
                self._fh.write(b"\n")
                self._fh.flush()
        self._own = 0

    def _read(self, path: Path) -> None:
        try:
            fh = open(path, "rb")
        except FileNotFoundError:  # a sibling removed while we looked
            return
        skipped = 0
        with fh:
            self.files_read += 1
            for line in fh:
                try:
                    rec = json.loads(line)
                    key, text = rec["key"], rec["text"]
                except (ValueError, KeyError, TypeError):
                    skipped += line.strip() != b""
                    continue
                if isinstance(key, str) and isinstance(text, str):
                    self._rows[key] = (text, int(rec.get("prompt_tokens") or 0), int(rec.get("generated_tokens") or 0))
        if skipped:
            log.info("%s: skipped %d unreadable cache line(s) (cut short by a kill, or being written)", path, skipped)
        self.skipped_lines += skipped

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        """The texts of the keys that are cached."""
        return {k: self._rows[k][0] for k in keys if k in self._rows}

    def get_rows(self, keys: Iterable[str]) -> dict[str, tuple[str, int, int]]:
        """``{key: (text, prompt_tokens, generated_tokens)}`` of the keys that are cached: what each generation
        cost when it was made, so statistics count it also when a rerun takes it from the cache."""
        return {k: self._rows[k] for k in keys if k in self._rows}

    def put_many(self, rows: Sequence[tuple[str, str, int, int, str, str]]) -> None:
        """Append ``(key, text, prompt_tokens, generated_tokens, backend, model)`` rows and flush them to disk."""
        now = time.time()
        lines = []
        for key, text, prompt_tokens, generated_tokens, backend, model in rows:
            record = {
                "key": key, "text": text, "prompt_tokens": prompt_tokens, "generated_tokens": generated_tokens,
                "backend": backend, "model": model, "created": now,
            }
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
            self._rows[key] = (text, prompt_tokens, generated_tokens)
        self._fh.write("".join(lines).encode("utf-8"))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._own += len(lines)

    def __len__(self) -> int:
        """Distinct generations known to this cache (its own and its siblings')."""
        return len(self._rows)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


def cache_key(
    backend: str,
    model_fingerprint: str,
    prompt: str,
    top_p: float,
    temperature: float,
    max_tokens: int,
    seed: int,
    constraint: str | None = None,
) -> str:
    """Hash of everything that determines one generation (the rendered prompt carries the template text
    and every value placed in it; ``constraint`` is :meth:`boostmdr.llm.constraint.Constraint.key` of a
    structured-output request). The payload is versioned: a change to it bumps ``CACHE_KEY_VERSION``."""
    fields: dict[str, object] = {
        "v": CACHE_KEY_VERSION,
        "backend": backend,
        "model": model_fingerprint,
        "prompt": prompt,
        "top_p": top_p,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "seed": seed,
    }
    if constraint is not None:
        fields["constraint"] = constraint
    payload = json.dumps(fields, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
