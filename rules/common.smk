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
import json
import os
import re
import shlex

import yaml
from snakemake.utils import validate

from boostmdr.evaluate import MEASURES as EVAL_MEASURES
from boostmdr.replicates import replicate_seed
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
TINY_FASTTEXT = list(config.get("tiny_models", {}).get("topic_classifiers", {}))
# The demo wing's rules (rules/demo.smk) are included when the config uses the synthetic benchmark or a tiny model.
USES_DEMO = SYNTHETIC or any(
    str(spec["model"]).startswith("results/models/tiny/")
    for spec in [
        *config["backbones"].values(),
        *config["judges"].values(),
        *config.get("generators", {}).values(),
        *config["topics"]["classifiers"].values(),
    ]
)

# Stages whose rules exist. A variant that needs a stage outside this set is listed (its DAG shape is in the
# config) but its table rows are printed as pending rather than built.
BUILT_STAGES = {"miners", "stage1", "stage2", "stage3"}


def _check_config():
    from boostmdr.judge import PLACEHOLDERS as JUDGE_PLACEHOLDERS
    from boostmdr.listwise import PLACEHOLDERS as LISTWISE_PLACEHOLDERS
    from boostmdr.topics import SchemeError, TopicScheme

    check_language_keys(config)
    if SYNTHETIC and EVAL_SPLIT != "dev":
        raise ConfigError(f"benchmark.eval_split: {EVAL_SPLIT!r}, but the synthetic benchmark writes the dev split only")
    for name, spec in config["judges"].items():
        if spec["mode"] != "cascade":  # a cascade names two judges, checked as judges (_check_judges)
            placeholders = LISTWISE_PLACEHOLDERS if spec["mode"] == "listwise" else JUDGE_PLACEHOLDERS
            check_llm_entry(f"judges.{name}", spec, placeholders)
    for name, spec in config["backbones"].items():
        check_model(f"backbones.{name}.model", spec["model"])
    try:
        TopicScheme.from_dict(config["topics"])
    except SchemeError as err:
        raise ConfigError(str(err)) from None
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
    _check_judges()
    if config["mining"]["retriever"] not in DENSE:
        raise ConfigError(f"mining.retriever: {config['mining']['retriever']!r} must be a dense backbone, one of {DENSE}")
    for name, spec in config["tables"].items():
        layout = spec.get("layout", "languages")
        if (layout == "topics") == bool(_table_rows_raw(spec)):
            raise ConfigError(f"tables.{name}: layout {layout!r} " + ("takes no rows" if layout == "topics" else "needs rows"))
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


def _check_judges():
    """Cascades name two judges that exist and are not cascades; judge_eval names judges that exist."""
    judges = config["judges"]
    for name, spec in judges.items():
        if spec["mode"] != "cascade":
            continue
        for role in ("first", "second"):
            other = spec[role]
            if other not in judges or judges[other]["mode"] == "cascade":
                singles = sorted(n for n, s in judges.items() if s["mode"] != "cascade")
                raise ConfigError(f"judges.{name}.{role}: {other!r} is not a (non-cascade) judge; choose one of {singles}")
    for key in ("judges", "estimate"):
        for name in config["judge_eval"][key]:
            if name not in judges:
                raise ConfigError(f"judge_eval.{key}: {name!r} is not a judge; choose from {sorted(judges)}")


def _table_rows_raw(spec):
    if spec.get("groups"):
        return [dict(row, backbone=g, group=g) for g in spec["groups"] for row in spec["group_rows"]]
    return spec.get("rows", [])


def _alt(values):
    return "|".join(re.escape(v) for v in values) if values else "(?!x)x"


DENSE_ALT = _alt(DENSE)
CANDIDATE_RETRIEVERS = sorted(
    {m for ens in config["ensembles"].values() for m in ens["members"] if m in DENSE}
    | ({config["mining"]["retriever"]} & set(DENSE))
)
"""Dense retrievers whose zero-shot candidates feed the miners and stages 1-2: their zero-shot index is kept."""


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
    epochs=r"\d+",
    dataset="labels|planted",


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


def judge_env(name):
    """A judge runs in the vLLM environment when its backend is vllm, on the GPU stack when it holds GPUs."""
    backend = config["judges"][name]["backend"]
    if backend == "vllm":
        return conda_env("vllm")
    return conda_env("gpu" if backend == "transformers" and res("judge", "gpu") > 0 else "cpu")


def get_judge_env(wildcards):
    return judge_env(wildcards.judge)


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


def candidate_run(backbone, queries, lang):
    """The zero-shot top-k of every query of a query set (positives still in it): ``train`` (the training
    queries) or a stage-2 set of generated queries (query_sets())."""
    return f"results/candidates/{backbone}/{queries}/{lang}.trec"


def positive_scores_file(backbone, queries, lang):
    return f"results/candidates/{backbone}/{queries}/{lang}.positives.tsv"


def miner_negatives(backbone, miner, lang):
    return f"results/negatives/miners/{backbone}/{miner}/{lang}.jsonl"


def fused_run(ensemble, queries, lang):
    """An ensemble's fused candidates of a query set, the query set's labelled positives removed."""
    return f"results/fused/{ensemble}/{queries}/{lang}.trec"


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


def tiny_fasttext_file(name, ext):
    """A demo fastText topic classifier (ext bin) and its held-out accuracy report (ext json)."""
    return f"results/models/tiny/fasttext/{name}.{ext}"


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


UNSHARDED_LANGS = [lang for lang in LANGS if num_shards(lang) == 1]
"""Languages whose corpus is encoded as one shard: a fine-tuned model encodes and searches them in one job."""
UNSHARDED_JOBS = config["retrieval"]["unsharded_jobs"]
"""language: one such job per model and language; model: one per model for all of UNSHARDED_LANGS."""
FINETUNED_VARIANTS = [v for v in VARIANTS if v != "zeroshot"]


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
LLM_RESULT_OPTIONS = {"transformers": ("dtype", "attn_implementation"), "vllm": ("dtype", "max_model_len"), "http": ("endpoint",)}
LLM_RUN_OPTIONS = {
    "transformers": ("device", "max_batch_rows", "draft_tokens"),
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
    members = config["ensembles"][wildcards.ensemble]["members"]
    return [candidate_run(m, wildcards.queries, wildcards.lang) for m in members]


def get_fusion_params(wildcards):
    spec = config["ensembles"][wildcards.ensemble]
    return {"method": spec["fusion"], "rrf_k": spec["rrf_k"], "depth": spec["depth"]}


def judge_spec(name):
    return config["judges"][name]


def judge_model_inputs(name):
    model = judge_spec(name)["model"]
    return [model_weights(model)] if model.startswith("results/models/") else []


def get_judge_model_inputs(wildcards):
    return judge_model_inputs(wildcards.judge)


def judge_params(name):
    """Everything that determines a verdict of judge ``name`` (the verdict cache is keyed on the same things).
    A pointwise judge's mode and structured-output flags are empty: its command is the paper protocol's."""
    spec = judge_spec(name)
    mode = f"--mode listwise --window {spec['window']}" if spec["mode"] == "listwise" else ""
    return {
        "llm": llm_result_flags(spec),
        "samples": ",".join(f"{p}:{t}" for p, t in spec["samples"]),
        "max_new_tokens": spec["max_new_tokens"],
        "max_passage_words": f"--max-passage-words {spec['max_passage_words']}" if spec["max_passage_words"] else "",
        "retries": spec["retries"],
        "seed": spec["seed"],
        "mode": mode,
        "structured": "--structured-output" if spec["structured_output"] else "",
        "fill": "",
    }


def get_judge_params(wildcards):
    return judge_params(wildcards.judge)


def get_generated_judge_params(wildcards):
    """Stage 2's judge: the stage-1 judge's settings, and (pointwise) judging each query's new candidates only until
    its stage-1 pool is topped up to N (judge --fill-pool): the verdicts the top-up reads, no more."""
    params = judge_params(wildcards.judge)
    if judge_spec(wildcards.judge)["mode"] == "pointwise":
        pool = pool_file(wildcards.ensemble, wildcards.judge, wildcards.reference, wildcards.keep, wildcards.lang)
        params["fill"] = f"--fill-pool {pool} --pool-size {wildcards.size} --keep {wildcards.keep.replace('-', ',')}"
    return params


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
    return stage2_negatives_file(variant_name, lang)


# -------------------------------------------------------------------------------------------- training


def get_train_inputs(wildcards):
    return {
        "negatives": [negatives_file(wildcards.variant, lang) for lang in LANGS],
        "corpora": all_corpora(),
        "model": model_inputs(wildcards.backbone, "zeroshot"),
        "manifest": manifest_file(wildcards.variant, backbone_epochs(wildcards.backbone)),
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
        "loss_weighting": VARIANTS[wildcards.variant]["batching"]["loss_weighting"],
        "length_buckets": t["length_buckets"],
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


def table_layout(table):
    return config["tables"][table].get("layout", "languages")


def get_table_inputs(wildcards):
    layout = table_layout(wildcards.table)
    if layout == "topics":
        return [topic_file(lang) for lang in LANGS]
    if layout == "batches":
        return list(get_table_row_files(wildcards).values())
    return [eval_file(backbone, variant, lang) for backbone, variant in table_eval_keys(wildcards.table) for lang in LANGS]


def get_table_layout(wildcards):
    return table_layout(wildcards.table)


def get_table_topics(wildcards):
    return list(config["topics"]["names"])


def get_table_row_files(wildcards):
    """Layout batches: each built row's batch statistics (the manifest its model trains from)."""
    if table_layout(wildcards.table) != "batches":
        return {}
    return {
        r["label"]: manifest_stats_file(r["variant"], backbone_epochs(r["backbone"]))
        for r in table_rows(wildcards.table)
        if not r["pending"]
    }


def get_table_title(wildcards):
    return config["tables"][wildcards.table]["title"]


def get_table_metric(wildcards):
    return config["tables"][wildcards.table].get("metric", "ndcg_cut_10")


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
    if not 0 < len(LOW_RESOURCE) < len(LANGS):
        # a run of only low-resource (or only other) languages, e.g. one language: nothing to set apart
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


def get_global_wildcard_constraints(wildcards):
    """The workflow's global wildcard constraints: the cost table matches a wildcard as the rules do."""
    return dict(workflow.wildcard_constraints)


def get_rule_stages(wildcards):
    """Each rule's stage: the rules file it is defined in (rules/stage1.smk -> stage1)."""
    return {r.name: os.path.splitext(os.path.basename(str(r.snakefile)))[0] for r in workflow.rules}


def get_gpu_rules(wildcards):
    return {r.name: r.resources["gpu"] for r in workflow.rules if isinstance(r.resources.get("gpu"), int) and r.resources["gpu"] > 0}


def get_stage1_targets():
    if "stage1" not in BUILT_STAGES:
        return []
    return [table_file("elimination", "md")] + ([table_file("judge_quality", "md")] if SYNTHETIC else [])


def check_after_rules():
    """Checks that need every rule defined (called at the end of the Snakefile)."""
    check_resources(config, [r.name for r in workflow.rules])


# ------------------------------------------------------------------------------------------- stage 3
# Topics per language (rule topics), a batch manifest per fine-tuned variant and epoch count (rule batches; every
# fine-tuned variant trains from one, baselines included: without stage 3 it holds the shuffled batches).


def topic_file(lang):
    return f"results/stage3/topics/{lang}.jsonl"


def manifest_file(variant, epochs):
    """The batches (and negative weights) of a variant for `epochs` epochs; backbones with the same epoch count
    share it."""
    return f"results/batches/{variant}/epochs-{epochs}.jsonl.gz"


def manifest_stats_file(variant, epochs):
    return f"results/batches/{variant}/epochs-{epochs}.stats.json"


def backbone_epochs(backbone):
    return config["backbones"][backbone]["epochs"]


def get_topic_model_inputs(wildcards):
    """Classifier models the workflow builds (the demo's); an external path is read as it is, not tracked."""
    models = [spec["model"] for spec in config["topics"]["classifiers"].values()]
    return [m for m in models if m.startswith("results/models/")]


def get_topic_params(wildcards):
    t = config["topics"]
    scheme = {k: t[k] for k in ("names", "fallback", "order", "classifiers")}
    return {"scheme": shlex.quote(json.dumps(scheme, ensure_ascii=False)), "text": t["text"], "preprocessing": t["preprocessing"]}


def variant_needs_topics(variant):
    batching = VARIANTS[variant]["batching"]
    return batching["topic_balance"] or batching["weights"] == "proportion"


def get_batch_inputs(wildcards):
    return {
        "negatives": [negatives_file(wildcards.variant, lang) for lang in LANGS],
        "topics": [topic_file(lang) for lang in LANGS] if variant_needs_topics(wildcards.variant) else [],
    }


def get_batch_params(wildcards):
    """Everything that changes a manifest: the variant's batching settings and training's batch size, group size
    and seed."""
    b, t = VARIANTS[wildcards.variant]["batching"], config["training"]
    flags = [
        "--same-language" if b["same_language"] else "--no-same-language",
        "--topic-balance" if b["topic_balance"] else "--no-topic-balance",
        f"--weights {b['weights']} --alpha {b['alpha']} --beta {b['beta']}",
        f"--batch-size {t['batch_size']} --group-size {t['group_size']} --seed {t['seed']}",
    ]
    return " ".join(flags)


def get_batch_topic_flag(wildcards, input):
    return f"--topics {' '.join(input.topics)}" if input.topics else ""

# ------------------------------------------------------------------------ judging at scale (issue 16)
# A cascade judge (mode: cascade) runs its first judge's ordinary verdicts, then its second judge on the queries they
# escalate (rule judge_escalated), then merges both (rule cascade). The judge evaluation (rules/judging.smk) runs the
# same rules' commands on held-out samples whose truth is known, and the dry estimate renders the prompts stage 1
# would send.

CASCADES = [n for n, s in config["judges"].items() if s["mode"] == "cascade"]
SINGLE_JUDGES = [n for n in config["judges"] if n not in CASCADES]
CASCADE_ALT = _alt(CASCADES)
SINGLE_JUDGE_ALT = _alt(SINGLE_JUDGES)
JUDGE_EVAL = config["judge_eval"]
JUDGE_DATASETS = ["labels", "planted"] if SYNTHETIC else ["labels"]


def cascade_parts(name):
    spec = judge_spec(name)
    return spec["first"], spec["second"]


def escalated_verdict_file(ensemble, judge, reference, lang, chunk, nchunks):
    """The second judge's verdicts on the queries a cascade's first judge escalates (one chunk)."""
    return f"results/stage1/escalated/{ensemble}/{judge}/{reference}/{lang}/chunk-{chunk}-of-{nchunks}.jsonl"


def escalated_cache_file(ensemble, judge, reference, lang, chunk, nchunks):
    """The escalated job's generation cache, in its second judge's cache directory: it reuses what that judge made
    standing alone (same prompts and seeds), and no file has two writers."""
    second = cascade_parts(judge)[1]
    return f"results/cache/judge/{second}/{lang}/{ensemble}.{reference}.cascade-{judge}.chunk-{chunk}-of-{nchunks}.jsonl"


def judge_holdout_file(lang):
    """Held-out training queries (topics file) of the judge evaluation; the demo's tiny judges never train on them."""
    return f"results/judge_eval/holdout/{lang}.tsv"


def judge_sample_file(dataset, lang, name):
    """A judge-evaluation dataset: train.jsonl (queries and references), candidates.trec, truth.tsv, info.json."""
    return f"results/judge_eval/sample/{dataset}/{lang}/{name}"


def judge_sample_verdicts(dataset, judge, reference, lang):
    return f"results/judge_eval/verdicts/{dataset}/{judge}/{reference}/{lang}.jsonl"


def judge_sample_summary(dataset, judge, reference, lang):
    return f"results/judge_eval/verdicts/{dataset}/{judge}/{reference}/{lang}.summary.json"


def judge_sample_escalated(dataset, judge, reference, lang):
    return f"results/judge_eval/escalated/{dataset}/{judge}/{reference}/{lang}.jsonl"


def judge_sample_escalated_summary(dataset, judge, reference, lang):
    return f"results/judge_eval/escalated/{dataset}/{judge}/{reference}/{lang}.summary.json"


def judge_sample_cache(dataset, judge, reference, lang, step):
    """A judge-evaluation job's private generation cache (its own directory: the measured cost is this job's)."""
    return f"results/cache/judge_eval/{dataset}/{judge}/{reference}/{lang}/{step}/generations.jsonl"


def get_sample_judge_cache(wildcards):
    w = wildcards
    return judge_sample_cache(w.dataset, w.judge, w.reference, w.lang, "judge")


def get_sample_escalated_cache(wildcards):
    w = wildcards
    return judge_sample_cache(w.dataset, w.judge, w.reference, w.lang, "escalated")


def get_judge_prompt(wildcards):
    return judge_spec(wildcards.judge)["prompt"]


def judge_eval_file(dataset, judge, reference, lang):
    return f"results/judge_eval/eval/{dataset}/{judge}/{reference}/{lang}.json"


def judge_estimate_file(ensemble, judge, reference, lang):
    return f"results/judge_eval/estimate/{ensemble}/{judge}/{reference}/{lang}.json"


def get_escalated_first_verdicts(wildcards):
    first = cascade_parts(wildcards.judge)[0]
    return verdict_files(wildcards.ensemble, first, wildcards.reference, wildcards.lang)


def get_second_judge_prompt(wildcards):
    return judge_spec(cascade_parts(wildcards.judge)[1])["prompt"]


def get_second_judge_model_inputs(wildcards):
    return judge_model_inputs(cascade_parts(wildcards.judge)[1])


def get_second_judge_params(wildcards):
    return judge_params(cascade_parts(wildcards.judge)[1])


def get_second_judge_backend_flags(wildcards):
    return llm_run_flags(judge_spec(cascade_parts(wildcards.judge)[1]))


def get_second_judge_env(wildcards):
    return judge_env(cascade_parts(wildcards.judge)[1])


def get_escalated_cache(wildcards):
    w = wildcards
    return escalated_cache_file(w.ensemble, w.judge, w.reference, w.lang, w.chunk, w.nchunks)


def get_cascade_names(wildcards):
    first, second = cascade_parts(wildcards.judge)
    return {"first": shlex.quote(first), "second": shlex.quote(second)}


def get_holdout_files(wildcards):
    """The held-out query files of every language (in LANGS order, as the tiny LM pairs them with train.jsonl)."""
    return [judge_holdout_file(lang) for lang in LANGS]


def get_judge_eval_params(wildcards):
    return {
        "size": JUDGE_EVAL["holdout_queries"],
        "seed": JUDGE_EVAL["seed"],
        "single_positive": JUDGE_EVAL["single_positive"],
        "keep": ",".join(str(k) for k in sorted(JUDGE_EVAL["keep_verdicts"])),
    }


def get_judge_sample_inputs(wildcards):
    inputs = {"train": data(wildcards.lang, "train.jsonl"), "holdout": judge_holdout_file(wildcards.lang)}
    if wildcards.dataset == "planted":
        ensemble = main_stage1()[0]
        inputs.update(candidates=fused_run(ensemble, "train", wildcards.lang), truth=truth_file(wildcards.lang))
    return inputs


def get_judge_sample_flags(wildcards, input):
    if wildcards.dataset == "planted":
        return f"--candidates {input.candidates} --truth {input.truth}"
    return f"--single-positive {JUDGE_EVAL['single_positive']}"


def get_no_positive_flag(wildcards):
    """The labels sample holds queries without a reference positive only when single_positive is 'empty'."""
    empty = wildcards.dataset == "labels" and JUDGE_EVAL["single_positive"] == "empty"
    return "--no-positive-reference empty" if empty else ""


def get_sample_first_verdicts(wildcards):
    first = cascade_parts(wildcards.judge)[0]
    return judge_sample_verdicts(wildcards.dataset, first, wildcards.reference, wildcards.lang)


def get_judge_eval_inputs(wildcards):
    w = wildcards
    inputs = {
        "verdicts": judge_sample_verdicts(w.dataset, w.judge, w.reference, w.lang),
        "truth": judge_sample_file(w.dataset, w.lang, "truth.tsv"),
        "info": judge_sample_file(w.dataset, w.lang, "info.json"),
    }
    if w.judge in CASCADES:
        first = cascade_parts(w.judge)[0]
        inputs["summaries"] = [
            judge_sample_summary(w.dataset, first, w.reference, w.lang),
            judge_sample_escalated_summary(w.dataset, w.judge, w.reference, w.lang),
        ]
    else:
        inputs["summaries"] = [judge_sample_summary(w.dataset, w.judge, w.reference, w.lang)]
    return inputs


def get_judge_mode(wildcards):
    return judge_spec(wildcards.judge)["mode"]


def judge_label(name):
    spec = judge_spec(name)
    if spec["mode"] == "cascade":
        return f"{name} (cascade: {spec['first']} -> {spec['second']})"
    return f"{name} ({spec['mode']}{', structured' if spec['structured_output'] else ''})"


def judge_table_inputs(kind):
    reference = JUDGE_EVAL["reference"]
    return [
        judge_eval_file(d, j, reference, lang)
        for d in (["labels"] if kind == "labels" else JUDGE_DATASETS)
        for j in JUDGE_EVAL["judges"]
        for lang in LANGS
    ]


def get_labels_table_inputs(wildcards):
    return judge_table_inputs("labels")


def get_cost_table_inputs(wildcards):
    return judge_table_inputs("cost")


def get_labels_table_params(wildcards):
    return judge_table_params("labels")


def get_cost_table_params(wildcards):
    return judge_table_params("cost")


def judge_table_params(kind):
    reference = JUDGE_EVAL["reference"]
    judges = [{"name": j, "label": judge_label(j)} for j in JUDGE_EVAL["judges"]]
    if kind == "labels":
        title = (
            f"The judges on held-out human labels ({JUDGE_EVAL['holdout_queries']} held-out training queries per "
            f"language, reference {reference}; relevant = verdict outside {sorted(JUDGE_EVAL['keep_verdicts'])})"
        )
        pattern = judge_eval_file("labels", "{judge}", reference, "{lang}")
    else:
        title = "Cost of judging per mode: calls and tokens measured over the held-out samples (totals over languages)"
        pattern = judge_eval_file("{dataset}", "{judge}", reference, "{lang}")
    return {"kind": kind, "title": title, "pattern": pattern, "judges": judges, "datasets": JUDGE_DATASETS}


def get_estimate_inputs(wildcards):
    ensemble, _, reference = main_stage1()
    singles = []
    for name in JUDGE_EVAL["estimate"]:
        singles += list(cascade_parts(name)) if name in CASCADES else [name]
    return [judge_estimate_file(ensemble, j, reference, lang) for j in dict.fromkeys(singles) for lang in LANGS]


def get_estimate_params(wildcards):
    ensemble, _, reference = main_stage1()
    judges = []
    for name in JUDGE_EVAL["estimate"]:
        if name in CASCADES:
            first, second = cascade_parts(name)
            parts = [[first, 1.0], [second, judge_spec(name)["escalation_share"]]]
            label = f"{judge_label(name)}, {judge_spec(name)['escalation_share']:.0%} escalated (assumed)"
        else:
            parts, label = [[name, 1.0]], f"{judge_label(name)}: {judge_spec(name)['model']}"
        judges.append({"name": name, "label": label, "parts": parts})
    return {
        "kind": "estimate",
        "title": f"Dry estimate of judging every training query's {ensemble} candidates (nothing called; output at most max_new_tokens per call)",
        "pattern": judge_estimate_file(ensemble, "{judge}", reference, "{lang}"),
        "judges": judges,
        "datasets": [],
    }


def get_estimate_data(wildcards):
    return {
        "candidates": fused_run(wildcards.ensemble, "train", wildcards.lang),
        "train": data(wildcards.lang, "train.jsonl"),
        "corpus": data(wildcards.lang, "corpus.jsonl"),
        "prompt": judge_spec(wildcards.judge)["prompt"],
        "model": judge_model_inputs(wildcards.judge),
    }


def get_estimate_flags(wildcards):
    """The judge's prompt settings, its token counter (tokenizer, else its local model, else the ratio) and prices."""
    spec = judge_spec(wildcards.judge)
    p = judge_params(wildcards.judge)
    tokenizer = spec["tokenizer"] or (spec["model"] if spec["model"].startswith("results/models/") or os.path.isdir(spec["model"]) else None)
    flags = [
        f"--mode {spec['mode']} --window {spec['window']} --samples {p['samples']}",
        f"--max-new-tokens {p['max_new_tokens']} {p['max_passage_words']} --seed {p['seed']}",
        f"--tokenizer {shlex.quote(tokenizer)}" if tokenizer else f"--chars-per-token {spec['chars_per_token']}",
    ]
    for key, flag in (("price_input_per_1m", "--price-input"), ("price_output_per_1m", "--price-output")):
        if spec[key] is not None:
            flags.append(f"{flag} {spec[key]}")
    return " ".join(flags)


def get_judging_targets():
    if "stage1" not in BUILT_STAGES:
        return []
    return [table_file(name, "md") for name in ("judge_labels", "judge_cost", "judge_estimate")]


def get_final_targets():
    return (
        [table_file(t, "md") for t in config["tables"]]
        + get_stage1_targets()
        + get_stage2_targets()
        + get_judging_targets()
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
    # Figure 3 (pool size N) and every other table with a ``figure``; every figure target is in the report.
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


# -------------------------------------------------------------------------------------------- stage 2
# Stage 2 (rules/stage2.smk): MIFT of each generator, PDBG generation for the short stage-1 pools, retrieval
# of the generated queries by the stage-1 rules (query set wildcard {queries}), the judged top-up to N.

GENERATORS = config.get("generators", {})
GSET = "{ensemble}/{judge}/{reference}/keep-{keep}/n{size}/{generator}/{mode}"
"""The wildcard pattern of a generated query set: what it was generated for (a stage-1 pool, N) and how."""


def generation_mode(mift, pdbg):
    """``mift-pdbg`` (the method), ``base-pdbg`` (w/o MIFT), ``mift-direct`` (w/o PDBG), ``base-direct``."""
    return f"{'mift' if mift else 'base'}-{'pdbg' if pdbg else 'direct'}"


def generated_set(ensemble, judge, reference, keep, size, generator, mode):
    return f"{ensemble}/{judge}/{reference}/keep-{keep}/n{size}/{generator}/{mode}"


def wildcard_gset(wildcards):
    w = wildcards
    return generated_set(w.ensemble, w.judge, w.reference, w.keep, w.size, w.generator, w.mode)


def query_set_name(gset):
    """The {queries} value of a generated query set (candidate runs, fusion)."""
    return f"pdbg/{gset}"


def stage2_settings(variant_name):
    """Where a method-``ours`` variant's final pool comes from: its stage-1 settings, N, and with generation
    the generator, its mode and whether new candidates are judged (``None`` for other methods)."""
    neg = VARIANTS[variant_name]["negatives"]
    if neg["method"] != "ours":
        return None
    s = {
        "ensemble": neg["ensemble"],
        "judge": neg["judge"] or "none",
        "reference": neg["reference"],
        "keep": keep_tag(neg["keep_verdicts"]),
        "size": neg["pool_size"],
    }
    if neg["generation"]:
        s["generator"] = neg["generator"]
        s["mode"] = generation_mode(neg["mift"], neg["pdbg"])
        s["screen"] = "judged" if neg["judge"] and neg["judge_generated"] else "unjudged"
    return s


def settings_gset(s):
    return generated_set(s["ensemble"], s["judge"], s["reference"], s["keep"], s["size"], s["generator"], s["mode"])


def _query_sets():
    sets = {}
    for name in VARIANTS:
        s = stage2_settings(name) if VARIANTS[name]["finetune"] else None
        if s and "generator" in s:
            sets[query_set_name(settings_gset(s))] = s
    return sets


QUERY_SETS = _query_sets()
"""Every generated query set a variant needs: {queries} value -> settings."""


wildcard_constraints:
    queries=_alt(["train"] + list(QUERY_SETS)),
    generator=_alt(list(GENERATORS)),
    mode="(mift|base)-(pdbg|direct)",
    screen="judged|unjudged",
    size=r"\d+",


def _check_stage2_config():
    for name in VARIANTS:
        s = stage2_settings(name) if VARIANTS[name]["finetune"] else None
        if not s or "generator" not in s:
            continue
        g = s["generator"]
        if g not in GENERATORS:
            raise ConfigError(f"variants.{name}.negatives.generator: {g!r} is not a generator; choose one of {sorted(GENERATORS)}")
        spec = GENERATORS[g]
        if s["mode"].startswith("mift") and spec["backend"] == "http" and not spec["mift"]["merge"]:
            raise ConfigError(
                f"generators.{g}: backend http cannot apply the MIFT adapter; set generators.{g}.mift.merge: true "
                "and serve the merged model, or use backend transformers or vllm"
            )
    for g, spec in GENERATORS.items():
        tr = spec["mift"]["translation"]
        if tr["kind"] == "files" and "{lang}" not in tr["files"]:
            raise ConfigError(f"generators.{g}.mift.translation.files: {tr['files']!r} needs {{lang}} where the language goes")
        if tr["kind"] in ("transformers", "llm") and not tr.get("model"):
            raise ConfigError(f"generators.{g}.mift.translation.model: kind {tr['kind']} needs a model")


def mift_file(generator, name):
    """MIFT data of a generator: selected.jsonl, selected.stats.json, instructions/{lang}.jsonl (and .stats.json)."""
    return f"results/stage2/mift/{generator}/{name}"


def adapter_dir(generator):
    return f"results/models/generators/{generator}/adapter"


def adapter_weights(directory):
    """The file rules track for a LoRA adapter directory."""
    return f"{directory}/adapter_model.safetensors"


def merged_dir(generator):
    return f"results/models/generators/{generator}/merged"


def merged_marker(directory):
    """Written last into a merged model (its weights may be sharded): the file rules track."""
    return f"{directory}/boostmdr_merged.json"


def mift_state_dir(generator):
    return f"results/state/mift/{generator}"


def translation_cache_file(generator, lang):
    return f"results/cache/translate/{lang}/{generator}.jsonl"


def generated_file(gset, lang, name):
    """A generated query set's files: queries.jsonl, topics.tsv, train.jsonl, stats.json."""
    return f"results/stage2/queries/{gset}/{lang}.{name}"


def generation_cache_file(gset, lang):
    """One generation job's cache; it reads every file beside it (one generator, one language)."""
    ensemble, judge, reference, keep, size, generator, mode = gset.split("/")
    return f"results/cache/generate/{generator}/{lang}/{ensemble}.{judge}.{reference}.{keep}.{size}.{mode}.jsonl"


def stage2_candidates_file(gset, lang, name):
    """New candidates of the training queries: {lang}.trec (for the judge) and {lang}.provenance.jsonl."""
    return f"results/stage2/candidates/{gset}/{lang}.{name}"


def stage2_verdict_file(gset, lang, chunk, nchunks):
    return f"results/stage2/verdicts/{gset}/{lang}/chunk-{chunk}-of-{nchunks}.jsonl"


def final_pool_file(ensemble, judge, reference, keep, size, topup, lang):
    """The final negatives of a method-ours variant. topup: none (stage 1 cut to N) or generator/mode/screen."""
    return f"results/stage2/pool/{ensemble}/{judge}/{reference}/keep-{keep}/n{size}/{topup}/{lang}.jsonl"


def final_pool_stats_file(ensemble, judge, reference, keep, size, topup, lang):
    return f"results/stage2/pool/{ensemble}/{judge}/{reference}/keep-{keep}/n{size}/{topup}/{lang}.stats.json"


def stage2_stats_file(gset, lang, name):
    """Analysis of a generated query set: roundtrip.json, false_negatives.json (synthetic only)."""
    return f"results/stage2/stats/{gset}/{lang}.{name}"


def topup_tag(s):
    return f"{s['generator']}/{s['mode']}/{s['screen']}" if "generator" in s else "none"


def stage2_negatives_file(variant_name, lang):
    s = stage2_settings(variant_name)
    return final_pool_file(s["ensemble"], s["judge"], s["reference"], s["keep"], s["size"], topup_tag(s), lang)


def generator_spec(name):
    return GENERATORS[name]


def query_topics(queries, lang):
    if queries == "train":
        return data(lang, "train.topics.tsv")
    return generated_file(settings_gset(QUERY_SETS[queries]), lang, "topics.tsv")


def query_train(queries, lang):
    """The query set's train.jsonl: its queries' labelled positives (generated queries: their training query's)."""
    if queries == "train":
        return data(lang, "train.jsonl")
    return generated_file(settings_gset(QUERY_SETS[queries]), lang, "train.jsonl")


def get_query_topics(wildcards):
    return query_topics(wildcards.queries, wildcards.lang)


def get_query_train(wildcards):
    return query_train(wildcards.queries, wildcards.lang)


def _model_file_inputs(model):
    return [model_weights(model)] if model.startswith("results/models/") else []


def generator_llm(generator, mode):
    """(model, adapter or None, input files) a generator runs with: the base model (w/o MIFT), the merged
    model (mift.merge) or the base model with the MIFT adapter."""
    spec = generator_spec(generator)
    base = spec["model"]
    if mode.startswith("base-"):
        return base, None, _model_file_inputs(base)
    if spec["mift"]["merge"]:
        return merged_dir(generator), None, [merged_marker(merged_dir(generator))]
    return base, adapter_dir(generator), _model_file_inputs(base) + [adapter_weights(adapter_dir(generator))]


def get_generator_model_inputs(wildcards):
    return generator_llm(wildcards.generator, wildcards.mode)[2]


def get_generator_prompts(wildcards):
    prompts = generator_spec(wildcards.generator)["prompts"]
    return [prompts["summary"], prompts["query"]] if wildcards.mode.endswith("-pdbg") else [prompts["direct"]]


def get_generate_params(wildcards):
    """Everything that determines the generated queries (the generation cache is keyed on the same things)."""
    spec = generator_spec(wildcards.generator)
    model, adapter, _ = generator_llm(wildcards.generator, wildcards.mode)
    prompts = spec["prompts"]
    if wildcards.mode.endswith("-pdbg"):
        templates = f"--summary-prompt {shlex.quote(prompts['summary'])} --query-prompt {shlex.quote(prompts['query'])}"
    else:
        templates = f"--direct-prompt {shlex.quote(prompts['direct'])}"
    sampling = spec["sampling"]
    flags = [
        llm_result_flags(dict(spec, model=model)),
        f"--adapter {shlex.quote(adapter)}" if adapter else "",
        f"--mode {wildcards.mode.split('-')[1]}",
        templates,
        f"--prompt-format {spec['prompt_format']}",
        f"--temperature {sampling['temperature']} --top-p {sampling['top_p']}",
        f"--summary-max-new-tokens {sampling['summary_max_new_tokens']}",
        f"--query-max-new-tokens {sampling['query_max_new_tokens']}",
        f"--queries-per-query {spec['queries_per_query']}",
        f"--max-passage-words {spec['max_passage_words'] or 0}",
        f"--retries {spec['retries']} --seed {spec['seed']}",
    ]
    return " ".join(f for f in flags if f)


def get_generator_backend_flags(wildcards):
    return llm_run_flags(generator_spec(wildcards.generator))


def get_generation_cache(wildcards):
    return generation_cache_file(wildcard_gset(wildcards), wildcards.lang)


def get_generator_env(wildcards):
    backend = generator_spec(wildcards.generator)["backend"]
    if backend == "vllm":
        return conda_env("vllm")
    return conda_env("gpu" if backend == "transformers" and res("generate", "gpu") > 0 else "cpu")


def get_mift_instructions(wildcards):
    return generator_spec(wildcards.generator)["mift"]["instructions"]


def get_mift_select_params(wildcards):
    m = generator_spec(wildcards.generator)["mift"]
    return {"mode": m["selection"], "max_samples": m["max_samples"] or 0, "languages": len(LANGS)}


def get_translation_inputs(wildcards):
    """The translation's inputs besides the selected records: the source and the language's translated file
    (files), a translation model this workflow builds (transformers, llm), the prompt (llm)."""
    m = generator_spec(wildcards.generator)["mift"]
    tr = m["translation"]
    if tr["kind"] == "files":
        return {"source": m["instructions"], "translated": tr["files"].replace("{lang}", wildcards.lang)}
    model = tr["model"].replace("{lang}", wildcards.lang)
    out = {"model": _model_file_inputs(model)}
    if tr["kind"] == "llm":
        out["prompt"] = tr["prompt"]
    return out


def get_translation_flags(wildcards, input):
    """The kind's flags (every setting that changes a translation), shell-quoted."""
    tr = generator_spec(wildcards.generator)["mift"]["translation"]
    cache = translation_cache_file(wildcards.generator, wildcards.lang)
    if tr["kind"] == "files":
        return f"files --source {shlex.quote(input.source)} --files {shlex.quote(tr['files'])}"
    if tr["kind"] == "transformers":
        codes = " ".join(shlex.quote(f"{k}={v}") for k, v in (tr["codes"] or {}).items())
        return (
            f"transformers --model {shlex.quote(tr['model'])} --code-scheme {tr['code_scheme']}"
            + (f" --codes {codes}" if codes else "")
            + f" --batch-size {tr['batch_size']} --num-beams {tr['num_beams']} --max-new-tokens {tr['max_new_tokens']}"
            f" --max-input-tokens {tr['max_input_tokens']} --cache {cache}"
        )
    return (
        f"llm {llm_result_flags(tr)} {llm_run_flags(tr)} --prompt {shlex.quote(tr['prompt'])}"
        f" --prompt-format {tr['prompt_format']} --max-new-tokens {tr['max_new_tokens']} --retries {tr['retries']}"
        f" --seed {tr['seed']} --cache {cache}"
    )


def get_translation_env(wildcards):
    tr = generator_spec(wildcards.generator)["mift"]["translation"]
    if tr["kind"] == "llm" and tr["backend"] == "vllm":
        return conda_env("vllm")
    return conda_env("gpu" if tr["kind"] != "files" and res("mift_translate", "gpu") > 0 else "cpu")


def get_mift_train_inputs(wildcards):
    return {
        "data": [mift_file(wildcards.generator, f"instructions/{lang}.jsonl") for lang in LANGS],
        "model": _model_file_inputs(generator_spec(wildcards.generator)["model"]),
    }


def get_mift_train_params(wildcards):
    """Everything that changes the adapter."""
    spec = generator_spec(wildcards.generator)
    lora, t = spec["mift"]["lora"], spec["mift"]["train"]
    flags = [
        f"--rank {lora['rank']} --alpha {lora['alpha']} --dropout {lora['dropout']} --target {shlex.quote(lora['target'])}",
        f"--lr {t['learning_rate']} --epochs {t['epochs']} --scheduler {t['scheduler']} --warmup-ratio {t['warmup_ratio']}",
        f"--cutoff {t['cutoff']} --batch-size {t['batch_size']} --gradient-accumulation {t['gradient_accumulation']}",
        f"--seed {t['seed']} --precision {t['precision']} --quantization {t['quantization']}",
        "--gradient-checkpointing" if t["gradient_checkpointing"] else "",
        f"--deepspeed {shlex.quote(t['deepspeed'])}" if t["deepspeed"] else "",
        f"--prompt-format {spec['prompt_format']}",
    ]
    return " ".join(f for f in flags if f)


def get_generated_fused(wildcards):
    return fused_run(wildcards.ensemble, query_set_name(wildcard_gset(wildcards)), wildcards.lang)


def get_generated_member_runs(wildcards):
    members = config["ensembles"][wildcards.ensemble]["members"]
    return [candidate_run(m, query_set_name(wildcard_gset(wildcards)), wildcards.lang) for m in members]


def get_stage2_judge_cache(wildcards):
    w = wildcards
    flat = ".".join([w.ensemble, w.reference, f"keep-{w.keep}", f"n{w.size}", w.generator, w.mode])
    return f"results/cache/judge/{w.judge}/{w.lang}/stage2.{flat}.chunk-{w.chunk}-of-{w.nchunks}.jsonl"


def get_topup_verdicts(wildcards):
    if wildcards.screen == "unjudged":
        return []
    n = judge_spec(wildcards.judge)["chunks"]
    return [stage2_verdict_file(wildcard_gset(wildcards), wildcards.lang, i, n) for i in range(n)]


def get_topup_flags(wildcards):
    return "--no-judge" if wildcards.screen == "unjudged" else f"--keep {wildcards.keep.replace('-', ',')}"


def get_roundtrip_params(wildcards):
    spec = config["ensembles"][wildcards.ensemble]
    return {"method": spec["fusion"], "rrf_k": spec["rrf_k"], "k": generator_spec(wildcards.generator)["roundtrip_k"]}


def main_stage2():
    """The final-pool settings of the full method (variant 'full'): the ones Table 8 describes."""
    s = stage2_settings("full") if "full" in VARIANTS else None
    return s if s and "generator" in s else None


def get_table8_inputs(wildcards):
    s = main_stage2()
    ensemble, judge, reference = main_stage1()
    return [
        f
        for lang in LANGS
        for f in (
            final_pool_stats_file(s["ensemble"], s["judge"], s["reference"], s["keep"], s["size"], topup_tag(s), lang),
            judge_stats_file(ensemble, judge, reference, lang),
        )
    ]


def get_stage2_table_inputs(wildcards):
    s = main_stage2()
    gset = settings_gset(s)
    return [
        f
        for lang in LANGS
        for f in (
            final_pool_stats_file(s["ensemble"], s["judge"], s["reference"], s["keep"], s["size"], topup_tag(s), lang),
            generated_file(gset, lang, "stats.json"),
            stage2_stats_file(gset, lang, "roundtrip.json"),
        )
    ]


def get_false_negative_table_inputs(wildcards):
    gset = settings_gset(main_stage2())
    return [stage2_stats_file(gset, lang, "false_negatives.json") for lang in LANGS]


def get_false_negative_pools(wildcards):
    w = wildcards
    return {
        screen: final_pool_file(w.ensemble, w.judge, w.reference, w.keep, w.size, f"{w.generator}/{w.mode}/{screen}", w.lang)
        for screen in ("judged", "unjudged")
    }


def get_stage2_subtitle(wildcards):
    s = main_stage2()
    return f"final pools {settings_gset(s)}, {s['screen']} top-up, N = {s['size']}"


def get_stage2_targets():
    if "stage2" not in BUILT_STAGES or main_stage2() is None:
        return []
    targets = [table_file("table8", "md"), table_file("stage2", "md")]
    if SYNTHETIC and main_stage2()["judge"] != "none":
        targets.append(table_file("generation_false_negatives", "md"))
    return targets


_check_stage2_config()


# ------------------------------------------------------------------ replicates (rules/replicates.smk)


REPLICATES = config.get("replicates") or {}
REPLICATE_SEEDS = [int(s) for s in REPLICATES.get("seeds", [])]
REPLICATE_BACKBONE = REPLICATES.get("backbone", "bge")
REPLICATE_ROWS = list(REPLICATES.get("rows", []))
MAIN_SEED = int(config["benchmark"].get("synthetic", {}).get("seed", 0)) if SYNTHETIC else None


def _check_replicates():
    if not REPLICATES or not SYNTHETIC:
        return
    for i, row in enumerate(REPLICATE_ROWS):
        if row["variant"] not in VARIANTS or not VARIANTS[row["variant"]]["finetune"]:
            raise ConfigError(f"replicates.rows[{i}].variant: {row['variant']!r} is not a fine-tuned variant")
    if "replicates" in config["tables"]:
        raise ConfigError("tables.replicates: the name is taken by the replicates table (config key replicates)")
    if REPLICATE_BACKBONE not in DENSE:
        raise ConfigError(f"replicates.backbone: {REPLICATE_BACKBONE!r} is not a dense backbone; choose one of {DENSE}")


_check_replicates()


def replicate_dir(seed):
    return f"results/replicates/seed-{seed}"


def replicate_eval_file(seed, variant, lang):
    path = eval_file(REPLICATE_BACKBONE, variant, lang)
    return path if int(seed) == MAIN_SEED else f"{replicate_dir(seed)}/{path}"


def replicate_config(wildcards):
    """The replicate's whole config: this run's, with its benchmark and training seeds."""
    seeds = replicate_seed(int(wildcards.seed), MAIN_SEED, int(config["training"]["seed"]))
    cfg = copy.deepcopy(config)
    cfg["benchmark"]["synthetic"]["seed"] = seeds["benchmark"]
    cfg["training"]["seed"] = seeds["training"]
    return cfg


def get_replicate_eval_files(wildcards=None):
    if not SYNTHETIC:
        raise ConfigError("replicates: seeds of the synthetic benchmark; the benchmark is not synthetic (benchmark.name)")
    return {
        seed: {r["variant"]: {lang: replicate_eval_file(seed, r["variant"], lang) for lang in LANGS} for r in REPLICATE_ROWS}
        for seed in REPLICATE_SEEDS
    }
