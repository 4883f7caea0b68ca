# Evaluation with trec_eval's semantics (-c; nDCG@10 and Recall@100, every query kept), the results tables, and the
# compute-cost tables.


rule evaluate:
    input:
        run=run_file("{backbone}", "{variant}", "{lang}"),
        qrels=data("{lang}", "dev.qrels.tsv"),
    output:
        eval_file("{backbone}", "{variant}", "{lang}"),
    log:
        log_file("evaluate", "{backbone}/{variant}/{lang}"),
    benchmark:
        benchmark_file("evaluate", "{backbone}/{variant}/{lang}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.evaluate --qrels {input.qrels} --run {input.run} --out {output} --log {log}"


rule table:
    input:
        get_table_inputs,
    output:
        md=table_file("{table}", "md"),
        csv=table_file("{table}", "csv"),
        tex=table_file("{table}", "tex"),
    params:
        title=get_table_title,
        metric=get_table_metric,
        layout=get_table_layout,
        languages=LANGS,
        rows=get_table_rows,
    log:
        log_file("table", "{table}"),
    localrule: True
    conda:
        conda_env("cpu")
    script:
        "../scripts/make_table.py"


rule cost_table:
    # Run after the jobs whose cost you want: `snakemake results/tables/cost.md` (it reads the benchmark files
    # present when the DAG is built; it is not part of rule all, where it would always be out of date).
    input:
        get_benchmark_files,
    output:
        table_file("cost", "md"),
    params:
        patterns=get_benchmark_patterns,
        stages=get_rule_stages,
        gpu_rules=get_gpu_rules,
    log:
        log_file("cost_table", "cost"),
    localrule: True
    conda:
        conda_env("cpu")
    script:
        "../scripts/cost_table.py"
