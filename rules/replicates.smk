# Replicates of the synthetic benchmark (boostmdr.replicates): the full method and its ablations against Naive
# Top-K over several benchmark and training seeds, with the spread. Not part of rule all (each replicate is the
# whole workflow again): build it with `snakemake --cores 2 results/tables/replicates.md`.
#
# Replicate s: benchmark.synthetic.seed = s and training.seed + (s - the config's benchmark seed). The config's own
# seed is the main run (results/); every other replicate is this workflow run in results/replicates/seed-{s}/ by a
# nested Snakemake with the same config but those two seeds, so its own incremental state survives a kill and a
# changed setting reruns only what it touches inside the replicate too.


rule replicate:
    output:
        [
            f"{replicate_dir('{seed}')}/{eval_file(REPLICATE_BACKBONE, r['variant'], lang)}"
            for r in REPLICATE_ROWS
            for lang in LANGS
        ],
    wildcard_constraints:
        seed=r"\d+",
    params:
        config=replicate_config,
        dir=lambda wc: replicate_dir(wc.seed),
    # the nested run's --cores (resources.replicate in the config): its jobs run inside this one
    threads: get_threads("replicate")
    resources:
        mem_mb=res("replicate", "mem_mb"),
        runtime=res("replicate", "runtime"),
    log:
        log_file("replicate", "seed-{seed}"),
    benchmark:
        benchmark_file("replicate", "seed-{seed}")
    conda:
        conda_env("cpu")
    script:
        "../scripts/replicate_run.py"


rule replicates_table:
    input:
        lambda wc: [p for by_seed in get_replicate_eval_files().values() for by_lang in by_seed.values() for p in by_lang.values()],
    output:
        md=table_file("replicates", "md"),
        csv=table_file("replicates", "csv"),
        tex=table_file("replicates", "tex"),
        html=report(
            table_file("replicates", "html"),
            caption="../report/replicates.rst",
            category="Results tables",
            subcategory="Replicates",
            labels={"table": "replicates"},
        ),
    params:
        rows=REPLICATE_ROWS,
        seeds=REPLICATE_SEEDS,
        baseline=REPLICATES.get("baseline", "naive_topk"),
        title=REPLICATES.get("title", "Replicates"),
        eval_files=get_replicate_eval_files,
    log:
        log_file("replicates_table", "replicates"),
    localrule: True
    conda:
        conda_env("cpu")
    script:
        "../scripts/replicate_table.py"
