# Tiny local models for the embedded default: built by ordinary rules and saved in the Hugging Face layout, so
# every later step loads them through the same from_pretrained path a real model takes.


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
        "results/logs/tiny_models/tokenizer.log",
    shell:
        "python -m boostmdr.tiny_models tokenizer --corpus {input} --vocab-size {params.vocab_size}"
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
        "results/logs/tiny_models/{tiny}.log",
    benchmark:
        "results/benchmarks/tiny_encoder/{tiny}.tsv"
    shell:
        "python -m boostmdr.tiny_models encoder --tokenizer results/models/tiny/tokenizer --corpus {input.corpora}"
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
        "results/logs/tiny_models/{tinylm}.log",
    benchmark:
        "results/benchmarks/tiny_lm/{tinylm}.tsv"
    shell:
        "python -m boostmdr.tiny_lm --corpus {input.corpora} --train {input.train} --prompt {input.prompt}"
        " --hidden {params.spec[hidden]} --layers {params.spec[layers]} --heads {params.spec[heads]}"
        " --intermediate {params.spec[intermediate]} --init {params.spec[init]} --seed {params.spec[seed]}"
        " --train-steps {params.spec[train_steps]}"
        " --batch-size {params.spec[batch_size]} --lr {params.spec[lr]}"
        " --out results/models/tiny/{wildcards.tinylm} --threads {threads} --log {log}"
