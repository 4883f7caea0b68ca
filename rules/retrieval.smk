# Retrieval: BM25 through Pyserini's Lucene; dense retrieval as sharded corpus encoding (temporary embeddings),
# exact faiss inner-product search per shard and a merge of the shards' top-k lists. The same rules rank the
# queries of a query set with every backbone (zero-shot): the training queries ({queries} = train), as
# candidates for the miners and for stage 1, and stage 2's generated queries (query_sets() in common.smk).


rule bm25_index:
    input:
        data("{lang}", "corpus.jsonl"),
    output:
        directory(bm25_index_dir("{lang}")),
    params:
        analyzer=lambda wc: shlex.quote(bm25_analyzer(wc.lang)),
    threads: get_threads("bm25_index")
    resources:
        mem_mb=res("bm25_index", "mem_mb"),
        runtime=res("bm25_index", "runtime"),
    log:
        log_file("bm25_index", "{lang}"),
    benchmark:
        benchmark_file("bm25_index", "{lang}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.bm25 index --corpus {input} --language {params.analyzer} --index {output}"
        " --threads {threads} --log {log}"


rule bm25_search:
    input:
        index=bm25_index_dir("{lang}"),
        topics=data("{lang}", "dev.topics.tsv"),
    output:
        run_file("bm25", "zeroshot", "{lang}"),
    params:
        analyzer=lambda wc: shlex.quote(bm25_analyzer(wc.lang)),
        k1=config["bm25"]["k1"],
        b=config["bm25"]["b"],
        depth=config["retrieval"]["depth"],
    threads: get_threads("bm25_search")
    resources:
        mem_mb=res("bm25_search", "mem_mb"),
        runtime=res("bm25_search", "runtime"),
    log:
        log_file("bm25_search", "{lang}"),
    benchmark:
        benchmark_file("bm25_search", "{lang}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.bm25 search --index {input.index} --topics {input.topics} --language {params.analyzer}"
        " --k1 {params.k1} --b {params.b} --depth {params.depth} --tag bm25 --out {output}"
        " --threads {threads} --log {log}"


use rule bm25_search as candidates_bm25 with:
    input:
        index=bm25_index_dir("{lang}"),
        topics=get_query_topics,
    output:
        candidate_run("bm25", "{queries}", "{lang}"),
    params:
        analyzer=lambda wc: shlex.quote(bm25_analyzer(wc.lang)),
        k1=config["bm25"]["k1"],
        b=config["bm25"]["b"],
        depth=config["candidates"]["depth"],
    log:
        log_file("candidates_bm25", "{queries}/{lang}"),
    benchmark:
        benchmark_file("candidates_bm25", "{queries}/{lang}")


rule encode_corpus:
    input:
        corpus=data("{lang}", "corpus.jsonl"),
        stats=data("{lang}", "stats.json"),
        model=get_model_inputs,
    output:
        temp(shard_file("{backbone}", "{variant}", "{lang}", "{shard}", "{nshards}")),
    wildcard_constraints:
        backbone=DENSE_ALT,
    params:
        model=get_model_path,
        encoder=get_encoder_flags,
        batch_size=config["retrieval"]["batch_size"],
    threads: get_threads("encode_corpus")
    resources:
        mem_mb=res("encode_corpus", "mem_mb"),
        runtime=res("encode_corpus", "runtime"),
        gpu=res("encode_corpus", "gpu"),
    log:
        log_file("encode_corpus", "{backbone}/{variant}/{lang}/shard-{shard}-of-{nshards}"),
    benchmark:
        benchmark_file("encode_corpus", "{backbone}/{variant}/{lang}/shard-{shard}-of-{nshards}")
    conda:
        conda_env("gpu")
    shell:
        "python -m boostmdr.encode --model {params.model} {params.encoder} --corpus {input.corpus}"
        " --stats {input.stats} --shard {wildcards.shard} --num-shards {wildcards.nshards}"
        " --batch-size {params.batch_size} --out {output} --threads {threads} --log {log}"


# The zero-shot index of a candidate retriever is kept: its candidates of the training queries, the evaluation run
# and, later, stage 2's candidates of generated queries all read it, and a temp index rebuilt for a late reader
# would make every earlier reader, and all that follows from the miners to the trainings, run again. Fine-tuned
# models' indexes have one reader (search_dense) and stay temporary.
use rule encode_corpus as encode_corpus_kept with:
    output:
        shard_file("{backbone}", "{variant}", "{lang}", "{shard}", "{nshards}"),
    wildcard_constraints:
        backbone=_alt(CANDIDATE_RETRIEVERS),
        variant="zeroshot",
    log:
        log_file("encode_corpus_kept", "{backbone}/{variant}/{lang}/shard-{shard}-of-{nshards}"),
    benchmark:
        benchmark_file("encode_corpus_kept", "{backbone}/{variant}/{lang}/shard-{shard}-of-{nshards}")


ruleorder: encode_corpus_kept > encode_corpus


rule search_dense:
    input:
        shards=get_shard_files,
        topics=data("{lang}", "dev.topics.tsv"),
        model=get_model_inputs,
    output:
        run_file("{backbone}", "{variant}", "{lang}"),
    wildcard_constraints:
        backbone=DENSE_ALT,
    params:
        model=get_model_path,
        encoder=get_encoder_flags,
        depth=config["retrieval"]["depth"],
        batch_size=config["retrieval"]["batch_size"],
    threads: get_threads("search_dense")
    resources:
        mem_mb=res("search_dense", "mem_mb"),
        runtime=res("search_dense", "runtime"),
        gpu=res("search_dense", "gpu"),
    log:
        log_file("search_dense", "{backbone}/{variant}/{lang}"),
    benchmark:
        benchmark_file("search_dense", "{backbone}/{variant}/{lang}")
    conda:
        conda_env("gpu")
    shell:
        "python -m boostmdr.search --model {params.model} {params.encoder} --topics {input.topics}"
        " --shards {input.shards} --depth {params.depth} --batch-size {params.batch_size}"
        " --tag {wildcards.backbone}.{wildcards.variant} --out {output} --threads {threads} --log {log}"


# A fine-tuned model's index has one reader, the search above. Where a language's corpus is one shard
# (corpus_shards), the encoding and the search are one job (python -m boostmdr.search --corpus): the work of
# encode_corpus + search_dense without a second start-up and without the index file, on the encoder's resources.
# retrieval.unsharded_jobs cuts these jobs: `language`, one per model and language (a cluster runs the languages side
# by side); `model`, one per model for all its one-shard languages (one start-up and one model load: small corpora),
# zero-shot models included; candidates_dense_unsharded (below) then ranks the training and generated queries the
# same way, so no index of a one-shard language is written in that mode (each reader encodes the corpus again:
# identical vectors, and cheaper than a job's start-up at that size). A sharded language, and in `language` mode
# every zero-shot index (kept, or read by several rules), keeps the two rules.
if UNSHARDED_JOBS == "model" and UNSHARDED_LANGS:

    rule search_dense_unsharded:
        input:
            corpus=[data(lang, "corpus.jsonl") for lang in UNSHARDED_LANGS],
            stats=[data(lang, "stats.json") for lang in UNSHARDED_LANGS],
            topics=[data(lang, "dev.topics.tsv") for lang in UNSHARDED_LANGS],
            model=get_model_inputs,
        output:
            [run_file("{backbone}", "{variant}", lang) for lang in UNSHARDED_LANGS],
        wildcard_constraints:
            backbone=DENSE_ALT,
        params:
            model=get_model_path,
            encoder=get_encoder_flags,
            depth=config["retrieval"]["depth"],
            batch_size=config["retrieval"]["batch_size"],
        threads: get_threads("encode_corpus")
        resources:
            mem_mb=res("encode_corpus", "mem_mb"),
            runtime=res("encode_corpus", "runtime"),
            gpu=res("encode_corpus", "gpu"),
        log:
            log_file("search_dense_unsharded", "{backbone}/{variant}"),
        benchmark:
            benchmark_file("search_dense_unsharded", "{backbone}/{variant}")
        conda:
            conda_env("gpu")
        shell:
            "python -m boostmdr.search --model {params.model} {params.encoder} --topics {input.topics}"
            " --corpus {input.corpus} --stats {input.stats} --depth {params.depth} --batch-size {params.batch_size}"
            " --tag {wildcards.backbone}.{wildcards.variant} --out {output} --threads {threads} --log {log}"

else:

    rule search_dense_unsharded:
        input:
            corpus=data("{lang}", "corpus.jsonl"),
            stats=data("{lang}", "stats.json"),
            topics=data("{lang}", "dev.topics.tsv"),
            model=get_model_inputs,
        output:
            run_file("{backbone}", "{variant}", "{lang}"),
        wildcard_constraints:
            backbone=DENSE_ALT,
            variant=_alt(FINETUNED_VARIANTS),
            lang=_alt(UNSHARDED_LANGS),
        params:
            model=get_model_path,
            encoder=get_encoder_flags,
            depth=config["retrieval"]["depth"],
            batch_size=config["retrieval"]["batch_size"],
        threads: get_threads("encode_corpus")
        resources:
            mem_mb=res("encode_corpus", "mem_mb"),
            runtime=res("encode_corpus", "runtime"),
            gpu=res("encode_corpus", "gpu"),
        log:
            log_file("search_dense_unsharded", "{backbone}/{variant}/{lang}"),
        benchmark:
            benchmark_file("search_dense_unsharded", "{backbone}/{variant}/{lang}")
        conda:
            conda_env("gpu")
        shell:
            "python -m boostmdr.search --model {params.model} {params.encoder} --topics {input.topics}"
            " --corpus {input.corpus} --stats {input.stats} --depth {params.depth} --batch-size {params.batch_size}"
            " --tag {wildcards.backbone}.{wildcards.variant} --out {output} --threads {threads} --log {log}"


ruleorder: search_dense_unsharded > search_dense


rule candidates_dense:
    input:
        shards=get_shard_files,
        topics=get_query_topics,
        train=get_query_train,
        model=get_model_inputs,
    output:
        run=candidate_run("{backbone}", "{queries}", "{lang}"),
        positives=positive_scores_file("{backbone}", "{queries}", "{lang}"),
    wildcard_constraints:
        backbone=DENSE_ALT,
    params:
        model=get_model_path,
        encoder=get_encoder_flags,
        depth=config["candidates"]["depth"],
        batch_size=config["retrieval"]["batch_size"],
    threads: get_threads("candidates_dense")
    resources:
        mem_mb=res("candidates_dense", "mem_mb"),
        runtime=res("candidates_dense", "runtime"),
        gpu=res("candidates_dense", "gpu"),
    log:
        log_file("candidates_dense", "{backbone}/{queries}/{lang}"),
    benchmark:
        benchmark_file("candidates_dense", "{backbone}/{queries}/{lang}")
    conda:
        conda_env("gpu")
    shell:
        "python -m boostmdr.search --model {params.model} {params.encoder} --topics {input.topics}"
        " --shards {input.shards} --depth {params.depth} --batch-size {params.batch_size}"
        " --positives {input.train} --positive-scores-out {output.positives}"
        " --tag {wildcards.backbone}.candidates --out {output.run} --threads {threads} --log {log}"


# retrieval.unsharded_jobs: model also ranks a query set's queries in every one-shard language with one job per
# candidate retriever, each corpus encoded in memory (no index is kept for it: identical vectors, re-encoded where
# read); a sharded language keeps candidates_dense over the kept index.
if UNSHARDED_JOBS == "model" and UNSHARDED_LANGS:

    rule candidates_dense_unsharded:
        input:
            corpus=[data(lang, "corpus.jsonl") for lang in UNSHARDED_LANGS],
            stats=[data(lang, "stats.json") for lang in UNSHARDED_LANGS],
            topics=lambda wc: [query_topics(wc.queries, lang) for lang in UNSHARDED_LANGS],
            train=lambda wc: [query_train(wc.queries, lang) for lang in UNSHARDED_LANGS],
            model=get_model_inputs,
        output:
            run=[candidate_run("{backbone}", "{queries}", lang) for lang in UNSHARDED_LANGS],
            positives=[positive_scores_file("{backbone}", "{queries}", lang) for lang in UNSHARDED_LANGS],
        wildcard_constraints:
            backbone=DENSE_ALT,
        params:
            model=get_model_path,
            encoder=get_encoder_flags,
            depth=config["candidates"]["depth"],
            batch_size=config["retrieval"]["batch_size"],
        threads: get_threads("candidates_dense")
        resources:
            mem_mb=res("candidates_dense", "mem_mb"),
            runtime=res("candidates_dense", "runtime"),
            gpu=res("candidates_dense", "gpu"),
        log:
            log_file("candidates_dense_unsharded", "{backbone}/{queries}"),
        benchmark:
            benchmark_file("candidates_dense_unsharded", "{backbone}/{queries}")
        conda:
            conda_env("gpu")
        shell:
            "python -m boostmdr.search --model {params.model} {params.encoder} --topics {input.topics}"
            " --corpus {input.corpus} --stats {input.stats} --depth {params.depth} --batch-size {params.batch_size}"
            " --positives {input.train} --positive-scores-out {output.positives}"
            " --tag {wildcards.backbone}.candidates --out {output.run} --threads {threads} --log {log}"

    ruleorder: candidates_dense_unsharded > candidates_dense

