# The demo wing (boostmdr.demo): the synthetic benchmark in the raw MIRACL layout and the tiny local models that
# stand in for real ones. Included by the Snakefile only when the config uses the synthetic benchmark or a tiny
# model (a path under results/models/tiny/). Every tiny model is saved in the Hugging Face layout, so later steps
# load it through the same from_pretrained path a real model takes.

wildcard_constraints:
    tiny=_alt(TINY_ENCODERS),
    tinylm=_alt(TINY_LMS),


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
        "results/logs/synthetic_language/{lang}.log",
    benchmark:
        "results/benchmarks/synthetic_language/{lang}.tsv"
    shell:
        "python -m boostmdr.demo.synthetic --lang {wildcards.lang} --out-dir {params.raw} --seed {params.seed}"
        " --passages {params.passages} --train-queries {params.train_queries} --dev-queries {params.dev_queries}"
        " --false-negative-rate {params.fn_rate} --no-positive-rate {params.no_pos_rate} --corpus-shards {params.shards} --log {log}"


def _check_tiny_models():
    for backbone, spec in config["backbones"].items():
        model = spec["model"]
        if model.startswith("results/models/tiny/") and model.split("/")[3] not in TINY_ENCODERS:
            raise ConfigError(
                f"backbones.{backbone}.model: {model!r} is a tiny model path but "
                f"{model.split('/')[3]!r} is not in tiny_models.encoders ({TINY_ENCODERS})"
            )


_check_tiny_models()


def get_all_corpora(wildcards=None):
    return [data(lang, "corpus.jsonl") for lang in LANGS]


def get_tiny_encoder_params(wildcards):
    return config["tiny_models"]["encoders"][wildcards.tiny]


def get_tiny_encoder_flags(wildcards):
    """A tiny encoder is built with the encoder settings of the backbone(s) that use it, so its saved
    boostmdr_encoder.json agrees with how the workflow encodes with it."""
    path = f"results/models/tiny/{wildcards.tiny}"
    users = {b: encoder_settings(b) for b, spec in config["backbones"].items() if spec["model"] == path}
    distinct = {tuple(sorted(s.items())) for s in users.values()}
    if len(distinct) > 1:
        raise ConfigError(f"backbones {sorted(users)} share {path} but disagree on encoder settings; give each its own tiny model")
    return encoder_flags(next(iter(users.values()))) if users else ""


def get_tiny_lm_prompt(wildcards):
    """The prompt template of the judge(s) that use this tiny LM: it is fine-tuned on that prompt's format."""
    path = f"results/models/tiny/{wildcards.tinylm}"
    prompts = sorted({spec["prompt"] for spec in config["judges"].values() if spec["model"] == path})
    if len(prompts) > 1:
        raise ConfigError(f"judges using {path} have different prompts {prompts}; give each its own tiny LM")
    return prompts[0] if prompts else "config/prompts/judge.txt"


def get_tiny_lm_params(wildcards):
    return config["tiny_models"]["causal_lms"][wildcards.tinylm]


rule tiny_tokenizer:
    input:
        get_all_corpora,
    output:
        ensure("results/models/tiny/tokenizer/tokenizer.json", non_empty=True),
    params:
        vocab_size=config.get("tiny_models", {}).get("tokenizer", {}).get("vocab_size", 6000),
    log:
        "results/logs/tiny_tokenizer/tokenizer.log",
    benchmark:
        "results/benchmarks/tiny_tokenizer/tokenizer.tsv"
    shell:
        "python -m boostmdr.demo.tiny_models tokenizer --corpus {input} --vocab-size {params.vocab_size}"
        " --out results/models/tiny/tokenizer --log {log}"


rule tiny_encoder:
    input:
        tokenizer="results/models/tiny/tokenizer/tokenizer.json",
        corpora=get_all_corpora,
    output:
        ensure("results/models/tiny/{tiny}/model.safetensors", non_empty=True),
    params:
        spec=get_tiny_encoder_params,
        encoder=get_tiny_encoder_flags,
    threads: get_threads("tiny_encoder")
    resources:
        mem_mb=res("tiny_encoder", "mem_mb"),
        runtime=res("tiny_encoder", "runtime"),
        gpu=res("tiny_encoder", "gpu"),
    log:
        "results/logs/tiny_encoder/{tiny}.log",
    benchmark:
        "results/benchmarks/tiny_encoder/{tiny}.tsv"
    shell:
        "python -m boostmdr.demo.tiny_models encoder --tokenizer results/models/tiny/tokenizer --corpus {input.corpora}"
        " --hidden {params.spec[hidden]} --layers {params.spec[layers]} --heads {params.spec[heads]}"
        " --intermediate {params.spec[intermediate]} --seed {params.spec[seed]}"
        " --warmup-steps {params.spec[warmup_steps]} --batch-size {params.spec[batch_size]} --lr {params.spec[lr]}"
        " {params.encoder} --out results/models/tiny/{wildcards.tiny} --threads {threads} --log {log}"


rule tiny_lm:
    input:
        corpora=get_all_corpora,
        train=expand(data("{lang}", "train.jsonl"), lang=LANGS),
        prompt=get_tiny_lm_prompt,
    output:
        ensure("results/models/tiny/{tinylm}/model.safetensors", non_empty=True),
    params:
        spec=get_tiny_lm_params,
    threads: get_threads("tiny_lm")
    resources:
        mem_mb=res("tiny_lm", "mem_mb"),
        runtime=res("tiny_lm", "runtime"),
        gpu=res("tiny_lm", "gpu"),
    log:
        "results/logs/tiny_lm/{tinylm}.log",
    benchmark:
        "results/benchmarks/tiny_lm/{tinylm}.tsv"
    shell:
        "python -m boostmdr.demo.tiny_lm --corpus {input.corpora} --train {input.train} --prompt {input.prompt}"
        " --hidden {params.spec[hidden]} --layers {params.spec[layers]} --heads {params.spec[heads]}"
        " --intermediate {params.spec[intermediate]} --init {params.spec[init]} --seed {params.spec[seed]}"
        " --train-steps {params.spec[train_steps]}"
        " --batch-size {params.spec[batch_size]} --lr {params.spec[lr]}"
        " --out results/models/tiny/{wildcards.tinylm} --threads {threads} --log {log}"
