"""``python -m benchmarks.gpu --out REPORT.json [--device cpu --tiny] [--only NAME ...]``.

Runs the registered checks in order (see :mod:`benchmarks.gpu`), prints a line per check as it ends and a
table at the end, and writes the JSON report after every check. Exit status: 0 when no check failed, 1
when one did, 2 on a usage error. Nothing heavy is imported before the arguments are parsed, so
``--help`` works without torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.gpu.core import (
    MIN_TRAIN_STEPS,
    REAL,
    TINY,
    Context,
    Row,
    all_checks,
    format_table,
    run_check,
    write_report,
)


def build_parser(names: Sequence[str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu",
        description="Every GPU code path of boostmdr and the encoder's speed against the chip's bf16 peak. "
        "Run from the source tree: PYTHONPATH=src python -m benchmarks.gpu --out gpu-check.json",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, help="JSON report (rewritten after every check)")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu needs --tiny")
    p.add_argument("--tiny", action="store_true", help="tiny shapes and few steps: the dry run of the test suite")
    p.add_argument("--only", nargs="+", choices=names, metavar="CHECK", help=f"run only these: {', '.join(names)}")
    p.add_argument("--skip", nargs="+", choices=names, default=[], metavar="CHECK", help="leave these out")
    p.add_argument(
        "--train-steps", type=int, default=None,
        help=f"steps per training run (default: {REAL.train_steps}; at least {MIN_TRAIN_STEPS})",
    )  # fmt: skip
    p.add_argument("--train-lr", type=float, default=None, help=f"learning rate of the training checks (default: {REAL.train_lr})")
    p.add_argument("--encode-passages", type=int, default=None, help="passages per encoding measurement "
                   f"(default: {REAL.encode_passages}; tiny: {TINY.encode_passages})")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="torch threads here and in the trainer (default: torch's)")
    p.add_argument("--workdir", default=None, help="models, data and runs (default: a temporary directory, removed)")
    p.add_argument("--keep-workdir", action="store_true", help="keep the working directory at the end")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    checks = all_checks()
    parser = build_parser(list(checks))
    args = parser.parse_args(argv)
    if args.device == "cpu" and not args.tiny:
        parser.error("--device cpu needs --tiny: the real shapes would take hours on a CPU")
    if args.train_steps is not None and args.train_steps < MIN_TRAIN_STEPS:
        parser.error(f"--train-steps must be >= {MIN_TRAIN_STEPS}: the loss of the first 50 steps is compared "
                     "with the loss of the last 50, and they must differ by 10 steps at least")  # fmt: skip
    selected = [c for name, c in checks.items() if (not args.only or name in args.only) and name not in args.skip]
    if not selected:
        parser.error("no check left to run")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here; for the dry run use --device cpu --tiny", file=sys.stderr)
        return 2

    from benchmarks.gpu.hardware import describe_device

    scale = TINY if args.tiny else REAL
    overrides = {"train_steps": args.train_steps, "train_lr": args.train_lr, "encode_passages": args.encode_passages}
    scale = dataclasses.replace(scale, **{k: v for k, v in overrides.items() if v is not None})
    made_workdir = args.workdir is None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="boostmdr-gpu-check-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = Context(args.device, args.tiny, scale, workdir, threads=args.threads, seed=args.seed)
    ctx.device_info = describe_device(args.device)
    out = Path(args.out).resolve()
    header = {
        "tool": "python -m benchmarks.gpu",
        "argv": list(sys.argv[1:] if argv is None else argv),
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": ctx.device_info,
        "tiny": args.tiny,
        "scale": dataclasses.asdict(scale),
        "checks": [c.name for c in selected],
    }
    print(f"GPU check on {ctx.device_info['name']} ({'tiny shapes' if args.tiny else 'real shapes'}), "
          f"{len(selected)} checks; working directory {workdir}", flush=True)  # fmt: skip
    rows: list[Row] = []
    t0 = time.perf_counter()
    try:
        for check in selected:
            print(f"-- {check.name}: {check.title}", flush=True)
            row = run_check(check, ctx)
            rows.append(row)
            print(f"   {row.status} in {row.seconds:.1f} s: {row.summary}", flush=True)
            for note in row.notes:
                print(f"   note: {note}", flush=True)
            if row.status == "failed" and row.error and "\n" in row.error:
                print("   " + row.error.replace("\n", "\n   "), flush=True)
            write_report(out, {**header, "total_seconds": round(time.perf_counter() - t0, 1)}, rows)
    finally:
        if made_workdir and not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    total = time.perf_counter() - t0
    print()
    print(format_table(rows))
    print(f"\n{sum(r.status == 'passed' for r in rows)} passed, {sum(r.status == 'failed' for r in rows)} failed, "
          f"{sum(r.status == 'skipped' for r in rows)} skipped in {total:.0f} s; report: {out}")  # fmt: skip
    return 1 if any(r.status == "failed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
