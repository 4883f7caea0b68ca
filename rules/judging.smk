# Judging at scale (issue 16; boostmdr.judge_eval): how far to trust a judge and what it costs. A seeded sample of
# training queries per language is held out (the demo's tiny judges never train on it); its labelled pairs, and on the
# synthetic benchmark its stage-1 candidates against the planted truth, are judged by each judge of judge_eval.judges
# with the judge's own command (pointwise, listwise, or a cascade: first judge, then the second on the escalated
# queries), and compared with the truth. Tables: judge_labels (the judges on human labels), judge_cost (calls, tokens,
# seconds, precision and recall per mode) and judge_estimate (a dry estimate of a stage-1 run, priced; calls nothing).


rule judge_holdout:
    input:
        train=data("{lang}", "train.jsonl"),
    output:
        judge_holdout_file("{lang}"),
    params:
        eval=get_judge_eval_params,
    log:
        log_file("judge_holdout", "{lang}"),
    benchmark:
        benchmark_file("judge_holdout", "{lang}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.judge_eval holdout --train {input.train} --size {params.eval[size]} --seed {params.eval[seed]}"
        " --out {output} --log {log}"


rule judge_sample:
    input:
        unpack(get_judge_sample_inputs),
    output:
        train=judge_sample_file("{dataset}", "{lang}", "train.jsonl"),
        candidates=judge_sample_file("{dataset}", "{lang}", "candidates.trec"),
        truth=judge_sample_file("{dataset}", "{lang}", "truth.tsv"),
        info=judge_sample_file("{dataset}", "{lang}", "info.json"),
    params:
        eval=get_judge_eval_params,
        flags=get_judge_sample_flags,
    log:
        log_file("judge_sample", "{dataset}/{lang}"),
    benchmark:
        benchmark_file("judge_sample", "{dataset}/{lang}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.judge_eval sample --dataset {wildcards.dataset} --train {input.train} --holdout {input.holdout}"
        " --seed {params.eval[seed]} {params.flags} --out-train {output.train} --out-candidates {output.candidates}"
        " --out-truth {output.truth} --out-info {output.info} --log {log}"


# A judge on a sample: the command of rule judge (stage1.smk), on the sample's queries and candidates, with a private
# generation cache and a summary of the job's calls, tokens and seconds.
rule judge_sample_verdicts:
    input:
        candidates=judge_sample_file("{dataset}", "{lang}", "candidates.trec"),
        train=judge_sample_file("{dataset}", "{lang}", "train.jsonl"),
        corpus=data("{lang}", "corpus.jsonl"),
        prompt=get_judge_prompt,
        model=get_judge_model_inputs,
    output:
        verdicts=judge_sample_verdicts("{dataset}", "{judge}", "{reference}", "{lang}"),
        summary=judge_sample_summary("{dataset}", "{judge}", "{reference}", "{lang}"),
    params:
        judge=get_judge_params,
        no_positive=get_no_positive_flag,
        cache=get_sample_judge_cache,
    wildcard_constraints:
        judge=SINGLE_JUDGE_ALT,
    threads: get_threads("judge")
    resources:
        mem_mb=res("judge", "mem_mb"),
        runtime=res("judge", "runtime"),
        gpu=res("judge", "gpu"),
        # where the model runs and how many requests at once: no change to an output, so not a param
        llm_run=get_judge_backend_flags,
    log:
        log_file("judge_sample_verdicts", "{dataset}/{judge}/{reference}/{lang}"),
    benchmark:
        benchmark_file("judge_sample_verdicts", "{dataset}/{judge}/{reference}/{lang}")
    conda:
        get_judge_env
    shell:
        "python -m boostmdr.judge verdicts --candidates {input.candidates} --train {input.train} --corpus {input.corpus}"
        " --lang {wildcards.lang} {params.judge[llm]} {resources.llm_run}"
        " --prompt {input.prompt} --reference {wildcards.reference} --samples {params.judge[samples]}"
        " --max-new-tokens {params.judge[max_new_tokens]} {params.judge[max_passage_words]} --retries {params.judge[retries]} --seed {params.judge[seed]}"
        " {params.judge[mode]} {params.judge[structured]} {params.no_positive}"
        " --cache {params.cache} --summary {output.summary} --out {output.verdicts} --threads {threads} --log {log}"


rule judge_sample_escalated:
    input:
        candidates=judge_sample_file("{dataset}", "{lang}", "candidates.trec"),
        train=judge_sample_file("{dataset}", "{lang}", "train.jsonl"),
        corpus=data("{lang}", "corpus.jsonl"),
        prompt=get_second_judge_prompt,
        model=get_second_judge_model_inputs,
        first=get_sample_first_verdicts,
    output:
        verdicts=judge_sample_escalated("{dataset}", "{judge}", "{reference}", "{lang}"),
        summary=judge_sample_escalated_summary("{dataset}", "{judge}", "{reference}", "{lang}"),
    params:
        judge=get_second_judge_params,
        no_positive=get_no_positive_flag,
        cache=get_sample_escalated_cache,
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
        log_file("judge_sample_escalated", "{dataset}/{judge}/{reference}/{lang}"),
    benchmark:
        benchmark_file("judge_sample_escalated", "{dataset}/{judge}/{reference}/{lang}")
    conda:
        get_second_judge_env
    shell:
        "python -m boostmdr.judge verdicts --candidates {input.candidates} --train {input.train} --corpus {input.corpus}"
        " --lang {wildcards.lang} {params.judge[llm]} {resources.llm_run}"
        " --prompt {input.prompt} --reference {wildcards.reference} --samples {params.judge[samples]}"
        " --max-new-tokens {params.judge[max_new_tokens]} {params.judge[max_passage_words]} --retries {params.judge[retries]} --seed {params.judge[seed]}"
        " {params.judge[mode]} {params.judge[structured]} {params.no_positive} --escalated-by {input.first}"
        " --cache {params.cache} --summary {output.summary} --out {output.verdicts} --threads {threads} --log {log}"


rule judge_sample_cascade:
    input:
        train=judge_sample_file("{dataset}", "{lang}", "train.jsonl"),
        first=get_sample_first_verdicts,
        second=judge_sample_escalated("{dataset}", "{judge}", "{reference}", "{lang}"),
    output:
        judge_sample_verdicts("{dataset}", "{judge}", "{reference}", "{lang}"),
    params:
        names=get_cascade_names,
    wildcard_constraints:
        judge=CASCADE_ALT,
    log:
        log_file("judge_sample_cascade", "{dataset}/{judge}/{reference}/{lang}"),
    benchmark:
        benchmark_file("judge_sample_cascade", "{dataset}/{judge}/{reference}/{lang}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.judge cascade --train {input.train} --first {input.first} --second {input.second}"
        " --first-name {params.names[first]} --second-name {params.names[second]} --out {output} --log {log}"


rule judge_eval:
    input:
        unpack(get_judge_eval_inputs),
    output:
        judge_eval_file("{dataset}", "{judge}", "{reference}", "{lang}"),
    params:
        eval=get_judge_eval_params,
        mode=get_judge_mode,
    log:
        log_file("judge_eval", "{dataset}/{judge}/{reference}/{lang}"),
    benchmark:
        benchmark_file("judge_eval", "{dataset}/{judge}/{reference}/{lang}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.judge_eval evaluate --verdicts {input.verdicts} --truth {input.truth}"
        " --sample-info {input.info} --summaries {input.summaries} --keep {params.eval[keep]}"
        " --dataset {wildcards.dataset} --judge {wildcards.judge} --mode {params.mode} --lang {wildcards.lang}"
        " --out {output} --log {log}"


# The dry estimate: the prompts a judge would send for the full method's stage-1 candidates, counted and priced.
rule judge_estimate:
    input:
        unpack(get_estimate_data),
    output:
        judge_estimate_file("{ensemble}", "{judge}", "{reference}", "{lang}"),
    params:
        flags=get_estimate_flags,
    wildcard_constraints:
        judge=SINGLE_JUDGE_ALT,
    log:
        log_file("judge_estimate", "{ensemble}/{judge}/{reference}/{lang}"),
    benchmark:
        benchmark_file("judge_estimate", "{ensemble}/{judge}/{reference}/{lang}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.judge_eval estimate --candidates {input.candidates} --train {input.train}"
        " --corpus {input.corpus} --lang {wildcards.lang} --judge {wildcards.judge} --prompt {input.prompt}"
        " --reference {wildcards.reference} {params.flags} --out {output} --log {log}"


rule judge_labels_table:
    input:
        get_labels_table_inputs,
    output:
        md=table_file("judge_labels", "md"),
        csv=table_file("judge_labels", "csv"),
        tex=table_file("judge_labels", "tex"),
    params:
        spec=get_labels_table_params,
        languages=LANGS,
    log:
        log_file("judge_labels_table", "judge_labels"),
    localrule: True
    conda:
        conda_env("cpu")
    script:
        "../scripts/judge_eval_table.py"


use rule judge_labels_table as judge_cost_table with:
    input:
        get_cost_table_inputs,
    output:
        md=table_file("judge_cost", "md"),
        csv=table_file("judge_cost", "csv"),
        tex=table_file("judge_cost", "tex"),
    params:
        spec=get_cost_table_params,
        languages=LANGS,
    log:
        log_file("judge_cost_table", "judge_cost"),


use rule judge_labels_table as judge_estimate_table with:
    input:
        get_estimate_inputs,
    output:
        md=table_file("judge_estimate", "md"),
        csv=table_file("judge_estimate", "csv"),
        tex=table_file("judge_estimate", "tex"),
    params:
        spec=get_estimate_params,
        languages=LANGS,
    log:
        log_file("judge_estimate_table", "judge_estimate"),

