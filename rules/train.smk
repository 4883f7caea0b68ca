# Contrastive fine-tuning: one multilingual model per backbone and variant, trained on every language's negatives in
# the batches of the variant's manifest (rules/stage3.smk), whose negative weights enter the loss as the variant's
# batching.loss_weighting says.
# Resumable training state lives in results/state/ (outside the declared output, which Snakemake deletes before a
# job starts); a job killed at its time limit and started again resumes from the last save.


rule train:
    input:
        unpack(get_train_inputs),
    output:
        ensure(model_weights(model_dir("{backbone}", "{variant}")), non_empty=True),
    wildcard_constraints:
        backbone=DENSE_ALT,
    params:
        base=get_base_model,
        out=lambda wc, output: os.path.dirname(output[0]),
        state=lambda wc: train_state_dir(wc.backbone, wc.variant),
        encoder=get_encoder_flags,
        hp=get_train_params,
        corpus=get_corpus_flags,
        precision=PRECISION_FLAGS[config["training"]["mixed_precision"]],
        checkpointing="--gradient-checkpointing" if config["training"]["gradient_checkpointing"] else "",
    threads: get_threads("train")
    resources:
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
        gpu=res("train", "gpu"),
        # how often the resumable state is saved: it does not change the weights, so it is not a param (a change
        # must not retrain)
        save_steps=config["training"]["save_steps"],
    log:
        log_file("train", "{backbone}/{variant}"),
    benchmark:
        benchmark_file("train", "{backbone}/{variant}")
    conda:
        conda_env("gpu")
    shell:
        # One process per GPU under torchrun when the job holds several GPUs; plain python otherwise.
        'LAUNCH="python"; if [ {resources.gpu} -gt 1 ]; then LAUNCH="torchrun --standalone --nproc_per_node {resources.gpu}"; fi; '
        "$LAUNCH -m boostmdr.train --model {params.base} {params.encoder} --negatives {input.negatives}"
        " --corpus {params.corpus} --out {params.out} --state-dir {params.state}"
        " --lr {params.hp[lr]} --epochs {params.hp[epochs]} --batch-size {params.hp[batch_size]}"
        " --group-size {params.hp[group_size]} --similarity {params.hp[similarity]}"
        " --temperature {params.hp[temperature]} --warmup-ratio {params.hp[warmup_ratio]} --seed {params.hp[seed]}"
        " --sampler manifest --sampler-arg manifest={input.manifest} --loss-weighting {params.hp[loss_weighting]}"
        " --length-buckets {params.hp[length_buckets]}"
        " --save-steps {resources.save_steps} {params.precision} {params.checkpointing}"
        " --threads {threads} --log-file {log}"
