# Data: the raw MIRACL layout (real, or the synthetic benchmark of rules/demo.smk) prepared into per-language files.


rule prepare:
    input:
        unpack(get_raw_inputs),
    output:
        corpus=data("{lang}", "corpus.jsonl"),
        stats=data("{lang}", "stats.json"),
        train=data("{lang}", "train.jsonl"),
        train_topics=data("{lang}", "train.topics.tsv"),
        eval_topics=data("{lang}", "dev.topics.tsv"),
        eval_qrels=data("{lang}", "dev.qrels.tsv"),
    params:
        raw=RAW,
        split=EVAL_SPLIT,
    log:
        "results/logs/prepare/{lang}.log",
    benchmark:
        "results/benchmarks/prepare/{lang}.tsv"
    shell:
        "python -m boostmdr.miracl prepare --raw-dir {params.raw} --lang {wildcards.lang}"
        " --eval-split {params.split} --out-dir results/data/{wildcards.lang} --log {log}"
