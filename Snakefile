# Boosting Data Utilization for Multilingual Dense Retrieval (Huang et al., EMNLP 2025): the workflow.
#
#   snakemake --cores 2                                   embedded default (synthetic benchmark, tiny models)
#   snakemake --cores 2 results/tables/table1.md          one table and exactly the jobs it needs
#   snakemake --report results/report.html                every table, figure and the config, for a reader
#   snakemake --configfile config/miracl.yaml --profile profiles/slurm      the paper, on a SLURM cluster
#
# Stages (one file each under rules/):
#   data       raw MIRACL layout -> results/data/{lang}/
#   retrieval  BM25 (Lucene), sharded dense encoding, exact faiss search -> TREC runs; training-query candidates
#   mining     the five hard-negative mining baselines -> negatives files
#   stage1     retriever-ensemble fusion, LLM false-negative judge (pointwise, listwise, cascade) -> stage-1 pools
#   judging    the judges on held-out labels, their cost per mode, a dry cost estimate -> judge_* tables
#   stage2     MIFT (instruction selection, translation, LoRA), PDBG generation, retrieval of the generated queries
#              by the stage-1 rules, judged top-up -> final negative pools of exactly N; Table 8
#   stage3     topics of the training queries (fastText), batch manifests with negative weights per variant
#   train      contrastive fine-tuning of each backbone per variant, replaying its batch manifest -> checkpoints
#   evaluate   trec_eval semantics -> results/eval; tables -> results/tables
#   annotation human validation of the judge: annotation sheets, Table 12 from the filled ones
#   report     tables drawn as figures, the configuration page; `snakemake --report results/report.html`
#   replicates the method and its ablations against Naive Top-K over seeds of the synthetic benchmark (not in all)
#   demo       the synthetic benchmark and the tiny local models of the embedded default (only when used)

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/retrieval.smk"
include: "rules/mining.smk"
include: "rules/stage1.smk"
include: "rules/judging.smk"
include: "rules/stage2.smk"
include: "rules/stage3.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/annotation.smk"
include: "rules/report.smk"
include: "rules/replicates.smk"


if USES_DEMO:

    include: "rules/demo.smk"


rule all:
    default_target: True
    input:
        get_final_targets(),


# Named sub-targets (snakemake results/tables/table15.md works too).
rule demo:
    # What `make demo` builds: Table 1 (baselines and the full method on every backbone), Table 2 (miners vs. stage 1
    # and the full method on BGE), Table 3 (the three stages' ablation), the stage-1 tables and the stage-2 tables
    # (Table 8, the generation statistics, the planted false negatives generation brought in).
    # Tables 15 and 16 train the same rows for every backbone; `snakemake --cores 2` (rule all) builds them too.
    input:
        "results/tables/table1.md",
        "results/tables/table2.md",
        "results/tables/table3.md",
        get_stage1_targets(),
        get_stage2_targets(),


rule stage1_all:
    input:
        get_stage1_targets(),


rule judging_all:
    # The judging tables (issue 16): the judges on held-out labels, their cost per mode, the dry cost estimate.
    input:
        get_judging_targets(),


rule stage2_all:
    input:
        get_stage2_targets(),


check_after_rules()
