# Stage 1: hard negatives by selection. Each ensemble member ranks the corpus for every training query
# (rules candidates_dense / candidates_bm25), the member lists are fused into the top `depth` per query, an LLM
# judges every (query, reference positive, candidate) and the stage-1 pool keeps the candidates judged irrelevant.
# Rule fuse serves any query set: stage 2 fuses its generated queries' candidate runs with it too.


rule fuse:
    input:
        runs=get_fusion_runs,
        train=get_query_train,
    output:
        fused_run("{ensemble}", "{queries}", "{lang}"),
    params:
        fusion=get_fusion_params,
    log:
        log_file("fuse", "{ensemble}/{queries}/{lang}"),
    benchmark:
        benchmark_file("fuse", "{ensemble}/{queries}/{lang}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.fusion --runs {input.runs} --method {params.fusion[method]} --rrf-k {params.fusion[rrf_k]}"
        " --depth {params.fusion[depth]} --train {input.train} --tag fused.{wildcards.ensemble} --out {output} --log {log}"


rule judge:
    input:
        candidates=fused_run("{ensemble}", "train", "{lang}"),
        train=data("{lang}", "train.jsonl"),
        corpus=data("{lang}", "corpus.jsonl"),
        prompt=lambda wc: judge_spec(wc.judge)["prompt"],
        model=get_judge_model_inputs,
    output:
        verdict_file("{ensemble}", "{judge}", "{reference}", "{lang}", "{chunk}", "{nchunks}"),
    params:
        judge=get_judge_params,
        cache=get_judge_cache,
    wildcard_constraints:
        judge=SINGLE_JUDGE_ALT,
    threads: get_threads("judge")
    resources:
        mem_mb=res("judge", "mem_mb"),
        runtime=res("judge", "runtime"),
        gpu=res("judge", "gpu"),
        # where the model runs and how many requests at once: no change to a verdict, so not a param
        llm_run=get_judge_backend_flags,
    log:
        log_file("judge", "{ensemble}/{judge}/{reference}/{lang}/chunk-{chunk}-of-{nchunks}"),
    benchmark:
        benchmark_file("judge", "{ensemble}/{judge}/{reference}/{lang}/chunk-{chunk}-of-{nchunks}")
    conda:
        get_judge_env
    shell:
        "python -m boostmdr.judge verdicts --candidates {input.candidates} --train {input.train} --corpus {input.corpus}"
        " --lang {wildcards.lang} --chunk {wildcards.chunk} --num-chunks {wildcards.nchunks}"
        " {params.judge[llm]} {resources.llm_run}"
        " --prompt {input.prompt} --reference {wildcards.reference} --samples {params.judge[samples]}"
        " --max-new-tokens {params.judge[max_new_tokens]} {params.judge[max_passage_words]} --retries {params.judge[retries]} --seed {params.judge[seed]}"
        " {params.judge[mode]} {params.judge[structured]} {params.judge[fill]}"
        " --cache {params.cache} --out {output} --threads {threads} --log {log}"


# A cascade judge (judges.<name>.mode: cascade): its first judge's verdicts come from rule judge; its second judge
# judges only the queries they escalate (boostmdr.cascade); rule cascade merges both into the cascade's verdict files,
# which pool and judge_stats read like any judge's.
rule judge_escalated:
    input:
        candidates=fused_run("{ensemble}", "train", "{lang}"),
        train=data("{lang}", "train.jsonl"),
        corpus=data("{lang}", "corpus.jsonl"),
        prompt=get_second_judge_prompt,
        model=get_second_judge_model_inputs,
        first=get_escalated_first_verdicts,
    output:
        escalated_verdict_file("{ensemble}", "{judge}", "{reference}", "{lang}", "{chunk}", "{nchunks}"),
    params:
        judge=get_second_judge_params,
        cache=get_escalated_cache,
    wildcard_constraints:
        judge=CASCADE_ALT,
    threads: get_threads("judge")
    resources:
        mem_mb=res("judge", "mem_mb"),
        runtime=res("judge", "runtime"),
        gpu=res("judge", "gpu"),
        # where the model runs and how many requests at once: no change to an output, so not a param
        llm_run=get_second_judge_backend_flags,
    log:
        log_file("judge_escalated", "{ensemble}/{judge}/{reference}/{lang}/chunk-{chunk}-of-{nchunks}"),
    benchmark:
        benchmark_file("judge_escalated", "{ensemble}/{judge}/{reference}/{lang}/chunk-{chunk}-of-{nchunks}")
    conda:
        get_second_judge_env
    shell:
        "python -m boostmdr.judge verdicts --candidates {input.candidates} --train {input.train} --corpus {input.corpus}"
        " --lang {wildcards.lang} --chunk {wildcards.chunk} --num-chunks {wildcards.nchunks}"
        " {params.judge[llm]} {resources.llm_run}"
        " --prompt {input.prompt} --reference {wildcards.reference} --samples {params.judge[samples]}"
        " --max-new-tokens {params.judge[max_new_tokens]} {params.judge[max_passage_words]} --retries {params.judge[retries]} --seed {params.judge[seed]}"
        " {params.judge[mode]} {params.judge[structured]} --escalated-by {input.first}"
        " --cache {params.cache} --out {output} --threads {threads} --log {log}"


rule cascade:
    input:
        train=data("{lang}", "train.jsonl"),
        first=get_escalated_first_verdicts,
        second=escalated_verdict_file("{ensemble}", "{judge}", "{reference}", "{lang}", "{chunk}", "{nchunks}"),
    output:
        verdict_file("{ensemble}", "{judge}", "{reference}", "{lang}", "{chunk}", "{nchunks}"),
    params:
        names=get_cascade_names,
    wildcard_constraints:
        judge=CASCADE_ALT,
    log:
        log_file("cascade", "{ensemble}/{judge}/{reference}/{lang}/chunk-{chunk}-of-{nchunks}"),
    benchmark:
        benchmark_file("cascade", "{ensemble}/{judge}/{reference}/{lang}/chunk-{chunk}-of-{nchunks}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.judge cascade --train {input.train} --chunk {wildcards.chunk} --num-chunks {wildcards.nchunks}"
        " --first {input.first} --second {input.second} --first-name {params.names[first]}"
        " --second-name {params.names[second]} --out {output} --log {log}"


rule pool:
    input:
        verdicts=get_pool_verdicts,
        candidates=fused_run("{ensemble}", "train", "{lang}"),
        train=data("{lang}", "train.jsonl"),
    output:
        pool_file("{ensemble}", "{judge}", "{reference}", "{keep}", "{lang}"),
    params:
        flags=get_pool_flags,
    log:
        log_file("pool", "{ensemble}/{judge}/{reference}/keep-{keep}/{lang}"),
    benchmark:
        benchmark_file("pool", "{ensemble}/{judge}/{reference}/keep-{keep}/{lang}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.judge pool --verdicts {input.verdicts} --candidates {input.candidates}"
        " --train {input.train} --lang {wildcards.lang} {params.flags}"
        " --source stage1:{wildcards.ensemble} --out {output} --log {log}"


rule judge_stats:
    input:
        verdicts=get_stats_verdicts,
        truth=get_truth,
    output:
        judge_stats_file("{ensemble}", "{judge}", "{reference}", "{lang}"),
    params:
        truth=get_truth_flag,
    log:
        log_file("judge_stats", "{ensemble}/{judge}/{reference}/{lang}"),
    benchmark:
        benchmark_file("judge_stats", "{ensemble}/{judge}/{reference}/{lang}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.judge stats --verdicts {input.verdicts} {params.truth} --lang {wildcards.lang}"
        " --out {output} --log {log}"


rule elimination_table:
    input:
        get_stage1_stats_inputs,
    output:
        md=table_file("elimination", "md"),
        csv=table_file("elimination", "csv"),
        tex=table_file("elimination", "tex"),
        html=report(
            table_file("elimination", "html"),
            caption="../report/stats_table.rst",
            category="Stage 1",
            labels={"table": "elimination"},
        ),
    params:
        languages=LANGS,
        kind="elimination",
        subtitle=get_stage1_subtitle,
    log:
        log_file("elimination_table", "elimination"),
    localrule: True
    conda:
        conda_env("cpu")
    script:
        "../scripts/stats_table.py"


if SYNTHETIC:

    use rule elimination_table as judge_quality_table with:
        output:
            md=table_file("judge_quality", "md"),
            csv=table_file("judge_quality", "csv"),
            tex=table_file("judge_quality", "tex"),
            html=report(
                table_file("judge_quality", "html"),
                caption="../report/stats_table.rst",
                category="Stage 1",
                labels={"table": "judge_quality"},
            ),
        params:
            languages=LANGS,
            kind="judge_quality",
            subtitle=get_stage1_subtitle,
        log:
            log_file("judge_quality_table", "judge_quality"),
