# Evaluation with trec_eval's semantics (-c; nDCG@10 and Recall@100, every query kept) and the results tables.


rule evaluate:
    input:
        run="results/runs/{backbone}/{variant}/{lang}.trec",
        qrels=data("{lang}", "dev.qrels.tsv"),
    output:
        "results/eval/{backbone}/{variant}/{lang}.json",
    log:
        "results/logs/evaluate/{backbone}/{variant}/{lang}.log",
    benchmark:
        "results/benchmarks/evaluate/{backbone}/{variant}/{lang}.tsv"
    shell:
        "python -m boostmdr.evaluate --qrels {input.qrels} --run {input.run} --out {output} --log {log}"


rule table:
    input:
        get_table_inputs,
    output:
        md="results/tables/{table}.md",
        csv="results/tables/{table}.csv",
        tex="results/tables/{table}.tex",
    params:
        title=lambda wc: get_table_params(wc)["title"],
        metric=lambda wc: get_table_params(wc)["metric"],
        languages=LANGS,
        rows=lambda wc: get_table_params(wc)["rows"],
    log:
        "results/logs/table/{table}.log",
    localrule: True
    script:
        "../scripts/make_table.py"


def get_benchmark_files(wildcards):
    """The benchmark files of every job that has run so far (the cost table reports what was spent)."""
    import glob

    return sorted(glob.glob("results/benchmarks/**/*.tsv", recursive=True))


def benchmark_patterns():
    """Each rule's benchmark pattern: the cost table attributes a benchmark file to its rule and wildcards."""
    return {r.name: str(r.benchmark) for r in workflow.rules if r.benchmark is not None}


def rule_stages():
    """Each rule's stage: the rules file it is defined in (rules/stage1.smk -> stage1)."""
    return {r.name: os.path.splitext(os.path.basename(str(r.snakefile)))[0] for r in workflow.rules}


def gpu_rules():
    return {r.name: res(r.name, "gpu") for r in workflow.rules if res(r.name, "gpu") > 0}


rule cost_table:
    # Run after the jobs whose cost you want: `snakemake results/tables/cost.md` (it reads the benchmark files
    # present when the DAG is built; it is not part of rule all, where it would always be out of date).
    input:
        get_benchmark_files,
    output:
        "results/tables/cost.md",
    params:
        patterns=lambda wc: benchmark_patterns(),
        stages=lambda wc: rule_stages(),
        gpu_rules=lambda wc: gpu_rules(),
    log:
        "results/logs/cost_table/cost.log",
    localrule: True
    script:
        "../scripts/cost_table.py"
