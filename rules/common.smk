# Config access, validation, wildcard constraints, path builders and target lists. Every piece of Python the rules
# need is a named function here (the demo wing's are in rules/demo_common.smk); the other rule files hold only
# rules. The conventions the rules follow:
#   - Paths: one builder per artifact (run_file, eval_file, verdict_file, ...), used for the rule's output with
#     wildcard patterns and for every input that consumes it with values. A path holds only the settings that change
#     the file, so variants that share them share the file.
#   - Wildcards: one name per entity, constrained to the config's own names. {backbone} is BM25 or any dense backbone;
#     rules that need a dense one narrow it with their own wildcard_constraints.
#   - Params: every config value that can change a job's output reaches its command through params: (never read
#     inside a script or a shell string), so a changed value reruns that job and what depends on it. Values that
#     cannot (how often state is saved, where a model runs, how many requests at once) go through resources:, which
#     Snakemake does not compare, so changing them reruns nothing. Config strings that reach a shell are quoted with
#     shlex.quote.
#   - Logs and benchmarks: results/logs/<rule>/<wildcards>.log and results/benchmarks/<rule>/<wildcards>.tsv.
#   - Resources: threads, mem_mb, runtime and gpu from config resources (res()); a software environment per rule
#     (envs/, for --software-deployment-method conda), the vLLM one for a judge whose backend is vllm.

import copy
import os
import re
import shlex

import yaml
from snakemake.utils import validate

from boostmdr.evaluate import MEASURES as EVAL_MEASURES
from boostmdr.config import (
    ConfigError,
    check_env_names,
    check_language_keys,
    check_llm_entry,
    check_model,
    check_resources,
    check_schema,
    drop_removed,
)

# Every job runs offline, however the workflow was started (make, snakemake from an activated environment, a
# cluster profile): models load from local paths or the Hugging Face cache and are never downloaded at run time.
for _var, _value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ[_var] = _value


envvars:
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",


# An overlay (--configfile config/miracl.yaml) is deep-merged over config/config.yaml by Snakemake; a section or a
# named entry it sets to null is removed here, before validation (boostmdr.config explains the rule). A key that is
# not a variable name where one belongs is refused first, so no message ever shows it.
with open(os.path.join(workflow.basedir, "config", "schema.yaml"), encoding="utf-8") as _fh:
    SCHEMA = yaml.safe_load(_fh)
check_env_names(config)
REMOVED_BY_OVERLAY = drop_removed(config, SCHEMA)
check_schema(config, SCHEMA)
validate(config, schema="../config/schema.yaml")


def _merge(base, override):
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


LANGS = list(config["languages"])
DENSE = list(config["backbones"])
BACKBONES = ["bm25"] + DENSE
RAW = config["benchmark"]["raw_dir"]
SYNTHETIC = config["benchmark"]["name"] == "synthetic"
EVAL_SPLIT = config["benchmark"]["eval_split"]
VARIANTS = {name: _merge(config["variant_defaults"], v) for name, v in config["variants"].items()}
TINY_ENCODERS = list(config.get("tiny_models", {}).get("encoders", {}))
TINY_LMS = list(config.get("tiny_models", {}).get("causal_lms", {}))
# The demo wing's rules (rules/demo.smk) are included when the config uses the synthetic benchmark or a tiny model.
USES_DEMO = SYNTHETIC or any(
    str(spec["model"]).startswith("results/models/tiny/")
    for spec in [*config["backbones"].values(), *config["judges"].values()]
)

# Stages whose rules exist. A variant that needs a stage outside this set is listed (its DAG shape is in the
# config) but its table rows are printed as pending rather than built.
BUILT_STAGES = {"miners", "stage1"}


def _check_config():
    from boostmdr.judge import PLACEHOLDERS as JUDGE_PLACEHOLDERS

    check_language_keys(config)
    if SYNTHETIC and EVAL_SPLIT != "dev":
        raise ConfigError(f"benchmark.eval_split: {EVAL_SPLIT!r}, but the synthetic benchmark writes the dev split only")
    for name, spec in config["judges"].items():
        check_llm_entry(f"judges.{name}", spec, JUDGE_PLACEHOLDERS)
    for name, spec in config["backbones"].items():
        check_model(f"backbones.{name}.model", spec["model"])
    for name, v in VARIANTS.items():
        neg = v["negatives"]
        where = f"variants.{name}.negatives"
        if not v["finetune"]:
            continue
        if neg["method"] == "miner" and neg["miner"] not in config["miners"]:
            raise ConfigError(f"{where}.miner: {neg['miner']!r} is not a miner; choose one of {sorted(config['miners'])}")
        if neg["ensemble"] not in config["ensembles"]:
            raise ConfigError(f"{where}.ensemble: {neg['ensemble']!r} is not an ensemble; choose one of {sorted(config['ensembles'])}")
        if neg["judge"] is not None and neg["judge"] not in config["judges"]:
            raise ConfigError(f"{where}.judge: {neg['judge']!r} is not a judge; choose one of {sorted(config['judges'])} or null")
    for name, ens in config["ensembles"].items():
        for member in ens["members"]:
            if member not in BACKBONES:
                raise ConfigError(f"ensembles.{name}.members: {member!r} is not a retriever; choose from {BACKBONES}")
    if config["mining"]["retriever"] not in DENSE:
        raise ConfigError(f"mining.retriever: {config['mining']['retriever']!r} must be a dense backbone, one of {DENSE}")
    for name, spec in config["tables"].items():
        for row in _table_rows_raw(spec):
            if row["backbone"] not in BACKBONES:
                raise ConfigError(f"tables.{name}: backbone {row['backbone']!r} is not one of {BACKBONES}")
            if row["variant"] not in VARIANTS:
                raise ConfigError(f"tables.{name}: variant {row['variant']!r} is not one of {sorted(VARIANTS)}")
            backbone = config["backbones"].get(row["backbone"])
            if backbone is not None and VARIANTS[row["variant"]]["finetune"] and not backbone["finetune"]:
                raise ConfigError(
                    f"tables.{name}: row {row.get('label') or row['variant']!r} fine-tunes {row['backbone']!r}, but "
                    f"backbones.{row['backbone']}.finetune is false (it is evaluated zero-shot only)"
                )


def _table_rows_raw(spec):
    if spec.get("groups"):
        return [dict(row, backbone=g, group=g) for g in spec["groups"] for row in spec["group_rows"]]
    return spec.get("rows", [])


def _alt(values):
    return "|".join(re.escape(v) for v in values) if values else "(?!x)x"


DENSE_ALT = _alt(DENSE)


wildcard_constraints:
    lang=_alt(LANGS),
    backbone=_alt(BACKBONES),
    variant=_alt(list(VARIANTS)),
    miner=_alt(list(config["miners"])),
    ensemble=_alt(list(config["ensembles"])),
    judge=_alt(list(config["judges"]) + ["none"]),
    reference="positive|empty",
    keep=r"[0-2](-[0-2])*",
    shard=r"\d+",
    nshards=r"\d+",
    chunk=r"\d+",
    nchunks=r"\d+",
    table=_alt(list(config["tables"])),


# ------------------------------------------------------------------------------------ resources, envs


def res(step, key):
    """Portable resource ``key`` (threads, mem_mb, runtime, gpu) of a step, from config ``resources``."""
    spec = config["resources"].get(step, {})
    return spec.get(key, config["resources"]["default"][key])


def get_threads(step):
    return res(step, "threads")


def conda_env(name):
    """The conda environment file of a rule (envs/NAME.yaml), relative to the rule files."""
    return f"../envs/{name}.yaml"


def get_judge_env(wildcards):
    """A judge runs in the vLLM environment when its backend is vllm, on the GPU stack when it holds GPUs."""
    backend = config["judges"][wildcards.judge]["backend"]
    if backend == "vllm":
        return conda_env("vllm")
    return conda_env("gpu" if backend == "transformers" and res("judge", "gpu") > 0 else "cpu")


# ---------------------------------------------------------------------------------------- path builders


def log_file(rule, name):
    return f"results/logs/{rule}/{name}.log"


def benchmark_file(rule, name):
    return f"results/benchmarks/{rule}/{name}.tsv"


def raw_topics(lang, split):
    return f"{RAW}/miracl-v1.0-{lang}/topics/topics.miracl-v1.0-{lang}-{split}.tsv"


def raw_qrels(lang, split):
    return f"{RAW}/miracl-v1.0-{lang}/qrels/qrels.miracl-v1.0-{lang}-{split}.tsv"


def raw_corpus(lang):
    return f"{RAW}/miracl-corpus-v1.0-{lang}"


def data(lang, name):
    """A prepared file of one language (corpus.jsonl, train.jsonl, stats.json, topics and qrels)."""
    return f"results/data/{lang}/{name}"


def bm25_index_dir(lang):
    return f"results/index/bm25/{lang}"


def shard_file(backbone, variant, lang, shard, nshards):
    return f"results/index/{backbone}/{variant}/{lang}/shard-{shard}-of-{nshards}.npz"


def run_file(backbone, variant, lang):
    """The TREC run of the evaluation queries."""
    return f"results/runs/{backbone}/{variant}/{lang}.trec"


def eval_file(backbone, variant_name, lang):
    return f"results/eval/{backbone}/{variant_name}/{lang}.json"


def candidate_run(backbone, lang):
    """The zero-shot top-k of every training query (positives still in it)."""
    return f"results/candidates/{backbone}/{lang}.trec"


def positive_scores_file(backbone, lang):
    return f"results/candidates/{backbone}/{lang}.positives.tsv"


def miner_negatives(backbone, miner, lang):
    return f"results/negatives/miners/{backbone}/{miner}/{lang}.jsonl"


def fused_run(ensemble, lang):
    return f"results/stage1/fused/{ensemble}/{lang}.trec"


def verdict_file(ensemble, judge, reference, lang, chunk, nchunks):
    return f"results/stage1/verdicts/{ensemble}/{judge}/{reference}/{lang}/chunk-{chunk}-of-{nchunks}.jsonl"


def judge_cache_file(ensemble, judge, reference, lang, chunk, nchunks):
    """The generation cache a judge job alone writes; it reads every file in the same directory (one judge, one
    language), so reruns reuse every verdict made by any job, whatever the candidate depth, fusion or chunking."""
    return f"results/cache/judge/{judge}/{lang}/{ensemble}.{reference}.chunk-{chunk}-of-{nchunks}.jsonl"


def pool_file(ensemble, judge, reference, keep, lang):
    return f"results/stage1/pool/{ensemble}/{judge}/{reference}/keep-{keep}/{lang}.jsonl"


def judge_stats_file(ensemble, judge, reference, lang):
    return f"results/stage1/stats/{ensemble}/{judge}/{reference}/{lang}.json"


def model_dir(backbone, variant):
    """A fine-tuned checkpoint (Hugging Face layout)."""
    return f"results/models/{backbone}/{variant}"


def model_weights(directory):
    """The weights file of a model directory this workflow builds: the file rules track for the model."""
    return f"{directory}/model.safetensors"


def train_state_dir(backbone, variant):
    """Resumable training state, outside the declared output (which Snakemake deletes before a job starts)."""
    return f"results/state/train/{backbone}/{variant}"


def table_file(name, ext):
    return f"results/tables/{name}.{ext}"


def tiny_model_dir(name):
    return f"results/models/tiny/{name}"


def truth_file(lang):
    """Synthetic benchmark only, analysis only: every relevant train document, planted ones included."""
    return f"{RAW}/synthetic-truth/{lang}.train.complete-qrels.tsv"


def doc_topics_file(lang):
    return f"{RAW}/synthetic-truth/{lang}.doc-topics.tsv"


# ------------------------------------------------------------------------------------------------ data


def get_raw_inputs(wildcards):
    lang = wildcards.lang
    return {
        "train_topics": raw_topics(lang, "train"),
        "train_qrels": raw_qrels(lang, "train"),
        "eval_topics": raw_topics(lang, EVAL_SPLIT),
        "eval_qrels": raw_qrels(lang, EVAL_SPLIT),
        "corpus": raw_corpus(lang),
    }


def num_shards(lang):
    shards = config["corpus_shards"]
    return int(shards.get(lang, shards["default"]))


def all_corpora():
    return [data(lang, "corpus.jsonl") for lang in LANGS]


# ---------------------------------------------------------------------------------------------- models


def model_path(backbone, variant):
    """Where the encoder of (backbone, variant) is: the base model for zero-shot, else our checkpoint."""
    if variant == "zeroshot":
        return config["backbones"][backbone]["model"]
    return model_dir(backbone, variant)


def model_inputs(backbone, variant):
    """Files a step needs for the encoder: a model this workflow builds is an input; a hub id or an external
    path is loaded as it is (offline) and is not tracked."""
    path = model_path(backbone, variant)
    if path.startswith("results/models/"):
        return [model_weights(path)]
    return []


def get_model_inputs(wildcards):
    return model_inputs(wildcards.backbone, getattr(wildcards, "variant", "zeroshot"))


def get_model_path(wildcards):
    return shlex.quote(model_path(wildcards.backbone, getattr(wildcards, "variant", "zeroshot")))


def encoder_settings(backbone):
    spec = config["backbones"][backbone]
    return {k: spec[k] for k in ("pooling", "normalize", "query_prefix", "passage_prefix", "q_max_len", "p_max_len")}


def encoder_flags(settings):
    """CLI flags of boostmdr's encoder settings (the same for encode, search, train), shell-quoted."""
    return " ".join(
        [
            f"--pooling {shlex.quote(settings['pooling'])}",
            "--normalize" if settings["normalize"] else "--no-normalize",
            f"--query-prefix={shlex.quote(settings['query_prefix'])}",
            f"--passage-prefix={shlex.quote(settings['passage_prefix'])}",
            f"--q-max-len {settings['q_max_len']}",
            f"--p-max-len {settings['p_max_len']}",
        ]
    )


def get_encoder_flags(wildcards):
    return encoder_flags(encoder_settings(wildcards.backbone))


def shard_files(backbone, variant, lang):
    n = num_shards(lang)
    return [shard_file(backbone, variant, lang, i, n) for i in range(n)]


def get_shard_files(wildcards):
    return shard_files(wildcards.backbone, getattr(wildcards, "variant", "zeroshot"), wildcards.lang)


def bm25_analyzer(lang):
    return config["bm25"]["analyzer"].get(lang, lang)


# -------------------------------------------------------------------------------------------- miners


def get_miner_flags(wildcards, input):
    """The miner's settings as CLI flags; the mixed miner also names the corpus it draws random negatives from."""
    spec = config["miners"][wildcards.miner]
    flags = {
        "shifted_topk": f"--shift {spec['shift']}",
        "topk_abs": f"--max-score {spec['max_score']}",
        "topk_margin_pos": f"--margin {spec['margin']}",
        "topk_perc_pos": f"--percentage {spec['percentage']}",
        "mixed": f"--mined-share {spec.get('mined_share', 1.0)} --seed {spec.get('seed', 0)} --corpus {input.corpus}",
    }
    return flags.get(spec["method"], "")


def get_mine_corpus(wildcards):
    """The language's corpus, for a miner that draws random negatives from it (mixed); no input for the others."""
    return [data(wildcards.lang, "corpus.jsonl")] if config["miners"][wildcards.miner]["method"] == "mixed" else []


# ---------------------------------------------------------------------------------------------- LLMs

# The options of boostmdr.llm.options, split by whether they can change what the LLM writes. Each is a key of a
# judge's config entry with the same name (max_model_len <-> --max-model-len).
LLM_RESULT_OPTIONS = {"transformers": ("dtype",), "vllm": ("dtype", "max_model_len"), "http": ("endpoint",)}
LLM_RUN_OPTIONS = {
    "transformers": ("device", "max_batch_rows"),
    "vllm": ("tensor_parallel_size", "gpu_memory_utilization"),
    "http": ("base_url", "api_key_env", "concurrency", "timeout", "max_retries"),
}


def _llm_flags(spec, keys):
    flags = []
    for key in keys:
        if spec.get(key) is not None:
            flags.append(f"--{key.replace('_', '-')} {shlex.quote(str(spec[key]))}")
    return " ".join(flags)


def llm_result_flags(spec):
    """--backend, --model and the backend options that change outputs, from an LLM's config entry."""
    backend = spec["backend"]
    head = f"--backend {backend} --model {shlex.quote(spec['model'])}"
    rest = _llm_flags(spec, LLM_RESULT_OPTIONS[backend])
    return f"{head} {rest}".strip()


def llm_run_flags(spec):
    """The backend options that change only speed or where the model runs."""
    return _llm_flags(spec, LLM_RUN_OPTIONS[spec["backend"]])


# -------------------------------------------------------------------------------------------- stage 1


def get_fusion_runs(wildcards):
    return [candidate_run(m, wildcards.lang) for m in config["ensembles"][wildcards.ensemble]["members"]]


def get_fusion_params(wildcards):
    spec = config["ensembles"][wildcards.ensemble]
    return {"method": spec["fusion"], "rrf_k": spec["rrf_k"], "depth": spec["depth"]}


def judge_spec(name):
    return config["judges"][name]


def get_judge_model_inputs(wildcards):
    model = judge_spec(wildcards.judge)["model"]
    return [model_weights(model)] if model.startswith("results/models/") else []


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


def get_judge_cache(wildcards):
    w = wildcards
    return judge_cache_file(w.ensemble, w.judge, w.reference, w.lang, w.chunk, w.nchunks)


def verdict_files(ensemble, judge, reference, lang):
    n = judge_spec(judge)["chunks"]
    return [verdict_file(ensemble, judge, reference, lang, i, n) for i in range(n)]


def get_pool_verdicts(wildcards):
    if wildcards.judge == "none":
        return []
    return verdict_files(wildcards.ensemble, wildcards.judge, wildcards.reference, wildcards.lang)


def get_pool_flags(wildcards):
    if wildcards.judge == "none":
        return "--no-judge"
    return f"--keep {wildcards.keep.replace('-', ',')}"


def get_stats_verdicts(wildcards):
    return verdict_files(wildcards.ensemble, wildcards.judge, wildcards.reference, wildcards.lang)


def get_truth(wildcards):
    return [truth_file(wildcards.lang)] if SYNTHETIC else []


def get_truth_flag(wildcards, input):
    return f"--truth {input.truth}" if input.truth else ""


def main_stage1():
    """The stage-1 configuration of the full method (variant 'full'): the one Table 8 describes."""
    neg = VARIANTS["full"]["negatives"]
    return neg["ensemble"], neg["judge"], neg["reference"]


def get_stage1_stats_inputs(wildcards):
    ensemble, judge, reference = main_stage1()
    return [judge_stats_file(ensemble, judge, reference, lang) for lang in LANGS]


def get_stage1_subtitle(wildcards):
    return f"stage-1 configuration {'/'.join(main_stage1())}"


# -------------------------------------------------------------------------------------------- variants


def variant_stages(name):
    """The method stages a variant needs, used to decide whether its rows can be built yet."""
    v = VARIANTS[name]
    if not v["finetune"]:
        return set()
    neg, batching = v["negatives"], v["batching"]
    stages = set()
    if neg["method"] == "miner":
        stages.add("miners")
    else:
        stages.add("stage1")
        if neg["method"] == "ours" and neg["generation"]:
            stages.add("stage2")
    if batching["same_language"] or batching["topic_balance"] or batching["weights"] != "none":
        stages.add("stage3")
    return stages


STAGE_NAMES = {
    "miners": "hard-negative miners",
    "stage1": "stage 1 (ensemble + LLM judge)",
    "stage2": "stage 2 (LLM-aided generation)",
    "stage3": "stage 3 (language/topic batches and weights)",
}


def missing_stages(name):
    return sorted(variant_stages(name) - BUILT_STAGES)


def keep_tag(keep):
    return "-".join(str(k) for k in sorted(keep))


def negatives_file(variant_name, lang):
    """The negatives file a variant trains on, for one language. Its path holds only the settings that change
    it, so variants that share them share the file."""
    neg = VARIANTS[variant_name]["negatives"]
    if neg["method"] == "miner":
        return miner_negatives(config["mining"]["retriever"], neg["miner"], lang)
    if neg["method"] == "stage1":
        judge = neg["judge"] or "none"
        return pool_file(neg["ensemble"], judge, neg["reference"], keep_tag(neg["keep_verdicts"]), lang)
    raise ConfigError(f"variants.{variant_name}: negatives.method 'ours' needs stage 2, which is not built yet")


# -------------------------------------------------------------------------------------------- training


def get_train_inputs(wildcards):
    return {
        "negatives": [negatives_file(wildcards.variant, lang) for lang in LANGS],
        "corpora": all_corpora(),
        "model": model_inputs(wildcards.backbone, "zeroshot"),
    }


def get_train_params(wildcards):
    """Everything that changes the trained weights (so Snakemake reruns training when any of it changes)."""
    spec = config["backbones"][wildcards.backbone]
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


def get_base_model(wildcards):
    return shlex.quote(model_path(wildcards.backbone, "zeroshot"))


def get_corpus_flags(wildcards):
    return " ".join(f"{lang}={data(lang, 'corpus.jsonl')}" for lang in LANGS)


PRECISION_FLAGS = {"no": "", "fp16": "--fp16", "bf16": "--bf16"}


# ------------------------------------------------------------------------------------- tables, targets


def table_rows(table):
    """Resolved rows of a table: label, backbone, variant, group, and why a row is pending (or None)."""
    rows = []
    for row in _table_rows_raw(config["tables"][table]):
        backbone, var = row["backbone"], row["variant"]
        label = row.get("label") or (
            config["backbones"][backbone]["label"] if backbone in config["backbones"] else backbone
        )
        missing = missing_stages(var)
        rows.append(
            {
                "label": label,
                "backbone": backbone,
                "variant": var,
                "group": config["backbones"][row["group"]]["label"] if row.get("group") else None,
                "pending": f"not yet built: {', '.join(STAGE_NAMES[s] for s in missing)}" if missing else None,
            }
            | ({"x": row["x"]} if "x" in row else {})
        )
    return rows


def table_eval_keys(table):
    """(backbone, variant) of every eval file a table reads: its built rows and, with ``significance``, the row
    each of them is tested against (the same backbone's ``against`` variant)."""
    against = (config["tables"][table].get("significance") or {}).get("against")
    keys = {}
    for r in table_rows(table):
        if r["pending"]:
            continue
        keys[(r["backbone"], r["variant"])] = True
        if against:
            keys[(r["backbone"], against)] = True
    return list(keys)


def get_table_inputs(wildcards):
    return [eval_file(backbone, variant, lang) for backbone, variant in table_eval_keys(wildcards.table) for lang in LANGS]


def get_table_title(wildcards):
    return config["tables"][wildcards.table]["title"]


def get_table_metric(wildcards):
    return config["tables"][wildcards.table]["metric"]


def get_table_rows(wildcards):
    return table_rows(wildcards.table)


def get_table_marks(wildcards):
    """The paper's marks of a table: significance (against which variant, alpha) and highlight mode."""
    spec = config["tables"][wildcards.table]
    significance = spec.get("significance") or {}
    return {
        "significance": {"against": significance["against"], "alpha": significance.get("alpha", 0.05)} if significance else {},
        "highlight": spec.get("highlight", "none"),
    }


def get_table_averages(wildcards):
    """Averaged columns: Avg over every language, then (split_low_resource) the low-resource languages apart."""
    if not config["tables"][wildcards.table].get("split_low_resource"):
        return [["Avg", LANGS]]
    return [["Avg", LANGS], ["Avg low-resource", LOW_RESOURCE], ["Avg other", [l for l in LANGS if l not in LOW_RESOURCE]]]


def get_table_labels(wildcards):
    """How the report lists a table: its name and its title."""
    return {"table": wildcards.table, "title": config["tables"][wildcards.table]["title"]}


def get_table_section(wildcards):
    """The report's subcategory of a table (its family: main results, hard-negative construction, ...)."""
    return config["tables"][wildcards.table].get("section", "Results")


def get_benchmark_files(wildcards):
    """The benchmark files of every job that has run so far (the cost table reports what was spent)."""
    import glob

    return sorted(glob.glob("results/benchmarks/**/*.tsv", recursive=True))


def get_benchmark_patterns(wildcards):
    """Each rule's benchmark pattern: the cost table attributes a benchmark file to its rule and wildcards."""
    return {r.name: str(r.benchmark) for r in workflow.rules if r.benchmark is not None}


def get_rule_stages(wildcards):
    """Each rule's stage: the rules file it is defined in (rules/stage1.smk -> stage1)."""
    return {r.name: os.path.splitext(os.path.basename(str(r.snakefile)))[0] for r in workflow.rules}


def get_gpu_rules(wildcards):
    return {r.name: res(r.name, "gpu") for r in workflow.rules if res(r.name, "gpu") > 0}


def get_stage1_targets():
    if "stage1" not in BUILT_STAGES:
        return []
    return [table_file("elimination", "md")] + ([table_file("judge_quality", "md")] if SYNTHETIC else [])


def check_after_rules():
    """Checks that need every rule defined (called at the end of the Snakefile)."""
    check_resources(config, [r.name for r in workflow.rules])


def get_final_targets():
    return (
        [table_file(t, "md") for t in config["tables"]]
        + get_stage1_targets()
        + get_annotation_targets()
        + get_figure_targets()
        + [config_page_file()]
    )


# ------------------------------------------------- low-resource languages, annotation kit, figures, report

# Languages whose averages the split tables print apart (config low_resource_languages, a property of language codes:
# those not run are ignored, so an overlay that runs fewer languages need not repeat the list).
LOW_RESOURCE = [lang for lang in LANGS if lang in config.get("low_resource_languages", [])]
ANNOTATION = config.get("annotation", {})


def _check_report_config():
    """What the schema cannot say about table marks, the low-resource list, the annotation kit and figures."""
    for name, spec in config["tables"].items():
        against = (spec.get("significance") or {}).get("against")
        if against is not None and against not in VARIANTS:
            raise ConfigError(f"tables.{name}.significance.against: {against!r} is not a variant; choose one of {sorted(VARIANTS)}")
        if spec.get("split_low_resource") and not 0 < len(LOW_RESOURCE) < len(LANGS):
            raise ConfigError(
                f"tables.{name}.split_low_resource: needs low_resource_languages to name some, not all, of {LANGS} "
                f"(now {LOW_RESOURCE})"
            )
        rows = _table_rows_raw(spec)
        if spec.get("figure") and not all("x" in row for row in rows):
            raise ConfigError(f"tables.{name}.figure: every row needs an x value (the figure's horizontal axis)")


def annotation_languages():
    """The languages annotated: those of ``languages`` that annotation.languages names (all when it is null), so an
    overlay that runs fewer languages need not repeat the list."""
    chosen = ANNOTATION.get("languages")
    return [lang for lang in LANGS if chosen is None or lang in chosen]


def annotation_file(lang, kind):
    """The annotation kit of one language: sheet.tsv and sheet.html (for the annotators), key.tsv (not for them)."""
    return f"results/annotation/{lang}.{kind}"


def get_annotation_verdicts(wildcards):
    ensemble, judge, reference = main_stage1()
    return verdict_files(ensemble, judge, reference, wildcards.lang)


def annotation_settings():
    """Everything that changes a sheet: the pool's keep set (what the judge removed), sample size, seed, which side."""
    return {
        "keep": ",".join(str(k) for k in sorted(VARIANTS["full"]["negatives"]["keep_verdicts"])),
        "per_language": ANNOTATION.get("per_language", 100),
        "seed": ANNOTATION.get("seed", 0),
        "sample": ANNOTATION.get("sample", "removed"),
    }


def get_annotation_params(wildcards):
    return annotation_settings()


def filled_sheets_dir():
    return ANNOTATION.get("filled_dir", "annotations/filled")


def get_filled_sheets(wildcards):
    """Every filled sheet the annotators returned (one TSV per annotator, or per annotator and language)."""
    import glob

    return sorted(glob.glob(os.path.join(filled_sheets_dir(), "*.tsv")))


def get_annotation_targets():
    """Table 12: built wherever stage 1 is (pending rows until filled sheets exist)."""
    if "stage1" not in BUILT_STAGES or main_stage1()[1] is None or not annotation_languages():
        return []
    return [table_file("table12", "md")]


def figure_file(name, ext):
    return f"results/figures/{name}.{ext}"


def figure_tables():
    """Tables drawn as a figure as well (a table entry with ``figure``): one line per group and averaged column."""
    return [name for name, spec in config["tables"].items() if spec.get("figure")]


def get_figure_targets():
    # Figure 3 (pool size N) joins here once its table entry has a ``figure``; every figure target is in the report.
    return [figure_file(name, "png") for name in figure_tables()]


def get_figure_params(wildcards):
    spec = config["tables"][wildcards.table]
    return {"x_label": spec["figure"].get("x_label", "x"), "title": spec["title"]}


def config_page_file():
    return "results/report/config.html"


def get_config_page_params(wildcards):
    """The configuration this run uses (overlays merged, removals applied), as Snakemake holds it."""
    return {"config": copy.deepcopy(dict(config)), "removed": sorted(REMOVED_BY_OVERLAY)}


_check_report_config()


_check_config()
