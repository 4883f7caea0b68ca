# Evaluation with trec_eval's semantics (-c; nDCG@10 and Recall@100, every query kept) and the results tables.


rule evaluate:
    input:
        run="results/runs/{backbone}/{variant}/{lang}.trec",
        qrels=data("{lang}", "dev.qrels.tsv"),
    output:
        "results/eval/{backbone}/{variant}/{lang}.json",
    log:
        "results/logs/evaluate/{backbone}/{variant}/{lang}.log",
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
        "results/logs/tables/{table}.log",
    localrule: True
    script:
        "../scripts/make_table.py"


STAGE_OF_RULE = {
    "synthetic_language": "data",
    "prepare": "data",
    "tiny_tokenizer": "tiny models",
    "tiny_encoder": "tiny models",
    "tiny_lm": "tiny models",
    "bm25_index": "retrieval",
    "bm25_search": "retrieval",
    "candidates_bm25": "stage 1 / miners: candidates",
    "candidates_dense": "stage 1 / miners: candidates",
    "encode_corpus": "retrieval",
    "search_dense": "retrieval",
    "judge": "stage 1: judge",
    "train": "training",
}


def get_benchmark_files(wildcards):
    """The benchmark files of every job that has run so far (the cost table reports what was spent)."""
    import glob

    return sorted(glob.glob("results/benchmarks/**/*.tsv", recursive=True))


def get_gpu_rules():
    return {rule: res(rule, "gpu") for rule in STAGE_OF_RULE if res(rule, "gpu") > 0}


rule cost_table:
    # Run after the jobs whose cost you want: `snakemake results/tables/cost.md` (it reads the benchmark files
    # present when the DAG is built; it is not part of rule all, where it would always be out of date).
    input:
        get_benchmark_files,
    output:
        "results/tables/cost.md",
    params:
        stages=STAGE_OF_RULE,
        gpu_rules=get_gpu_rules(),
        variants=list(VARIANTS),
    log:
        "results/logs/tables/cost.log",
    localrule: True
    script:
        "../scripts/cost_table.py"
