# The demo wing (boostmdr.demo): the synthetic benchmark in the raw MIRACL layout and the tiny local models that
# stand in for real ones. Included by the Snakefile only when the config uses the synthetic benchmark or a tiny
# model (a path under results/models/tiny/). Every tiny model is saved in the Hugging Face layout, so later steps
# load it through the same from_pretrained path a real model takes. {tiny} names a tiny model: an encoder
# (tiny_models.encoders) or a causal LM (tiny_models.causal_lms: the judges, or stage 2's generator). The synthetic
# benchmark also writes the instruction set of stage 2's MIFT, in English and in every language. A tiny judge never
# trains on the judge evaluation's held-out queries (rules/judging.smk).


include: "demo_common.smk"


rule synthetic_language:
    output:
        train_topics=raw_topics("{lang}", "train"),
        train_qrels=raw_qrels("{lang}", "train"),
        eval_topics=raw_topics("{lang}", EVAL_SPLIT),
        eval_qrels=raw_qrels("{lang}", EVAL_SPLIT),
        corpus=directory(raw_corpus("{lang}")),
        truth=truth_file("{lang}"),
        topics=doc_topics_file("{lang}"),
    params:
        raw=lambda wc, output: shlex.quote(RAW),
        spec=get_synthetic_params,
        max_planted=get_max_planted,
    log:
        log_file("synthetic_language", "{lang}"),
    benchmark:
        benchmark_file("synthetic_language", "{lang}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.demo.synthetic --lang {wildcards.lang} --out-dir {params.raw} --seed {params.spec[seed]}"
        " --passages {params.spec[passages]} --train-queries {params.spec[train_queries]}"
        " --dev-queries {params.spec[dev_queries]} --false-negative-rate {params.spec[false_negative_rate]}"
        " --max-planted {params.max_planted} --no-positive-rate {params.spec[no_positive_rate]} --corpus-shards {params.spec[corpus_shards]} --log {log}"


rule synthetic_instructions:
    # The demo's instruction set for stage 2's MIFT, "translated" into one language (boostmdr.demo.instructions).
    output:
        synthetic_instructions_file("translated", "{lang}"),
    params:
        spec=get_synthetic_params,
    log:
        log_file("synthetic_instructions", "{lang}"),
    benchmark:
        benchmark_file("synthetic_instructions", "{lang}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.demo.instructions --lang {wildcards.lang} --seed {params.spec[seed]}"
        " --records {params.spec[instructions]} --out {output} --log {log}"


rule synthetic_instructions_source:
    # Its English source file, the one MIFT's selection reads.
    output:
        synthetic_instructions_file("source", "en"),
    params:
        spec=get_synthetic_params,
    log:
        log_file("synthetic_instructions_source", "en"),
    benchmark:
        benchmark_file("synthetic_instructions_source", "en")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.demo.instructions --lang en --seed {params.spec[seed]}"
        " --records {params.spec[instructions]} --out {output} --log {log}"


rule tiny_tokenizer:
    input:
        all_corpora(),
    output:
        ensure(f"{TOKENIZER}/tokenizer.json", non_empty=True),
    params:
        vocab_size=config.get("tiny_models", {}).get("tokenizer", {}).get("vocab_size", 6000),
        out=lambda wc, output: os.path.dirname(output[0]),
    log:
        log_file("tiny_tokenizer", "tokenizer"),
    benchmark:
        benchmark_file("tiny_tokenizer", "tokenizer")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.demo.tiny_models tokenizer --corpus {input} --vocab-size {params.vocab_size}"
        " --out {params.out} --log {log}"


rule tiny_encoder:
    input:
        tokenizer=f"{TOKENIZER}/tokenizer.json",
        corpora=all_corpora(),
    output:
        ensure(model_weights(tiny_model_dir("{tiny}")), non_empty=True),
    wildcard_constraints:
        tiny=_alt(TINY_ENCODERS),
    params:
        spec=get_tiny_encoder_params,
        encoder=get_tiny_encoder_flags,
        tokenizer=lambda wc, input: os.path.dirname(input.tokenizer),
        out=lambda wc, output: os.path.dirname(output[0]),
    threads: get_threads("tiny_encoder")
    resources:
        mem_mb=res("tiny_encoder", "mem_mb"),
        runtime=res("tiny_encoder", "runtime"),
        gpu=res("tiny_encoder", "gpu"),
    log:
        log_file("tiny_encoder", "{tiny}"),
    benchmark:
        benchmark_file("tiny_encoder", "{tiny}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.demo.tiny_models encoder --tokenizer {params.tokenizer} --corpus {input.corpora}"
        " --hidden {params.spec[hidden]} --layers {params.spec[layers]} --heads {params.spec[heads]}"
        " --intermediate {params.spec[intermediate]} --seed {params.spec[seed]}"
        " --warmup-steps {params.spec[warmup_steps]} --batch-size {params.spec[batch_size]} --lr {params.spec[lr]}"
        " --dropout {params.spec[dropout]} {params.encoder} --out {params.out} --threads {threads} --log {log}"


rule tiny_lm:
    input:
        unpack(get_tiny_lm_inputs),
    output:
        ensure(model_weights(tiny_model_dir("{tiny}")), non_empty=True),
    wildcard_constraints:
        tiny=_alt(TINY_LMS),
    params:
        spec=get_tiny_lm_params,
        flags=get_tiny_lm_flags,
        out=lambda wc, output: os.path.dirname(output[0]),
    threads: get_threads("tiny_lm")
    resources:
        mem_mb=res("tiny_lm", "mem_mb"),
        runtime=res("tiny_lm", "runtime"),
        gpu=res("tiny_lm", "gpu"),
    log:
        log_file("tiny_lm", "{tiny}"),
    benchmark:
        benchmark_file("tiny_lm", "{tiny}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.demo.tiny_lm --task {params.spec[task]} {params.flags}"
        " --hidden {params.spec[hidden]} --layers {params.spec[layers]} --heads {params.spec[heads]}"
        " --intermediate {params.spec[intermediate]} --init {params.spec[init]} --seed {params.spec[seed]}"
        " --train-steps {params.spec[train_steps]} --batch-size {params.spec[batch_size]} --lr {params.spec[lr]}"
        " --verdict-weight {params.spec[verdict_weight]} --out {params.out} --threads {threads} --log {log}"


rule tiny_fasttext:
    # Stand-ins for fastText's official topic classifiers, trained on the synthetic passages' labels (never on the
    # planted truth); the report holds the accuracy on held-out articles.
    input:
        doc_topics=[doc_topics_file(lang) for lang in LANGS],
        corpora=all_corpora(),
    output:
        model=ensure(tiny_fasttext_file("{classifier}", "bin"), non_empty=True),
        report=tiny_fasttext_file("{classifier}", "json"),
    wildcard_constraints:
        classifier=_alt(TINY_FASTTEXT),
    params:
        spec=get_tiny_fasttext_params,
        doc_topics=get_doc_topics_flags,
        corpus=get_corpus_flags,
    log:
        log_file("tiny_fasttext", "{classifier}"),
    benchmark:
        benchmark_file("tiny_fasttext", "{classifier}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.demo.topic_classifiers --doc-topics {params.doc_topics} --corpus {params.corpus}"
        " --column {params.spec[column]} --labels {params.spec[labels]} --dim {params.spec[dim]}"
        " --epoch {params.spec[epoch]} --lr {params.spec[lr]} --word-ngrams {params.spec[word_ngrams]}"
        " --bucket {params.spec[bucket]} --holdout {params.spec[holdout]} --seed {params.spec[seed]}"
        " --out {output.model} --report {output.report} --log {log}"
