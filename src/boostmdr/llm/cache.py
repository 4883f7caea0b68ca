"""The generation cache: every LLM output kept under a key that hashes everything that determines it.

:func:`cache_key` hashes the backend, the model's identity (a content fingerprint for a local model
directory, see :func:`boostmdr.llm.base.local_model_fingerprint`), the rendered prompt (template text and
every value in it, after any truncation), temperature, top-p, the maximum number of new tokens and the
seed. A rerun (another candidate depth, another fusion, another chunking) therefore generates only what it
has not seen, and any change that could change an output misses the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

CACHE_KEY_VERSION = 1


class GenerationCache:
    """Raw generations in an SQLite file, keyed by :func:`cache_key`; safe for several processes on
    one machine (WAL journal, busy timeout). Each :meth:`put_many` commits at once."""

    def __init__(self, path: str | os.PathLike, busy_timeout_s: float = 120.0) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None)
        self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("%s: SQLite refused the WAL journal (got %s); concurrent judges will wait on locks", path, mode)
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS generations ("
            " key TEXT PRIMARY KEY, text TEXT NOT NULL, prompt_tokens INTEGER, generated_tokens INTEGER,"
            " backend TEXT, model TEXT, created REAL)"
        )

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        keys = list(dict.fromkeys(keys))
        out: dict[str, str] = {}
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            rows = self.conn.execute(
                f"SELECT key, text FROM generations WHERE key IN ({','.join('?' * len(part))})", part
            ).fetchall()
            out.update(rows)
        return out

    def put_many(self, rows: Sequence[tuple[str, str, int, int, str, str]]) -> None:
        """Insert ``(key, text, prompt_tokens, generated_tokens, backend, model)`` rows in one transaction."""
        now = time.time()
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany(
                "INSERT OR REPLACE INTO generations VALUES (?, ?, ?, ?, ?, ?, ?)", [(*r, now) for r in rows]
            )

    def __len__(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0]

    def close(self) -> None:
        self.conn.close()


def cache_key(
    backend: str, model_fingerprint: str, prompt: str, top_p: float, temperature: float, max_tokens: int, seed: int
) -> str:
    """Hash of everything that determines one generation (the rendered prompt carries the template text
    and every value placed in it). The payload is versioned: a change to it bumps ``CACHE_KEY_VERSION``."""
    payload = json.dumps(
        {
            "v": CACHE_KEY_VERSION,
            "backend": backend,
            "model": model_fingerprint,
            "prompt": prompt,
            "top_p": top_p,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "seed": seed,
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
