# Stage 3: effective mini-batches (paper Sec. 3.5). Every training query gets a topic from two fastText classifiers
# (rule topics), and every fine-tuned variant gets a batch manifest (rule batches): for every epoch and step, the
# queries of the global batch and the weight of each hard negative, which the trainer replays (rules/train.smk).
# A variant without stage 3 gets the shuffled batches the trainer made before manifests existed.


rule topics:
    input:
        train=data("{lang}", "train.jsonl"),
        corpus=data("{lang}", "corpus.jsonl"),
        models=get_topic_model_inputs,
    output:
        topic_file("{lang}"),
    params:
        topics=get_topic_params,
    log:
        log_file("topics", "{lang}"),
    benchmark:
        benchmark_file("topics", "{lang}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.topics --train {input.train} --corpus {input.corpus} --lang {wildcards.lang}"
        " --scheme {params.topics[scheme]} --text {params.topics[text]} --preprocessing {params.topics[preprocessing]}"
        " --out {output} --log {log}"


rule batches:
    input:
        unpack(get_batch_inputs),
    output:
        manifest=manifest_file("{variant}", "{epochs}"),
        stats=manifest_stats_file("{variant}", "{epochs}"),
    params:
        settings=get_batch_params,
        topics=get_batch_topic_flag,
    log:
        log_file("batches", "{variant}/epochs-{epochs}"),
    benchmark:
        benchmark_file("batches", "{variant}/epochs-{epochs}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.batching --negatives {input.negatives} {params.topics} {params.settings}"
        " --epochs {wildcards.epochs} --out {output.manifest} --stats {output.stats} --log {log}"
