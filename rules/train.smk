# Contrastive fine-tuning: one multilingual model per backbone and variant, trained on every language's negatives.
# Resumable training state lives in results/state/ (outside the declared output, which Snakemake deletes before a
# job starts); a job killed at its time limit and started again resumes from the last save.


def get_train_inputs(wildcards):
    return {
        "negatives": [negatives_file(wildcards.variant, lang) for lang in LANGS],
        "corpora": [data(lang, "corpus.jsonl") for lang in LANGS],
        "model": model_inputs(wildcards.dense, "zeroshot"),
    }


def get_train_params(wildcards):
    """Everything that changes the trained weights (so Snakemake reruns training when any of it changes)."""
    spec = config["backbones"][wildcards.dense]
    t = config["training"]
    return {
        "lr": spec["learning_rate"],
        "epochs": spec["epochs"],
        "batch_size": t["batch_size"],
        "group_size": t["group_size"],
        "similarity": "cos" if spec["normalize"] else "dot",
        "temperature": t["temperature"] if spec["normalize"] else t["dot_temperature"],
        "warmup_ratio": t["warmup_ratio"],
        "seed": t["seed"],
        "batching": VARIANTS[wildcards.variant]["batching"],
    }


def get_corpus_flags(wildcards):
    return " ".join(f"{lang}={data(lang, 'corpus.jsonl')}" for lang in LANGS)


rule train:
    input:
        unpack(get_train_inputs),
    output:
        ensure("results/models/{dense}/{variant}/model.safetensors", non_empty=True),
    params:
        base=lambda wc: model_path(wc.dense, "zeroshot"),
        encoder=get_encoder_flags,
        hp=get_train_params,
        corpus=get_corpus_flags,
        save_steps=config["training"]["save_steps"],
        precision={"no": "", "fp16": "--fp16", "bf16": "--bf16"}[config["training"]["mixed_precision"]],
        checkpointing="--gradient-checkpointing" if config["training"]["gradient_checkpointing"] else "",
    threads: get_threads("train")
    resources:
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
        gpu=res("train", "gpu"),
    log:
        "results/logs/train/{dense}/{variant}.log",
    benchmark:
        "results/benchmarks/train/{dense}/{variant}.tsv"
    shell:
        # One process per GPU under torchrun when the job holds several GPUs; plain python otherwise.
        'LAUNCH="python"; if [ {resources.gpu} -gt 1 ]; then LAUNCH="torchrun --standalone --nproc_per_node {resources.gpu}"; fi; '
        "$LAUNCH -m boostmdr.train --model {params.base} {params.encoder} --negatives {input.negatives}"
        " --corpus {params.corpus} --out results/models/{wildcards.dense}/{wildcards.variant}"
        " --state-dir results/state/train/{wildcards.dense}/{wildcards.variant}"
        " --lr {params.hp[lr]} --epochs {params.hp[epochs]} --batch-size {params.hp[batch_size]}"
        " --group-size {params.hp[group_size]} --similarity {params.hp[similarity]}"
        " --temperature {params.hp[temperature]} --warmup-ratio {params.hp[warmup_ratio]} --seed {params.hp[seed]}"
        " --save-steps {params.save_steps} {params.precision} {params.checkpointing}"
        " --threads {threads} --log-file {log}"
