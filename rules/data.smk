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
        raw=lambda wc: shlex.quote(RAW),
        split=shlex.quote(EVAL_SPLIT),
        out=lambda wc, output: os.path.dirname(output.corpus),
    log:
        log_file("prepare", "{lang}"),
    benchmark:
        benchmark_file("prepare", "{lang}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.miracl prepare --raw-dir {params.raw} --lang {wildcards.lang}"
        " --eval-split {params.split} --out-dir {params.out} --log {log}"
