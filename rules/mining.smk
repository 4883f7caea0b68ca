# The five hard-negative mining baselines (paper section 4.1, appendix B.3) on the mining retriever's candidates.


def get_miner_flags(wildcards):
    spec = config["miners"][wildcards.miner]
    flags = {
        "shifted_topk": f"--shift {spec.get('shift', 10)}",
        "topk_abs": f"--max-score {spec.get('max_score', 0.6)}",
        "topk_margin_pos": f"--margin {spec.get('margin', 0.15)}",
        "topk_perc_pos": f"--percentage {spec.get('percentage', 0.9)}",
    }
    return flags.get(spec["method"], "")


rule mine:
    input:
        candidates="results/candidates/{dense}/{lang}.trec",
        positives="results/candidates/{dense}/{lang}.positives.tsv",
        train=data("{lang}", "train.jsonl"),
    output:
        "results/negatives/miners/{dense}/{miner}/{lang}.jsonl",
    params:
        method=lambda wc: config["miners"][wc.miner]["method"],
        settings=get_miner_flags,
        num_negatives=config["mining"]["num_negatives"],
    log:
        "results/logs/mine/{dense}/{miner}/{lang}.log",
    benchmark:
        "results/benchmarks/mine/{dense}/{miner}/{lang}.tsv"
    shell:
        "python -m boostmdr.miners --method {params.method} {params.settings} --candidates {input.candidates}"
        " --positive-scores {input.positives} --train {input.train} --lang {wildcards.lang}"
        " --num-negatives {params.num_negatives} --out {output} --log {log}"
