"""Compute cost per stage and per variant from the rules' Snakemake benchmark files -> results/tables/cost.md.

Run by Snakemake (`script:`), with
    snakemake.input       the benchmark TSV files (results/benchmarks/<rule>/...)
    snakemake.params.stages     mapping rule name -> stage name (a rule missing from it is its own stage)
    snakemake.params.gpu_rules  mapping rule name -> GPUs one job of it holds (a plain list means 1 each)
    snakemake.params.variants   optional: the config's variant names (see "Variant" below)
    snakemake.output[0]   the markdown file

What is counted, per benchmark file (= one job):
    wall hours  the `s` column (wall-clock seconds of the job's command)
    CPU hours   the `cpu_time` column (user + system seconds of the job's processes)
    GPU hours   wall seconds x the GPUs the rule holds: a job holds its GPUs for its whole run, busy or not
A file with several rows (a `repeat()` benchmark) counts as one job with the mean of its rows. A `cpu_time`
of NA (a job too short to be sampled) counts as 0 CPU seconds and is reported in the table's notes.

Variant: benchmark paths follow results/benchmarks/<rule>/<backbone>/<variant>/<lang>[...].tsv. The variant
is the component two levels below the rule's directory when the path is at least that deep; when
`params.variants` is given, only a name in that list counts as a variant. A file without one (e.g. the tiny
models' results/benchmarks/tiny_encoder/<model>.tsv) is work shared by all variants and is listed as
"(shared)".
"""

import csv
import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping

SHARED = "(shared)"
log = logging.getLogger("cost_table")


@dataclass(frozen=True)
class JobCost:
    rule: str
    variant: str
    wall_s: float
    cpu_s: float
    gpu_s: float
    cpu_missing: bool


def parse_benchmark_path(path: str | Path, variants: Iterable[str] | None = None) -> tuple[str, str]:
    """Return (rule, variant) for a path under results/benchmarks/ (variant is SHARED when there is none)."""
    parts = PurePosixPath(Path(path).as_posix()).parts
    if "benchmarks" not in parts:
        raise ValueError(f"{path}: not a benchmark file (expected results/benchmarks/<rule>/...)")
    below = parts[parts.index("benchmarks") + 1 :]
    if len(below) < 2:
        raise ValueError(f"{path}: no rule directory below benchmarks/ (expected results/benchmarks/<rule>/...)")
    rule = below[0]
    # <rule>/<backbone>/<variant>/<lang or file>...: the variant needs at least one component after it.
    variant = below[2] if len(below) >= 4 else SHARED
    if variants is not None and variant not in set(variants):
        variant = SHARED
    return rule, variant


def read_benchmark(path: str | Path) -> tuple[float, float, bool]:
    """Mean wall seconds and mean CPU seconds over the rows of one benchmark TSV, and whether CPU was NA."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows or "s" not in rows[0] or "cpu_time" not in rows[0]:
        raise ValueError(f"{path}: not a Snakemake benchmark file (needs a header with columns 's' and 'cpu_time')")
    wall = [float(r["s"]) for r in rows]
    cpu, missing = [], False
    for r in rows:
        value = r["cpu_time"]
        if value in ("NA", "", "-") or math.isnan(float(value)):
            missing = True
            cpu.append(0.0)
        else:
            cpu.append(float(value))
    return sum(wall) / len(wall), sum(cpu) / len(cpu), missing


def normalize_gpu_rules(gpu_rules: Mapping[str, int] | Iterable[str] | None) -> dict[str, int]:
    if gpu_rules is None:
        return {}
    if isinstance(gpu_rules, Mapping):
        out = {}
        for rule, count in gpu_rules.items():
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise ValueError(f"gpu_rules[{rule!r}] must be a GPU count (integer >= 0), got {count!r}")
            out[str(rule)] = count
        return out
    return {str(rule): 1 for rule in gpu_rules}


def job_costs(
    paths: Iterable[str | Path],
    gpu_rules: Mapping[str, int] | Iterable[str] | None,
    variants: Iterable[str] | None = None,
) -> list[JobCost]:
    gpus = normalize_gpu_rules(gpu_rules)
    variants = list(variants) if variants is not None else None
    out = []
    for path in paths:
        rule, variant = parse_benchmark_path(path, variants)
        wall, cpu, missing = read_benchmark(path)
        out.append(JobCost(rule, variant, wall, cpu, wall * gpus.get(rule, 0), missing))
    return out


@dataclass
class Total:
    jobs: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    gpu_s: float = 0.0
    cpu_missing: int = 0

    def add(self, job: JobCost) -> None:
        self.jobs += 1
        self.wall_s += job.wall_s
        self.cpu_s += job.cpu_s
        self.gpu_s += job.gpu_s
        self.cpu_missing += job.cpu_missing


def aggregate(jobs: Iterable[JobCost], stages: Mapping[str, str]) -> tuple[dict, dict, Total]:
    """Totals per stage, per (stage, variant), and overall. Stage order: as in `stages`, then unmapped rules."""
    order = list(dict.fromkeys(stages.values()))
    per_stage: dict[str, Total] = defaultdict(Total)
    per_pair: dict[tuple[str, str], Total] = defaultdict(Total)
    total = Total()
    for job in jobs:
        stage = stages.get(job.rule, job.rule)
        per_stage[stage].add(job)
        per_pair[(stage, job.variant)].add(job)
        total.add(job)

    def stage_key(stage):
        return (order.index(stage), "") if stage in order else (len(order), stage)

    stage_sorted = {s: per_stage[s] for s in sorted(per_stage, key=stage_key)}
    pair_sorted = {
        k: per_pair[k] for k in sorted(per_pair, key=lambda k: (stage_key(k[0]), k[1] == SHARED, k[1]))
    }
    return stage_sorted, pair_sorted, total


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.4f}"


def render_markdown(stage_totals: Mapping[str, Total], pair_totals: Mapping[tuple, Total], total: Total) -> str:
    head = "| {} | Jobs | Wall h | CPU h | GPU h |"
    lines = ["# Compute cost", "", "Per stage:", "", head.format("Stage"), "|---|---:|---:|---:|---:|"]
    for stage, t in stage_totals.items():
        lines.append(f"| {stage} | {t.jobs} | {_hours(t.wall_s)} | {_hours(t.cpu_s)} | {_hours(t.gpu_s)} |")
    lines.append(
        f"| **Total** | {total.jobs} | {_hours(total.wall_s)} | {_hours(total.cpu_s)} | {_hours(total.gpu_s)} |"
    )
    lines += ["", "Per stage and variant:", "", "| Stage | Variant | Jobs | Wall h | CPU h | GPU h |"]
    lines.append("|---|---|---:|---:|---:|---:|")
    for (stage, variant), t in pair_totals.items():
        lines.append(
            f"| {stage} | {variant} | {t.jobs} | {_hours(t.wall_s)} | {_hours(t.cpu_s)} | {_hours(t.gpu_s)} |"
        )
    lines += [
        "",
        "Wall h: wall-clock hours of the jobs' commands. CPU h: user + system CPU hours they used. "
        "GPU h: wall hours x GPUs held (a held GPU counts whether busy or not). "
        f"{SHARED}: work shared by all variants.",
    ]
    if total.cpu_missing:
        lines.append(
            f"{total.cpu_missing} job(s) finished before Snakemake sampled their CPU time; they count as 0 CPU h."
        )
    return "\n".join(lines) + "\n"


def cost_table(
    paths: Iterable[str | Path],
    stages: Mapping[str, str],
    gpu_rules: Mapping[str, int] | Iterable[str] | None,
    variants: Iterable[str] | None = None,
) -> str:
    """The whole computation: benchmark files in, markdown out."""
    return render_markdown(*aggregate(job_costs(paths, gpu_rules, variants), stages))


def _main(smk) -> None:
    if smk.log:
        logging.basicConfig(filename=smk.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
    params = smk.params
    variants = getattr(params, "variants", None)
    text = cost_table(list(smk.input), dict(params.stages), params.gpu_rules, variants)
    Path(smk.output[0]).parent.mkdir(parents=True, exist_ok=True)
    Path(smk.output[0]).write_text(text)
    log.info("cost table from %d benchmark files -> %s", len(smk.input), smk.output[0])


if "snakemake" in globals():
    _main(snakemake)  # noqa: F821 (injected by Snakemake's script: directive)
