# Data: the raw MIRACL layout (generated here for the synthetic benchmark) prepared into per-language files.


if SYNTHETIC:

    rule synthetic_language:
        output:
            train_topics=raw_topics("{lang}", "train"),
            train_qrels=raw_qrels("{lang}", "train"),
            eval_topics=raw_topics("{lang}", EVAL_SPLIT),
            eval_qrels=raw_qrels("{lang}", EVAL_SPLIT),
            corpus=directory(raw_corpus("{lang}")),
            truth=f"{RAW}/synthetic-truth/{{lang}}.train.complete-qrels.tsv",
            topics=f"{RAW}/synthetic-truth/{{lang}}.doc-topics.tsv",
        params:
            raw=RAW,
            seed=config["benchmark"]["synthetic"]["seed"],
            passages=config["benchmark"]["synthetic"]["passages"],
            train_queries=config["benchmark"]["synthetic"]["train_queries"],
            dev_queries=config["benchmark"]["synthetic"]["dev_queries"],
            fn_rate=config["benchmark"]["synthetic"]["false_negative_rate"],
            no_pos_rate=config["benchmark"]["synthetic"]["no_positive_rate"],
            shards=config["benchmark"]["synthetic"]["corpus_shards"],
        log:
            "results/logs/synthetic/{lang}.log",
        shell:
            "python -m boostmdr.synthetic --lang {wildcards.lang} --out-dir {params.raw} --seed {params.seed}"
            " --passages {params.passages} --train-queries {params.train_queries} --dev-queries {params.dev_queries}"
            " --false-negative-rate {params.fn_rate} --no-positive-rate {params.no_pos_rate} --corpus-shards {params.shards} --log {log}"


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
