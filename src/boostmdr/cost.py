"""Compute cost of a workflow run, from the benchmark files Snakemake writes for every job that has one.

Every rule's ``benchmark:`` path mirrors its ``log:`` path (``results/benchmarks/<rule>/<wildcards>.tsv``
beside ``results/logs/<rule>/<wildcards>.log``). The workflow hands this module each rule's benchmark
pattern, so a file is attributed to its rule and its wildcards by matching, not by guessing from path
depth: the variant is the job's ``{variant}`` wildcard, and a job without one (data preparation, BM25,
candidate runs, the judge, tiny models) is work shared by every variant, listed as ``(shared)``.

Per job (one benchmark file; a file with several rows, a ``repeat()`` benchmark, counts as one job with
the mean of its rows):

* wall seconds: the ``s`` column (wall-clock time of the job's command);
* CPU seconds: the ``cpu_time`` column (user + system time of its processes); ``NA`` (a job too short to be
  sampled) counts as 0 and is reported in the notes;
* GPU seconds: wall seconds x the GPUs the rule holds (a held GPU counts whether busy or not).

:func:`cost_tables` aggregates per rule (jobs, seconds, seconds per job: where a run's time goes), per stage
(the rules file a rule is defined in) and per stage and variant, as :class:`boostmdr.tables.Table` objects
that :mod:`boostmdr.tables` renders like every other table.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from boostmdr.tables import Table, TableRow

log = logging.getLogger(__name__)

SHARED = "(shared)"
_WILDCARD = re.compile(r"\{\s*(\w+)\s*(?:,[^{}]*(?:\{[^{}]*\}[^{}]*)*)?\}")


@dataclass(frozen=True)
class JobCost:
    rule: str
    stage: str
    variant: str
    wall_s: float
    cpu_s: float
    gpu_s: float
    cpu_missing: bool


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


def pattern_regex(pattern: str, constraints: Mapping[str, str] | None = None) -> re.Pattern[str]:
    """A regex matching the paths of a Snakemake file pattern; each wildcard is a named group that matches
    what its constraint allows, as in Snakemake: the pattern's own (``{name,regex}``), else the workflow's
    global one in ``constraints`` (a query set, e.g., is ``train`` or a generated set's path with slashes),
    else one path component. A wildcard repeated in the pattern must repeat its value."""
    constraints = constraints or {}
    out, seen, pos = [], set(), 0
    for m in _WILDCARD.finditer(pattern):
        out.append(re.escape(pattern[pos : m.start()]))
        name, inline = m.group(1), m.group(0)[1:-1].partition(",")[2].strip()
        value = f"(?:{inline or constraints.get(name) or '[^/]+'})"
        out.append(f"(?P={name})" if name in seen else f"(?P<{name}>{value})")
        seen.add(name)
        pos = m.end()
    out.append(re.escape(pattern[pos:]))
    return re.compile("".join(out))


def attribute(
    path: str | os.PathLike, patterns: Mapping[str, str], constraints: Mapping[str, str] | None = None
) -> tuple[str, dict[str, str]]:
    """``(rule, wildcards)`` of a benchmark file, from the rules' benchmark patterns and the workflow's global
    wildcard constraints."""
    norm = os.path.normpath(str(path))
    for rule, pattern in patterns.items():
        m = pattern_regex(os.path.normpath(pattern), constraints).fullmatch(norm)
        if m:
            return rule, m.groupdict()
    raise ValueError(
        f"{path}: matches no rule's benchmark pattern ({len(patterns)} patterns); a benchmark file of a rule "
        "that no longer exists? Delete it or pass the rule's pattern"
    )


def read_benchmark(path: str | os.PathLike) -> tuple[float, float, bool]:
    """Mean wall seconds and mean CPU seconds over the rows of one benchmark TSV, and whether CPU was NA."""
    with open(path, newline="", encoding="utf-8") as fh:
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


def normalize_gpu_rules(gpu_rules: Mapping[str, int] | None) -> dict[str, int]:
    out = {}
    for rule, count in (gpu_rules or {}).items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ValueError(f"gpu_rules[{rule!r}] must be a GPU count (integer >= 0), got {count!r}")
        out[str(rule)] = count
    return out


def job_costs(
    paths: Iterable[str | os.PathLike],
    patterns: Mapping[str, str],
    stages: Mapping[str, str] | None = None,
    gpu_rules: Mapping[str, int] | None = None,
    constraints: Mapping[str, str] | None = None,
) -> list[JobCost]:
    """One :class:`JobCost` per benchmark file; a rule's stage is ``stages[rule]`` (default: the rule)."""
    gpus = normalize_gpu_rules(gpu_rules)
    stages = stages or {}
    out = []
    for path in paths:
        rule, wildcards = attribute(path, patterns, constraints)
        wall, cpu, missing = read_benchmark(path)
        variant = wildcards.get("variant", SHARED)
        out.append(JobCost(rule, stages.get(rule, rule), variant, wall, cpu, wall * gpus.get(rule, 0), missing))
    return out


def aggregate(jobs: Iterable[JobCost], stage_order: Iterable[str] = ()) -> tuple[dict, dict, dict, Total]:
    """Totals per rule, per stage, per (stage, variant) and overall; stages in ``stage_order`` first."""
    order = list(dict.fromkeys(stage_order))
    per_rule: dict[str, Total] = defaultdict(Total)
    per_stage: dict[str, Total] = defaultdict(Total)
    per_pair: dict[tuple[str, str], Total] = defaultdict(Total)
    total = Total()
    for job in jobs:
        per_rule[job.rule].add(job)
        per_stage[job.stage].add(job)
        per_pair[(job.stage, job.variant)].add(job)
        total.add(job)

    def stage_key(stage: str) -> tuple[int, str]:
        return (order.index(stage), "") if stage in order else (len(order), stage)

    rules = {r: per_rule[r] for r in sorted(per_rule, key=lambda r: (-per_rule[r].wall_s, r))}
    stages_sorted = {s: per_stage[s] for s in sorted(per_stage, key=stage_key)}
    pairs = {k: per_pair[k] for k in sorted(per_pair, key=lambda k: (stage_key(k[0]), k[1] == SHARED, k[1]))}
    return rules, stages_sorted, pairs, total


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.4f}"


def _cells(t: Total) -> tuple[str, ...]:
    return (str(t.jobs), _hours(t.wall_s), _hours(t.cpu_s), _hours(t.gpu_s))


def cost_tables(
    paths: Iterable[str | os.PathLike],
    patterns: Mapping[str, str],
    stages: Mapping[str, str] | None = None,
    gpu_rules: Mapping[str, int] | None = None,
    constraints: Mapping[str, str] | None = None,
) -> tuple[list[Table], list[str]]:
    """The cost tables (per rule, per stage, per stage and variant) and the notes under them."""
    stages = dict(stages or {})
    rules, per_stage, pairs, total = aggregate(job_costs(paths, patterns, stages, gpu_rules, constraints), stages.values())
    by_rule = Table(
        title="Where the time goes, per rule",
        columns=("Jobs", "Seconds in all", "Seconds per job", "CPU h", "GPU h"),
        group=False,
        label_header="Rule",
        rows=tuple(
            TableRow(rule, (str(t.jobs), f"{t.wall_s:.0f}", f"{t.wall_s / t.jobs:.1f}", _hours(t.cpu_s), _hours(t.gpu_s)))
            for rule, t in rules.items()
        ),
    )
    heads = ("Jobs", "Wall h", "CPU h", "GPU h")
    by_stage = Table(
        title="Per stage",
        columns=heads,
        group=False,
        label_header="Stage",
        rows=tuple(TableRow(stage, _cells(t)) for stage, t in per_stage.items()) + (TableRow("Total", _cells(total), strong=True),),
    )
    by_pair = Table(
        title="Per stage and variant",
        columns=heads,
        group=True,
        label_header="Variant",
        group_header="Stage",
        rows=tuple(TableRow(variant, _cells(t), group=stage) for (stage, variant), t in pairs.items()),
    )
    notes = [
        "Wall h: wall-clock hours of the jobs' commands. CPU h: user + system CPU hours they used. GPU h: wall "
        f"hours x GPUs held (a held GPU counts whether busy or not). {SHARED}: work shared by all variants.",
    ]
    if total.cpu_missing:
        notes.append(
            f"{total.cpu_missing} job(s) finished before Snakemake sampled their CPU time; they count as 0 CPU h."
        )
    return [by_rule, by_stage, by_pair], notes


def write_cost_table(smk) -> None:
    """Snakemake ``script:`` entry point (``scripts/cost_table.py``): params ``patterns`` (rule -> benchmark
    pattern), ``stages`` (rule -> stage), ``gpu_rules`` (rule -> GPUs), ``constraints`` (the global wildcard
    constraints); outputs the markdown file and, when the
    rule declares one, an HTML page of the same tables (``.html``, for the report)."""
    from boostmdr.formats import atomic_write
    from boostmdr.tables import html_page, html_table, to_markdown
    from boostmdr.utils import setup_logging

    setup_logging(smk.log[0] if smk.log else None)
    params = smk.params
    tables, notes = cost_tables(
        list(smk.input), dict(params.patterns), dict(params.stages), dict(params.gpu_rules), dict(params.constraints)
    )
    for out in smk.output:
        if str(out).endswith(".html"):
            import html

            body = ["<h1>Compute cost</h1>", *(html_table(t) for t in tables),
                    *(f'<p class="note">{html.escape(n)}</p>' for n in notes)]
            text = html_page("Compute cost", body)
        else:
            text = "# Compute cost\n\n" + "\n".join(to_markdown(t) for t in tables) + "\n" + "\n\n".join(notes) + "\n"
        with atomic_write(out) as fh:
            fh.write(text)
        log.info("cost tables from %d benchmark files -> %s", len(smk.input), Path(out))
