# The five hard-negative mining baselines (paper section 4.1, appendix B.3) on the mining retriever's candidates, and
# the mixed miner of the mined-share sweep (a share mined, the rest drawn at random from the language's corpus).


rule mine:
    input:
        candidates=candidate_run("{backbone}", "train", "{lang}"),
        positives=positive_scores_file("{backbone}", "train", "{lang}"),
        train=data("{lang}", "train.jsonl"),
        corpus=get_mine_corpus,
    output:
        miner_negatives("{backbone}", "{miner}", "{lang}"),
    wildcard_constraints:
        backbone=DENSE_ALT,
    params:
        method=lambda wc: config["miners"][wc.miner]["method"],
        settings=get_miner_flags,
        num_negatives=config["mining"]["num_negatives"],
    log:
        log_file("mine", "{backbone}/{miner}/{lang}"),
    benchmark:
        benchmark_file("mine", "{backbone}/{miner}/{lang}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.miners --method {params.method} {params.settings} --candidates {input.candidates}"
        " --positive-scores {input.positives} --train {input.train} --lang {wildcards.lang}"
        " --num-negatives {params.num_negatives} --out {output} --log {log}"
