"""Replicates of the synthetic benchmark: the method and its ablations against Naive Top-K, over seeds.

One run of the demo compares methods on one draw of the benchmark and one training seed, and differences of a
point or less are noise there (the dropout stream alone moves a row by 0.7). A replicate is the whole workflow
again with another benchmark seed (new corpus, queries, planted false negatives, tiny models trained on them) and
another training seed: replicate ``s`` uses ``benchmark.synthetic.seed = s`` and ``training.seed + (s - the
config's benchmark seed)``, so the replicate of the config's own seed is the main run and is read from
``results/``; every other one runs in ``results/replicates/seed-{s}/`` (rules/replicates.smk).

:func:`replicate_table` summarises each row over the replicates: the mean and sample standard deviation of its
Avg nDCG@10 and Avg R@100 (means over languages), of its difference to the baseline row in the same replicate
(paired by replicate), and in how many replicates it beat the baseline. The CSV keeps every replicate's value.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from boostmdr.tables import Table, TableError, TableRow, measure_label, write_table

log = logging.getLogger(__name__)

MEASURES = ("ndcg_cut_10", "recall_100")

Scores = Mapping[int, Mapping[str, Mapping[str, float]]]
"""``{seed: {variant: {measure: Avg over languages}}}``."""


def replicate_seed(seed: int, base_seed: int, base_training_seed: int) -> dict[str, int]:
    """The benchmark and training seeds of replicate ``seed``."""
    return {"benchmark": seed, "training": base_training_seed + (seed - base_seed)}


def mean_sd(values: Sequence[float]) -> str:
    """``mean ± sd`` in percent (one decimal); the sample standard deviation needs two values."""
    mean = 100 * math.fsum(values) / len(values)
    if len(values) < 2:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}"


def signed_mean_sd(values: Sequence[float]) -> str:
    text = mean_sd(values)
    return text if text.startswith("-") else f"+{text}"


def replicate_table(rows: Sequence[Mapping[str, str]], seeds: Sequence[int], scores: Scores, baseline: str,
                    title: str = "") -> Table:
    """Rows ``{variant, label}``; ``baseline`` is the variant every row is compared with (it must be a row)."""
    if len(seeds) < 1:
        raise TableError("replicates.seeds: give at least one seed")
    variants = [r["variant"] for r in rows]
    if baseline not in variants:
        raise TableError(f"replicates.baseline: {baseline!r} is not one of the rows ({', '.join(variants)})")
    for seed in seeds:
        for v in variants:
            for m in MEASURES:
                if m not in scores.get(seed, {}).get(v, {}):
                    raise TableError(f"replicate seed {seed}, row {v!r}: no {m} score")
    base_label = next(r["label"] for r in rows if r["variant"] == baseline)
    out = []
    for r in rows:
        v = r["variant"]
        ndcg = [scores[s][v]["ndcg_cut_10"] for s in seeds]
        recall = [scores[s][v]["recall_100"] for s in seeds]
        delta = [scores[s][v]["ndcg_cut_10"] - scores[s][baseline]["ndcg_cut_10"] for s in seeds]
        wins = sum(d > 0 for d in delta)
        cells = (mean_sd(ndcg), mean_sd(recall),
                 "" if v == baseline else signed_mean_sd(delta),
                 "" if v == baseline else f"{wins} of {len(seeds)}")
        extra = tuple(f"{100 * x:.2f}" for x in ndcg) + tuple(f"{100 * x:.2f}" for x in recall)
        out.append(TableRow(r["label"], cells, extra=extra))
    per_seed = tuple(f"{measure_label(m)} seed {s}" for m in MEASURES for s in seeds)
    notes = (
        f"Mean ± sample standard deviation over {len(seeds)} replicates (benchmark seeds {', '.join(map(str, seeds))}), "
        "each a new draw of the synthetic benchmark, its tiny models and a new training seed. "
        f"Δ: the row's Avg nDCG@10 minus {base_label}'s in the same replicate; wins: replicates where Δ > 0.",
    )
    return Table(title=title, columns=("Avg nDCG@10", "Avg R@100", f"Δ nDCG@10 vs {base_label}", "Wins"),
                 group=False, rows=tuple(out), extra_columns=per_seed, notes=notes)


def read_scores(paths: Mapping[int, Mapping[str, Mapping[str, str]]]) -> dict[int, dict[str, dict[str, float]]]:
    """``{seed: {variant: {lang: eval file}}}`` -> Avg over languages of each of :data:`MEASURES`."""
    from boostmdr.formats import read_eval

    scores: dict[int, dict[str, dict[str, float]]] = {}
    for seed, variants in paths.items():
        for variant, by_lang in variants.items():
            evals = [read_eval(p) for p in by_lang.values()]
            scores.setdefault(seed, {})[variant] = {
                m: math.fsum(e.aggregate[m] for e in evals) / len(evals) for m in MEASURES
            }
    return scores


def write_replicate_table(smk: Any) -> None:
    """``scripts/replicate_table.py``: params ``rows``, ``seeds``, ``baseline``, ``title``, ``eval_files``
    (``{seed: {variant: {lang: path}}}``); outputs md, csv, tex, html."""
    paths = {int(s): v for s, v in smk.params.eval_files.items()}
    table = replicate_table(smk.params.rows, list(smk.params.seeds), read_scores(paths), smk.params.baseline,
                            smk.params.title)
    write_table(table, [str(p) for p in smk.output])


def write_replicate_dir(directory: str, config: Mapping[str, Any]) -> str:
    """A replicate's working directory: ``replicate.yaml`` (its whole config) and ``config/`` linked to the
    caller's (the prompt templates and other files the config names by relative path); returns the config file."""
    import yaml

    from boostmdr.formats import atomic_write

    os.makedirs(directory, exist_ok=True)
    link = os.path.join(directory, "config")
    if not os.path.islink(link):
        os.symlink(os.path.abspath("config"), link)
    path = os.path.join(directory, "replicate.yaml")
    with atomic_write(path) as fh:
        yaml.safe_dump(dict(config), fh, sort_keys=False, allow_unicode=True)
    return path


def replicate_command(snakefile: str, directory: str, configfile: str, cores: int, targets: Sequence[str]) -> list[str]:
    """The nested run: the same workflow in ``directory`` with the replicate's config, resuming what a killed run
    left (``--rerun-incomplete``); the outer job owns the directory, so it takes no lock of its own."""
    return [sys.executable, "-m", "snakemake", "--snakefile", snakefile, "--directory", directory,
            "--configfile", os.path.abspath(configfile), "--cores", str(cores), "--rerun-incomplete",
            "--nolock", "--", *targets]


def run_replicate(smk: Any) -> None:
    """``scripts/replicate_run.py``: params ``dir``, ``config``; outputs the replicate's eval files (under ``dir``);
    the nested Snakemake's output goes to the rule's log."""
    directory = str(smk.params.dir)
    configfile = write_replicate_dir(directory, smk.params.config)
    snakefile = os.path.join(os.path.dirname(os.path.abspath(smk.scriptdir)), "Snakefile")
    targets = [os.path.relpath(str(p), directory) for p in smk.output]
    cmd = replicate_command(snakefile, directory, configfile, int(smk.threads), targets)
    with open(str(smk.log[0]), "w", encoding="utf-8") as log_fh:
        log_fh.write("$ " + " ".join(cmd) + "\n")
        log_fh.flush()
        proc = subprocess.run(cmd, stdout=log_fh, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"replicate in {directory} failed (exit {proc.returncode}); its Snakemake log: {smk.log[0]}")
