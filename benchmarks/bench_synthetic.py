"""Synthetic benchmark generation and MIRACL loading throughput.

Ours: ``boostmdr.demo.synthetic.generate`` for one language (Telugu: 3 UTF-8 bytes per character, the
heaviest text per word) at 200k and at 1M passages, 3000 train / 800 dev queries, false-negative rate
0.3, 8 corpus shards; then ``boostmdr.miracl.prepare`` on the 200k language (stream, validate, convert).
Reference: the floor for writing the same corpus, i.e. the 200k corpus lines, already in memory,
written again through ``formats.atomic_write`` with gzip level 1 (no generation at all). The ratio says
what generating costs on top of writing the bytes; the 1M/200k rate ratio shows the scaling is linear.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
import time
from pathlib import Path

from boostmdr.formats import atomic_write
from boostmdr.miracl import prepare
from boostmdr.demo.synthetic import generate

LANG = "te"
SIZES = (200_000, 1_000_000)
ARGS = dict(seed=1, train_queries=3000, dev_queries=800, false_negative_rate=0.3, corpus_shards=8)


def run() -> list[str]:
    out: list[str] = []
    rates: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-synthetic-") as tmp:
        root = Path(tmp)
        for n in SIZES:
            raw = root / f"raw{n}"
            t0 = time.perf_counter()
            generate(LANG, raw, passages=n, **ARGS)
            dt = time.perf_counter() - t0
            rates[n] = n / dt
            size = sum(p.stat().st_size for p in (raw / f"miracl-corpus-v1.0-{LANG}").iterdir())
            out.append(f"generate {n:>9,} passages: {dt:6.1f} s  {rates[n]:>9,.0f} passages/s  ({size / 1e6:.0f} MB gz)")
            if n != SIZES[0]:
                shutil.rmtree(raw)
        small = root / f"raw{SIZES[0]}"
        shards = sorted((small / f"miracl-corpus-v1.0-{LANG}").glob("docs-*.jsonl.gz"))
        lines = [gzip.open(s, "rb").read() for s in shards]
        t0 = time.perf_counter()
        with atomic_write(root / "floor.jsonl.gz", "wb", compresslevel=1) as fh:
            for block in lines:
                fh.write(block)
        floor = time.perf_counter() - t0
        out.append(f"reference: gzip-1 write of the same {SIZES[0]:,} lines: {floor:6.1f} s  "
                   f"{SIZES[0] / floor:>9,.0f} passages/s")
        out.append(f"ratio generate/write-floor ({SIZES[0]:,}): {SIZES[0] / rates[SIZES[0]] / floor:.2f}x the time")
        out.append(f"ratio rate 1M / rate 200k: {rates[SIZES[1]] / rates[SIZES[0]]:.2f} (1.0 = linear scaling)")
        t0 = time.perf_counter()
        prepare(small, LANG, root / "data")
        dt = time.perf_counter() - t0
        out.append(f"miracl prepare {SIZES[0]:,} passages: {dt:6.1f} s  {SIZES[0] / dt:>9,.0f} passages/s")
    return out
