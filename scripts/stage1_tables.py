"""Stage-1 analysis tables, run by Snakemake's `script:` (rules/stage1.smk).

kind = elimination: the share of judged candidates the LLM judge removed per language (the last row of the
paper's Table 8), with the counts it is computed from. kind = judge_quality: on the synthetic benchmark, the
judge's precision and recall at removing the planted false negatives (analysis only; the method never reads
the planted truth). Columns: Avg, then one per language; percentages with one decimal.
"""


import json
import logging

from boostmdr.formats import atomic_write
from boostmdr.utils import setup_logging

ROWS = {
    "elimination": [
        ("Elimination (%)", lambda s: s["elimination_rate"], True),
        ("Judged candidates", lambda s: s["judged"], False),
        ("Removed", lambda s: s["removed"], False),
        ("No parsed verdict", lambda s: s["null_verdicts"], False),
    ],
    "judge_quality": [
        ("Planted false negatives among candidates (%)", lambda s: s["truth"]["false_negative_rate_among_candidates"], True),
        ("Precision (%)", lambda s: s["truth"]["precision"], True),
        ("Recall (%)", lambda s: s["truth"]["recall"], True),
        ("Accuracy (%)", lambda s: s["truth"]["accuracy"], True),
    ],
}


def fmt(value, percent: bool) -> str:
    if value is None:
        return "n/a"
    if percent:
        return f"{100 * value:.1f}"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"  # counts, and their mean


def build(stats: dict[str, dict], languages: list[str], kind: str, stage1: str) -> tuple[str, str]:
    header = ["", "Avg", *languages]
    lines_md = [f"**{kind.replace('_', ' ').capitalize()}** (stage-1 configuration {stage1})", "",
                "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines_csv = [",".join(["row", "Avg", *languages])]
    for label, get, percent in ROWS[kind]:
        values = [get(stats[lang]) for lang in languages]
        present = [v for v in values if v is not None]
        avg = sum(present) / len(present) if present else None
        cells = [fmt(avg, percent), *(fmt(v, percent) for v in values)]
        lines_md.append("| " + " | ".join([label, *cells]) + " |")
        lines_csv.append(",".join([f'"{label}"', *cells]))
    return "\n".join(lines_md) + "\n", "\n".join(lines_csv) + "\n"


def main(snakemake) -> None:  # pragma: no cover - run by Snakemake
    setup_logging(snakemake.log[0])
    languages = list(snakemake.params.languages)
    stats = {}
    for path in snakemake.input:
        with open(path, encoding="utf-8") as fh:
            s = json.load(fh)
        stats[s["lang"]] = s
    missing = [lang for lang in languages if lang not in stats]
    if missing:
        raise ValueError(f"no judge statistics for languages {missing} among {list(snakemake.input)}")
    md, csv = build(stats, languages, snakemake.params.kind, snakemake.params.stage1)
    with atomic_write(snakemake.output.md) as fh:
        fh.write(md)
    with atomic_write(snakemake.output.csv) as fh:
        fh.write(csv)
    logging.getLogger(__name__).info("wrote %s", snakemake.output.md)


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
