# Stage 2: hard negatives by generation (paper Sec. 3.4). MIFT: each generator's English instructions are selected,
# translated into every language and learnt by a LoRA adapter (mift_select, mift_translate, mift_train, mift_merge).
# PDBG: for the training queries whose stage-1 pool holds fewer than N negatives, the generator summarises a positive
# and writes a new query from the summary (generate). The generated queries are ranked and fused by the stage-1
# rules (candidates_dense, candidates_bm25, fuse with {queries} = the generated set), their new candidates mapped
# back to the training query (stage2_candidates) and judged by the stage-1 judge against the original query
# (judge_generated: in rank order, only until the query's pool would be full, the verdicts the top-up reads), and
# every pool is topped up to exactly N (topup; topup_stage1_only for "w/o stage 2").
# Analysis: the round-trip check, Table 8, the stage-2 statistics and, on the synthetic benchmark, the planted false
# negatives among generated negatives with and without the judge.


rule mift_select:
    input:
        get_mift_instructions,
    output:
        selected=mift_file("{generator}", "selected.jsonl"),
        stats=mift_file("{generator}", "selected.stats.json"),
    params:
        select=get_mift_select_params,
    log:
        log_file("mift_select", "{generator}"),
    benchmark:
        benchmark_file("mift_select", "{generator}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.mift select --instructions {input} --mode {params.select[mode]}"
        " --max-samples {params.select[max_samples]} --languages {params.select[languages]}"
        " --out {output.selected} --stats {output.stats} --log {log}"


rule mift_translate:
    input:
        unpack(get_translation_inputs),
        records=mift_file("{generator}", "selected.jsonl"),
    output:
        out=mift_file("{generator}", "instructions/{lang}.jsonl"),
        stats=mift_file("{generator}", "instructions/{lang}.stats.json"),
    params:
        flags=get_translation_flags,
    threads: get_threads("mift_translate")
    resources:
        mem_mb=res("mift_translate", "mem_mb"),
        runtime=res("mift_translate", "runtime"),
        gpu=res("mift_translate", "gpu"),
    log:
        log_file("mift_translate", "{generator}/{lang}"),
    benchmark:
        benchmark_file("mift_translate", "{generator}/{lang}")
    conda:
        get_translation_env
    shell:
        "python -m boostmdr.translate {params.flags} --records {input.records} --lang {wildcards.lang}"
        " --out {output.out} --stats {output.stats} --threads {threads} --log {log}"


rule mift_train:
    input:
        unpack(get_mift_train_inputs),
    output:
        ensure(adapter_weights(adapter_dir("{generator}")), non_empty=True),
    params:
        model=lambda wc: shlex.quote(generator_spec(wc.generator)["model"]),
        out=lambda wc, output: os.path.dirname(output[0]),
        state=lambda wc: mift_state_dir(wc.generator),
        hp=get_mift_train_params,
        save_steps=lambda wc: generator_spec(wc.generator)["mift"]["train"]["save_steps"],
    threads: get_threads("mift_train")
    resources:
        mem_mb=res("mift_train", "mem_mb"),
        runtime=res("mift_train", "runtime"),
        gpu=res("mift_train", "gpu"),
    log:
        log_file("mift_train", "{generator}"),
    benchmark:
        benchmark_file("mift_train", "{generator}")
    conda:
        conda_env("gpu")
    shell:
        # One process per GPU under torchrun when the job holds several GPUs (DeepSpeed ZeRO-3); plain python otherwise.
        'LAUNCH="python"; if [ {resources.gpu} -gt 1 ]; then LAUNCH="torchrun --standalone --nproc_per_node {resources.gpu}"; fi; '
        "$LAUNCH -m boostmdr.mift train --model {params.model} --data {input.data} --out {params.out}"
        " --state-dir {params.state} {params.hp} --save-steps {params.save_steps} --no-progress"
        " --threads {threads} --log {log}"


rule mift_merge:
    input:
        adapter=adapter_weights(adapter_dir("{generator}")),
    output:
        merged_marker(merged_dir("{generator}")),
    params:
        model=lambda wc: shlex.quote(generator_spec(wc.generator)["model"]),
        adapter=lambda wc, input: os.path.dirname(input.adapter),
        out=lambda wc, output: os.path.dirname(output[0]),
        dtype=lambda wc: generator_spec(wc.generator)["mift"]["merge_dtype"],
    threads: get_threads("mift_merge")
    resources:
        mem_mb=res("mift_merge", "mem_mb"),
        runtime=res("mift_merge", "runtime"),
    log:
        log_file("mift_merge", "{generator}"),
    benchmark:
        benchmark_file("mift_merge", "{generator}")
    conda:
        conda_env("gpu")
    shell:
        "python -m boostmdr.mift merge --model {params.model} --adapter {params.adapter} --out {params.out}"
        " --dtype {params.dtype} --threads {threads} --log {log}"


rule generate:
    input:
        pool=pool_file("{ensemble}", "{judge}", "{reference}", "{keep}", "{lang}"),
        train=data("{lang}", "train.jsonl"),
        corpus=data("{lang}", "corpus.jsonl"),
        prompts=get_generator_prompts,
        model=get_generator_model_inputs,
    output:
        queries=generated_file(GSET, "{lang}", "queries.jsonl"),
        topics=generated_file(GSET, "{lang}", "topics.tsv"),
        train=generated_file(GSET, "{lang}", "train.jsonl"),
        stats=generated_file(GSET, "{lang}", "stats.json"),
    params:
        llm=get_generate_params,
        cache=get_generation_cache,
    threads: get_threads("generate")
    resources:
        mem_mb=res("generate", "mem_mb"),
        runtime=res("generate", "runtime"),
        gpu=res("generate", "gpu"),
        # where the model runs and how many requests at once: no change to an output, so not a param
        llm_run=get_generator_backend_flags,
    log:
        log_file("generate", "{ensemble}/{judge}/{reference}/keep-{keep}/n{size}/{generator}/{mode}/{lang}"),
    benchmark:
        benchmark_file("generate", "{ensemble}/{judge}/{reference}/keep-{keep}/n{size}/{generator}/{mode}/{lang}")
    conda:
        get_generator_env
    shell:
        "python -m boostmdr.generate --pool {input.pool} --train {input.train} --corpus {input.corpus}"
        " --lang {wildcards.lang} --pool-size {wildcards.size} {params.llm} {resources.llm_run}"
        " --cache {params.cache} --out {output.queries} --topics {output.topics} --queries-train {output.train}"
        " --stats {output.stats} --threads {threads} --log {log}"


rule stage2_candidates:
    input:
        generated=generated_file(GSET, "{lang}", "queries.jsonl"),
        fused=get_generated_fused,
        stage1=fused_run("{ensemble}", "train", "{lang}"),
        train=data("{lang}", "train.jsonl"),
    output:
        run=stage2_candidates_file(GSET, "{lang}", "trec"),
        provenance=stage2_candidates_file(GSET, "{lang}", "provenance.jsonl"),
    log:
        log_file("stage2_candidates", "{ensemble}/{judge}/{reference}/keep-{keep}/n{size}/{generator}/{mode}/{lang}"),
    benchmark:
        benchmark_file("stage2_candidates", "{ensemble}/{judge}/{reference}/keep-{keep}/n{size}/{generator}/{mode}/{lang}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.topup candidates --generated {input.generated} --fused {input.fused}"
        " --stage1 {input.stage1} --train {input.train} --out {output.run} --provenance {output.provenance} --log {log}"


use rule judge as judge_generated with:
    input:
        candidates=stage2_candidates_file(GSET, "{lang}", "trec"),
        train=data("{lang}", "train.jsonl"),
        corpus=data("{lang}", "corpus.jsonl"),
        prompt=lambda wc: judge_spec(wc.judge)["prompt"],
        model=get_judge_model_inputs,
        pool=pool_file("{ensemble}", "{judge}", "{reference}", "{keep}", "{lang}"),
    output:
        stage2_verdict_file(GSET, "{lang}", "{chunk}", "{nchunks}"),
    params:
        judge=get_generated_judge_params,
        cache=get_stage2_judge_cache,
    log:
        log_file("judge_generated", "{ensemble}/{judge}/{reference}/keep-{keep}/n{size}/{generator}/{mode}/{lang}/chunk-{chunk}-of-{nchunks}"),
    benchmark:
        benchmark_file("judge_generated", "{ensemble}/{judge}/{reference}/keep-{keep}/n{size}/{generator}/{mode}/{lang}/chunk-{chunk}-of-{nchunks}")


rule topup:
    input:
        pool=pool_file("{ensemble}", "{judge}", "{reference}", "{keep}", "{lang}"),
        candidates=stage2_candidates_file(GSET, "{lang}", "provenance.jsonl"),
        verdicts=get_topup_verdicts,
    output:
        pool=final_pool_file("{ensemble}", "{judge}", "{reference}", "{keep}", "{size}", "{generator}/{mode}/{screen}", "{lang}"),
        stats=final_pool_stats_file("{ensemble}", "{judge}", "{reference}", "{keep}", "{size}", "{generator}/{mode}/{screen}", "{lang}"),
    params:
        flags=get_topup_flags,
    log:
        log_file("topup", "{ensemble}/{judge}/{reference}/keep-{keep}/n{size}/{generator}/{mode}/{screen}/{lang}"),
    benchmark:
        benchmark_file("topup", "{ensemble}/{judge}/{reference}/keep-{keep}/n{size}/{generator}/{mode}/{screen}/{lang}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.topup pool --pool {input.pool} --candidates {input.candidates} --verdicts {input.verdicts}"
        " {params.flags} --pool-size {wildcards.size} --source stage2:{wildcards.ensemble} --lang {wildcards.lang}"
        " --out {output.pool} --stats {output.stats} --log {log}"


rule topup_stage1_only:
    input:
        pool=pool_file("{ensemble}", "{judge}", "{reference}", "{keep}", "{lang}"),
    output:
        pool=final_pool_file("{ensemble}", "{judge}", "{reference}", "{keep}", "{size}", "none", "{lang}"),
        stats=final_pool_stats_file("{ensemble}", "{judge}", "{reference}", "{keep}", "{size}", "none", "{lang}"),
    log:
        log_file("topup_stage1_only", "{ensemble}/{judge}/{reference}/keep-{keep}/n{size}/{lang}"),
    benchmark:
        benchmark_file("topup_stage1_only", "{ensemble}/{judge}/{reference}/keep-{keep}/n{size}/{lang}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.topup pool --pool {input.pool} --no-generation --pool-size {wildcards.size}"
        " --source stage2:{wildcards.ensemble} --lang {wildcards.lang} --out {output.pool} --stats {output.stats} --log {log}"


rule roundtrip:
    input:
        generated=generated_file(GSET, "{lang}", "queries.jsonl"),
        runs=get_generated_member_runs,
        train=data("{lang}", "train.jsonl"),
    output:
        stage2_stats_file(GSET, "{lang}", "roundtrip.json"),
    params:
        fusion=get_roundtrip_params,
    log:
        log_file("roundtrip", "{ensemble}/{judge}/{reference}/keep-{keep}/n{size}/{generator}/{mode}/{lang}"),
    benchmark:
        benchmark_file("roundtrip", "{ensemble}/{judge}/{reference}/keep-{keep}/n{size}/{generator}/{mode}/{lang}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.topup roundtrip --generated {input.generated} --runs {input.runs} --train {input.train}"
        " --method {params.fusion[method]} --rrf-k {params.fusion[rrf_k]} --k {params.fusion[k]}"
        " --lang {wildcards.lang} --out {output} --log {log}"


use rule elimination_table as table8 with:
    input:
        get_table8_inputs,
    output:
        md=table_file("table8", "md"),
        csv=table_file("table8", "csv"),
        tex=table_file("table8", "tex"),
    params:
        languages=LANGS,
        kind="table8",
        subtitle=get_stage2_subtitle,
    log:
        log_file("table8", "table8"),


use rule elimination_table as stage2_table with:
    input:
        get_stage2_table_inputs,
    output:
        md=table_file("stage2", "md"),
        csv=table_file("stage2", "csv"),
        tex=table_file("stage2", "tex"),
    params:
        languages=LANGS,
        kind="stage2",
        subtitle=get_stage2_subtitle,
    log:
        log_file("stage2_table", "stage2"),


if SYNTHETIC:

    rule generation_false_negatives:
        input:
            unpack(get_false_negative_pools),
            truth=truth_file("{lang}"),
        output:
            stage2_stats_file(GSET, "{lang}", "false_negatives.json"),
        log:
            log_file("generation_false_negatives", "{ensemble}/{judge}/{reference}/keep-{keep}/n{size}/{generator}/{mode}/{lang}"),
        benchmark:
            benchmark_file("generation_false_negatives", "{ensemble}/{judge}/{reference}/keep-{keep}/n{size}/{generator}/{mode}/{lang}")
        conda:
            conda_env("cpu")
        shell:
            "python -m boostmdr.topup falsenegatives --judged {input.judged} --unjudged {input.unjudged}"
            " --truth {input.truth} --lang {wildcards.lang} --out {output} --log {log}"

    use rule elimination_table as generation_false_negatives_table with:
        input:
            get_false_negative_table_inputs,
        output:
            md=table_file("generation_false_negatives", "md"),
            csv=table_file("generation_false_negatives", "csv"),
            tex=table_file("generation_false_negatives", "tex"),
        params:
            languages=LANGS,
            kind="generation_false_negatives",
            subtitle=get_stage2_subtitle,
        log:
            log_file("generation_false_negatives_table", "generation_false_negatives"),
