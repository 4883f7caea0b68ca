# Stage 1: hard negatives by selection. Each ensemble member ranks the corpus for every training query
# (rules candidates_dense / candidates_bm25), the member lists are fused into the top `depth` per query, an LLM
# judges every (query, reference positive, candidate) and the stage-1 pool keeps the candidates judged irrelevant.


def get_fusion_runs(wildcards):
    return [f"results/candidates/{m}/{wildcards.lang}.trec" for m in config["ensembles"][wildcards.ensemble]["members"]]


def get_fusion_params(wildcards):
    spec = config["ensembles"][wildcards.ensemble]
    return {"method": spec["fusion"], "rrf_k": spec["rrf_k"], "depth": spec["depth"]}


rule fuse:
    input:
        runs=get_fusion_runs,
        train=data("{lang}", "train.jsonl"),
    output:
        "results/stage1/fused/{ensemble}/{lang}.trec",
    params:
        fusion=get_fusion_params,
    log:
        "results/logs/fuse/{ensemble}/{lang}.log",
    benchmark:
        "results/benchmarks/fuse/{ensemble}/{lang}.tsv"
    shell:
        "python -m boostmdr.fusion --runs {input.runs} --method {params.fusion[method]} --rrf-k {params.fusion[rrf_k]}"
        " --depth {params.fusion[depth]} --train {input.train} --tag fused.{wildcards.ensemble} --out {output} --log {log}"


def judge_spec(name):
    return config["judges"][name]


def get_judge_model_inputs(wildcards):
    model = judge_spec(wildcards.judge)["model"]
    return [f"{model}/model.safetensors"] if model.startswith("results/models/") else []


def get_judge_params(wildcards):
    """Everything that determines a verdict (the verdict cache is keyed on the same things)."""
    spec = judge_spec(wildcards.judge)
    return {
        "llm": llm_result_flags(spec),
        "samples": ",".join(f"{p}:{t}" for p, t in spec["samples"]),
        "max_new_tokens": spec["max_new_tokens"],
        "max_passage_words": f"--max-passage-words {spec['max_passage_words']}" if spec["max_passage_words"] else "",
        "retries": spec["retries"],
        "seed": spec["seed"],
    }


def get_judge_backend_flags(wildcards):
    """Backend options that do not change verdicts (where the model runs, how many requests at once)."""
    return llm_run_flags(judge_spec(wildcards.judge))


rule judge:
    input:
        candidates="results/stage1/fused/{ensemble}/{lang}.trec",
        train=data("{lang}", "train.jsonl"),
        corpus=data("{lang}", "corpus.jsonl"),
        prompt=lambda wc: judge_spec(wc.judge)["prompt"],
        model=get_judge_model_inputs,
    output:
        "results/stage1/verdicts/{ensemble}/{judge}/{reference}/{lang}/chunk-{chunk}-of-{nchunks}.jsonl",
    params:
        judge=get_judge_params,
        backend_flags=get_judge_backend_flags,
    threads: get_threads("judge")
    resources:
        mem_mb=res("judge", "mem_mb"),
        runtime=res("judge", "runtime"),
        gpu=res("judge", "gpu"),
    log:
        "results/logs/judge/{ensemble}/{judge}/{reference}/{lang}/chunk-{chunk}-of-{nchunks}.log",
    benchmark:
        "results/benchmarks/judge/{ensemble}/{judge}/{reference}/{lang}/chunk-{chunk}-of-{nchunks}.tsv"
    shell:
        "python -m boostmdr.judge verdicts --candidates {input.candidates} --train {input.train} --corpus {input.corpus}"
        " --lang {wildcards.lang} --chunk {wildcards.chunk} --num-chunks {wildcards.nchunks}"
        " {params.judge[llm]} {params.backend_flags}"
        " --prompt {input.prompt} --reference {wildcards.reference} --samples {params.judge[samples]}"
        " --max-new-tokens {params.judge[max_new_tokens]} {params.judge[max_passage_words]} --retries {params.judge[retries]} --seed {params.judge[seed]}"
        " --cache results/cache/judge-{wildcards.judge}.sqlite --out {output} --threads {threads} --log {log}"


def verdict_files(ensemble, judge, reference, lang):
    n = judge_spec(judge)["chunks"]
    return [
        f"results/stage1/verdicts/{ensemble}/{judge}/{reference}/{lang}/chunk-{i}-of-{n}.jsonl" for i in range(n)
    ]


def get_pool_verdicts(wildcards):
    if wildcards.judge == "none":
        return []
    return verdict_files(wildcards.ensemble, wildcards.judge, wildcards.reference, wildcards.lang)


def get_pool_flags(wildcards):
    if wildcards.judge == "none":
        return "--no-judge"
    return "--keep " + wildcards.keep.replace("-", ",")


rule pool:
    input:
        verdicts=get_pool_verdicts,
        candidates="results/stage1/fused/{ensemble}/{lang}.trec",
        train=data("{lang}", "train.jsonl"),
    output:
        "results/stage1/pool/{ensemble}/{judge}/{reference}/keep-{keep}/{lang}.jsonl",
    params:
        flags=get_pool_flags,
    log:
        "results/logs/pool/{ensemble}/{judge}/{reference}/keep-{keep}/{lang}.log",
    benchmark:
        "results/benchmarks/pool/{ensemble}/{judge}/{reference}/keep-{keep}/{lang}.tsv"
    shell:
        "python -m boostmdr.judge pool --verdicts {input.verdicts} --candidates {input.candidates}"
        " --train {input.train} --lang {wildcards.lang} {params.flags}"
        " --source stage1:{wildcards.ensemble} --out {output} --log {log}"


def get_truth(wildcards):
    return [f"{RAW}/synthetic-truth/{wildcards.lang}.train.complete-qrels.tsv"] if SYNTHETIC else []


rule judge_stats:
    input:
        verdicts=lambda wc: verdict_files(wc.ensemble, wc.judge, wc.reference, wc.lang),
        truth=get_truth,
    output:
        "results/stage1/stats/{ensemble}/{judge}/{reference}/{lang}.json",
    params:
        truth=lambda wc, input: f"--truth {input.truth}" if input.truth else "",
    log:
        "results/logs/judge_stats/{ensemble}/{judge}/{reference}/{lang}.log",
    benchmark:
        "results/benchmarks/judge_stats/{ensemble}/{judge}/{reference}/{lang}.tsv"
    shell:
        "python -m boostmdr.judge stats --verdicts {input.verdicts} {params.truth} --lang {wildcards.lang}"
        " --out {output} --log {log}"


def main_stage1():
    """The stage-1 configuration of the full method (variant 'full'): the one Table 8 describes."""
    neg = VARIANTS["full"]["negatives"]
    return neg["ensemble"], neg["judge"], neg["reference"]


def get_stage1_stats_inputs(wildcards):
    ensemble, judge, reference = main_stage1()
    return [f"results/stage1/stats/{ensemble}/{judge}/{reference}/{lang}.json" for lang in LANGS]


rule elimination_table:
    input:
        get_stage1_stats_inputs,
    output:
        md="results/tables/elimination.md",
        csv="results/tables/elimination.csv",
        tex="results/tables/elimination.tex",
    params:
        languages=LANGS,
        kind="elimination",
        subtitle=lambda wc: "stage-1 configuration " + "/".join(main_stage1()),
    log:
        "results/logs/elimination_table/elimination.log",
    localrule: True
    script:
        "../scripts/stats_table.py"


if SYNTHETIC:

    use rule elimination_table as judge_quality_table with:
        output:
            md="results/tables/judge_quality.md",
            csv="results/tables/judge_quality.csv",
            tex="results/tables/judge_quality.tex",
        params:
            languages=LANGS,
            kind="judge_quality",
            subtitle=lambda wc: "stage-1 configuration " + "/".join(main_stage1()),
        log:
            "results/logs/judge_quality_table/judge_quality.log",
