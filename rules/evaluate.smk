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
