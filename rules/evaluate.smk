# Evaluation with trec_eval's semantics (-c; nDCG@10, Recall@100 and MRR@10, every query kept), the results tables
# (with the paper's marks where the config asks for them), and the compute-cost tables. Every table is also written
# as HTML and marked for `snakemake --report` (captions in report/).


rule evaluate:
    input:
        run=run_file("{backbone}", "{variant}", "{lang}"),
        qrels=data("{lang}", "dev.qrels.tsv"),
    output:
        eval_file("{backbone}", "{variant}", "{lang}"),
    params:
        measures=" ".join(EVAL_MEASURES),
    log:
        log_file("evaluate", "{backbone}/{variant}/{lang}"),
    benchmark:
        benchmark_file("evaluate", "{backbone}/{variant}/{lang}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.evaluate --qrels {input.qrels} --run {input.run} --measures {params.measures}"
        " --out {output} --log {log}"


rule table:
    input:
        get_table_inputs,
    output:
        md=table_file("{table}", "md"),
        csv=table_file("{table}", "csv"),
        tex=table_file("{table}", "tex"),
        html=report(
            table_file("{table}", "html"),
            caption="../report/table.rst",
            category="Results tables",
            subcategory=get_table_section,
            labels=get_table_labels,
        ),
    params:
        title=get_table_title,
        layout=get_table_layout,
        metric=get_table_metric,
        languages=LANGS,
        rows=get_table_rows,
        topics=get_table_topics,
        row_files=get_table_row_files,
        averages=get_table_averages,
        significance=lambda wc: get_table_marks(wc)["significance"],
        highlight=lambda wc: get_table_marks(wc)["highlight"],
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
        md=table_file("cost", "md"),
        html=report(table_file("cost", "html"), caption="../report/cost.rst", category="Cost", labels={"table": "cost"}),
    params:
        patterns=get_benchmark_patterns,
        stages=get_rule_stages,
        gpu_rules=get_gpu_rules,
        constraints=get_global_wildcard_constraints,
    log:
        log_file("cost_table", "cost"),
    localrule: True
    conda:
        conda_env("cpu")
    script:
        "../scripts/cost_table.py"
