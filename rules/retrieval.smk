# Retrieval: BM25 through Pyserini's Lucene; dense retrieval as sharded corpus encoding (temporary embeddings),
# exact faiss inner-product search per shard and a merge of the shards' top-k lists.


rule bm25_index:
    input:
        data("{lang}", "corpus.jsonl"),
    output:
        directory("results/index/bm25/{lang}"),
    params:
        analyzer=lambda wc: bm25_analyzer(wc.lang),
    threads: get_threads("bm25_index")
    resources:
        mem_mb=res("bm25_index", "mem_mb"),
        runtime=res("bm25_index", "runtime"),
    log:
        "results/logs/bm25_index/{lang}.log",
    benchmark:
        "results/benchmarks/bm25_index/{lang}.tsv"
    shell:
        "python -m boostmdr.bm25 index --corpus {input} --language {params.analyzer} --index {output}"
        " --threads {threads} --log {log}"


rule bm25_search:
    input:
        index="results/index/bm25/{lang}",
        topics=data("{lang}", "dev.topics.tsv"),
    output:
        "results/runs/bm25/zeroshot/{lang}.trec",
    params:
        analyzer=lambda wc: bm25_analyzer(wc.lang),
        k1=config["bm25"]["k1"],
        b=config["bm25"]["b"],
        depth=config["retrieval"]["depth"],
    threads: get_threads("bm25_search")
    resources:
        mem_mb=res("bm25_search", "mem_mb"),
        runtime=res("bm25_search", "runtime"),
    log:
        "results/logs/bm25_search/{lang}.log",
    benchmark:
        "results/benchmarks/bm25_search/{lang}.tsv"
    shell:
        "python -m boostmdr.bm25 search --index {input.index} --topics {input.topics} --language {params.analyzer}"
        " --k1 {params.k1} --b {params.b} --depth {params.depth} --tag bm25 --out {output}"
        " --threads {threads} --log {log}"


use rule bm25_search as candidates_bm25 with:
    input:
        index="results/index/bm25/{lang}",
        topics=data("{lang}", "train.topics.tsv"),
    output:
        "results/candidates/bm25/{lang}.trec",
    params:
        analyzer=lambda wc: bm25_analyzer(wc.lang),
        k1=config["bm25"]["k1"],
        b=config["bm25"]["b"],
        depth=config["candidates"]["depth"],
    log:
        "results/logs/candidates_bm25/{lang}.log",
    benchmark:
        "results/benchmarks/candidates_bm25/{lang}.tsv"


rule encode_corpus:
    input:
        corpus=data("{lang}", "corpus.jsonl"),
        stats=data("{lang}", "stats.json"),
        model=get_model_inputs,
    output:
        temp("results/index/{dense}/{variant}/{lang}/shard-{shard}-of-{nshards}.npz"),
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
        "results/logs/encode_corpus/{dense}/{variant}/{lang}/shard-{shard}-of-{nshards}.log",
    benchmark:
        "results/benchmarks/encode_corpus/{dense}/{variant}/{lang}/shard-{shard}-of-{nshards}.tsv"
    shell:
        "python -m boostmdr.encode --model {params.model} {params.encoder} --corpus {input.corpus}"
        " --stats {input.stats} --shard {wildcards.shard} --num-shards {wildcards.nshards}"
        " --batch-size {params.batch_size} --out {output} --threads {threads} --log {log}"


rule search_dense:
    input:
        shards=get_shard_files,
        topics=data("{lang}", "dev.topics.tsv"),
        model=get_model_inputs,
    output:
        "results/runs/{dense}/{variant}/{lang}.trec",
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
        "results/logs/search_dense/{dense}/{variant}/{lang}.log",
    benchmark:
        "results/benchmarks/search_dense/{dense}/{variant}/{lang}.tsv"
    shell:
        "python -m boostmdr.search --model {params.model} {params.encoder} --topics {input.topics}"
        " --shards {input.shards} --depth {params.depth} --batch-size {params.batch_size}"
        " --tag {wildcards.dense}.{wildcards.variant} --out {output} --threads {threads} --log {log}"


def get_candidate_shards(wildcards):
    return shard_files(wildcards.dense, "zeroshot", wildcards.lang)


def get_candidate_model(wildcards):
    return model_inputs(wildcards.dense, "zeroshot")


rule candidates_dense:
    input:
        shards=get_candidate_shards,
        topics=data("{lang}", "train.topics.tsv"),
        train=data("{lang}", "train.jsonl"),
        model=get_candidate_model,
    output:
        run="results/candidates/{dense}/{lang}.trec",
        positives="results/candidates/{dense}/{lang}.positives.tsv",
    params:
        model=lambda wc: model_path(wc.dense, "zeroshot"),
        encoder=get_encoder_flags,
        depth=config["candidates"]["depth"],
        batch_size=config["retrieval"]["batch_size"],
    threads: get_threads("candidates_dense")
    resources:
        mem_mb=res("candidates_dense", "mem_mb"),
        runtime=res("candidates_dense", "runtime"),
        gpu=res("candidates_dense", "gpu"),
    log:
        "results/logs/candidates_dense/{dense}/{lang}.log",
    benchmark:
        "results/benchmarks/candidates_dense/{dense}/{lang}.tsv"
    shell:
        "python -m boostmdr.search --model {params.model} {params.encoder} --topics {input.topics}"
        " --shards {input.shards} --depth {params.depth} --batch-size {params.batch_size}"
        " --positives {input.train} --positive-scores-out {output.positives}"
        " --tag {wildcards.dense}.candidates --out {output.run} --threads {threads} --log {log}"
