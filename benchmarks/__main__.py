"""`make bench`: run every benchmark module (benchmarks/bench_*.py) and print its side-by-side table.

Each module defines ``run() -> list[str]``: it measures ours and the reference in the same process, one
after the other on the same data, and returns the lines to print (including the ratio). Benchmarks are
never part of the test suite: these machines are shared and noisy, so only ratios measured together mean
anything. `python -m benchmarks NAME...` runs only the named ones (e.g. `encode bm25`).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_"))
    if argv:
        wanted = {f"bench_{a.removeprefix('bench_')}" for a in argv}
        unknown = wanted - set(names)
        if unknown:
            print(f"unknown benchmark(s) {sorted(unknown)}; available: {[n[6:] for n in names]}", file=sys.stderr)
            return 2
        names = [n for n in names if n in wanted]
    for name in names:
        mod = importlib.import_module(f"benchmarks.{name}")
        t0 = time.perf_counter()
        print(f"== {name[6:]} ==", flush=True)
        for line in mod.run():
            print(line, flush=True)
        print(f"   ({time.perf_counter() - t0:.0f} s)\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
